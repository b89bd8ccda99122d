//! Which candidates a model gets: the techniques asked for, narrowed to the
//! ones the graph has something for, in the order they are tried.

use std::collections::HashSet;

use hone_onnx::proto::ModelProto;

use super::options::{OptimizeOptions, Technique};
use super::recipe::{CalMethod, Dynamic, Recipe, Static};
use crate::{PipelineError, Result};

/// The plan: the recipes in the order they are built.
pub(crate) fn plan(fp32: &ModelProto, opts: &OptimizeOptions) -> Result<Vec<Recipe>> {
    let has = |t: Technique| opts.has(t);
    let g = fp32
        .graph
        .as_ref()
        .ok_or_else(|| PipelineError::Message("the model has no graph".into()))?;
    let inits: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    let has_weights = g.node.iter().any(|n| {
        matches!(n.op_type.as_str(), "MatMul" | "Gemm")
            && n.input.get(1).is_some_and(|w| inits.contains(w.as_str()))
    });
    let has_qdq_ops = g
        .node
        .iter()
        .any(|n| matches!(n.op_type.as_str(), "Conv" | "Gemm" | "MatMul"));

    let dynamic = |per_channel, embeddings| {
        Recipe::Dynamic(Dynamic {
            per_channel,
            embeddings,
        })
    };
    let stat = |method, s8_activations| {
        Recipe::Static(Static {
            method,
            s8_activations,
        })
    };
    let mut plan = Vec::new();
    if has(Technique::Graph) {
        plan.push(Recipe::GraphOpt);
    }
    if has(Technique::Fp16) {
        plan.push(Recipe::Fp16);
    }
    if has(Technique::Dynamic) && has_weights {
        plan.push(dynamic(false, true));
        plan.push(dynamic(true, false));
        let has_tables = g.node.iter().any(|n| {
            n.op_type == "Gather" && n.input.first().is_some_and(|w| inits.contains(w.as_str()))
        });
        if has_tables {
            plan.push(dynamic(true, true));
        }
    }
    if has(Technique::Static) && has_qdq_ops {
        plan.push(stat(CalMethod::MinMax, false));
        plan.push(stat(CalMethod::Percentile, false));
        plan.push(stat(CalMethod::Entropy, false));
        plan.push(stat(CalMethod::MinMax, true));
    }
    if has(Technique::Prune) {
        plan.push(Recipe::PruneStructured);
        // Stacked: the pruned model's remaining weights in int8, for the
        // smallest file (breast-cancer MLP: 25 KB → 9 KB pruned → 5 KB).
        if has(Technique::Dynamic) && has_weights {
            plan.push(Recipe::PrunedInt8);
        }
        plan.push(Recipe::PruneMagnitude);
    }
    Ok(plan)
}
