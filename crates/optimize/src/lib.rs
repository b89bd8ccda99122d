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

/// A pass failure, worded for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptError(pub String);

impl std::fmt::Display for OptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OptError {}

impl From<hone_onnx::OnnxError> for OptError {
    fn from(e: hone_onnx::OnnxError) -> Self {
        OptError(e.0)
    }
}

impl From<hone_core::Error> for OptError {
    fn from(e: hone_core::Error) -> Self {
        OptError(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, OptError>;
