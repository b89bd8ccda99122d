//! Building one planned candidate's model file: graph optimization, fp16,
//! int8 dynamic and static (pruning lives in `prune`). Each returns the
//! file's bytes and a line saying what was done.

use std::collections::HashSet;

use hone_optimize::{dynamic, qdq};
use hone_runtime::{GraphOptimization, OrtBackend, SessionConfig};

use super::calibration::{Calibration, static_options};
use super::options::OptimizeOptions;
use super::prune;
use super::recipe::{Dynamic, Recipe};
use super::report::Candidate;
use super::setup::Setup;
use crate::{PipelineError, Result};

/// Builds a planned recipe; `earlier` holds the candidates built so far
/// (a stacked candidate starts from one of them).
pub(crate) fn build(
    recipe: &Recipe,
    s: &Setup,
    cal: &mut Calibration,
    opts: &OptimizeOptions,
    earlier: &[Candidate],
) -> Result<(Vec<u8>, String)> {
    match recipe {
        Recipe::GraphOpt => graph_opt(&s.fp32_bytes, &s.cfg),
        Recipe::Fp16 => super::half::fp16_candidate(&s.fp32, &s.cfg, &s.scorer, cal),
        Recipe::PrunedInt8 => {
            let pruned = earlier
                .iter()
                .find(|c| c.recipe == Recipe::PruneStructured && c.p50_ms.is_some())
                .ok_or_else(|| PipelineError::Message("prune-structured did not build".into()))?;
            let m = hone_onnx::decode(&pruned.bytes)?;
            let per_channel = Dynamic {
                per_channel: true,
                embeddings: false,
            };
            let (m, nodes) =
                dynamic::quantize_dynamic(&m, &dynamic_options(per_channel, HashSet::new()))
                    .map_err(PipelineError::from)?;
            Ok((
                hone_onnx::encode(&m),
                format!(
                    "prune-structured's model with {} nodes → int8 weights per column",
                    nodes.len()
                ),
            ))
        }
        Recipe::Dynamic(d) => {
            let o = dynamic_options(*d, HashSet::new());
            let (m, nodes) = dynamic::quantize_dynamic(&s.fp32, &o).map_err(PipelineError::from)?;
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
        Recipe::Static(st) => {
            let method = st.method.method();
            let rows = cal.rows;
            let ranges = cal.ranges(&s.fp32, method, &s.cfg)?;
            let so = static_options(*st, HashSet::new());
            let s8 = so.activations == qdq::ActType::S8;
            let (m, nodes) =
                qdq::quantize_static(&s.fp32, ranges, &so).map_err(PipelineError::from)?;
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
        Recipe::PruneStructured => prune::structured(s, opts),
        Recipe::PruneMagnitude => prune::magnitude(s, opts),
        r => Err(PipelineError::Message(format!(
            "{r} is not built from the plan"
        ))),
    }
}

/// The dynamic int8 options a recipe asks for.
pub(crate) fn dynamic_options(
    recipe: Dynamic,
    exclude: HashSet<String>,
) -> dynamic::DynamicOptions {
    dynamic::DynamicOptions {
        per_channel: recipe.per_channel,
        embeddings: recipe.embeddings,
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
