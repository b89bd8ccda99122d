//! The canonical form every technique starts from, so that models from
//! other toolchains look like the clean exports the passes were written
//! against:
//! - `Constant` nodes and constant subgraphs become initializers (paddle2onnx
//!   and older TensorFlow converters keep every weight in a `Constant`
//!   node, where the passes look for initializers), and BatchNormalization
//!   folds into the Conv before it. ONNX Runtime's basic-level optimizer
//!   does exactly this and only this with standard ONNX ops — it is what
//!   onnxruntime's own `quant_pre_process` runs — so hone saves its result
//!   instead of keeping a second constant folder.
//! - The default-domain opset is raised op by op to 13 when it is older
//!   (see [`crate::opset`]); when some op cannot be converted the model
//!   stays at its opset and the passes use per-tensor QDQ, which exists
//!   from opset 10.

use hone_onnx::proto::ModelProto;
use hone_runtime::{GraphOptimization, OrtBackend, SessionConfig};

use crate::Result;
use crate::graph;
use crate::opset;

/// The opset per-channel QDQ needs.
pub const QDQ_PER_CHANNEL_OPSET: i64 = 13;

/// The canonical model and what it took to get there.
#[derive(Debug, Clone)]
pub struct Canonical {
    pub model: ModelProto,
    /// The default-domain opset after canonicalization.
    pub opset: i64,
    /// One line per step that changed something, for the report.
    pub steps: Vec<String>,
    /// Why the opset could not be raised, when it could not.
    pub opset_kept: Option<String>,
}

impl Canonical {
    /// Whether QuantizeLinear/DequantizeLinear may carry `axis`.
    pub fn per_channel_qdq(&self) -> bool {
        self.opset >= QDQ_PER_CHANNEL_OPSET
    }
}

fn constant_nodes(m: &ModelProto) -> usize {
    m.graph.as_ref().map_or(0, |g| {
        g.node.iter().filter(|n| n.op_type == "Constant").count()
    })
}

/// Canonicalizes `bytes` (the model file as given).
pub fn canonicalize(bytes: &[u8], cfg: &SessionConfig) -> Result<Canonical> {
    let original = hone_onnx::decode(bytes)?;
    let mut steps = Vec::new();
    let tmp = std::env::temp_dir().join(format!(
        "hone-canon-{}-{:?}.onnx",
        std::process::id(),
        std::thread::current().id()
    ));
    let c = SessionConfig {
        optimization: GraphOptimization::Basic,
        ..cfg.clone()
    };
    let saved = OrtBackend::save_optimized(bytes, &c, &tmp)
        .and_then(|()| std::fs::read(&tmp).map_err(|e| hone_core::Error::internal(e.to_string())));
    let _ = std::fs::remove_file(&tmp);
    let mut model = match saved.ok().and_then(|b| hone_onnx::decode(&b).ok()) {
        Some(m) => {
            let before = graph::graph(&original)?;
            let after = graph::graph(&m)?;
            let consts = constant_nodes(&original);
            if consts > 0 || after.node.len() != before.node.len() {
                steps.push(format!(
                    "constants folded: {consts} Constant nodes and constant subgraphs into initializers, {} → {} nodes",
                    before.node.len(),
                    after.node.len()
                ));
            }
            m
        }
        // A model ORT cannot optimize offline is used as it is; the fp32
        // baseline already proved it loads.
        None => original,
    };
    let named = name_nodes(&mut model);
    if named > 0 {
        steps.push(format!(
            "{named} unnamed or duplicate node names made unique"
        ));
    }
    let from = opset::default_opset(&model);
    let mut opset_kept = None;
    if from < QDQ_PER_CHANNEL_OPSET {
        match opset::upgrade(&model, QDQ_PER_CHANNEL_OPSET) {
            Ok((up, done)) => {
                // The upgrade must load, or it is not used.
                match OrtBackend::from_bytes(&hone_onnx::encode(&up), cfg) {
                    Ok(_) => {
                        let ops: Vec<String> =
                            done.iter().map(|(o, n)| format!("{n} {o}")).collect();
                        steps.push(format!(
                            "opset {from} → {QDQ_PER_CHANNEL_OPSET}{}",
                            if ops.is_empty() {
                                String::new()
                            } else {
                                format!(" ({} converted)", ops.join(", "))
                            }
                        ));
                        model = up;
                    }
                    Err(e) => opset_kept = Some(format!("the opset-13 graph does not load: {e}")),
                }
            }
            Err(e) => opset_kept = Some(e.to_string()),
        }
        if let Some(why) = &opset_kept {
            steps.push(format!("opset {from} kept ({why}): int8 QDQ is per-tensor"));
        }
    }
    Ok(Canonical {
        opset: opset::default_opset(&model),
        model,
        steps,
        opset_kept,
    })
}

/// Gives every node of the main graph a unique name: the fallbacks keep
/// nodes in float by name, and some exporters leave names empty.
fn name_nodes(model: &mut ModelProto) -> usize {
    let Some(g) = model.graph.as_mut() else {
        return 0;
    };
    let mut taken: std::collections::HashSet<String> =
        g.node.iter().map(|n| n.name.clone()).collect();
    let mut seen = std::collections::HashSet::new();
    let mut next = 0usize;
    let mut changed = 0;
    for n in g.node.iter_mut() {
        if !n.name.is_empty() && seen.insert(n.name.clone()) {
            continue;
        }
        let name = loop {
            next += 1;
            let s = format!("{}_hone{next}", n.op_type);
            if taken.insert(s.clone()) {
                break s;
            }
        };
        seen.insert(name.clone());
        n.name = name;
        changed += 1;
    }
    changed
}
