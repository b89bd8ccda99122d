//! int8 static quantization in QDQ format.
//!
//! Calibrated activations get a `QuantizeLinear → DequantizeLinear` pair and
//! every reader of the tensor reads the dequantized value; constant weights
//! of Conv/Gemm/MatMul become int8 initializers behind a DequantizeLinear
//! (per output channel when asked); Conv/Gemm biases become int32 with scale
//! `x_scale × w_scale`. That is the shape ONNX Runtime's QDQ transformers
//! look for (`DQ → Conv → Q` etc.), so they fuse the groups into QLinearConv,
//! QGemm and friends and the model really runs in int8.

use std::collections::{HashMap, HashSet};

use hone_onnx::proto::{ModelProto, NodeProto};
use hone_onnx::{Attr, tensor_f32};

use crate::calibrate::Ranges;
use crate::graph::{self, Names, node, tensor_i8, tensor_i32, tensor_u8};
use crate::ops::{data_inputs, moves_only, quantizes, value_outputs};
use crate::{OptError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActType {
    /// Asymmetric uint8 (ORT's default for activations on x86).
    U8,
    /// Symmetric int8.
    S8,
}

#[derive(Debug, Clone)]
pub struct StaticOptions {
    pub per_channel: bool,
    pub activations: ActType,
    /// Node names left in fp32 (the per-node fallback).
    pub exclude: HashSet<String>,
    /// 7-bit weights (±63): on x86 without VNNI, ONNX Runtime's int8
    /// kernels sum uint8 × int8 pairs in int16, which ±127 weights
    /// overflow (see `DynamicOptions::reduce_range`).
    pub reduce_range: bool,
}

impl StaticOptions {
    /// Whether this machine needs [`StaticOptions::reduce_range`].
    pub fn needs_reduce_range() -> bool {
        cfg!(target_arch = "x86_64") && !crate::machine::Machine::detect().int8_dot_product
    }
}

impl Default for StaticOptions {
    fn default() -> Self {
        StaticOptions {
            per_channel: true,
            activations: ActType::U8,
            exclude: HashSet::new(),
            reduce_range: false,
        }
    }
}

fn act_params(range: (f32, f32), t: ActType) -> (f32, i32) {
    let (lo, hi) = (range.0.min(0.0), range.1.max(0.0));
    match t {
        ActType::U8 => {
            let s = (hi - lo) / 255.0;
            if s <= 0.0 {
                return (1.0, 0);
            }
            (s, ((-lo / s).round() as i32).clamp(0, 255))
        }
        ActType::S8 => {
            let m = lo.abs().max(hi.abs());
            if m <= 0.0 { (1.0, 0) } else { (m / 127.0, 0) }
        }
    }
}

/// Values this large are masks and sentinels (attention masks hold -1e4
/// or the lowest float), not activations: 256 steps across such a range
/// would put every ordinary value on the zero point. MiniLM's masked
/// scores quantized that way fell to cosine 0.37.
const SENTINEL: f32 = 1e4;

/// Whether a tensor was calibrated to a range int8 can carry.
fn quantizable_range(ranges: &Ranges, t: &str) -> bool {
    ranges.get(t).is_some_and(|&(lo, hi)| {
        lo.is_finite() && hi.is_finite() && lo.abs().max(hi.abs()) < SENTINEL
    })
}

/// Returns the rewritten model and the names of the nodes it quantized.
pub fn quantize_static(
    model: &ModelProto,
    ranges: &Ranges,
    opts: &StaticOptions,
) -> Result<(ModelProto, Vec<String>)> {
    let opset = crate::opset::default_opset(model);
    if opset < 10 {
        return Err(OptError::Unsupported(format!(
            "opset {opset}: QuantizeLinear needs opset 10 or later"
        )));
    }
    // `axis` on QuantizeLinear/DequantizeLinear needs opset 13; a model the
    // canonicalizer could not raise gets one scale per tensor.
    let per_channel = opts.per_channel && opset >= crate::canon::QDQ_PER_CHANNEL_OPSET;
    let mut model = model.clone();
    let g = graph::graph_mut(&mut model)?;
    let outputs: HashSet<String> = g.output.iter().map(|o| o.name.clone()).collect();
    if opts.activations == ActType::U8 {
        fold_relu(g, ranges, &outputs, &opts.exclude);
    }
    let idx = graph::initializers(g);
    let mut names = Names::new(g);

    // Which activations to quantize: data tensors of non-excluded quantizable
    // nodes that were calibrated; graph outputs stay float.
    let mut quantize: HashSet<String> = HashSet::new();
    let mut quantized_nodes = Vec::new();
    for n in &g.node {
        if !quantizes(n, |i| idx.contains_key(i)) || opts.exclude.contains(&n.name) {
            continue;
        }
        let mut any = false;
        for i in data_inputs(n) {
            if !idx.contains_key(i) && quantizable_range(ranges, i) {
                quantize.insert(i.to_string());
                any = true;
            }
        }
        for o in value_outputs(n) {
            if quantizable_range(ranges, o) && !outputs.contains(o) {
                quantize.insert(o.clone());
            }
        }
        if any {
            quantized_nodes.push(n.name.clone());
        }
    }

    // Scale and zero point per quantized activation, in graph order so that
    // ops which only move or select values (MaxPool, Reshape, Split, ...) can give
    // their output the input's parameters: then ONNX Runtime drops their
    // Q/DQ pairs and runs them on int8 directly.
    let mut order: Vec<(String, Option<String>)> = Vec::new();
    let mut seen = HashSet::new();
    for i in &g.input {
        if quantize.contains(&i.name) && seen.insert(i.name.clone()) {
            order.push((i.name.clone(), None));
        }
    }
    for n in &g.node {
        for i in data_inputs(n) {
            if quantize.contains(i) && seen.insert(i.to_string()) {
                order.push((i.to_string(), None));
            }
        }
        let share = moves_only(&n.op_type) && !opts.exclude.contains(&n.name);
        for o in value_outputs(n) {
            if quantize.contains(o) && seen.insert(o.clone()) {
                order.push((o.clone(), share.then(|| n.input[0].clone())));
            }
        }
    }
    let mut params: HashMap<String, (String, String, f32)> = HashMap::new();
    let mut raw_params: HashMap<String, (f32, i32)> = HashMap::new();
    let mut new_inits = Vec::new();
    let mut qdq_for: HashMap<String, Vec<NodeProto>> = HashMap::new();
    let mut renamed: HashMap<String, String> = HashMap::new();
    let softmax_out: HashSet<&str> = g
        .node
        .iter()
        .filter(|n| n.op_type == "Softmax")
        .filter_map(|n| n.output.first().map(String::as_str))
        .collect();
    let mut fixed: HashSet<String> = HashSet::new();
    for (t, _) in &order {
        if softmax_out.contains(t.as_str()) {
            fixed.insert(t.clone());
        }
    }
    for (t, share_from) in &order {
        let (s, zp) = match share_from.as_ref().and_then(|f| raw_params.get(f)) {
            Some(&p) => p,
            // ONNX Runtime fuses DQ → Softmax → Q into QLinearSoftmax, whose
            // kernel assumes the output spans [0, 1] in steps of 1/256
            // (onnxruntime's quantizer fixes it so); calibrated on a
            // narrower range it returned zeros.
            None if fixed.contains(t) => match opts.activations {
                ActType::U8 => (1.0 / 256.0, 0),
                ActType::S8 => (1.0 / 256.0, -128),
            },
            None => act_params(ranges[t], opts.activations),
        };
        raw_params.insert(t.clone(), (s, zp));
        let sn = names.make(&format!("{t}_scale"));
        let zn = names.make(&format!("{t}_zero_point"));
        new_inits.push(tensor_f32(&sn, &[], &[s]));
        match opts.activations {
            ActType::U8 => new_inits.push(tensor_u8(&zn, &[], &[zp as u8])),
            ActType::S8 => new_inits.push(tensor_i8(&zn, &[], &[zp as i8])),
        }
        let q = names.make(&format!("{t}_QuantizeLinear"));
        let dq = names.make(&format!("{t}_DequantizeLinear"));
        qdq_for.insert(
            t.clone(),
            vec![
                node(
                    "QuantizeLinear",
                    names.make(&format!("{t}_Q")),
                    &[t, &sn, &zn],
                    &[&q],
                    vec![],
                ),
                node(
                    "DequantizeLinear",
                    names.make(&format!("{t}_DQ")),
                    &[&q, &sn, &zn],
                    &[&dq],
                    vec![],
                ),
            ],
        );
        renamed.insert(t.clone(), dq);
        params.insert(t.clone(), (sn, zn, s));
    }

    // Weights and biases of Conv / Gemm / MatMul.
    let mut weight_dq: Vec<NodeProto> = Vec::new();
    let mut rewired: HashMap<(usize, usize), String> = HashMap::new();
    for (ni, n) in g.node.iter().enumerate() {
        if !matches!(n.op_type.as_str(), "Conv" | "Gemm" | "MatMul")
            || !n.domain.is_empty()
            || opts.exclude.contains(&n.name)
        {
            continue;
        }
        let x = &n.input[0];
        let Some((wdims, w)) = n.input.get(1).and_then(|w| graph::const_f32(g, &idx, w)) else {
            continue;
        };
        // Only when the activation is quantized too, or ORT cannot fuse.
        let Some((_, _, xs)) = params.get(x) else {
            continue;
        };
        let axis = match n.op_type.as_str() {
            "Conv" => 0usize,
            "Gemm" if graph::attr_i(n, "transB", 0) == 1 => 0,
            "Gemm" => 1,
            _ if wdims.len() == 2 => 1,
            _ => continue,
        };
        let (q, scales) = graph::quantize_symmetric_to(
            &w,
            &wdims,
            per_channel.then_some(axis),
            if opts.reduce_range { 63.0 } else { 127.0 },
        );
        let wname = &n.input[1];
        let wq = names.make(&format!("{wname}_quantized"));
        let ws = names.make(&format!("{wname}_scale"));
        let wz = names.make(&format!("{wname}_zero_point"));
        let wdq = names.make(&format!("{wname}_DequantizeLinear"));
        let sdims: Vec<i64> = if scales.len() == 1 {
            vec![]
        } else {
            vec![scales.len() as i64]
        };
        new_inits.push(tensor_i8(&wq, &wdims, &q));
        new_inits.push(tensor_f32(&ws, &sdims, &scales));
        new_inits.push(tensor_i8(&wz, &sdims, &vec![0i8; scales.len()]));
        let mut attrs = vec![];
        if scales.len() > 1 {
            attrs.push(("axis", Attr::Int(axis as i64)));
        }
        weight_dq.push(node(
            "DequantizeLinear",
            names.make(&format!("{wname}_DQ")),
            &[&wq, &ws, &wz],
            &[&wdq],
            attrs,
        ));
        rewired.insert((ni, 1), wdq);

        // Bias: int32 with scale x_scale × w_scale, per channel.
        if n.op_type != "MatMul"
            && let Some((bdims, b)) = n.input.get(2).and_then(|b| graph::const_f32(g, &idx, b))
        {
            let bscale: Vec<f32> = if scales.len() == 1 {
                vec![xs * scales[0]; b.len()]
            } else {
                scales.iter().map(|s| xs * s).collect()
            };
            if bscale.len() == b.len() {
                let bq: Vec<i32> = b
                    .iter()
                    .zip(&bscale)
                    .map(|(v, s)| (v / s).round().clamp(i32::MIN as f32, i32::MAX as f32) as i32)
                    .collect();
                let bname = &n.input[2];
                let bqn = names.make(&format!("{bname}_quantized"));
                let bsn = names.make(&format!("{bname}_scale"));
                let bzn = names.make(&format!("{bname}_zero_point"));
                let bdq = names.make(&format!("{bname}_DequantizeLinear"));
                new_inits.push(tensor_i32(&bqn, &bdims, &bq));
                if per_channel {
                    new_inits.push(tensor_f32(&bsn, &[b.len() as i64], &bscale));
                    new_inits.push(tensor_i32(&bzn, &[b.len() as i64], &vec![0; b.len()]));
                } else {
                    new_inits.push(tensor_f32(
                        &bsn,
                        &[],
                        &[bscale.first().copied().unwrap_or(1.0)],
                    ));
                    new_inits.push(tensor_i32(&bzn, &[], &[0]));
                }
                weight_dq.push(node(
                    "DequantizeLinear",
                    names.make(&format!("{bname}_DQ")),
                    &[&bqn, &bsn, &bzn],
                    &[&bdq],
                    if per_channel {
                        vec![("axis", Attr::Int(0))]
                    } else {
                        vec![]
                    },
                ));
                rewired.insert((ni, 2), bdq);
            }
        }
    }

    // Rebuild the node list: weight DQs first, graph-input QDQs next, then
    // each node followed by the QDQ pair of its output; every reader of a
    // quantized tensor reads its dequantized copy.
    let inputs: Vec<String> = g.input.iter().map(|i| i.name.clone()).collect();
    let mut nodes = weight_dq;
    for i in &inputs {
        if let Some(pair) = qdq_for.remove(i) {
            nodes.extend(pair);
        }
    }
    for (ni, mut n) in std::mem::take(&mut g.node).into_iter().enumerate() {
        for (k, inp) in n.input.iter_mut().enumerate() {
            if let Some(r) = rewired.get(&(ni, k)) {
                *inp = r.clone();
            } else if let Some(r) = renamed.get(inp.as_str()) {
                *inp = r.clone();
            }
        }
        let outs = n.output.clone();
        nodes.push(n);
        for o in outs {
            if let Some(pair) = qdq_for.remove(&o) {
                nodes.extend(pair);
            }
        }
    }
    g.node = nodes;
    g.initializer.extend(new_inits);
    graph::remove_unused_initializers(g);
    Ok((model, quantized_nodes))
}

/// With uint8 activations a zero point of 0 makes QuantizeLinear clamp at
/// zero, which is what Relu does: so a Relu whose input has no other reader
/// is folded away and its producer's output takes the Relu's name (and
/// calibrated range). onnxruntime's quantizer does the same, and it lets
/// Conv → Relu become one QLinearConv.
fn fold_relu(
    g: &mut hone_onnx::proto::GraphProto,
    ranges: &Ranges,
    outputs: &HashSet<String>,
    exclude: &HashSet<String>,
) {
    let uses = graph::use_counts(g);
    let producer: HashMap<String, usize> = g
        .node
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.output.first().map(|o| (o.clone(), i)))
        .collect();
    let mut drop = HashSet::new();
    let mut rename: Vec<(usize, String)> = Vec::new();
    for (ri, r) in g.node.iter().enumerate() {
        if r.op_type != "Relu" || !r.domain.is_empty() || exclude.contains(&r.name) {
            continue;
        }
        let x = &r.input[0];
        let Some(&pi) = producer.get(x) else { continue };
        let p = &g.node[pi];
        let folds = matches!(p.op_type.as_str(), "Conv" | "Gemm" | "MatMul" | "Add")
            && p.domain.is_empty()
            && !exclude.contains(&p.name)
            && uses.get(x) == Some(&1)
            && !outputs.contains(x)
            // Graph outputs stay float (no QuantizeLinear to clamp them).
            && !outputs.contains(&r.output[0])
            // Only where a QuantizeLinear will follow to do the clamping.
            && quantizable_range(ranges, &r.output[0])
            && ranges.get(&r.output[0]).is_some_and(|&(lo, _)| lo >= 0.0);
        if folds {
            drop.insert(ri);
            rename.push((pi, r.output[0].clone()));
        }
    }
    for (pi, name) in rename {
        g.node[pi].output[0] = name;
    }
    let mut i = 0;
    g.node.retain(|_| {
        let keep = !drop.contains(&i);
        i += 1;
        keep
    });
}
