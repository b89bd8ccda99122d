//! The package stage's pieces: the model name check, the Triton config hone
//! writes for a model it trained, and the atomic publish into the repository.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use hone_train::Mlp;

use crate::{PipelineError, Result};

pub(super) fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(PipelineError::Message(format!(
            "model name {name:?}: use letters, digits, '-', '_' and '.' (not leading)"
        )))
    }
}

/// The Triton config hone writes for a model it trained.
pub fn config_pbtxt(name: &str, model: &Mlp) -> String {
    use hone_server::config::{DynamicBatching, IoConfig, ModelConfig};
    let e = &model.encoding;
    let io = |name: &str, width: usize| IoConfig {
        name: name.into(),
        dtype: hone_core::DataType::F32,
        dims: vec![width as i64],
    };
    let config = ModelConfig {
        name: name.into(),
        max_batch_size: Some(64),
        inputs: vec![io(hone_train::export::INPUT, e.input_width())],
        outputs: vec![io(hone_train::export::OUTPUT, e.output_width())],
        dynamic_batching: Some(DynamicBatching::default()),
        instance_count: 1,
        ..ModelConfig::default()
    };
    // The server's own writer, so what ship writes is what the server reads.
    format!("{}\n{}", super::live::SHIP_HEADER, config.to_pbtxt())
}

/// Writes model, card and config into a hidden staging directory inside the
/// repository (same file system, so the final rename is atomic) and renames
/// the version (or, for a new model, the whole model directory) into place.
pub(super) fn publish(
    repo: &Path,
    name: &str,
    onnx: &[u8],
    card: &[u8],
    config: &str,
    cancel: &AtomicBool,
) -> Result<(u64, PathBuf)> {
    crate::publish::publish_files(
        repo,
        name,
        &[("model.onnx", onnx), ("model.card.json", card)],
        Some(config),
        cancel,
    )
}
