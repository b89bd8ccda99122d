//! Judging and timing one candidate: its metric on EVAL (against labels, or
//! fidelity to the fp32 model's outputs) as `hone serve` will run it, its
//! drop against the budget, and its latency and throughput in the session
//! `hone serve` would give it.

use std::time::Duration;

use hone_core::Tensor;
use hone_data::Task;
use hone_data::metrics::Metric;
use hone_optimize::measure;
use hone_runtime::{OrtBackend, SessionConfig};

use super::recipe::Recipe;
use super::report::{Candidate, PassFigure, Verdict};
use super::served::{self, Pass, Rows, Seq};
use crate::eval::{self, Dataset};
use crate::{PipelineError, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Judge {
    Labels(Metric),
    Cosine,
    MaxAbs,
}

impl Judge {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Judge::Labels(m) => m.name(),
            Judge::Cosine => "cosine",
            Judge::MaxAbs => "maxabs",
        }
    }

    pub(crate) fn higher_is_better(self) -> bool {
        match self {
            Judge::Labels(m) => m.higher_is_better(),
            Judge::Cosine => true,
            Judge::MaxAbs => false,
        }
    }
}

/// The fp32 model's outputs and metric in one pass, which candidates in
/// that pass are compared with.
pub(crate) struct Baseline {
    pub pass: Pass,
    pub rows: Rows,
    pub metric: f64,
}

/// A model's figures: the pass it does worst in among those `hone serve`
/// will run it in, and the padded bulk pass beside it.
#[derive(Debug, Clone)]
pub(crate) struct Judged {
    pub metric: f64,
    pub drop: f64,
    pub pass: Pass,
    pub padded: Option<(f64, f64)>,
    /// Every served pass: (pass, metric, drop).
    pub all: Vec<(Pass, f64, f64)>,
}

/// Everything a candidate is judged and measured with.
pub(crate) struct Scorer {
    pub ds: Dataset,
    pub seq: Option<Seq>,
    pub judge: Judge,
    pub task_hint: Option<Task>,
    pub out_index: usize,
    /// Batch 1 and the batcher's batches: the figures the budget applies to.
    pub served: Vec<Baseline>,
    /// Rows as stored, in large padded batches: reported beside them.
    pub padded: Option<Baseline>,
    pub max_drop: f64,
    pub relative: bool,
    pub cfg: SessionConfig,
    /// --threads; 0: time each model as hone serve runs it by default.
    pub threads: usize,
    /// The batch-1 input latency is timed on.
    pub row: Vec<Tensor>,
    pub perf_batches: Vec<usize>,
    pub measure: Duration,
}

impl Scorer {
    /// A model's outputs on EVAL in one pass.
    pub fn rows(&self, backend: &mut OrtBackend, pass: Pass) -> Result<Rows> {
        served::run(backend, &self.ds, self.seq.as_ref(), self.out_index, pass)
    }

    /// The judged value of outputs against the fp32 model's in the same pass.
    pub fn value(&self, rows: &Rows, base: &Rows) -> Result<f64> {
        if rows.len() != base.len() {
            return Err(PipelineError::Message(format!(
                "{} rows of output, the fp32 model gave {}",
                rows.len(),
                base.len()
            )));
        }
        if let Some(i) = (0..rows.len()).find(|&i| rows.row(i).len() != base.row(i).len()) {
            return Err(PipelineError::Message(format!(
                "row {i}: output width changed from {} to {}",
                base.row(i).len(),
                rows.row(i).len()
            )));
        }
        Ok(match self.judge {
            Judge::Labels(m) => {
                let width = rows.width().ok_or_else(|| {
                    PipelineError::Message("label metrics need one output row per example".into())
                })?;
                let labels = self.ds.labels.as_deref().unwrap_or(&[]);
                let (_, r, _) =
                    eval::score(self.task_hint, Some(m), rows.values.clone(), width, labels)?;
                r.get(m).unwrap_or(f64::NAN)
            }
            Judge::Cosine => {
                let n = rows.len();
                let sum: f64 = (0..n).map(|i| cosine(rows.row(i), base.row(i))).sum();
                sum / n.max(1) as f64
            }
            Judge::MaxAbs => rows
                .values
                .iter()
                .zip(&base.values)
                .map(|(a, b)| (a - b).abs() as f64)
                .fold(0.0, f64::max),
        })
    }

    /// Judges a loaded model in every served pass (and, when asked, the
    /// padded one).
    pub fn judged(&self, backend: &mut OrtBackend, with_padded: bool) -> Result<Judged> {
        let mut all = Vec::new();
        for b in &self.served {
            let v = self.value(&self.rows(backend, b.pass)?, &b.rows)?;
            all.push((b.pass, v, self.drop_of(v, b.metric)));
        }
        // NaN counts as worst, so a broken pass is never hidden.
        let &(pass, metric, drop) = all
            .iter()
            .reduce(|w, x| if x.2.is_nan() || x.2 > w.2 { x } else { w })
            .ok_or_else(|| PipelineError::Message("no pass to judge in".into()))?;
        let mut j = Judged {
            metric,
            drop,
            pass,
            padded: None,
            all,
        };
        if with_padded && let Some(b) = &self.padded {
            let v = self.value(&self.rows(backend, b.pass)?, &b.rows)?;
            j.padded = Some((v, self.drop_of(v, b.metric)));
        }
        Ok(j)
    }

    /// How much worse than the fp32 figure `base` a value is (absolute or
    /// relative).
    pub fn drop_of(&self, v: f64, base: f64) -> f64 {
        let d = if self.judge.higher_is_better() {
            base - v
        } else {
            v - base
        };
        if self.relative && base.abs() > 0.0 {
            d / base.abs()
        } else {
            d
        }
    }

    /// The drop of a model as served, or None when it cannot be loaded or run.
    pub fn drop_of_model(&self, bytes: &[u8]) -> Option<f64> {
        let mut b = OrtBackend::from_bytes(bytes, &self.cfg).ok()?;
        self.judged(&mut b, false).ok().map(|j| j.drop)
    }

    /// How the budget's figure is taken, for the report.
    pub fn judged_as(&self) -> String {
        let passes: Vec<String> = self.served.iter().map(|b| b.pass.describe()).collect();
        let mut s = format!("as hone serve runs it: worst of {}", passes.join(" and "));
        if let Some(seq) = &self.seq {
            s += if seq.trims() {
                ", each row at its own length, padding left out"
            } else {
                ", padding left out"
            };
        }
        if let Some(p) = &self.padded {
            s += &format!("; also shown: {}", p.pass.describe());
        }
        s
    }

    /// The session a model is timed in: --threads when given, else the one
    /// hone serve gives a file of its size by default (on 2 cores a 1 MiB-1 GiB
    /// model runs as 2 instances of 1 thread), so reported speed-ups are the
    /// ones the server delivers.
    /// Also returns the instances such a server runs, which throughput counts.
    pub fn speed_cfg(&self, bytes: &[u8]) -> (SessionConfig, usize) {
        if self.threads > 0 {
            (self.cfg.clone(), 1)
        } else {
            let n = bytes.len() as u64;
            (
                hone_runtime::sizing::default_session_config(n),
                hone_runtime::sizing::default_instances(n) as usize,
            )
        }
    }

    /// Judges and measures one model.
    pub fn candidate(&self, recipe: Recipe, detail: String, bytes: Vec<u8>) -> Candidate {
        let mut c = Candidate::new(recipe, detail);
        c.size_bytes = Some(bytes.len() as u64);
        let r = (|| -> Result<()> {
            let mut b = OrtBackend::from_bytes(&bytes, &self.cfg)?;
            let j = self.judged(&mut b, true)?;
            drop(b);
            c.metric = Some(j.metric);
            c.drop = Some(j.drop);
            c.judged_in = Some(j.pass.describe());
            c.by_pass = j
                .all
                .iter()
                .map(|&(p, metric, drop)| PassFigure {
                    pass: p.describe(),
                    metric,
                    drop,
                })
                .collect();
            if let Some((m, d)) = j.padded {
                c.padded_metric = Some(m);
                c.padded_drop = Some(d);
            }
            c.meets_budget = j.drop <= self.max_drop + 1e-12;
            let (speed, instances) = self.speed_cfg(&bytes);
            c.intra_op_threads = Some(speed.intra_op_threads);
            c.instances = Some(instances);
            let p = measure::measure(
                &bytes,
                &self.row,
                &speed,
                instances,
                self.measure,
                &self.perf_batches,
            )
            .map_err(PipelineError::from)?;
            c.p50_ms = Some(p.p50_ms);
            c.p99_ms = Some(p.p99_ms);
            c.throughput = Some(p.throughput);
            c.best_batch = Some(p.best_batch);
            Ok(())
        })();
        match r {
            Ok(()) => {
                c.verdict = if c.meets_budget {
                    Verdict::WithinBudget
                } else {
                    Verdict::OverBudget {
                        drop: c.drop.unwrap_or(f64::NAN),
                        max_drop: self.max_drop,
                    }
                };
            }
            Err(e) => {
                c.meets_budget = false;
                c.verdict = Verdict::Failed(e.to_string());
            }
        }
        c.bytes = bytes;
        c
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    if aa == 0.0 && bb == 0.0 {
        1.0
    } else if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}
