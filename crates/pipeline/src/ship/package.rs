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
    let e = &model.encoding;
    format!(
        "# Written by hone ship.\nname: \"{name}\"\nplatform: \"onnxruntime_onnx\"\nmax_batch_size: 64\n\
         input [\n  {{ name: \"{}\" data_type: TYPE_FP32 dims: [ {} ] }}\n]\n\
         output [\n  {{ name: \"{}\" data_type: TYPE_FP32 dims: [ {} ] }}\n]\n\
         dynamic_batching {{ max_queue_delay_microseconds: 0 }}\n\
         instance_group [ {{ count: 1 kind: KIND_CPU }} ]\n",
        hone_train::export::INPUT,
        e.input_width(),
        hone_train::export::OUTPUT,
        e.output_width()
    )
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
