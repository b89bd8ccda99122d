//! Model compression passes over the ONNX protobuf, written in Rust (no
//! Python at run time), plus what the optimizer's search needs around them:
//! calibration of activation ranges and in-process latency/throughput
//! measurement.
//!
//! Every pass takes a model and returns a new one; none mutates its input,
//! so a search can derive many candidates from one fp32 model.

pub mod calibrate;
pub mod canon;
pub mod dynamic;
pub mod fp16;
pub mod graph;
pub mod machine;
pub mod measure;
pub mod ops;
pub mod opset;
pub mod prune;
pub mod qdq;
pub mod s2d;

/// Why a pass could not transform a model.
#[derive(Debug, thiserror::Error)]
pub enum OptError {
    /// The model has something the pass does not handle, worded for the
    /// user (an op from an opset it cannot convert, a weight that is not
    /// float).
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Onnx(#[from] hone_onnx::OnnxError),
    /// ONNX Runtime, while calibrating or measuring.
    #[error(transparent)]
    Runtime(#[from] hone_core::Error),
}

pub type Result<T> = std::result::Result<T, OptError>;
