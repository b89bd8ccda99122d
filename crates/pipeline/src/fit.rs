//! `hone train`: read the data, train, export the ONNX model and its card.

use std::path::PathBuf;
use std::time::Instant;

use hone_data::metrics::Report;
use hone_data::{Encoding, Table, Task, split};
use hone_train::{CardInput, EpochLog, Mlp, ModelCard, TrainConfig};
use serde::Serialize;

use crate::publish::write_atomic;
use crate::{PipelineError, Result};

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub data: PathBuf,
    pub target: String,
    pub task: Option<Task>,
    pub categorical: Vec<String>,
    pub val: Option<PathBuf>,
    /// Used when `val` is not given: this fraction of the rows, split off with the seed.
    pub val_fraction: f64,
    pub train: TrainConfig,
    pub output: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainOutcome {
    pub model: String,
    pub card: String,
    pub task: Task,
    pub train_rows: usize,
    pub val_rows: usize,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub train_metrics: Report,
    pub val_metrics: Option<Report>,
    pub seconds: f64,
    /// Largest |ONNX Runtime − Rust| over the validation (or training) rows.
    pub export_max_diff: f32,
}

/// Loads the data and splits off validation rows. Exposed for tests.
pub fn load(
    opts: &TrainOptions,
) -> Result<(
    Encoding,
    hone_data::Prepared,
    Option<hone_data::Prepared>,
    Vec<u8>,
)> {
    let bytes = std::fs::read(&opts.data)
        .map_err(|e| PipelineError::Message(format!("cannot read {}: {e}", opts.data.display())))?;
    let table = Table::read(&opts.data)?;
    let encoding = Encoding::fit(&table, &opts.target, opts.task, &opts.categorical)?;
    let all = encoding.apply(&table, true)?;
    let (train, val) = match &opts.val {
        Some(p) => {
            let vt = Table::read(p)?;
            (all, Some(encoding.apply(&vt, true)?))
        }
        None if opts.val_fraction > 0.0 => {
            if opts.val_fraction >= 1.0 {
                return Err(PipelineError::Message(
                    "--val-fraction must be below 1".into(),
                ));
            }
            let strat = (encoding.target.task != Task::Regression).then_some(&all.y[..]);
            let (tr, va) = split::split(all.rows, opts.val_fraction, strat, opts.train.seed);
            (all.select(&tr), Some(all.select(&va)))
        }
        None => (all, None),
    };
    Ok((encoding, train, val, bytes))
}

pub fn fit(
    opts: &TrainOptions,
    on_epoch: impl FnMut(&EpochLog),
) -> Result<(TrainOutcome, Mlp, ModelCard)> {
    let start = Instant::now();
    let (encoding, train, val, bytes) = load(opts)?;
    let mut cfg = opts.train.clone();
    if val.is_none() {
        // Early stopping watches validation loss; without validation rows it cannot run.
        cfg.early_stopping = None;
    }
    let model = hone_train::train(&encoding, &train, val.as_ref(), &cfg, on_epoch)?;
    let seconds = start.elapsed().as_secs_f64();
    let train_report = model.evaluate(&train)?;
    let val_report = val.as_ref().map(|v| model.evaluate(v)).transpose()?;
    let card = hone_train::card_for(CardInput {
        model: &model,
        cfg: &cfg,
        train: &train,
        val: val.as_ref(),
        train_report: &train_report,
        val_report: val_report.as_ref(),
        data_file: &opts.data.display().to_string(),
        val_file: opts.val.as_ref().and_then(|p| p.to_str()),
        data_bytes: &bytes,
        seconds,
    });
    let onnx = model.to_onnx(&[("hone.task", encoding.target.task.name().to_string())]);
    let onnx_bytes = hone_onnx::encode(&onnx);

    // Check the export before writing anything: ORT must compute what Rust computed.
    let check = val.as_ref().unwrap_or(&train);
    let (_, diff) = crate::check_export(&model, &onnx_bytes, check)?;

    write_atomic(&opts.output, &onnx_bytes)?;
    let card_path = crate::card_path(&opts.output);
    write_atomic(&card_path, &serde_json::to_vec_pretty(&card)?)?;
    let outcome = TrainOutcome {
        model: opts.output.display().to_string(),
        card: card_path.display().to_string(),
        task: encoding.target.task,
        train_rows: train.rows,
        val_rows: val.as_ref().map_or(0, |v| v.rows),
        epochs_run: model.history.len(),
        best_epoch: model.best_epoch,
        train_metrics: train_report,
        val_metrics: val_report,
        seconds,
        export_max_diff: diff,
    };
    Ok((outcome, model, card))
}
