//! Judging and timing one candidate: its metric on EVAL (against labels, or
//! fidelity to the fp32 model's outputs), its drop against the budget, and
//! its latency and throughput in the session `hone serve` would give it.

use std::time::Duration;

use hone_core::Tensor;
use hone_data::Task;
use hone_data::metrics::Metric;
use hone_optimize::measure;
use hone_runtime::{OrtBackend, SessionConfig};

use super::report::Candidate;
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

/// Everything a candidate is judged and measured with.
pub(crate) struct Scorer {
    pub ds: Dataset,
    pub judge: Judge,
    pub task_hint: Option<Task>,
    pub out_index: usize,
    pub base_values: Vec<f32>,
    pub base_width: usize,
    pub base_metric: f64,
    pub max_drop: f64,
    pub relative: bool,
    pub cfg: SessionConfig,
    /// --threads; 0: time each model as hone serve runs it by default.
    pub threads: usize,
    pub eval_batch: usize,
    /// The batch-1 input latency is timed on.
    pub row: Vec<Tensor>,
    pub perf_batches: Vec<usize>,
    pub measure: Duration,
}

impl Scorer {
    /// The judged value of a loaded model on EVAL.
    pub fn value(&self, backend: &mut OrtBackend) -> Result<f64> {
        let (values, width) = eval::run_output(backend, &self.ds, self.out_index, self.eval_batch)?;
        if width != self.base_width {
            return Err(PipelineError(format!(
                "output width changed from {} to {width}",
                self.base_width
            )));
        }
        Ok(match self.judge {
            Judge::Labels(m) => {
                let labels = self.ds.labels.as_deref().unwrap_or(&[]);
                let (_, r, _) = eval::score(self.task_hint, Some(m), values, width, labels)?;
                r.get(m).unwrap_or(f64::NAN)
            }
            Judge::Cosine => {
                let mut sum = 0.0;
                let rows = values.len() / width.max(1);
                for (a, b) in values.chunks(width).zip(self.base_values.chunks(width)) {
                    sum += cosine(a, b);
                }
                sum / rows.max(1) as f64
            }
            Judge::MaxAbs => values
                .iter()
                .zip(&self.base_values)
                .map(|(a, b)| (a - b).abs() as f64)
                .fold(0.0, f64::max),
        })
    }

    /// How much worse than fp32 a judged value is (absolute or relative).
    pub fn drop_of(&self, v: f64) -> f64 {
        let d = if self.judge.higher_is_better() {
            self.base_metric - v
        } else {
            v - self.base_metric
        };
        if self.relative && self.base_metric.abs() > 0.0 {
            d / self.base_metric.abs()
        } else {
            d
        }
    }

    /// The drop of a model, or None when it cannot be loaded or run.
    pub fn drop_of_model(&self, bytes: &[u8]) -> Option<f64> {
        let mut b = OrtBackend::from_bytes(bytes, &self.cfg).ok()?;
        self.value(&mut b).ok().map(|v| self.drop_of(v))
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
    pub fn candidate(
        &self,
        name: &str,
        technique: &str,
        detail: String,
        bytes: Vec<u8>,
    ) -> Candidate {
        let mut c = Candidate::new(name, technique, detail);
        c.size_bytes = Some(bytes.len() as u64);
        let r = (|| -> Result<()> {
            let mut b = OrtBackend::from_bytes(&bytes, &self.cfg)?;
            let v = self.value(&mut b)?;
            drop(b);
            let d = self.drop_of(v);
            c.metric = Some(v);
            c.drop = Some(d);
            c.meets_budget = d <= self.max_drop + 1e-12;
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
            .map_err(|e| PipelineError(e.0))?;
            c.p50_ms = Some(p.p50_ms);
            c.p99_ms = Some(p.p99_ms);
            c.throughput = Some(p.throughput);
            c.best_batch = Some(p.best_batch);
            Ok(())
        })();
        match r {
            Ok(()) => {
                c.verdict = if c.meets_budget {
                    "within budget".into()
                } else {
                    format!(
                        "over budget: drop {:.4} > {}",
                        c.drop.unwrap_or(f64::NAN),
                        self.max_drop
                    )
                };
            }
            Err(e) => {
                c.meets_budget = false;
                c.verdict = format!("failed: {e}");
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
