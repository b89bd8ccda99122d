//! int8 dynamic quantization of MatMul and Gemm weights.
//!
//! Each MatMul/Gemm whose weight is a constant becomes
//! `DynamicQuantizeLinear(A) → MatMulInteger(A_q, W_q, A_zp, W_zp) → Cast →
//! Mul(A_scale × W_scale) [→ Add(bias)]`, the pattern ONNX Runtime fuses into
//! its DynamicQuantizeMatMul kernel. Gemm is rewritten as a MatMul (weight
//! transposed when `transB=1`) plus an Add of its bias, which is how Gemm
//! layers, skipped by onnxruntime's own `quantize_dynamic`, get quantized.
//! Activations are quantized per call to uint8; weights are symmetric int8,
//! per tensor or per output column.

use std::collections::{HashMap, HashSet};

use hone_onnx::proto::ModelProto;
use hone_onnx::{Attr, elem};

use crate::Result;
use crate::graph::{self, Names, node, quantize_symmetric, tensor_i8};

#[derive(Debug, Clone, Default)]
pub struct DynamicOptions {
    pub per_channel: bool,
    /// Also store Gather tables (embeddings) as int8 with one scale,
    /// dequantized after the lookup: a smaller file for a small accuracy cost.
    pub embeddings: bool,
    /// Node names left in fp32 (the per-node fallback).
    pub exclude: HashSet<String>,
    /// 7-bit weights (±63), as onnxruntime's `reduce_range`: on x86 CPUs
    /// without VNNI, ONNX Runtime multiplies uint8 activations by int8
    /// weights with an instruction whose pairwise sums saturate at int16;
    /// ±63 keeps 2 × 255 × 63 inside it.
    pub reduce_range: bool,
}

/// Returns the rewritten model and the names of the nodes it quantized.
pub fn quantize_dynamic(
    model: &ModelProto,
    opts: &DynamicOptions,
) -> Result<(ModelProto, Vec<String>)> {
    let mut model = model.clone();
    let g = graph::graph_mut(&mut model)?;
    let idx = graph::initializers(g);
    let mut names = Names::new(g);
    let mut new_nodes = Vec::with_capacity(g.node.len());
    let mut new_inits = Vec::new();
    let mut quantized = Vec::new();
    // One DynamicQuantizeLinear per activation, shared by every consumer.
    let mut dq_cache: HashMap<String, (String, String, String)> = HashMap::new();
    for n in std::mem::take(&mut g.node) {
        if opts.embeddings
            && n.op_type == "Gather"
            && n.domain.is_empty()
            && !opts.exclude.contains(&n.name)
            && let Some((dims, table)) = n.input.first().and_then(|w| graph::const_f32(g, &idx, w))
            && dims.len() == 2
            && table.len() >= 1024
        {
            let (q, scales) = quantize_symmetric(&table, &dims, None);
            let base = n.input[0].clone();
            let tq = names.make(&format!("{base}_quantized"));
            let ts = names.make(&format!("{base}_scale"));
            let tz = names.make(&format!("{base}_zero_point"));
            new_inits.push(tensor_i8(&tq, &dims, &q));
            new_inits.push(hone_onnx::tensor_f32(&ts, &[], &scales));
            new_inits.push(tensor_i8(&tz, &[], &[0]));
            let out = n.output[0].clone();
            let gathered = names.make(&format!("{out}_int8"));
            let mut gather = n.clone();
            gather.input[0] = tq;
            gather.output[0] = gathered.clone();
            new_nodes.push(gather);
            new_nodes.push(node(
                "DequantizeLinear",
                names.make(&format!("{out}_DequantizeLinear")),
                &[&gathered, &ts, &tz],
                &[&out],
                vec![],
            ));
            quantized.push(n.name.clone());
            continue;
        }
        let target = matches!(n.op_type.as_str(), "MatMul" | "Gemm")
            && n.domain.is_empty()
            && !opts.exclude.contains(&n.name);
        let weight = if target {
            n.input.get(1).and_then(|w| graph::const_f32(g, &idx, w))
        } else {
            None
        };
        let Some((dims, w)) = weight.filter(|(d, _)| d.len() == 2) else {
            new_nodes.push(n);
            continue;
        };
        // Gemm → (A, W[K,N], optional bias), only in its plain form.
        let (k, nn) = (dims[0] as usize, dims[1] as usize);
        let (w_kn, k_dim, n_dim, bias) = if n.op_type == "Gemm" {
            let plain = graph::attr_i(&n, "transA", 0) == 0
                && graph::attr_f(&n, "alpha", 1.0) == 1.0
                && graph::attr_f(&n, "beta", 1.0) == 1.0;
            if !plain {
                new_nodes.push(n);
                continue;
            }
            let bias = n.input.get(2).filter(|b| !b.is_empty()).cloned();
            if graph::attr_i(&n, "transB", 0) == 1 {
                // [N, K] → [K, N]
                let mut t = vec![0f32; w.len()];
                for r in 0..k {
                    for c in 0..nn {
                        t[c * k + r] = w[r * nn + c];
                    }
                }
                (t, nn, k, bias)
            } else {
                (w, k, nn, bias)
            }
        } else {
            (w, k, nn, None)
        };
        let (q, scales) = graph::quantize_symmetric_to(
            &w_kn,
            &[k_dim as i64, n_dim as i64],
            opts.per_channel.then_some(1),
            if opts.reduce_range { 63.0 } else { 127.0 },
        );
        let base = if n.name.is_empty() {
            n.output[0].clone()
        } else {
            n.name.clone()
        };
        let wq = names.make(&format!("{}_wq", n.input[1]));
        let ws = names.make(&format!("{}_wscale", n.input[1]));
        let wz = names.make(&format!("{}_wzp", n.input[1]));
        new_inits.push(tensor_i8(&wq, &[k_dim as i64, n_dim as i64], &q));
        let sdims: Vec<i64> = if scales.len() == 1 {
            vec![]
        } else {
            vec![scales.len() as i64]
        };
        new_inits.push(hone_onnx::tensor_f32(&ws, &sdims, &scales));
        new_inits.push(tensor_i8(&wz, &sdims, &vec![0i8; scales.len()]));

        let a = n.input[0].clone();
        let (aq, ascale, azp) = dq_cache
            .entry(a.clone())
            .or_insert_with(|| {
                let (aq, s, z) = (
                    names.make(&format!("{a}_q")),
                    names.make(&format!("{a}_scale")),
                    names.make(&format!("{a}_zp")),
                );
                new_nodes.push(node(
                    "DynamicQuantizeLinear",
                    names.make(&format!("{a}_DynamicQuantizeLinear")),
                    &[&a],
                    &[&aq, &s, &z],
                    vec![],
                ));
                (aq, s, z)
            })
            .clone();
        let yi = names.make(&format!("{base}_int32"));
        let yf = names.make(&format!("{base}_float"));
        let scale = names.make(&format!("{base}_scale"));
        new_nodes.push(node(
            "MatMulInteger",
            names.make(&format!("{base}_MatMulInteger")),
            &[&aq, &wq, &azp, &wz],
            &[&yi],
            vec![],
        ));
        new_nodes.push(node(
            "Cast",
            names.make(&format!("{base}_Cast")),
            &[&yi],
            &[&yf],
            vec![("to", Attr::Int(elem::FLOAT as i64))],
        ));
        new_nodes.push(node(
            "Mul",
            names.make(&format!("{base}_ScaleMul")),
            &[&ascale, &ws],
            &[&scale],
            vec![],
        ));
        let out = n.output[0].clone();
        match bias {
            Some(b) => {
                let y = names.make(&format!("{base}_nobias"));
                new_nodes.push(node(
                    "Mul",
                    names.make(&format!("{base}_Mul")),
                    &[&yf, &scale],
                    &[&y],
                    vec![],
                ));
                new_nodes.push(node(
                    "Add",
                    names.make(&format!("{base}_Bias")),
                    &[&y, &b],
                    &[&out],
                    vec![],
                ));
            }
            None => {
                new_nodes.push(node(
                    "Mul",
                    names.make(&format!("{base}_Mul")),
                    &[&yf, &scale],
                    &[&out],
                    vec![],
                ));
            }
        }
        quantized.push(n.name.clone());
    }
    g.node = new_nodes;
    g.initializer.extend(new_inits);
    graph::remove_unused_initializers(g);
    // DynamicQuantizeLinear starts at opset 11.
    graph::require_opset(&mut model, 11);
    Ok((model, quantized))
}
