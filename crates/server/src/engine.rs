//! How the server gets an inference engine for a model file: a small loader
//! trait, so the repository never calls ONNX Runtime itself and its
//! lifecycle can be tested with a fake engine.

use std::path::{Path, PathBuf};

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
#[derive(Debug, Default)]
pub struct OrtLoader {
    /// `--custom-op-library`: registered with every session, so models that
    /// use those operators load.
    pub op_libraries: Vec<PathBuf>,
}

impl EngineLoader for OrtLoader {
    fn init(&self) -> Result<()> {
        hone_runtime::init().map(|_| ())
    }

    fn load(&self, path: &Path, cfg: &SessionConfig) -> Result<Box<dyn Backend>> {
        let loaded = if self.op_libraries.is_empty() {
            OrtBackend::load(path, cfg)
        } else {
            let cfg = SessionConfig {
                op_libraries: self.op_libraries.clone(),
                ..cfg.clone()
            };
            OrtBackend::load(path, &cfg)
        };
        match loaded {
            Ok(b) => Ok(Box::new(b)),
            // An operator ONNX Runtime lacks may be a custom one.
            Err(mut e) if e.message.contains("is not a registered function/op") => {
                e.message.push_str(
                    " (a custom operator, such as onnxruntime-extensions' ai.onnx.contrib ones, loads when its library is given with --custom-op-library)",
                );
                Err(e)
            }
            Err(e) => Err(e),
        }
    }
}
