//! The ONNX Runtime backend: locating (or fetching) `libonnxruntime`, building
//! sessions from a model file, and running batched calls.

mod backend;
mod library;

pub use backend::{GraphOptimization, OrtBackend, SessionConfig};
pub use library::{ORT_VERSION, init, library_path};
