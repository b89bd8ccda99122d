//! hone's pipeline stages built from the other crates: evaluating any ONNX
//! model on labelled data (`eval`), and `ship`, the whole path from a CSV to
//! a verified serving endpoint with every stage timed.

pub mod eval;
pub mod fit;
pub mod optimize;
mod report_html;
pub mod ship;

/// A pipeline failure, already worded for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineError(pub String);

impl std::fmt::Display for PipelineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PipelineError {}

pub type Result<T> = std::result::Result<T, PipelineError>;

macro_rules! from_error {
    ($($t:ty),*) => {$(
        impl From<$t> for PipelineError {
            fn from(e: $t) -> Self {
                PipelineError(e.to_string())
            }
        }
    )*};
}

from_error!(
    hone_data::DataError,
    hone_train::TrainError,
    hone_core::Error,
    hone_onnx::OnnxError,
    std::io::Error,
    serde_json::Error
);

/// Where the model card of a model file lives: `model.onnx` → `model.card.json`.
pub fn card_path(model: &std::path::Path) -> std::path::PathBuf {
    model.with_extension("card.json")
}

/// Reads the card beside a model, if there is one.
pub fn read_card(model: &std::path::Path) -> Result<Option<hone_train::ModelCard>> {
    let p = card_path(model);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| PipelineError(format!("{}: not a valid model card: {e}", p.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PipelineError(format!("cannot read {}: {e}", p.display()))),
    }
}
