//! Latency-aware int8: quantize only where the int8 kernels pay on this
//! machine. A QDQ pair costs a quantize and a dequantize pass over the
//! tensor; around a depthwise convolution (little arithmetic per byte) or a
//! chain of element-wise ops, that can cost more than int8 saves. The
//! quantized nodes of the fastest static candidate are grouped by kind; each
//! kind is left in float in turn and the model timed against the
//! all-int8 one in alternating rounds on this machine; the kinds that ran
//! faster in float stay float, and the report says which and by how much.

use std::collections::{BTreeMap, HashMap, HashSet};

use hone_onnx::proto::{ModelProto, NodeProto};
use hone_optimize::{measure, qdq};

use super::calibration::{Calibration, static_options};
use super::judge::Scorer;
use super::recipe::{Recipe, Static};
use super::report::Candidate;

/// A kind must run at least this much faster in float to stay float:
/// alternating rounds still differ by a few percent.
const MIN_GAIN: f64 = 0.05;

/// The kind of a quantized node, as the report names it.
fn kind(inits: &HashMap<&str, &[i64]>, n: &NodeProto) -> &'static str {
    match n.op_type.as_str() {
        "Conv" => {
            let group = hone_optimize::graph::attr_i(n, "group", 1);
            let w = n.input.get(1).and_then(|w| inits.get(w.as_str()));
            match w {
                Some(d) if group > 1 && d.get(1) == Some(&1) => "depthwise Conv",
                Some(d) if d.len() > 2 && d.iter().skip(2).all(|&k| k == 1) => "1×1 Conv",
                _ => "k×k Conv",
            }
        }
        "MatMul" | "Gemm" => "MatMul/Gemm",
        "Add" | "Clip" | "Relu" | "Mul" | "Sigmoid" => {
            "element-wise (Add, Mul, Sigmoid, Clip, Relu)"
        }
        _ => "pooling and data movement",
    }
}

/// p50 of `a` and `b` at batch 1, timed in alternating rounds.
fn paired_p50(scorer: &Scorer, a: &[u8], b: &[u8]) -> Option<(f64, f64)> {
    let rounds = 3;
    let per = scorer.measure / (2 * rounds) as u32;
    let (mut pa, mut pb) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for (bytes, out) in [(a, &mut pa), (b, &mut pb)] {
            let (cfg, _) = scorer.speed_cfg(bytes);
            let p = measure::measure(bytes, &scorer.row, &cfg, 1, per, &[1]).ok()?;
            out.push(p.p50_ms);
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Some((med(&mut pa), med(&mut pb)))
}

/// What the latency check found.
pub(crate) enum Outcome {
    /// Some kinds ran faster in float: the variant with them float.
    Variant(Box<Candidate>),
    /// Every kind paid in int8; the timings, for `src`'s detail.
    AllPay(String),
}

/// The latency-aware variant of static candidate `src`, or the timings
/// showing every kind pays in int8 (then `src` stands as it is).
pub(crate) fn latency_aware(
    scorer: &Scorer,
    fp32: &ModelProto,
    src: Static,
    cal: &Calibration,
) -> Option<Outcome> {
    let ranges = cal.computed(src)?;
    let g = fp32.graph.as_ref()?;
    let build = |exclude: HashSet<String>| {
        qdq::quantize_static(fp32, ranges, &static_options(src, exclude))
            .ok()
            .map(|(m, nodes)| (hone_onnx::encode(&m), nodes))
    };
    let (all_int8, quantized) = build(HashSet::new())?;
    let inits: HashMap<&str, &[i64]> = g
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t.dims.as_slice()))
        .collect();
    let by_name: HashMap<&str, &NodeProto> = g.node.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut kinds: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for q in &quantized {
        if let Some(n) = by_name.get(q.as_str()) {
            kinds.entry(kind(&inits, n)).or_default().push(q.clone());
        }
    }
    // Greedy, largest kind first: each kind is tried against the model as
    // it stands after the kinds before it.
    let mut order: Vec<(&str, Vec<String>)> = kinds.into_iter().collect();
    order.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    let mut float_kinds: Vec<(&str, usize, f64, f64)> = Vec::new();
    let mut int8_kinds: Vec<(&str, usize, f64, f64)> = Vec::new();
    let mut exclude: HashSet<String> = HashSet::new();
    let mut current = all_int8;
    for (k, nodes) in &order {
        let mut trial = exclude.clone();
        trial.extend(nodes.iter().cloned());
        let (variant, _) = build(trial.clone())?;
        let (p_int8, p_float) = paired_p50(scorer, &current, &variant)?;
        if p_float < p_int8 * (1.0 - MIN_GAIN) {
            exclude = trial;
            current = variant;
            float_kinds.push((k, nodes.len(), p_int8, p_float));
        } else {
            int8_kinds.push((k, nodes.len(), p_int8, p_float));
        }
    }
    let fmt = |v: &[(&str, usize, f64, f64)]| {
        v.iter()
            .map(|(k, n, a, b)| format!("{k} ×{n} ({a:.3} ms in int8, {b:.3} ms float)"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if float_kinds.is_empty() {
        return Some(Outcome::AllPay(format!(
            "latency check: every node kind ran at least as fast in int8 on this machine: {}",
            fmt(&int8_kinds)
        )));
    }
    let bytes = current;
    let mut detail = format!(
        "{src} with the node kinds that ran slower in int8 on this machine kept float: {}",
        fmt(&float_kinds)
    );
    if !int8_kinds.is_empty() {
        detail += &format!("; int8 kept where it paid: {}", fmt(&int8_kinds));
    }
    // The nodes themselves, in graph order, so a reader can find them.
    let float_nodes: Vec<&str> = g
        .node
        .iter()
        .map(|n| n.name.as_str())
        .filter(|n| exclude.contains(*n))
        .collect();
    const LISTED: usize = 24;
    let shown = float_nodes[..float_nodes.len().min(LISTED)].join(", ");
    detail += &match float_nodes.len().saturating_sub(LISTED) {
        0 => format!("; float nodes: {shown}"),
        more => format!("; float nodes: {shown} and {more} more"),
    };
    Some(Outcome::Variant(Box::new(scorer.candidate(
        Recipe::LatencyAware(src),
        detail,
        bytes,
    ))))
}
