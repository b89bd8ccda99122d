//! Shared vocabulary of hone: element types, tensors, model signatures, the
//! [`Backend`] trait every inference engine implements, and the error type.
//!
//! Nothing here knows about HTTP, gRPC or ONNX Runtime, so protocol front ends
//! and engines can evolve independently.

mod dtype;
pub mod element;
mod error;
mod tensor;

pub use dtype::DataType;
pub use element::Element;
pub use error::{Error, ErrorKind, Result};
pub use tensor::{Tensor, TensorData, element_count};

/// A request input as a protocol decoded it, before validation: the name
/// the client gave, and the tensor (dtype, shape, payload).
pub type NamedTensor = (String, Tensor);

/// Name, element type and shape of one model input or output.
/// A dimension of `-1` is dynamic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DataType,
    pub dims: Vec<i64>,
}

/// The signature of a loaded model as the engine reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelMetadata {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

impl ModelMetadata {
    /// True when every input and output has a dynamic first dimension, which is
    /// what lets a scheduler stack requests along dim 0.
    pub fn batchable(&self) -> bool {
        self.inputs
            .iter()
            .chain(&self.outputs)
            .all(|t| t.dims.first() == Some(&-1))
    }
}

/// An inference engine instance. One instance runs one call at a time; a
/// server runs several instances for parallelism.
pub trait Backend: Send {
    fn metadata(&self) -> &ModelMetadata;

    /// Runs one engine call over a batch of requests. `batch[r][i]` is input
    /// `i` (in [`ModelMetadata::inputs`] order) of request `r`; when there are
    /// several requests the engine stacks them along dim 0, which the caller
    /// has already checked is possible. Returns every output, stacked.
    fn infer(&mut self, batch: &[&[Tensor]]) -> Result<Vec<Tensor>>;

    /// Another instance over the same weights, when the engine can run
    /// concurrently on one copy of them (None: instances load their own).
    fn share(&self) -> Option<Box<dyn Backend>> {
        None
    }
}
