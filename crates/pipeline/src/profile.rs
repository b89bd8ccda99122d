//! `hone profile`: the reference profile `hone serve` measures live drift
//! against, for any ONNX model: per input feature and per output column,
//! the statistics and histogram of the model's inputs and outputs on the
//! given data. Written as `MODEL.profile.json` beside the model.

use std::path::{Path, PathBuf};

use hone_core::Backend;
use hone_data::{npy, stats};
use hone_runtime::{OrtBackend, SessionConfig};
use serde::Serialize;

use crate::eval;
use crate::{PipelineError, Result};

#[derive(Debug, Clone)]
pub struct ProfileOptions {
    pub model: PathBuf,
    /// A CSV/Parquet file or a directory of `<input>.npy` files.
    pub data: PathBuf,
    /// A label column to leave out of the inputs (CSV), when present.
    pub target: String,
    pub output: PathBuf,
    /// Input columns profiled as categories (their distinct values).
    pub categorical: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub format: &'static str,
    pub model: String,
    pub model_sha256: String,
    pub data: String,
    pub rows: usize,
    /// The model's first input, one entry per column of a row.
    pub input: String,
    pub inputs: Vec<stats::FeatureStats>,
    /// The model's first output, one entry per column.
    pub output: String,
    pub outputs: Vec<stats::FeatureStats>,
}

/// Where `hone serve` looks for a model's profile.
pub fn profile_path(model: &Path) -> PathBuf {
    model.with_extension("profile.json")
}

/// Column `j` of row-major `values` with `width` columns.
fn column(values: &[f32], width: usize, j: usize) -> Vec<f64> {
    values
        .iter()
        .skip(j)
        .step_by(width.max(1))
        .map(|&v| f64::from(v))
        .collect()
}

pub fn profile(opts: &ProfileOptions) -> Result<Profile> {
    hone_runtime::init()?;
    let bytes = hone_onnx::read_bytes(&opts.model)?;
    let mut backend = OrtBackend::from_bytes(&bytes, &SessionConfig::default())?;
    let meta = backend.metadata().clone();
    let (card, _, ds) = eval::load_with_cards(&opts.model, &opts.data, &opts.target, &meta)?;
    if ds.rows == 0 {
        return Err(PipelineError::Message(format!(
            "{}: no rows",
            opts.data.display()
        )));
    }
    let (Some(input), Some(first)) = (meta.inputs.first(), ds.inputs.first()) else {
        return Err(PipelineError::Message("the model has no inputs".into()));
    };
    if meta.inputs.len() > 1 {
        tracing::warn!(
            "the model has {} inputs; drift is profiled on the first, {:?}",
            meta.inputs.len(),
            input.name
        );
    }
    let values = npy::to_f32(first).ok_or_else(|| {
        PipelineError::Message(format!(
            "input {:?} is {}, which has no histogram",
            input.name,
            first.dtype.as_v2()
        ))
    })?;
    let width = values.len() / ds.rows;
    // Column names from the data's header when they fit, else input[i].
    let names: Vec<String> = if ds.columns.len() == width {
        ds.columns.clone()
    } else {
        (0..width).map(|i| format!("{}[{i}]", input.name)).collect()
    };
    if let Some(c) = opts.categorical.iter().find(|c| !names.contains(c)) {
        return Err(PipelineError::Message(format!(
            "--categorical {c:?}: no such input column (columns: {})",
            names.join(", ")
        )));
    }
    // A card knows which columns are categories and their labels: the
    // same encoding `hone ship` trained with, no --categorical needed.
    let card_categories = |n: &str| -> Option<Vec<String>> {
        let f = card.as_ref()?.input.features.iter().find(|f| f.name == n)?;
        match &f.kind {
            hone_data::encode::FeatureKind::Categorical { categories } => Some(categories.clone()),
            hone_data::encode::FeatureKind::Numeric => None,
        }
    };
    let inputs = names
        .iter()
        .enumerate()
        .map(|(j, n)| {
            let v = column(&values, width, j);
            if let Some(labels) = card_categories(n) {
                Ok(stats::categorical_stats(n, &v, Some(&labels))?)
            } else if opts.categorical.contains(n) {
                Ok(stats::categorical_stats(n, &v, None)?)
            } else {
                Ok(stats::feature_stats(n, &v))
            }
        })
        .collect::<Result<_>>()?;
    let out_index = eval::pick_output(&meta, None)?;
    let out_name = meta
        .outputs
        .get(out_index)
        .map(|o| o.name.clone())
        .unwrap_or_default();
    if out_index != 0 {
        return Err(PipelineError::Message(format!(
            "the server watches a model's first output, and {:?} is not numeric",
            meta.outputs.first().map(|o| o.name.as_str()).unwrap_or("")
        )));
    }
    let (out, ow) = eval::run_output(&mut backend, &ds, 0, 256)?;
    let outputs = (0..ow)
        .map(|j| {
            let n = if ow == 1 {
                out_name.clone()
            } else {
                format!("{out_name}[{j}]")
            };
            stats::feature_stats(&n, &column(&out, ow, j))
        })
        .collect();
    let p = Profile {
        format: "hone.profile/1",
        model: opts.model.display().to_string(),
        model_sha256: hone_package::layer::sha256_hex(&bytes),
        data: opts.data.display().to_string(),
        rows: ds.rows,
        input: input.name.clone(),
        inputs,
        output: out_name,
        outputs,
    };
    let json = serde_json::to_vec_pretty(&p)?;
    if let Some(dir) = opts.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&opts.output, json).map_err(|e| {
        PipelineError::Message(format!("cannot write {}: {e}", opts.output.display()))
    })?;
    Ok(p)
}
