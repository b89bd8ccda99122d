//! How the server gets an inference engine for a model file: a small loader
//! trait, so the repository never calls ONNX Runtime itself and its
//! lifecycle can be tested with a fake engine.

use std::path::Path;

use hone_core::{Backend, Result};
use hone_runtime::{OrtBackend, SessionConfig};

/// Builds one engine instance from a model file.
pub trait EngineLoader: Send + Sync {
    /// Called once before the repository loads (ONNX Runtime finds or
    /// fetches its library here).
    fn init(&self) -> Result<()> {
        Ok(())
    }

    fn load(&self, path: &Path, cfg: &SessionConfig) -> Result<Box<dyn Backend>>;
}

/// ONNX Runtime sessions: what `hone serve` runs.
pub struct OrtLoader;

impl EngineLoader for OrtLoader {
    fn init(&self) -> Result<()> {
        hone_runtime::init().map(|_| ())
    }

    fn load(&self, path: &Path, cfg: &SessionConfig) -> Result<Box<dyn Backend>> {
        Ok(Box::new(OrtBackend::load(path, cfg)?))
    }
}
