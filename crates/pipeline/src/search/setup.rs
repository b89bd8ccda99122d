//! The start of a search: load the fp32 model and EVAL, pick the judge, and
//! score the fp32 model, which every candidate's drop is measured against.

use std::time::Duration;

use hone_core::{Backend, ModelMetadata};
use hone_data::Task;
use hone_data::metrics::Metric;
use hone_onnx::proto::ModelProto;
use hone_runtime::{OrtBackend, SessionConfig};

use super::judge::{Baseline, Judge, Scorer};
use super::options::OptimizeOptions;
use super::served::{self, Pass, Seq};
use crate::eval;
use crate::{PipelineError, Result};

/// The input model and what it is judged with.
pub(crate) struct Setup {
    /// The canonical form of the input model, which candidates start from.
    pub fp32: ModelProto,
    /// What canonicalization changed, one line per step.
    pub canonical: Vec<String>,
    pub fp32_bytes: Vec<u8>,
    pub meta: ModelMetadata,
    pub card: Option<hone_train::ModelCard>,
    /// An imported model's card (None beside a hone-trained one).
    pub imported: Option<crate::imported::ImportCard>,
    pub cfg: SessionConfig,
    /// Wire bytes of one EVAL row, which sizes eval and calibration batches.
    pub row_bytes: usize,
    /// Whether rows can be stacked into batches (see `setup`).
    pub batchable: bool,
    pub scorer: Scorer,
}

pub(crate) fn setup(opts: &OptimizeOptions) -> Result<Setup> {
    hone_runtime::init()?;
    let fp32_bytes = match &opts.in_memory {
        Some(m) => m.model.clone(),
        // External data read in: the search works on the model in memory.
        None => hone_onnx::read_bytes(&opts.model)?,
    };
    let cfg = SessionConfig {
        intra_op_threads: opts.threads,
        ..Default::default()
    };
    let mut base_backend = OrtBackend::from_bytes(&fp32_bytes, &cfg)?;
    // Candidates start from the canonical form; the baseline stays the file
    // as given, which every candidate is judged against.
    let canon = hone_optimize::canon::canonicalize(&fp32_bytes, &cfg)
        .map_err(|e| PipelineError::Message(format!("canonicalizing the model: {e}")))?;
    let fp32 = canon.model.clone();
    let meta = base_backend.metadata().clone();
    let (card, imported, ds) = match &opts.in_memory {
        Some(m) => {
            let ds = match &m.imported {
                Some(ic) => crate::imported::dataset(&m.data, &opts.target, &meta, ic)?,
                None => {
                    eval::dataset_from_table(m.data.clone(), &opts.target, &meta, m.card.as_ref())?
                }
            };
            (m.card.clone(), m.imported.clone(), ds)
        }
        None => {
            let (card, imported, ds) =
                eval::load_with_cards(&opts.model, &opts.data, &opts.target, &meta)?;
            (card, imported, ds)
        }
    };
    if ds.rows == 0 {
        return Err(PipelineError::Message(format!(
            "{}: no rows",
            opts.data.display()
        )));
    }
    let out_index = eval::pick_output(
        &meta,
        opts.output_name
            .as_deref()
            .or_else(|| imported.as_ref().and_then(|c| c.output())),
    )?;
    let task_hint = ds.encoding.as_ref().map(|e| e.target.task);
    let judge = pick_judge(opts, ds.labels.is_some())?;
    // Eval batches of at most ~16 MB of input.
    let row_bytes: usize = ds
        .slice(0, 1)
        .iter()
        .map(|t| t.to_wire_bytes().len())
        .sum::<usize>()
        .max(1);
    // Models fixed at batch 1, and models with inputs fed whole (recurrent
    // state), run one row at a time: so hone serve runs them too.
    let batchable = !meta.inputs.iter().any(|s| s.dims.first() == Some(&1))
        && !(0..meta.inputs.len()).any(|i| ds.is_whole(i));
    let eval_batch = if batchable {
        ((16 << 20) / row_bytes).clamp(1, 256)
    } else {
        1
    };
    // Judged as served: batch 1 and the batches the batcher forms; for
    // sequence models also the padded bulk figure, shown beside.
    let seq = Seq::detect(&meta, &ds);
    let eval_batch = eval_batch.min(ds.rows);
    let batched = eval_batch.min(hone_runtime::sizing::DEFAULT_MAX_BATCH_SIZE as usize);
    let mut passes = vec![Pass::Single];
    if batched > 1 {
        passes.push(Pass::Batched(batched));
    }
    let padded_pass = seq
        .as_ref()
        .filter(|s| s.trims())
        .map(|_| Pass::Padded(eval_batch));
    let run = |b: &mut OrtBackend, pass| served::run(b, &ds, seq.as_ref(), out_index, pass);
    let first = run(&mut base_backend, Pass::Single)?;
    let mut judge = judge;
    // A label metric of one pass's rows: the task judged by and the value.
    let metric_of = |m: Metric, rows: &served::Rows| -> Result<(Task, Option<f64>)> {
        let width = rows.width().ok_or_else(|| {
            PipelineError::Message("label metrics need one output row per example".into())
        })?;
        let labels = ds.labels.as_deref().unwrap_or(&[]);
        let (task, r, _) = eval::score(task_hint, Some(m), rows.values.clone(), width, labels)
            .or_else(|_| {
                // Regression models default to R² rather than accuracy.
                eval::score(
                    task_hint,
                    Some(Metric::R2),
                    rows.values.clone(),
                    width,
                    labels,
                )
            })?;
        Ok((task, r.get(m)))
    };
    if let Judge::Labels(m) = judge {
        let (task, v) = metric_of(m, &first)?;
        if v.is_none() || (opts.metric.is_none() && task == Task::Regression) {
            judge = Judge::Labels(Metric::R2);
        }
    }
    let value = |rows: &served::Rows| -> Result<f64> {
        Ok(match judge {
            Judge::Labels(m) => metric_of(m, rows)?.1.unwrap_or(f64::NAN),
            Judge::Cosine => 1.0,
            Judge::MaxAbs => 0.0,
        })
    };
    let mut served = Vec::new();
    for pass in passes {
        let rows = if pass == Pass::Single {
            first.clone()
        } else {
            run(&mut base_backend, pass)?
        };
        let metric = value(&rows)?;
        served.push(Baseline { pass, rows, metric });
    }
    let padded = match padded_pass {
        Some(pass) => {
            let rows = run(&mut base_backend, pass)?;
            let metric = value(&rows)?;
            Some(Baseline { pass, rows, metric })
        }
        None => None,
    };
    drop(base_backend);
    let perf_batches: Vec<usize> = [1usize, 4, 16, 64]
        .into_iter()
        .filter(|&b| b == 1 || (batchable && b * row_bytes <= (32 << 20)))
        .collect();
    let row = match &opts.latency_data {
        Some(p) => {
            let l = eval::load_dataset(p, &opts.target, &meta, card.as_ref(), imported.as_ref())?;
            if l.rows == 0 {
                return Err(PipelineError::Message(format!("{}: no rows", p.display())));
            }
            l.slice(0, 1)
        }
        None => ds.slice(0, 1),
    };
    let scorer = Scorer {
        row,
        ds,
        judge,
        task_hint,
        out_index,
        seq,
        served,
        padded,
        max_drop: opts.max_drop,
        relative: opts.relative && judge != Judge::MaxAbs,
        cfg: cfg.clone(),
        threads: opts.threads,
        perf_batches,
        measure: Duration::from_secs_f64(if opts.measure_seconds.is_finite() {
            opts.measure_seconds.clamp(0.2, 3600.0)
        } else {
            2.0
        }),
    };
    Ok(Setup {
        fp32,
        canonical: canon.steps,
        fp32_bytes,
        meta,
        card,
        imported,
        cfg,
        row_bytes,
        batchable,
        scorer,
    })
}

/// --metric as a judge; without it, the task's metric with labels, cosine
/// without.
fn pick_judge(opts: &OptimizeOptions, has_labels: bool) -> Result<Judge> {
    Ok(match opts.metric.as_deref() {
        Some("cosine") => Judge::Cosine,
        Some("maxabs") | Some("max-abs") => Judge::MaxAbs,
        Some(m) => {
            let m = Metric::parse(m).ok_or_else(|| {
                PipelineError::Message(format!(
                    "unknown metric {m:?}: accuracy, auc, f1, logloss, mse, mae, r2, cosine or maxabs"
                ))
            })?;
            if !has_labels {
                return Err(PipelineError::Message(format!(
                    "--metric {} needs labels; {} has none (use --metric cosine for fidelity to fp32)",
                    m.name(),
                    opts.data.display()
                )));
            }
            Judge::Labels(m)
        }
        None if has_labels => Judge::Labels(Metric::Accuracy),
        None => Judge::Cosine,
    })
}
