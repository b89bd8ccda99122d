//! The ONNX Runtime backend: locating (or fetching) `libonnxruntime`, building
//! sessions from a model file, running batched calls, and the default
//! sizing of sessions per model.

mod backend;
mod library;
pub mod memory;
pub mod sizing;

pub use backend::{GraphOptimization, OrtBackend, SessionConfig};
pub use library::{ORT_VERSION, cache_dir, init, library_path};
