//! `hone eval`: metrics of any ONNX model with a numeric output on labelled
//! data. Rows run through the runtime crate in batches.
//!
//! Which metrics apply is decided in this order: the model card's task (for
//! models hone trained), a regression `--metric`, else the output's shape
//! (several columns → classes; one column of values in [0, 1] with 0/1
//! labels → binary; otherwise regression).

use std::path::{Path, PathBuf};
use std::time::Instant;

use hone_core::{Backend, DataType, Tensor};
use hone_data::metrics::{self, Metric, Report};
use hone_data::{Encoding, Table, Task, npy};
use hone_runtime::{OrtBackend, SessionConfig};
use serde::Serialize;

use crate::{PipelineError, Result};

#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub model: PathBuf,
    /// A CSV file, or a directory of `.npy` inputs (named after the model's
    /// inputs) plus `labels.npy`.
    pub data: PathBuf,
    pub target: String,
    pub metric: Option<Metric>,
    pub output: Option<String>,
    pub batch_size: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalResult {
    pub model: String,
    pub data: String,
    pub output: String,
    pub task: Task,
    /// Class labels when known (from the card), else class indices.
    pub labels: Vec<String>,
    pub metric: Option<Metric>,
    pub value: Option<f64>,
    pub report: Report,
    pub seconds: f64,
    /// True when the output was turned into probabilities with softmax
    /// because its rows did not sum to one.
    pub softmax_applied: bool,
}

pub use crate::dataset::Dataset;

/// Loads EVAL data for a model: a CSV/Parquet file or a `.npy` directory.
/// A table feeds a hone-trained model by its card's encoding, an imported
/// one by its card's feature names (or one input per column), any other
/// model by every column but the target.
pub fn load_dataset(
    data: &Path,
    target: &str,
    meta: &hone_core::ModelMetadata,
    card: Option<&hone_train::ModelCard>,
    imported: Option<&crate::imported::ImportCard>,
) -> Result<Dataset> {
    if data.is_dir() {
        load_npy_dir(data, meta)
    } else if let Some(ic) = imported {
        crate::imported::dataset(&Table::read(data)?, target, meta, ic)
    } else {
        load_csv(data, target, meta, card)
    }
}

/// The cards beside `model` and `data` loaded as they say.
pub fn load_with_cards(
    model: &Path,
    data: &Path,
    target: &str,
    meta: &hone_core::ModelMetadata,
) -> Result<(
    Option<hone_train::ModelCard>,
    Option<crate::imported::ImportCard>,
    Dataset,
)> {
    let (card, imported) = crate::imported::read_cards(model)?;
    let ds = load_dataset(data, target, meta, card.as_ref(), imported.as_ref())?;
    Ok((card, imported, ds))
}

/// One output of the model over every row, batched: the values (row-major)
/// and the row width.
pub fn run_output(
    backend: &mut OrtBackend,
    ds: &Dataset,
    out_index: usize,
    batch_size: usize,
) -> Result<(Vec<f32>, usize)> {
    let name = backend.metadata().outputs[out_index].name.clone();
    let bs = batch_size.max(1);
    let mut values: Vec<f32> = Vec::new();
    let mut width = 0usize;
    let mut at = 0;
    while at < ds.rows {
        let end = (at + bs).min(ds.rows);
        let batch = ds.slice(at, end);
        let outs = backend.infer(&[&batch])?;
        let out = &outs[out_index];
        let v = npy::to_f32(out).ok_or_else(|| {
            PipelineError::Message(format!(
                "output {name:?} is {}, not numeric",
                out.dtype.as_v2()
            ))
        })?;
        let n = end - at;
        let w = v.len().checked_div(n).unwrap_or(0);
        if w == 0 || w * n != v.len() {
            return Err(PipelineError::Message(format!(
                "output {name:?} has shape {:?}, which is not one row per example",
                out.shape
            )));
        }
        width = w;
        values.extend(v);
        at = end;
    }
    Ok((values, width))
}

/// The output a user means: named, or the first floating-point one.
pub fn pick_output(meta: &hone_core::ModelMetadata, name: Option<&str>) -> Result<usize> {
    match name {
        Some(name) => meta
            .outputs
            .iter()
            .position(|o| o.name == name)
            .ok_or_else(|| {
                PipelineError::Message(format!(
                    "the model has no output {name:?} (outputs: {})",
                    names(&meta.outputs)
                ))
            }),
        None => meta
            .outputs
            .iter()
            .position(|o| o.dtype.is_float())
            .or_else(|| (!meta.outputs.is_empty()).then_some(0))
            .ok_or_else(|| PipelineError::Message("the model has no outputs".into())),
    }
}

/// Scores predictions against labels ([`metrics::score`]). Returns the
/// task it judged by, the report, and whether softmax was applied to logits.
pub fn score(
    task_hint: Option<Task>,
    metric: Option<Metric>,
    values: Vec<f32>,
    width: usize,
    labels: &[f32],
) -> Result<(Task, Report, bool)> {
    Ok(metrics::score(task_hint, metric, values, width, labels)?)
}

pub fn evaluate(opts: &EvalOptions) -> Result<EvalResult> {
    let start = Instant::now();
    hone_runtime::init()?;
    let mut backend = OrtBackend::load(&opts.model, &SessionConfig::default())?;
    let meta = backend.metadata().clone();
    let (_, imported, ds) = load_with_cards(&opts.model, &opts.data, &opts.target, &meta)?;
    let labels = ds.labels.clone().ok_or_else(|| {
        PipelineError::Message(format!(
            "{}: no labels (a {:?} column, or labels.npy); pass --target",
            opts.data.display(),
            opts.target
        ))
    })?;
    let wanted = opts
        .output
        .as_deref()
        .or_else(|| imported.as_ref().and_then(|c| c.output()));
    let out_index = pick_output(&meta, wanted)?;
    let out_name = meta.outputs[out_index].name.clone();
    let (values, width) = run_output(&mut backend, &ds, out_index, opts.batch_size)?;
    let hint = ds.encoding.as_ref().map(|e| e.target.task);
    let (task, report, softmax_applied) = score(hint, opts.metric, values, width, &labels)?;
    let metric = opts.metric.or(Some(match task {
        Task::Regression => Metric::R2,
        _ => Metric::Accuracy,
    }));
    let value = metric.and_then(|m| report.get(m));
    let class_labels = match &ds.encoding {
        Some(e) => e.target.classes.clone(),
        None if task != Task::Regression => (0..width.max(2)).map(|i| i.to_string()).collect(),
        None => Vec::new(),
    };
    Ok(EvalResult {
        model: opts.model.display().to_string(),
        data: opts.data.display().to_string(),
        output: out_name,
        task,
        labels: class_labels,
        metric,
        value,
        report,
        seconds: start.elapsed().as_secs_f64(),
        softmax_applied,
    })
}

fn names(specs: &[hone_core::TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn load_csv(
    path: &Path,
    target: &str,
    meta: &hone_core::ModelMetadata,
    card: Option<&hone_train::ModelCard>,
) -> Result<Dataset> {
    dataset_from_table(Table::read(path)?, target, meta, card)
}

/// EVAL from a table already read (a CSV or Parquet file's rows).
pub fn dataset_from_table(
    table: Table,
    target: &str,
    meta: &hone_core::ModelMetadata,
    card: Option<&hone_train::ModelCard>,
) -> Result<Dataset> {
    if meta.inputs.len() != 1 {
        return Err(PipelineError::Message(format!(
            "the model has {} inputs ({}); a CSV feeds models with one input, use a directory of .npy files",
            meta.inputs.len(),
            names(&meta.inputs)
        )));
    }
    let spec = &meta.inputs[0];
    if spec.dtype != DataType::F32 {
        return Err(PipelineError::Message(format!(
            "input {:?} is {}; CSV rows are fed as FP32, use a directory of .npy files",
            spec.name,
            spec.dtype.as_v2()
        )));
    }
    let (encoding, columns, prepared) = match card {
        Some(card) => {
            // A hone model: its card says which columns, categories and labels.
            let enc = Encoding {
                features: card.input.features.clone(),
                target: hone_data::Target {
                    name: if table.column(target).is_some() {
                        target.to_string()
                    } else {
                        card.target.clone()
                    },
                    task: card.task,
                    classes: card.labels.clone(),
                },
            };
            let has_target = table.column(&enc.target.name).is_some();
            let p = enc.apply(&table, has_target)?;
            let cols = enc.features.iter().map(|f| f.name.clone()).collect();
            (Some(enc), cols, p)
        }
        None => {
            // Any other model: every column but the target, in file order, as numbers.
            let t = table.column(target);
            let features: Vec<hone_data::Feature> = table
                .names
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != t)
                .map(|(_, n)| hone_data::Feature {
                    name: n.clone(),
                    kind: hone_data::FeatureKind::Numeric,
                })
                .collect();
            let enc = Encoding {
                features,
                target: hone_data::Target {
                    name: target.to_string(),
                    task: Task::Regression,
                    classes: Vec::new(),
                },
            };
            let cols = enc.features.iter().map(|f| f.name.clone()).collect();
            (None, cols, enc.apply(&table, t.is_some())?)
        }
    };
    // Reshape each row to the input's non-batch dims when the counts agree
    // (64 pixel columns → [1, 8, 8]).
    let row_dims: Vec<i64> = spec.dims.iter().skip(1).copied().collect();
    let mut shape = vec![prepared.rows as i64];
    if row_dims.iter().all(|&d| d > 0) && row_dims.iter().product::<i64>() == prepared.cols as i64 {
        shape.extend(&row_dims);
    } else if row_dims.len() == 1 && row_dims[0] < 0 || row_dims.is_empty() {
        shape.push(prepared.cols as i64);
    } else {
        return Err(PipelineError::Message(format!(
            "the data has {} feature columns but input {:?} takes rows of shape {:?}",
            prepared.cols, spec.name, row_dims
        )));
    }
    let input = Tensor::from_f32(shape, &prepared.x)?;
    let labels = (!prepared.y.is_empty()).then_some(prepared.y);
    Ok(Dataset {
        inputs: vec![input],
        rows: prepared.rows,
        labels,
        encoding,
        columns,
        whole: Vec::new(),
    })
}

fn load_npy_dir(dir: &Path, meta: &hone_core::ModelMetadata) -> Result<Dataset> {
    let mut inputs = Vec::new();
    for spec in &meta.inputs {
        let candidates = [
            dir.join(format!("{}.npy", spec.name)),
            dir.join(format!("input_{}.npy", spec.name)),
        ];
        let path = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
            PipelineError::Message(format!(
                "{}: no {}.npy for model input {:?}",
                dir.display(),
                spec.name,
                spec.name
            ))
        })?;
        let t = npy::read(path)?;
        if t.dtype != spec.dtype {
            return Err(PipelineError::Message(format!(
                "{}: element type {} but input {:?} takes {}",
                path.display(),
                t.dtype.as_v2(),
                spec.name,
                spec.dtype.as_v2()
            )));
        }
        inputs.push(t);
    }
    let labels_path = ["labels.npy", "label.npy"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file());
    let labels = match labels_path {
        Some(p) => {
            let t = npy::read(&p)?;
            Some(npy::to_f32(&t).ok_or_else(|| {
                PipelineError::Message(format!("{}: labels must be numeric", p.display()))
            })?)
        }
        None => None,
    };
    // Rows come from labels, else from the first input whose model shape
    // is not fully fixed (a fixed one may be state fed whole, below).
    let sized = inputs
        .iter()
        .zip(&meta.inputs)
        .find(|(_, s)| s.dims.iter().any(|&d| d <= 0))
        .map(|(t, _)| t)
        .or(inputs.first());
    let rows = match (&labels, sized) {
        (Some(l), _) => l.len(),
        (None, Some(t)) => t.shape.first().copied().unwrap_or(0).max(0) as usize,
        (None, None) => 0,
    };
    // An input whose model shape is fully fixed and which the file holds
    // exactly once (no row axis of its own) goes whole to every batch.
    let whole: Vec<bool> = inputs
        .iter()
        .zip(&meta.inputs)
        .map(|(t, spec)| {
            t.shape.first().copied() != Some(rows as i64)
                && !spec.dims.is_empty()
                && spec.dims.iter().all(|&d| d > 0)
                && t.shape == spec.dims
        })
        .collect();
    for ((t, spec), &w) in inputs.iter().zip(&meta.inputs).zip(&whole) {
        if !w && t.shape.first().copied() != Some(rows as i64) {
            return Err(PipelineError::Message(format!(
                "input {:?} has {:?} rows but the others (or labels.npy) have {rows}",
                spec.name,
                t.shape.first()
            )));
        }
    }
    Ok(Dataset {
        inputs,
        labels,
        rows,
        encoding: None,
        columns: Vec::new(),
        whole,
    })
}

/// The result as a table a person reads.
pub fn render(r: &EvalResult) -> String {
    let mut s = format!(
        "model   {}\ndata    {} ({} rows)\noutput  {} ({} task{})\n\n",
        r.model,
        r.data,
        r.report.rows,
        r.output,
        r.task.name(),
        if r.softmax_applied {
            ", softmax applied to logits"
        } else {
            ""
        }
    );
    s += "metric      value\n";
    for (k, v) in r.report.entries() {
        let mark = if r.metric.map(Metric::name) == Some(k) {
            "  <-"
        } else {
            ""
        };
        s += &format!("{k:<10} {v:>9.6}{mark}\n");
    }
    if !r.report.confusion.is_empty() {
        s += "\nconfusion matrix (rows: true, columns: predicted)\n";
        let w = r.labels.iter().map(String::len).max().unwrap_or(1).max(5);
        s += &format!("{:>w$}", "");
        for l in &r.labels {
            s += &format!(" {l:>w$}");
        }
        s += "\n";
        for (i, row) in r.report.confusion.iter().enumerate() {
            let name = r.labels.get(i).cloned().unwrap_or_else(|| i.to_string());
            s += &format!("{name:>w$}");
            for c in row {
                s += &format!(" {c:>w$}");
            }
            s += "\n";
        }
    }
    s
}
