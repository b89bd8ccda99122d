//! The fp16 candidate: float16 weights and activations, with float32 kept
//! where float16 cannot do the job, found in three steps:
//! 1. ops ONNX Runtime's CPU provider has no float16 kernel for (the graph
//!    would not load);
//! 2. nodes whose float32 values leave float16's range on the calibration
//!    rows (they would overflow to infinity);
//! 3. while the drop is still over budget, the precision-sensitive op types
//!    (exponentials, reductions, normalizations), one type at a time,
//!    greedily by how much each recovers.

use std::collections::{BTreeSet, HashSet};

use hone_onnx::proto::ModelProto;
use hone_optimize::fp16;
use hone_runtime::{OrtBackend, SessionConfig};

use super::calibration::Calibration;
use super::judge::Scorer;
use crate::{PipelineError, Result};

/// Op types whose float16 results lose the most: long sums, exponentials,
/// divisions by small numbers. Tried in step 3, in this order of likelihood.
const SENSITIVE: &[&str] = &[
    "ReduceSum",
    "ReduceMean",
    "ReduceSumSquare",
    "ReduceL2",
    "LayerNormalization",
    "Softmax",
    "LogSoftmax",
    "Exp",
    "Pow",
    "Sqrt",
    "Div",
    "Log",
    "Erf",
    "Sigmoid",
    "Sum",
    "MatMul",
    "Gemm",
    "LSTM",
    "GRU",
];

/// Rounds of step 3.
const MAX_TYPES: usize = 4;

pub(crate) fn fp16_candidate(
    fp32: &ModelProto,
    cfg: &SessionConfig,
    scorer: &Scorer,
    cal: &Calibration,
) -> Result<(Vec<u8>, String)> {
    let types = fp16::tensor_types(fp32, cfg).map_err(PipelineError::from)?;
    let (mut block, learned) = loadable_block(fp32, &types, cfg)?;
    let mut keep: HashSet<String> = HashSet::new();
    let build = |block: &BTreeSet<String>, keep: &HashSet<String>| -> Result<Vec<u8>> {
        let set: HashSet<String> = block.iter().cloned().collect();
        let m = fp16::convert_keeping(fp32, &types, &set, keep).map_err(PipelineError::from)?;
        Ok(hone_onnx::encode(&m))
    };
    let mut notes = Vec::new();
    if !learned.is_empty() {
        notes.push(format!(
            "no fp16 CPU kernel: {} kept fp32",
            learned.join(", ")
        ));
    }
    let mut bytes = build(&block, &keep)?;
    let within = |b: &[u8]| {
        scorer
            .drop_of_model(b)
            .is_some_and(|d| d <= scorer.max_drop + 1e-12)
    };
    if !within(&bytes) {
        // Step 2: overflow.
        let tensors = fp16::float_outputs(fp32, &types);
        if let Ok(ranges) = cal.minmax_of(fp32, &tensors, cfg) {
            let over = fp16::overflowing_nodes(fp32, &ranges);
            if !over.is_empty() {
                notes.push(format!(
                    "{} node(s) whose fp32 values pass ±{} kept fp32: {}",
                    over.len(),
                    fp16::FP16_SAFE_MAX,
                    shorten(&over)
                ));
                keep.extend(over);
                bytes = build(&block, &keep)?;
            }
        }
    }
    if !within(&bytes) {
        // Step 3: sensitive op types, greedily.
        let present: BTreeSet<&str> = fp32
            .graph
            .as_ref()
            .map(|g| g.node.iter().map(|n| n.op_type.as_str()).collect())
            .unwrap_or_default();
        let mut tried: Vec<String> = Vec::new();
        for _ in 0..MAX_TYPES {
            let mut best: Option<(f64, String, Vec<u8>)> = None;
            for op in SENSITIVE {
                if !present.contains(op) || block.contains(*op) {
                    continue;
                }
                let mut b2 = block.clone();
                b2.insert(op.to_string());
                let Ok(cand) = build(&b2, &keep) else {
                    continue;
                };
                if let Some(d) = scorer.drop_of_model(&cand)
                    && best.as_ref().is_none_or(|(bd, _, _)| d < *bd)
                {
                    best = Some((d, op.to_string(), cand));
                }
            }
            let Some((d, op, cand)) = best else { break };
            block.insert(op.clone());
            tried.push(format!("{op} (drop {d:.4})"));
            bytes = cand;
            if d <= scorer.max_drop + 1e-12 {
                break;
            }
        }
        if !tried.is_empty() {
            notes.push(format!(
                "precision-sensitive op types kept fp32, greedily: {}",
                tried.join(", ")
            ));
        }
    }
    let detail = if notes.is_empty() {
        let total = hone_onnx::decode(&bytes).map_or(0, |m| m.graph.map_or(0, |g| g.node.len()));
        format!("float16 weights and activations, fp32 at the edges ({total} nodes)")
    } else {
        format!(
            "float16 weights and activations, fp32 at the edges; {}",
            notes.join("; ")
        )
    };
    Ok((bytes, detail))
}

fn shorten(names: &[String]) -> String {
    let mut s = names.iter().take(6).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 6 {
        s += &format!(" and {} more", names.len() - 6);
    }
    s
}

/// Step 1: the default block-list plus every op ORT reports it has no
/// float16 kernel for, learned by loading the graph.
fn loadable_block(
    fp32: &ModelProto,
    types: &std::collections::HashMap<String, hone_core::DataType>,
    cfg: &SessionConfig,
) -> Result<(BTreeSet<String>, Vec<String>)> {
    let mut block: BTreeSet<String> = fp16::DEFAULT_BLOCK.iter().map(|s| s.to_string()).collect();
    let mut learned = Vec::new();
    for _ in 0..24 {
        let set: HashSet<String> = block.iter().cloned().collect();
        let m = fp16::convert(fp32, types, &set).map_err(PipelineError::from)?;
        match OrtBackend::from_bytes(&hone_onnx::encode(&m), cfg) {
            Ok(_) => return Ok((block, learned)),
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
                        return Err(PipelineError::Message(format!(
                            "the fp16 graph does not load: {msg}"
                        )));
                    }
                }
            }
        }
    }
    Err(PipelineError::Message(
        "the fp16 graph still does not load after 24 ops moved to fp32".into(),
    ))
}
