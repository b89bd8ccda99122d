//! `hone optimize`: build compressed candidates of a model, judge each on
//! EVAL data (a metric against labels, or fidelity to the fp32 model's own
//! outputs), measure each in-process, and pick the best one for the
//! objective whose drop stays inside the budget.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use hone_core::{Backend, Tensor};
use hone_data::metrics::Metric;
use hone_data::{Encoding, Table, Task, split};
use hone_onnx::proto::ModelProto;
use hone_optimize::{calibrate, dynamic, measure, prune, qdq, s2d};
use hone_runtime::{GraphOptimization, OrtBackend, SessionConfig};
use serde::Serialize;

use crate::eval::{self, Dataset};
use crate::{PipelineError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    Latency,
    Throughput,
    Size,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Technique {
    Graph,
    Fp16,
    Dynamic,
    Static,
    Prune,
    Fallback,
}

impl Technique {
    pub const ALL: [Technique; 6] = [
        Technique::Graph,
        Technique::Fp16,
        Technique::Dynamic,
        Technique::Static,
        Technique::Prune,
        Technique::Fallback,
    ];

    pub fn parse(s: &str) -> Option<Technique> {
        Some(match s {
            "graph" => Technique::Graph,
            "fp16" => Technique::Fp16,
            "dynamic" | "int8-dynamic" => Technique::Dynamic,
            "static" | "int8-static" | "qdq" => Technique::Static,
            "prune" | "pruning" => Technique::Prune,
            "fallback" => Technique::Fallback,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct OptimizeOptions {
    pub model: PathBuf,
    pub data: PathBuf,
    pub target: String,
    /// A metric name, `cosine` or `maxabs`; default: the task's metric with
    /// labels, cosine without.
    pub metric: Option<String>,
    pub max_drop: f64,
    pub relative: bool,
    pub calibration: Option<PathBuf>,
    pub calibration_rows: usize,
    pub objective: Objective,
    pub time_budget: Duration,
    pub techniques: Vec<Technique>,
    pub output: PathBuf,
    pub repository: Option<PathBuf>,
    pub name: Option<String>,
    /// The output judged (default: the first floating-point one).
    pub output_name: Option<String>,
    pub threads: usize,
    /// Seconds of measurement per candidate (half latency, half throughput).
    pub measure_seconds: f64,
    /// Training data for fine-tuning pruned hone models (default: the
    /// card's data file when it exists).
    pub train_data: Option<PathBuf>,
    pub prune_ratio: f64,
    /// Where the batch-1 latency input comes from (its first row); default
    /// EVAL's first row. Lets padded EVAL sets be timed at a real length.
    pub latency_data: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub name: String,
    pub technique: String,
    pub detail: String,
    pub metric: Option<f64>,
    pub drop: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub throughput: Option<f64>,
    pub best_batch: Option<usize>,
    pub size_bytes: Option<u64>,
    /// Intra-op threads of the session it was timed in.
    pub intra_op_threads: Option<usize>,
    /// Sessions run at once for the throughput figure.
    pub instances: Option<usize>,
    pub meets_budget: bool,
    pub verdict: String,
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// Latency and throughput differences smaller than this fraction are within
/// run-to-run noise (batch-1 p50 moves by several percent between runs even
/// on a quiet machine), so they do not decide between candidates.
pub const TIE: f64 = 0.05;

/// The stacked candidate: structured pruning, then dynamic int8.
const PRUNED_INT8: &str = "prune-structured+int8-dynamic";

fn objective_value(c: &Candidate, objective: Objective) -> f64 {
    match objective {
        Objective::Latency => c.p50_ms.unwrap_or(f64::MAX),
        Objective::Throughput => c.throughput.unwrap_or(0.0),
        Objective::Size => c.size_bytes.unwrap_or(u64::MAX) as f64,
    }
}

/// Picks among the candidates within budget: the best on the objective,
/// except that candidates within [`TIE`] of it on latency or throughput
/// count as equally fast and the most accurate of them (smallest drop) wins.
/// Returns the choice and the one that measured best.
pub fn choose<'a>(
    passing: &[&'a Candidate],
    objective: Objective,
) -> (Option<&'a Candidate>, Option<&'a Candidate>) {
    // Lower is better for every key.
    let key = |c: &Candidate| match objective {
        Objective::Throughput => -objective_value(c, objective),
        _ => objective_value(c, objective),
    };
    let Some(fastest) = passing
        .iter()
        .copied()
        .min_by(|a, b| key(a).total_cmp(&key(b)))
    else {
        return (None, None);
    };
    let best = objective_value(fastest, objective);
    let tied = |c: &Candidate| {
        let v = objective_value(c, objective);
        match objective {
            Objective::Latency => v <= best * (1.0 + TIE),
            Objective::Throughput => v * (1.0 + TIE) >= best,
            Objective::Size => v <= best,
        }
    };
    let chosen = passing.iter().copied().filter(|c| tied(c)).min_by(|a, b| {
        let drop = |c: &Candidate| c.drop.unwrap_or(f64::MAX);
        drop(a).total_cmp(&drop(b)).then(key(a).total_cmp(&key(b)))
    });
    (chosen, Some(fastest))
}

#[derive(Debug, Clone, Serialize)]
pub struct OptimizeReport {
    pub model: String,
    pub data: String,
    pub output_judged: String,
    pub judge: String,
    pub higher_is_better: bool,
    pub max_drop: f64,
    pub relative: bool,
    pub objective: Objective,
    pub baseline: Candidate,
    pub candidates: Vec<Candidate>,
    pub chosen: Option<String>,
    pub reason: String,
    pub written: Vec<String>,
    pub seconds: f64,
    /// The models whose batch-1 p50/p99 come from one interleaved run.
    pub side_by_side: Option<SideBySide>,
    /// How timing sessions were set up.
    pub timing: String,
    /// The CPU the timings come from.
    pub machine: hone_optimize::machine::Machine,
}

#[derive(Debug, Clone, Serialize)]
pub struct SideBySide {
    pub models: Vec<String>,
    pub rounds: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Judge {
    Labels(Metric),
    Cosine,
    MaxAbs,
}

impl Judge {
    fn name(self) -> &'static str {
        match self {
            Judge::Labels(m) => m.name(),
            Judge::Cosine => "cosine",
            Judge::MaxAbs => "maxabs",
        }
    }

    fn higher_is_better(self) -> bool {
        match self {
            Judge::Labels(m) => m.higher_is_better(),
            Judge::Cosine => true,
            Judge::MaxAbs => false,
        }
    }
}

/// Everything a candidate is judged and measured with.
struct Bench {
    ds: Dataset,
    judge: Judge,
    task_hint: Option<Task>,
    out_index: usize,
    base_values: Vec<f32>,
    base_width: usize,
    base_metric: f64,
    max_drop: f64,
    relative: bool,
    cfg: SessionConfig,
    /// --threads; 0: time each model as hone serve runs it by default.
    threads: usize,
    eval_batch: usize,
    row: Vec<Tensor>,
    perf_batches: Vec<usize>,
    measure: Duration,
}

impl Bench {
    fn value(&self, backend: &mut OrtBackend) -> Result<f64> {
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

    fn drop_of(&self, v: f64) -> f64 {
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

    /// The session a model is timed in: --threads when given, else the one
    /// hone serve gives a file of its size by default (on 2 cores a 1 MiB-1 GiB
    /// model runs as 2 instances of 1 thread), so reported speed-ups are the
    /// ones the server delivers.
    /// Also returns the instances such a server runs, which throughput counts.
    fn speed_cfg(&self, bytes: &[u8]) -> (SessionConfig, usize) {
        if self.threads > 0 {
            (self.cfg.clone(), 1)
        } else {
            let n = bytes.len() as u64;
            (
                hone_server::config::default_session_config(n),
                hone_server::config::default_instances(n) as usize,
            )
        }
    }

    /// Judges and measures one model.
    fn candidate(&self, name: &str, technique: &str, detail: String, bytes: Vec<u8>) -> Candidate {
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

/// Progress: (step, total, what).
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize, &str);

/// Runs the search. The report is returned even when nothing met the
/// budget (then `chosen` is `None`).
pub fn optimize(opts: &OptimizeOptions, progress: Progress<'_>) -> Result<OptimizeReport> {
    let start = Instant::now();
    hone_runtime::init()?;
    let fp32 = hone_onnx::load(&opts.model)?;
    let fp32_bytes = std::fs::read(&opts.model)?;
    let cfg = SessionConfig {
        intra_op_threads: opts.threads,
        ..Default::default()
    };
    let mut base_backend = OrtBackend::from_bytes(&fp32_bytes, &cfg)?;
    let meta = base_backend.metadata().clone();
    let card = crate::read_card(&opts.model)?;
    let ds = eval::load_dataset(&opts.data, &opts.target, &meta, card.as_ref())?;
    if ds.rows == 0 {
        return Err(PipelineError(format!("{}: no rows", opts.data.display())));
    }
    let out_index = eval::pick_output(&meta, opts.output_name.as_deref())?;
    let task_hint = ds.encoding.as_ref().map(|e| e.target.task);
    let judge = match opts.metric.as_deref() {
        Some("cosine") => Judge::Cosine,
        Some("maxabs") | Some("max-abs") => Judge::MaxAbs,
        Some(m) => {
            let m = Metric::parse(m).ok_or_else(|| {
                PipelineError(format!(
                    "unknown metric {m:?}: accuracy, auc, f1, logloss, mse, mae, r2, cosine or maxabs"
                ))
            })?;
            if ds.labels.is_none() {
                return Err(PipelineError(format!(
                    "--metric {} needs labels; {} has none (use --metric cosine for fidelity to fp32)",
                    m.name(),
                    opts.data.display()
                )));
            }
            Judge::Labels(m)
        }
        None if ds.labels.is_some() => Judge::Labels(Metric::Accuracy),
        None => Judge::Cosine,
    };
    // Eval batches of at most ~16 MB of input.
    let row_bytes: usize = ds
        .slice(0, 1)
        .iter()
        .map(|t| t.to_wire_bytes().len())
        .sum::<usize>()
        .max(1);
    let eval_batch = ((16 << 20) / row_bytes).clamp(1, 256);
    let (base_values, base_width) =
        eval::run_output(&mut base_backend, &ds, out_index, eval_batch)?;
    drop(base_backend);
    let mut judge = judge;
    let base_metric = match judge {
        Judge::Labels(m) => {
            let labels = ds.labels.as_deref().unwrap_or(&[]);
            let (task, r, _) =
                eval::score(task_hint, Some(m), base_values.clone(), base_width, labels).or_else(
                    |_| {
                        // Regression models default to R² rather than accuracy.
                        eval::score(
                            task_hint,
                            Some(Metric::R2),
                            base_values.clone(),
                            base_width,
                            labels,
                        )
                    },
                )?;
            if r.get(m).is_none() || (opts.metric.is_none() && task == Task::Regression) {
                judge = Judge::Labels(Metric::R2);
                r.r2.unwrap_or(f64::NAN)
            } else {
                r.get(m).unwrap_or(f64::NAN)
            }
        }
        Judge::Cosine => 1.0,
        Judge::MaxAbs => 0.0,
    };
    let perf_batches: Vec<usize> = [1usize, 4, 16, 64]
        .into_iter()
        .filter(|&b| b == 1 || b * row_bytes <= (32 << 20))
        .collect();
    let row = match &opts.latency_data {
        Some(p) => {
            let l = eval::load_dataset(p, &opts.target, &meta, card.as_ref())?;
            if l.rows == 0 {
                return Err(PipelineError(format!("{}: no rows", p.display())));
            }
            l.slice(0, 1)
        }
        None => ds.slice(0, 1),
    };
    let bench = Bench {
        row,
        ds,
        judge,
        task_hint,
        out_index,
        base_values,
        base_width,
        base_metric,
        max_drop: opts.max_drop,
        relative: opts.relative && judge != Judge::MaxAbs,
        cfg: cfg.clone(),
        threads: opts.threads,
        eval_batch,
        perf_batches,
        measure: Duration::from_secs_f64(if opts.measure_seconds.is_finite() {
            opts.measure_seconds.clamp(0.2, 3600.0)
        } else {
            2.0
        }),
    };

    let has = |t: Technique| opts.techniques.contains(&t);
    let g = fp32
        .graph
        .as_ref()
        .ok_or_else(|| PipelineError("the model has no graph".into()))?;
    let inits: std::collections::HashSet<&str> =
        g.initializer.iter().map(|t| t.name.as_str()).collect();
    let has_weights = g.node.iter().any(|n| {
        matches!(n.op_type.as_str(), "MatMul" | "Gemm")
            && n.input.get(1).is_some_and(|w| inits.contains(w.as_str()))
    });
    let has_qdq_ops = g
        .node
        .iter()
        .any(|n| matches!(n.op_type.as_str(), "Conv" | "Gemm" | "MatMul"));

    // The plan: (name, technique) in order; built lazily so a time budget can stop it.
    let mut plan: Vec<(&str, Technique)> = Vec::new();
    if has(Technique::Graph) {
        plan.push(("graph-opt", Technique::Graph));
    }
    if has(Technique::Fp16) {
        plan.push(("fp16", Technique::Fp16));
    }
    if has(Technique::Dynamic) && has_weights {
        plan.push(("int8-dynamic", Technique::Dynamic));
        plan.push(("int8-dynamic-per-channel", Technique::Dynamic));
        let has_tables = g.node.iter().any(|n| {
            n.op_type == "Gather" && n.input.first().is_some_and(|w| inits.contains(w.as_str()))
        });
        if has_tables {
            plan.push(("int8-dynamic-per-channel+emb", Technique::Dynamic));
        }
    }
    if has(Technique::Static) && has_qdq_ops {
        plan.push(("int8-static-minmax", Technique::Static));
        plan.push(("int8-static-percentile", Technique::Static));
        plan.push(("int8-static-entropy", Technique::Static));
        plan.push(("int8-static-minmax-s8s8", Technique::Static));
    }
    if has(Technique::Prune) {
        plan.push(("prune-structured", Technique::Prune));
        // Stacked: the pruned model's remaining weights in int8, for the
        // smallest file (breast-cancer MLP: 25 KB → 9 KB pruned → 5 KB).
        if has(Technique::Dynamic) && has_weights {
            plan.push((PRUNED_INT8, Technique::Prune));
        }
        plan.push(("prune-magnitude", Technique::Prune));
    }
    let total = plan.len() + 1;
    progress(0, total, "fp32 baseline");
    let baseline = bench.candidate("fp32", "none", "the input model".into(), fp32_bytes.clone());
    if let Some(v) = baseline.verdict.strip_prefix("failed: ") {
        return Err(PipelineError(format!(
            "the fp32 model itself cannot be judged: {v}"
        )));
    }

    // Calibration batches: --calibration, else the first rows of EVAL.
    let cal_ds = match &opts.calibration {
        Some(p) => eval::load_dataset(p, &opts.target, &meta, card.as_ref())?,
        None => bench.ds.clone(),
    };
    let cal_rows = cal_ds.rows.min(opts.calibration_rows.max(1));
    let cal_batch = ((8 << 20) / row_bytes).clamp(1, 32);
    let cal_batches: Vec<Vec<Tensor>> = (0..cal_rows)
        .step_by(cal_batch)
        .map(|s| cal_ds.slice(s, (s + cal_batch).min(cal_rows)))
        .collect();
    let mut ranges: std::collections::HashMap<String, calibrate::Ranges> = Default::default();
    let act_tensors = calibrate::activation_tensors(&fp32).map_err(|e| PipelineError(e.0))?;

    let mut candidates = Vec::new();
    for (i, (name, tech)) in plan.iter().enumerate() {
        progress(i + 1, total, name);
        if start.elapsed() > opts.time_budget {
            candidates.push(skipped(name, *tech, "time budget spent"));
            continue;
        }
        let built: Result<(Vec<u8>, String)> = (|| match *name {
            "graph-opt" => {
                let tmp = std::env::temp_dir()
                    .join(format!("hone-graph-opt-{}.onnx", std::process::id()));
                let c = SessionConfig {
                    optimization: GraphOptimization::Extended,
                    ..cfg.clone()
                };
                OrtBackend::save_optimized(&fp32_bytes, &c, &tmp)?;
                let b = std::fs::read(&tmp)?;
                let _ = std::fs::remove_file(&tmp);
                Ok((
                    b,
                    "ONNX Runtime's extended graph optimizations, saved offline".into(),
                ))
            }
            "fp16" => fp16_candidate(&fp32, &cfg),
            PRUNED_INT8 => {
                let pruned = candidates
                    .iter()
                    .find(|c: &&Candidate| c.name == "prune-structured" && c.p50_ms.is_some())
                    .ok_or_else(|| PipelineError("prune-structured did not build".into()))?;
                let m = hone_onnx::decode(&pruned.bytes)?;
                let (m, nodes) = dynamic::quantize_dynamic(
                    &m,
                    &dynamic::DynamicOptions {
                        per_channel: true,
                        ..Default::default()
                    },
                )
                .map_err(|e| PipelineError(e.0))?;
                Ok((
                    hone_onnx::encode(&m),
                    format!(
                        "prune-structured's model with {} nodes → int8 weights per column",
                        nodes.len()
                    ),
                ))
            }
            n if n.starts_with("int8-dynamic") => {
                let per_channel = n.contains("per-channel");
                // Like onnxruntime's quantize_dynamic, the per-tensor variant
                // also stores embedding tables in int8.
                let embeddings = n.ends_with("+emb") || !per_channel;
                let (m, nodes) = dynamic::quantize_dynamic(
                    &fp32,
                    &dynamic::DynamicOptions {
                        per_channel,
                        embeddings,
                        ..Default::default()
                    },
                )
                .map_err(|e| PipelineError(e.0))?;
                Ok((
                    hone_onnx::encode(&m),
                    format!(
                        "{} nodes → int8 weights{}, uint8 activations per call{}",
                        nodes.len(),
                        if per_channel { " per column" } else { "" },
                        if embeddings {
                            "; Gather tables int8"
                        } else {
                            ""
                        }
                    ),
                ))
            }
            n if n.starts_with("int8-static") => {
                let method = static_method(n);
                let key = method.name();
                if !ranges.contains_key(&key) {
                    let r = calibrate::calibrate(&fp32, &act_tensors, &cal_batches, method, &cfg)
                        .map_err(|e| PipelineError(e.0))?;
                    ranges.insert(key.clone(), r);
                }
                let s8 = static_acts(n) == qdq::ActType::S8;
                let so = qdq::StaticOptions {
                    per_channel: true,
                    activations: static_acts(n),
                    ..Default::default()
                };
                let (m, nodes) = qdq::quantize_static(&fp32, &ranges[&key], &so)
                    .map_err(|e| PipelineError(e.0))?;
                Ok((
                    hone_onnx::encode(&m),
                    format!(
                        "QDQ, {} calibration on {cal_rows} rows, {} nodes, per-channel int8 weights, {} activations",
                        key,
                        nodes.len(),
                        if s8 { "int8" } else { "uint8" }
                    ),
                ))
            }
            "prune-structured" => {
                // Gradually: half the cut, fine-tune, then the rest, fine-tune,
                // so the network can move what the removed units did.
                let r = opts.prune_ratio;
                let steps = [r / 2.0, 1.0 - (1.0 - r) / (1.0 - r / 2.0)];
                let mut m = fp32.clone();
                let mut kept = Vec::new();
                let mut tuned_how = None;
                for step in steps {
                    let (p, k) = prune::structured(&m, step).map_err(|e| PipelineError(e.0))?;
                    kept = k;
                    m = match fine_tune(&p, &fp32, opts, card.as_ref())? {
                        Some((t, how)) => {
                            tuned_how = Some(how);
                            t
                        }
                        None => p,
                    };
                }
                let detail = match tuned_how {
                    Some(how) => format!(
                        "{:.0}% of hidden units removed in two steps (kept {kept:?}), each {how}",
                        r * 100.0
                    ),
                    None => format!(
                        "{:.0}% of hidden units removed (kept {kept:?}); no fine-tuning (not a hone model or no training data)",
                        r * 100.0
                    ),
                };
                Ok((hone_onnx::encode(&m), detail))
            }
            "prune-magnitude" => {
                let (m, zeroed) =
                    prune::magnitude(&fp32, opts.prune_ratio).map_err(|e| PipelineError(e.0))?;
                if zeroed == 0 {
                    // Else a re-encoded but unchanged model would compete.
                    return Err(PipelineError(
                        "no Gemm, MatMul or Conv weight to prune".into(),
                    ));
                }
                Ok((
                    hone_onnx::encode(&m),
                    format!(
                        "{zeroed} weights zeroed ({:.0}% of each matrix); dense kernels, same file size",
                        opts.prune_ratio * 100.0
                    ),
                ))
            }
            _ => Err(PipelineError("unknown candidate".into())),
        })();
        candidates.push(match built {
            Ok((bytes, detail)) => {
                let technique = if *name == PRUNED_INT8 {
                    "pruning + int8 dynamic"
                } else {
                    tech_name(*tech)
                };
                bench.candidate(name, technique, detail, bytes)
            }
            Err(e) => failed(name, *tech, &e.0),
        });
    }

    // Per-node fallback: when the fastest int8 model misses the budget (and
    // nothing as fast meets it), return its most sensitive nodes to fp32.
    let fastest = candidates
        .iter()
        .filter(|c| c.name.starts_with("int8") && c.p50_ms.is_some())
        .min_by(|a, b| {
            a.p50_ms
                .unwrap_or(f64::MAX)
                .total_cmp(&b.p50_ms.unwrap_or(f64::MAX))
        });
    let best_passing_int8 = candidates
        .iter()
        .filter(|c| c.meets_budget && c.name.starts_with("int8"))
        .map(|c| c.p50_ms.unwrap_or(f64::MAX))
        .fold(f64::MAX, f64::min);
    let src = fastest
        .filter(|c| !c.meets_budget && c.p50_ms.unwrap_or(f64::MAX) < best_passing_int8)
        .map(|c| c.name.clone());
    if has(Technique::Fallback)
        && start.elapsed() < opts.time_budget
        && let Some(src) = src
    {
        progress(total, total, &format!("fallback from {src}"));
        if let Some(c) = fallback(&bench, &fp32, &src, &ranges, opts, start) {
            candidates.push(c);
        }
    }

    // Image stems (hone_optimize::s2d): the static candidate chosen so far,
    // again on the rewritten graph. The rewrite is exact in fp32, so speed
    // decides; it adds weights, so a size objective has no use for it.
    if has(Technique::Static)
        && opts.objective != Objective::Size
        && start.elapsed() < opts.time_budget
    {
        let statics: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| {
                c.meets_budget && c.name.starts_with("int8-static") && !c.name.contains('+')
            })
            .collect();
        if let (Some(src), _) = choose(&statics, opts.objective) {
            let src = src.name.clone();
            progress(total, total, &format!("{src}+s2d"));
            if let Some(c) = s2d_candidate(&bench, &fp32, &src, &ranges) {
                candidates.push(c);
            }
        }
    }

    // Measure the baseline again now that the machine is warm; keep its
    // faster run, so speed-ups are never flattered by a cold first measurement.
    let mut baseline = baseline;
    let (fp32_speed, fp32_instances) = bench.speed_cfg(&fp32_bytes);
    if let Ok(p) = measure::measure(
        &fp32_bytes,
        &bench.row,
        &fp32_speed,
        fp32_instances,
        bench.measure,
        &bench.perf_batches,
    ) {
        if p.p50_ms < baseline.p50_ms.unwrap_or(f64::MAX) {
            baseline.p50_ms = Some(p.p50_ms);
            baseline.p99_ms = Some(p.p99_ms);
        }
        if p.throughput > baseline.throughput.unwrap_or(0.0) {
            baseline.throughput = Some(p.throughput);
            baseline.best_batch = Some(p.best_batch);
        }
    }

    // Final batch-1 latencies side by side: the fp32 model and the latency
    // contenders within budget run in interleaved rounds, and those figures
    // decide and are reported (see measure::side_by_side for why).
    let mut side_by_side = None;
    if opts.objective == Objective::Latency {
        let mut order: Vec<usize> = (0..candidates.len())
            .filter(|&i| candidates[i].meets_budget && candidates[i].p50_ms.is_some())
            .collect();
        order.sort_by(|&a, &b| {
            let p = |i: usize| candidates[i].p50_ms.unwrap_or(f64::MAX);
            p(a).total_cmp(&p(b))
        });
        if let Some(&first) = order.first() {
            let best = candidates[first].p50_ms.unwrap_or(f64::MAX);
            order.retain(|&i| candidates[i].p50_ms.unwrap_or(f64::MAX) <= best * 1.3);
            order.truncate(4);
            let names: Vec<String> = std::iter::once("fp32".to_string())
                .chain(order.iter().map(|&i| candidates[i].name.clone()))
                .collect();
            progress(total, total, &format!("side by side: {}", names.join(", ")));
            let models: Vec<(&[u8], SessionConfig)> = std::iter::once(fp32_bytes.as_slice())
                .chain(order.iter().map(|&i| candidates[i].bytes.as_slice()))
                .map(|b| (b, bench.speed_cfg(b).0))
                .collect();
            let budget = bench.measure / 2 * models.len() as u32;
            if let Ok((figures, rounds)) = measure::side_by_side(&models, &bench.row, budget) {
                let mut figs = figures.into_iter();
                if let Some((p50, p99)) = figs.next() {
                    baseline.p50_ms = Some(p50);
                    baseline.p99_ms = Some(p99);
                }
                for (&i, (p50, p99)) in order.iter().zip(figs) {
                    candidates[i].p50_ms = Some(p50);
                    candidates[i].p99_ms = Some(p99);
                }
                side_by_side = Some(SideBySide {
                    models: names,
                    rounds,
                });
            }
        }
    }

    // Choice. After a side-by-side run only its figures are compared: the
    // others were over 1.3× the fastest when timed alone, and solo figures
    // taken at another moment are not comparable with paired ones.
    let passing: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.meets_budget)
        .filter(|c| {
            side_by_side
                .as_ref()
                .is_none_or(|s: &SideBySide| s.models.contains(&c.name))
        })
        .collect();
    let (chosen, fastest) = choose(&passing, opts.objective);
    let chosen = chosen.cloned();
    let tie_note = match (&chosen, fastest) {
        (Some(c), Some(f)) if c.name != f.name => format!(
            "; {} measured {:.1} % better on {:?}, inside the {:.0} % that runs differ by, so the more accurate one was taken",
            f.name,
            100.0
                * (objective_value(c, opts.objective) / objective_value(f, opts.objective) - 1.0)
                    .abs(),
            opts.objective,
            100.0 * TIE
        ),
        _ => String::new(),
    };
    let reason = match &chosen {
        Some(c) => {
            let vs = match opts.objective {
                Objective::Latency => format!(
                    "p50 {:.3} ms vs fp32 {:.3} ms ({:.2}× faster)",
                    c.p50_ms.unwrap_or(0.0),
                    baseline.p50_ms.unwrap_or(0.0),
                    baseline.p50_ms.unwrap_or(0.0) / c.p50_ms.unwrap_or(f64::MAX)
                ),
                Objective::Throughput => format!(
                    "{:.0} rows/s vs fp32 {:.0} ({:.2}×)",
                    c.throughput.unwrap_or(0.0),
                    baseline.throughput.unwrap_or(0.0),
                    c.throughput.unwrap_or(0.0) / baseline.throughput.unwrap_or(f64::MAX)
                ),
                Objective::Size => format!(
                    "{} bytes vs fp32 {} ({:.2}× smaller)",
                    c.size_bytes.unwrap_or(0),
                    baseline.size_bytes.unwrap_or(0),
                    baseline.size_bytes.unwrap_or(0) as f64
                        / c.size_bytes.unwrap_or(1).max(1) as f64
                ),
            };
            let slower = opts.objective == Objective::Latency
                && c.p50_ms.unwrap_or(f64::MAX) > baseline.p50_ms.unwrap_or(0.0);
            let vs = if slower {
                format!(
                    "{vs}; no candidate beats fp32 on this model and machine, keep fp32 if latency is all that matters"
                )
            } else {
                vs
            };
            format!(
                "{}: best {:?} of the {} candidates within the budget (drop {:.4} ≤ {}); {vs}{tie_note}",
                c.name,
                opts.objective,
                candidates.iter().filter(|c| c.meets_budget).count(),
                c.drop.unwrap_or(0.0),
                opts.max_drop
            )
        }
        None => {
            let best = candidates
                .iter()
                .filter(|c| c.drop.is_some())
                .min_by(|a, b| {
                    a.drop
                        .unwrap_or(f64::MAX)
                        .total_cmp(&b.drop.unwrap_or(f64::MAX))
                });
            match best {
                Some(b) => format!(
                    "no candidate keeps the drop within {}; the closest is {} with drop {:.4}. Tried: {}",
                    opts.max_drop,
                    b.name,
                    b.drop.unwrap_or(f64::NAN),
                    candidates
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => format!(
                    "no candidate could be judged. Tried: {}",
                    candidates
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
    };

    let mut report = OptimizeReport {
        model: opts.model.display().to_string(),
        data: opts.data.display().to_string(),
        output_judged: meta.outputs[out_index].name.clone(),
        judge: judge.name().to_string(),
        higher_is_better: judge.higher_is_better(),
        max_drop: opts.max_drop,
        relative: bench.relative,
        objective: opts.objective,
        baseline,
        candidates,
        chosen: chosen.as_ref().map(|c| c.name.clone()),
        reason,
        written: Vec::new(),
        seconds: 0.0,
        side_by_side,
        timing: if opts.threads > 0 {
            format!("every model timed with --threads {}", opts.threads)
        } else {
            "each model timed as hone serve runs a file of its size by default: latency in one session of cores / instances intra-op threads, throughput with all instances at once".into()
        },
        machine: hone_optimize::machine::Machine::detect(),
    };
    report.seconds = start.elapsed().as_secs_f64();
    write_outputs(opts, &mut report, chosen.as_ref(), card.as_ref())?;
    Ok(report)
}

/// fp16 with ORT's CPU kernels: ops ORT cannot run in fp16 are found by
/// loading the model and moved to the block-list, until it loads.
fn fp16_candidate(fp32: &ModelProto, cfg: &SessionConfig) -> Result<(Vec<u8>, String)> {
    use hone_optimize::fp16;
    let types = fp16::tensor_types(fp32, cfg).map_err(|e| PipelineError(e.0))?;
    let mut block: std::collections::BTreeSet<String> =
        fp16::DEFAULT_BLOCK.iter().map(|s| s.to_string()).collect();
    let mut learned = Vec::new();
    for _ in 0..24 {
        let set: std::collections::HashSet<String> = block.iter().cloned().collect();
        let m = fp16::convert(fp32, &types, &set).map_err(|e| PipelineError(e.0))?;
        let bytes = hone_onnx::encode(&m);
        match OrtBackend::from_bytes(&bytes, cfg) {
            Ok(_) => {
                let total = m.graph.as_ref().map_or(0, |g| g.node.len());
                let detail = if learned.is_empty() {
                    format!("float16 weights and activations, fp32 at the edges ({total} nodes)")
                } else {
                    format!(
                        "float16 weights and activations, fp32 at the edges; kept fp32 because ONNX Runtime's CPU provider has no fp16 kernel: {}",
                        learned.join(", ")
                    )
                };
                return Ok((bytes, detail));
            }
            Err(e) => {
                let msg = e.to_string();
                let op = msg
                    .split("Could not find an implementation for ")
                    .nth(1)
                    .and_then(|r| r.split('(').next())
                    .map(str::to_string);
                match op {
                    Some(op) if block.insert(op.clone()) => learned.push(op),
                    _ => {
                        return Err(PipelineError(format!(
                            "the fp16 graph does not load: {msg}"
                        )));
                    }
                }
            }
        }
    }
    Err(PipelineError(
        "the fp16 graph still does not load after 24 ops moved to fp32".into(),
    ))
}

fn tech_name(t: Technique) -> &'static str {
    match t {
        Technique::Graph => "graph",
        Technique::Fp16 => "fp16",
        Technique::Dynamic => "int8 dynamic",
        Technique::Static => "int8 static",
        Technique::Prune => "pruning",
        Technique::Fallback => "fallback",
    }
}

impl Candidate {
    fn new(name: &str, technique: &str, detail: String) -> Candidate {
        Candidate {
            name: name.into(),
            technique: technique.into(),
            detail,
            metric: None,
            drop: None,
            p50_ms: None,
            p99_ms: None,
            throughput: None,
            best_batch: None,
            size_bytes: None,
            intra_op_threads: None,
            instances: None,
            meets_budget: false,
            verdict: String::new(),
            bytes: Vec::new(),
        }
    }
}

fn failed(name: &str, t: Technique, why: &str) -> Candidate {
    Candidate {
        verdict: format!("failed: {why}"),
        ..Candidate::new(name, tech_name(t), String::new())
    }
}

fn skipped(name: &str, t: Technique, why: &str) -> Candidate {
    Candidate {
        verdict: format!("skipped: {why}"),
        ..failed(name, t, "")
    }
}

/// Static candidate `src` rebuilt on the graph with its image stems
/// rewritten to space-to-depth; None when the model has no such stem.
fn s2d_candidate(
    bench: &Bench,
    fp32: &ModelProto,
    src: &str,
    ranges: &std::collections::HashMap<String, calibrate::Ranges>,
) -> Option<Candidate> {
    let name = format!("{src}+s2d");
    let (m, stems) = match s2d::space_to_depth_stems(fp32) {
        Ok(Some(x)) => x,
        Ok(None) => return None,
        Err(e) => return Some(failed(&name, Technique::Static, &e.0)),
    };
    // The packed image holds the stem input's values (and pad zeros, which
    // every activation range includes), so its range is the input's.
    let mut r = ranges.get(&static_method(src).name())?.clone();
    for st in &stems {
        let Some(&v) = r.get(&st.source) else {
            let why = format!("stem input {:?} has no calibrated range", st.source);
            return Some(failed(&name, Technique::Static, &why));
        };
        r.insert(st.packed.clone(), v);
    }
    let so = qdq::StaticOptions {
        per_channel: true,
        activations: static_acts(src),
        ..Default::default()
    };
    Some(match qdq::quantize_static(&m, &r, &so) {
        Ok((q, _)) => {
            let convs: Vec<&str> = stems.iter().map(|s| s.conv.as_str()).collect();
            bench.candidate(
                &name,
                tech_name(Technique::Static),
                format!(
                    "{src} with stem conv(s) {} run as space-to-depth then a stride-1 conv over 4× the channels",
                    convs.join(", ")
                ),
                hone_onnx::encode(&q),
            )
        }
        Err(e) => failed(&name, Technique::Static, &e.0),
    })
}

/// The calibration method a static candidate's name asks for.
fn static_method(name: &str) -> calibrate::Method {
    if name.contains("percentile") {
        calibrate::Method::Percentile(99.999)
    } else if name.contains("entropy") {
        calibrate::Method::Entropy
    } else {
        calibrate::Method::MinMax
    }
}

/// The activation type a static candidate's name asks for.
fn static_acts(name: &str) -> qdq::ActType {
    if name.contains("s8s8") {
        qdq::ActType::S8
    } else {
        qdq::ActType::U8
    }
}

/// Greedy per-node fallback: rank the quantized nodes of candidate `src` by
/// how much leaving each alone in fp32 recovers, then return the top 1, 2,
/// 4, ... to fp32 until the budget holds.
fn fallback(
    bench: &Bench,
    fp32: &ModelProto,
    src: &str,
    ranges: &std::collections::HashMap<String, calibrate::Ranges>,
    opts: &OptimizeOptions,
    start: Instant,
) -> Option<Candidate> {
    let build = |exclude: std::collections::HashSet<String>| -> Option<(ModelProto, Vec<String>)> {
        if src.starts_with("int8-dynamic") {
            let per_channel = src.contains("per-channel");
            let embeddings = src.ends_with("+emb") || !per_channel;
            dynamic::quantize_dynamic(
                fp32,
                &dynamic::DynamicOptions {
                    per_channel,
                    embeddings,
                    exclude,
                },
            )
            .ok()
        } else {
            qdq::quantize_static(
                fp32,
                ranges.get(&static_method(src).name())?,
                &qdq::StaticOptions {
                    per_channel: true,
                    activations: static_acts(src),
                    exclude,
                },
            )
            .ok()
        }
    };
    let (_, nodes) = build(Default::default())?;
    let judge = |m: &ModelProto| -> Option<f64> {
        let mut b = OrtBackend::from_bytes(&hone_onnx::encode(m), &bench.cfg).ok()?;
        bench.value(&mut b).ok().map(|v| bench.drop_of(v))
    };
    let mut sens: Vec<(f64, String)> = Vec::new();
    for n in nodes.iter().take(64) {
        if start.elapsed() > opts.time_budget {
            break;
        }
        let (m, _) = build([n.clone()].into())?;
        if let Some(d) = judge(&m) {
            sens.push((d, n.clone()));
        }
    }
    sens.sort_by(|a, b| a.0.total_cmp(&b.0));
    for k in [1usize, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64] {
        if k > sens.len() || start.elapsed() > opts.time_budget {
            break;
        }
        let exclude: std::collections::HashSet<String> =
            sens[..k].iter().map(|s| s.1.clone()).collect();
        let (m, _) = build(exclude.clone())?;
        if judge(&m).is_some_and(|d| d <= bench.max_drop + 1e-12) {
            let mut names: Vec<String> = exclude.into_iter().collect();
            names.sort();
            return Some(bench.candidate(
                &format!("{src}+fallback"),
                "fallback",
                format!(
                    "{src} with {k} most sensitive node(s) kept in fp32: {}",
                    names.join(", ")
                ),
                hone_onnx::encode(&m),
            ));
        }
    }
    None
}

/// Fine-tunes a structurally pruned hone model on its training data, with
/// the unpruned model's outputs as the targets (distillation).
fn fine_tune(
    pruned: &ModelProto,
    teacher: &ModelProto,
    opts: &OptimizeOptions,
    card: Option<&hone_train::ModelCard>,
) -> Result<Option<(ModelProto, String)>> {
    // A hone model names its data in the card; any other MLP of the same
    // shape (Sub/Div standardisation, Gemm layers) can be fine-tuned when
    // --train-data is given, its columns read as numeric features.
    let path = match (&opts.train_data, card) {
        (Some(p), _) => p.clone(),
        (None, Some(c)) if Path::new(&c.data.file).is_file() => PathBuf::from(&c.data.file),
        _ => return Ok(None),
    };
    let table = Table::read(&path)?;
    let enc = match card {
        Some(card) => Encoding {
            features: card.input.features.clone(),
            target: hone_data::Target {
                name: card.target.clone(),
                task: card.task,
                classes: card.labels.clone(),
            },
        },
        None => Encoding::fit(&table, &opts.target, None, &[])?,
    };
    let task = enc.target.task;
    let all = enc.apply(&table, true)?;
    // The model's own validation file when the card names one (as training
    // did), else a seeded split of the training rows.
    let val_file = card
        .and_then(|c| c.data.validation_file.as_ref())
        .map(PathBuf::from)
        .filter(|p| p.is_file() && opts.train_data.is_none());
    let (tr, va) = match val_file {
        Some(vf) => (all, enc.apply(&Table::read(&vf)?, true)?),
        None => {
            let strat = (task != Task::Regression).then_some(&all.y[..]);
            let (tr, va) = split::split(all.rows, 0.2, strat, 0);
            (all.select(&tr), all.select(&va))
        }
    };
    let init = hone_train::Init::from_onnx(pruned)?;
    // What the user asked to keep is the model's behaviour, so the pruned net
    // fits the full model's outputs rather than the labels. Over hone models
    // of breast cancer, wine and diabetes (seeds 0-2, scored on val and test),
    // fitting the outputs lost less than fitting the labels or a 50/50 blend
    // on two data sets and tied on wine; on breast cancer with the default
    // seed it keeps the test row that fitting the labels lost (0.9 pt).
    let teacher = crate::ort_predict(&hone_onnx::encode(teacher), &tr)?;
    let cfg = hone_train::TrainConfig {
        epochs: 100,
        lr: Some(5e-4),
        early_stopping: Some(20),
        init: Some(init),
        teacher: Some(teacher),
        ..Default::default()
    };
    let m = hone_train::train(&enc, &tr, Some(&va), &cfg, |_| {})?;
    let how = format!(
        "fine-tuned on {} to the full model's outputs ({} epochs, best {})",
        path.display(),
        m.history.len(),
        m.best_epoch
    );
    Ok(Some((
        m.to_onnx(&[("hone.task", task.name().to_string())]),
        how,
    )))
}

fn write_outputs(
    opts: &OptimizeOptions,
    report: &mut OptimizeReport,
    chosen: Option<&Candidate>,
    card: Option<&hone_train::ModelCard>,
) -> Result<()> {
    let json = serde_json::to_vec_pretty(&report)?;
    let html = crate::report_html::render(report);
    let (json_path, html_path) = report_paths(&opts.output);
    let mut written = Vec::new();
    if let Some(c) = chosen {
        crate::fit::write_atomic(&opts.output, &c.bytes)?;
        written.push(opts.output.display().to_string());
        if let Some(card) = card {
            // The chosen model answers the same questions; its card travels with it.
            crate::fit::write_atomic(
                &crate::card_path(&opts.output),
                &serde_json::to_vec_pretty(card)?,
            )?;
        }
        if let Some(repo) = &opts.repository {
            let name = opts.name.clone().unwrap_or_else(|| {
                opts.model
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("model")
                    .to_string()
            });
            let card_bytes = card.map(serde_json::to_vec_pretty).transpose()?;
            let mut files: Vec<(&str, &[u8])> = vec![
                ("model.onnx", &c.bytes),
                ("report.json", &json),
                ("report.html", html.as_bytes()),
            ];
            if let Some(cb) = &card_bytes {
                files.push(("model.card.json", cb));
            }
            let (_, dir) =
                crate::ship::publish_files(repo, &name, &files, None, &AtomicBool::new(false))?;
            written.push(dir.display().to_string());
        }
    }
    crate::fit::write_atomic(&json_path, &json)?;
    crate::fit::write_atomic(&html_path, html.as_bytes())?;
    written.push(json_path.display().to_string());
    written.push(html_path.display().to_string());
    report.written = written;
    // The report on disk lists where things went too.
    crate::fit::write_atomic(&json_path, &serde_json::to_vec_pretty(&report)?)?;
    Ok(())
}

/// The candidate table a person reads.
pub fn render(r: &OptimizeReport) -> String {
    let mut s = format!(
        "judged by {} on {} (output {:?}); budget: drop ≤ {}{}; objective: {:?}\n\n",
        r.judge,
        r.data,
        r.output_judged,
        r.max_drop,
        if r.relative { " (relative)" } else { "" },
        r.objective
    );
    s += &format!(
        "{:<32} {:>10} {:>9} {:>9} {:>9} {:>11} {:>10}  verdict\n",
        "candidate", r.judge, "drop", "p50 ms", "p99 ms", "rows/s", "size KB"
    );
    let fmt = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
    for c in std::iter::once(&r.baseline).chain(&r.candidates) {
        let mark = if r.chosen.as_deref() == Some(&c.name) {
            "* "
        } else {
            "  "
        };
        s += &format!(
            "{mark}{:<30} {:>10} {:>9} {:>9} {:>9} {:>11} {:>10}  {}\n",
            c.name,
            fmt(c.metric, 4),
            fmt(c.drop, 4),
            fmt(c.p50_ms, 3),
            fmt(c.p99_ms, 3),
            fmt(c.throughput, 0),
            fmt(c.size_bytes.map(|b| b as f64 / 1024.0), 1),
            if c.name == "fp32" {
                "baseline"
            } else {
                &c.verdict
            }
        );
    }
    s += &format!("\n{}\n", r.reason);
    let setups: std::collections::BTreeSet<(usize, usize)> = std::iter::once(&r.baseline)
        .chain(&r.candidates)
        .filter_map(|c| Some((c.intra_op_threads?, c.instances?)))
        .collect();
    let setups: Vec<String> = setups
        .iter()
        .map(|(t, i)| format!("{t} thread(s) × {i} instance(s)"))
        .collect();
    s += &format!("{}: {}\n", r.timing, setups.join(" or "));
    s += &format!("{}\n", r.machine.describe());
    if let Some(sbs) = &r.side_by_side {
        s += &format!(
            "p50/p99 of {} measured side by side ({} interleaved rounds)\n",
            sbs.models.join(", "),
            sbs.rounds
        );
    }
    s
}

/// Where the report files go for an output path: `OUT.report.json`/`.html`.
pub fn report_paths(output: &Path) -> (PathBuf, PathBuf) {
    let stem = output.with_extension("");
    (
        PathBuf::from(format!("{}.report.json", stem.display())),
        PathBuf::from(format!("{}.report.html", stem.display())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(name: &str, drop: f64, p50: f64, tp: f64, size: u64) -> Candidate {
        Candidate {
            name: name.into(),
            technique: String::new(),
            detail: String::new(),
            metric: Some(1.0 - drop),
            drop: Some(drop),
            p50_ms: Some(p50),
            p99_ms: Some(p50),
            throughput: Some(tp),
            best_batch: Some(1),
            size_bytes: Some(size),
            intra_op_threads: Some(1),
            instances: Some(1),
            meets_budget: true,
            verdict: String::new(),
            bytes: Vec::new(),
        }
    }

    #[test]
    fn noise_sized_differences_go_to_the_more_accurate_candidate() {
        // The resnet18 case: entropy 2 % faster than minmax but 50× the drop.
        let minmax = cand("minmax", 0.0001, 8.434, 126.0, 100);
        let entropy = cand("entropy", 0.0052, 8.268, 122.0, 100);
        let slow = cand("slow-exact", 0.0, 24.0, 44.0, 400);
        let all = [&minmax, &entropy, &slow];
        let (c, f) = choose(&all, Objective::Latency);
        assert_eq!(
            (c.unwrap().name.as_str(), f.unwrap().name.as_str()),
            ("minmax", "entropy")
        );
        // A real difference still decides.
        let fast = cand("fast", 0.005, 7.0, 140.0, 100);
        let (c, _) = choose(&[&minmax, &fast], Objective::Latency);
        assert_eq!(c.unwrap().name, "fast");
        let (c, _) = choose(&[&minmax, &entropy], Objective::Throughput);
        assert_eq!(c.unwrap().name, "minmax");
        let (c, _) = choose(&[&minmax, &slow], Objective::Size);
        assert_eq!(c.unwrap().name, "minmax");
        assert!(choose(&[], Objective::Latency).0.is_none());
    }
}
