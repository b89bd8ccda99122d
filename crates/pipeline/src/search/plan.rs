//! Which candidates a model gets: the techniques asked for, narrowed to the
//! ones the graph has something for, in the order they are tried.

use std::collections::HashSet;

use hone_onnx::proto::ModelProto;

use super::options::{OptimizeOptions, Technique};
use crate::{PipelineError, Result};

/// The stacked candidate: structured pruning, then dynamic int8.
pub(crate) const PRUNED_INT8: &str = "prune-structured+int8-dynamic";

/// The plan: (candidate name, technique) in the order they are built.
pub(crate) fn plan(
    fp32: &ModelProto,
    opts: &OptimizeOptions,
) -> Result<Vec<(&'static str, Technique)>> {
    let has = |t: Technique| opts.has(t);
    let g = fp32
        .graph
        .as_ref()
        .ok_or_else(|| PipelineError("the model has no graph".into()))?;
    let inits: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    let has_weights = g.node.iter().any(|n| {
        matches!(n.op_type.as_str(), "MatMul" | "Gemm")
            && n.input.get(1).is_some_and(|w| inits.contains(w.as_str()))
    });
    let has_qdq_ops = g
        .node
        .iter()
        .any(|n| matches!(n.op_type.as_str(), "Conv" | "Gemm" | "MatMul"));

    let mut plan = Vec::new();
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
    Ok(plan)
}
