//! Building one planned candidate's model file: graph optimization, fp16,
//! int8 dynamic and static (pruning lives in `prune`). Each returns the
//! file's bytes and a line saying what was done.

use std::collections::{BTreeSet, HashSet};

use hone_onnx::proto::ModelProto;
use hone_optimize::{dynamic, fp16, qdq};
use hone_runtime::{GraphOptimization, OrtBackend, SessionConfig};

use super::calibration::{Calibration, static_method, static_options};
use super::options::OptimizeOptions;
use super::plan::PRUNED_INT8;
use super::prune;
use super::report::Candidate;
use super::setup::Setup;
use crate::{PipelineError, Result};

/// Builds the candidate `name`; `earlier` holds the candidates built so far
/// (a stacked candidate starts from one of them).
pub(crate) fn build(
    name: &str,
    s: &Setup,
    cal: &mut Calibration,
    opts: &OptimizeOptions,
    earlier: &[Candidate],
) -> Result<(Vec<u8>, String)> {
    match name {
        "graph-opt" => graph_opt(&s.fp32_bytes, &s.cfg),
        "fp16" => fp16_candidate(&s.fp32, &s.cfg),
        PRUNED_INT8 => {
            let pruned = earlier
                .iter()
                .find(|c| c.name == "prune-structured" && c.p50_ms.is_some())
                .ok_or_else(|| PipelineError("prune-structured did not build".into()))?;
            let m = hone_onnx::decode(&pruned.bytes)?;
            let (m, nodes) =
                dynamic::quantize_dynamic(&m, &dynamic_options("-per-channel", HashSet::new()))
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
            let o = dynamic_options(n, HashSet::new());
            let (m, nodes) =
                dynamic::quantize_dynamic(&s.fp32, &o).map_err(|e| PipelineError(e.0))?;
            Ok((
                hone_onnx::encode(&m),
                format!(
                    "{} nodes → int8 weights{}, uint8 activations per call{}",
                    nodes.len(),
                    if o.per_channel { " per column" } else { "" },
                    if o.embeddings {
                        "; Gather tables int8"
                    } else {
                        ""
                    }
                ),
            ))
        }
        n if n.starts_with("int8-static") => {
            let method = static_method(n);
            let rows = cal.rows;
            let ranges = cal.ranges(&s.fp32, method, &s.cfg)?;
            let so = static_options(n, HashSet::new());
            let s8 = so.activations == qdq::ActType::S8;
            let (m, nodes) =
                qdq::quantize_static(&s.fp32, ranges, &so).map_err(|e| PipelineError(e.0))?;
            Ok((
                hone_onnx::encode(&m),
                format!(
                    "QDQ, {} calibration on {rows} rows, {} nodes, per-channel int8 weights, {} activations",
                    method.name(),
                    nodes.len(),
                    if s8 { "int8" } else { "uint8" }
                ),
            ))
        }
        "prune-structured" => prune::structured(s, opts),
        "prune-magnitude" => prune::magnitude(s, opts),
        _ => Err(PipelineError("unknown candidate".into())),
    }
}

/// The dynamic int8 options a candidate's name asks for. Like onnxruntime's
/// quantize_dynamic, the per-tensor variant also stores embedding tables in
/// int8.
pub(crate) fn dynamic_options(name: &str, exclude: HashSet<String>) -> dynamic::DynamicOptions {
    let per_channel = name.contains("per-channel");
    dynamic::DynamicOptions {
        per_channel,
        embeddings: name.ends_with("+emb") || !per_channel,
        exclude,
        // Judged and timed on this machine: without an int8 dot-product
        // instruction, full-range weights saturate (see the option).
        reduce_range: cfg!(target_arch = "x86_64")
            && !hone_optimize::machine::Machine::detect().int8_dot_product,
    }
}

fn graph_opt(fp32_bytes: &[u8], cfg: &SessionConfig) -> Result<(Vec<u8>, String)> {
    let tmp = std::env::temp_dir().join(format!("hone-graph-opt-{}.onnx", std::process::id()));
    let c = SessionConfig {
        optimization: GraphOptimization::Extended,
        ..cfg.clone()
    };
    OrtBackend::save_optimized(fp32_bytes, &c, &tmp)?;
    let b = std::fs::read(&tmp)?;
    let _ = std::fs::remove_file(&tmp);
    Ok((
        b,
        "ONNX Runtime's extended graph optimizations, saved offline".into(),
    ))
}

/// fp16 with ORT's CPU kernels: ops ORT cannot run in fp16 are found by
/// loading the model and moved to the block-list, until it loads.
fn fp16_candidate(fp32: &ModelProto, cfg: &SessionConfig) -> Result<(Vec<u8>, String)> {
    let types = fp16::tensor_types(fp32, cfg).map_err(|e| PipelineError(e.0))?;
    let mut block: BTreeSet<String> = fp16::DEFAULT_BLOCK.iter().map(|s| s.to_string()).collect();
    let mut learned = Vec::new();
    for _ in 0..24 {
        let set: HashSet<String> = block.iter().cloned().collect();
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
