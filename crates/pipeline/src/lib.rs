//! hone's pipeline stages built from the other crates: evaluating any ONNX
//! model on labelled data (`eval`), and `ship`, the whole path from a CSV to
//! a verified serving endpoint with every stage timed.

mod dataset;
pub mod demo;
pub mod eval;
pub mod fit;
pub mod imported;
pub mod profile;
pub mod publish;
pub mod score;
pub mod search;
pub mod ship;
pub mod tune;

/// A pipeline failure: worded for the user, with the cause it came from.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A stage's own failure (a gate missed, a server that answered wrong),
    /// already worded for the user.
    #[error("{0}")]
    Message(String),
    #[error(transparent)]
    Data(#[from] hone_data::DataError),
    #[error(transparent)]
    Train(#[from] hone_train::TrainError),
    #[error(transparent)]
    Runtime(#[from] hone_core::Error),
    #[error(transparent)]
    Onnx(#[from] hone_onnx::OnnxError),
    #[error(transparent)]
    Optimize(#[from] hone_optimize::OptError),
    #[error(transparent)]
    Package(#[from] hone_package::Error),
    /// A running server refused or could not be reached.
    #[error(transparent)]
    Client(#[from] hone_client::ClientError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

pub type Result<T> = std::result::Result<T, PipelineError>;

/// Where the model card of a model file lives: `model.onnx` → `model.card.json`.
pub fn card_path(model: &std::path::Path) -> std::path::PathBuf {
    model.with_extension("card.json")
}

/// Reads the card beside a model, if there is one.
pub fn read_card(model: &std::path::Path) -> Result<Option<hone_train::ModelCard>> {
    let p = card_path(model);
    match std::fs::read(&p) {
        // An imported model's card (`hone import`) records provenance and
        // parity, not an encoding: the model is read as a plain ONNX one.
        Ok(b) if is_import_card(&b) => Ok(None),
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            PipelineError::Message(format!("{}: not a valid model card: {e}", p.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PipelineError::Message(format!(
            "cannot read {}: {e}",
            p.display()
        ))),
    }
}

/// Whether a card file is an import card (`format: hone.import-card/...`).
pub(crate) fn is_import_card(bytes: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Head {
        format: Option<String>,
    }
    serde_json::from_slice::<Head>(bytes)
        .is_ok_and(|h| h.format.is_some_and(|f| f.starts_with("hone.import-card/")))
}

/// Runs serialized model `onnx` in ONNX Runtime on encoded rows (one FP32
/// input) and returns its first output.
pub fn ort_predict(onnx: &[u8], d: &hone_data::Prepared) -> Result<Vec<f32>> {
    hone_runtime::init()?;
    let mut ort =
        hone_runtime::OrtBackend::from_bytes(onnx, &hone_runtime::SessionConfig::default())?;
    let input = hone_core::Tensor::from_f32(vec![d.rows as i64, d.cols as i64], &d.x)?;
    let out = hone_core::Backend::infer(&mut ort, &[&[input]])?;
    hone_data::npy::to_f32(&out[0])
        .ok_or_else(|| PipelineError::Message("the model's output is not numeric".into()))
}

/// Largest difference between two output vectors, relative to |a| where
/// that is above 1; infinite when their lengths differ.
pub fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / x.abs().max(1.0))
        .fold(0.0, f32::max)
}

/// Checks that the exported graph computes what the trained model does on
/// `d`; returns the largest difference.
pub fn check_export(
    model: &hone_train::Mlp,
    onnx: &[u8],
    d: &hone_data::Prepared,
) -> Result<(Vec<f32>, f32)> {
    let served = ort_predict(onnx, d)?;
    let diff = max_rel_diff(&served, &model.predict(&d.x, d.rows)?);
    if diff > 1e-5 {
        return Err(PipelineError::Message(format!(
            "internal error: the exported graph disagrees with the trained model (max diff {diff:e})"
        )));
    }
    Ok((served, diff))
}
