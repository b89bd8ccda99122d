//! A ship of a model trained elsewhere (`hone ship --model`): import it (or
//! take the ONNX file as it is), validate it on the labelled rows, then the
//! same package, image, serve and smoke-test stages as a trained model.

use std::path::{Path, PathBuf};

use hone_core::Backend;
use hone_data::metrics::Metric;
use hone_data::{Table, Task};
use hone_import::ImportOptions;
use hone_runtime::{OrtBackend, SessionConfig};
use hone_server::Server;
use serde_json::{Value, json};

use super::optimize_stage::{Card, optimize_stage};
use super::release::publish_and_go_live;
use super::report::{Run, ShipOptions, judge};
use super::smoke::Smoke;
use crate::imported::ImportCard;
use crate::{PipelineError, Result, eval};

/// A scratch directory removed when the ship ends, whatever its outcome.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) async fn run_stages(
    opts: &ShipOptions,
    given: &ImportOptions,
    run: &mut Run,
) -> Result<Option<Server>> {
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "hone-ship-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    )));
    // Private and new: the imported model is written here and read back.
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&scratch.0)
            .map_err(|e| {
                PipelineError::Message(format!("cannot create {}: {e}", scratch.0.display()))
            })?;
    }
    let data_file = match &opts.data_path {
        Some(p) if p.is_file() => p.clone(),
        _ => {
            let p = scratch.0.join("data.csv");
            std::fs::write(&p, &opts.data).map_err(|e| {
                PipelineError::Message(format!("cannot write {}: {e}", p.display()))
            })?;
            p
        }
    };

    let (onnx, card) = run.stage("import", || import(opts, given, &scratch.0, &data_file))?;

    let (table, meta, ds, view, mut backend) = run.stage("load data", || {
        let table = Table::read(&data_file)?;
        hone_runtime::init()?;
        let backend = OrtBackend::from_bytes(&onnx, &SessionConfig::default())?;
        let meta = backend.metadata().clone();
        let view: ImportCard = serde_json::from_value(card.clone()).unwrap_or_default();
        let ds = crate::imported::dataset(&table, &opts.target, &meta, &view)?;
        let detail = format!(
            "{} rows, all held out (the model was trained elsewhere); inputs {}",
            ds.rows,
            meta.inputs
                .iter()
                .map(|i| format!("{} {}", i.name, i.dtype.as_v2()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(((table, meta, ds, view, backend), detail))
    })?;

    let (out_index, report, task, metric) = run.stage("validate", || {
        let labels = ds.labels.clone().ok_or_else(|| {
            PipelineError::Message(format!(
                "{}: no `{}` column to validate against; name the label column with --target",
                opts.data_name, opts.target
            ))
        })?;
        let out_index = eval::pick_output(&meta, view.output())?;
        let (values, width) = eval::run_output(&mut backend, &ds, out_index, 256)?;
        let (task, report, _) = eval::score(view.task(), opts.metric, values, width, &labels)?;
        let metric = opts.metric.unwrap_or(if task == Task::Regression {
            Metric::R2
        } else {
            Metric::Accuracy
        });
        let (value, gate_note) = judge(&report, metric, task, opts.min_metric, "")?;
        let detail = format!(
            "{} = {value:.4} on {} labelled rows (output {}){gate_note}",
            metric.name(),
            ds.rows,
            meta.outputs[out_index].name
        );
        Ok(((out_index, report, task, metric), detail))
    })?;
    run.report.metric = Some(metric.name().to_string());
    run.report.value = report.get(metric);
    run.report.validation = Some(report.clone());

    let onnx = match opts.optimize {
        None => {
            run.skipped(
                "optimize",
                "not asked for (--optimize): the validated model ships",
            );
            onnx
        }
        Some(max_drop) => run.stage("optimize", || {
            optimize_stage(opts, &table, &onnx, Card::Imported(&view), metric, max_drop)
        })?,
    };

    // The card carries the validation figures (the dashboard, live accuracy
    // and the image's labels read them) and, for a plain ONNX file, the task
    // the metrics judged.
    let mut card = card;
    card["metrics"] = json!({"validation": report});
    if card.get("task").is_none_or(Value::is_null) {
        card["task"] = json!(task.name());
    }
    let card_json = serde_json::to_vec_pretty(&card)?;
    let smoke = Smoke::given(&onnx, &ds, out_index, opts.smoke_rows)?;
    let config = config_for(&opts.name, &meta);
    publish_and_go_live(opts, run, &onnx, &card_json, &config, &smoke).await
}

/// The "import" stage: the ONNX bytes and the card that goes beside them.
fn import(
    opts: &ShipOptions,
    given: &ImportOptions,
    scratch: &Path,
    data_file: &Path,
) -> Result<((Vec<u8>, Value), String)> {
    let read = |p: &Path| {
        std::fs::read(p)
            .map_err(|e| PipelineError::Message(format!("cannot read {}: {e}", p.display())))
    };
    let is_onnx = given
        .model
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    if is_onnx {
        let onnx = read(&given.model)?;
        let beside = crate::card_path(&given.model);
        let card = match std::fs::read(&beside) {
            Ok(b) if crate::is_import_card(&b) => serde_json::from_slice(&b)?,
            _ => json!({
                "format": "hone.import-card/1",
                "hone_version": env!("CARGO_PKG_VERSION"),
                "source": {"file": given.model.display().to_string(), "format": "onnx"},
            }),
        };
        let detail = format!(
            "{} as given (ONNX, {} bytes)",
            given.model.display(),
            onnx.len()
        );
        return Ok(((onnx, card), detail));
    }
    let mut o = given.clone();
    o.out = scratch.join("model.onnx");
    o.sample = Some(data_file.to_path_buf());
    o.target = vec![opts.target.clone()];
    let done = hone_import::import(&o).map_err(|e| PipelineError::Message(e.to_string()))?;
    let r = &done.report;
    let worst = r
        .parity
        .outputs
        .iter()
        .filter_map(|p| p.max_abs)
        .fold(0.0f64, f64::max);
    let agree = r
        .parity
        .outputs
        .iter()
        .filter_map(|p| p.agreement)
        .fold(1.0f64, f64::min);
    let detail = format!(
        "{} {} via {} {}; parity on {} rows: max |diff| {worst:.1e}, labels agree {:.0}%",
        r.source.framework,
        r.source.framework_version,
        r.converter.name,
        r.converter.version,
        r.parity.rows,
        agree * 100.0
    );
    let onnx = read(&o.out)?;
    let card: Value = serde_json::from_slice(&read(&done.card)?)?;
    Ok(((onnx, card), detail))
}

/// The config a given model ships with: batched (dynamic batching, up to 64
/// rows) when every input and output has a free first dimension, else as
/// the model declares it. Inputs and outputs come from the model.
fn config_for(name: &str, meta: &hone_core::ModelMetadata) -> String {
    use hone_server::config::{DynamicBatching, ModelConfig};
    let batchable = meta
        .inputs
        .iter()
        .chain(&meta.outputs)
        .all(|s| s.dims.first().is_some_and(|d| *d < 0));
    let config = ModelConfig {
        name: name.into(),
        max_batch_size: Some(if batchable { 64 } else { 0 }),
        dynamic_batching: batchable.then(DynamicBatching::default),
        ..ModelConfig::default()
    };
    format!("{}\n{}", super::live::SHIP_HEADER, config.to_pbtxt())
}
