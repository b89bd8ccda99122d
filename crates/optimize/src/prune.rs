//! Pruning.
//!
//! - Unstructured: zero the smallest-magnitude fraction of every Gemm,
//!   MatMul and Conv weight. The file and the dense kernels stay the same
//!   size; it is a candidate for compressors and sparse runtimes, and a
//!   measure of how much of the model is redundant.
//! - Structured: remove whole hidden units of an MLP (a chain of Gemm →
//!   elementwise activation → Gemm), which shrinks the matrices and so the
//!   file and the compute. Units are ranked by ‖incoming row‖·‖outgoing column‖.

use hone_onnx::elem;
use hone_onnx::proto::ModelProto;

use crate::{OptError, Result, graph};

/// Zeroes `sparsity` (0..1) of each weight by magnitude. Returns the model
/// and the number of weights zeroed.
pub fn magnitude(model: &ModelProto, sparsity: f64) -> Result<(ModelProto, usize)> {
    let mut model = model.clone();
    let g = graph::graph_mut(&mut model)?;
    let weights: Vec<String> = g
        .node
        .iter()
        .filter(|n| matches!(n.op_type.as_str(), "Gemm" | "MatMul" | "Conv"))
        .filter_map(|n| n.input.get(1).cloned())
        .collect();
    let mut zeroed = 0;
    for t in g.initializer.iter_mut() {
        if !weights.contains(&t.name) || t.data_type != elem::FLOAT || t.dims.len() < 2 {
            continue;
        }
        let mut v = hone_onnx::to_f32(t)?;
        let mut mags: Vec<f32> = v.iter().map(|x| x.abs()).collect();
        let k = ((v.len() as f64) * sparsity).floor() as usize;
        if k == 0 {
            continue;
        }
        mags.sort_by(f32::total_cmp);
        let cut = mags[k - 1];
        let mut left = k;
        for x in v.iter_mut() {
            if left > 0 && x.abs() <= cut {
                *x = 0.0;
                left -= 1;
            }
        }
        zeroed += k - left;
        *t = hone_onnx::tensor_f32(&t.name, &t.dims, &v);
    }
    Ok((model, zeroed))
}

/// A dense layer found in the graph: weight `[out, in]` (Gemm transB=1).
struct Dense {
    node: usize,
    weight: String,
    bias: Option<String>,
}

/// Removes `ratio` of the hidden units of every Gemm → activation → Gemm
/// link. Returns the model and the hidden widths kept.
pub fn structured(model: &ModelProto, ratio: f64) -> Result<(ModelProto, Vec<usize>)> {
    let mut model = model.clone();
    let g = graph::graph_mut(&mut model)?;
    let idx = graph::initializers(g);
    let uses = graph::use_counts(g);
    // Dense layers in graph order, and which one feeds which through one elementwise activation.
    let dense: Vec<Dense> = g
        .node
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            n.op_type == "Gemm"
                && graph::attr_i(n, "transB", 0) == 1
                && graph::attr_i(n, "transA", 0) == 0
                && n.input.get(1).is_some_and(|w| idx.contains_key(w))
        })
        .map(|(i, n)| Dense {
            node: i,
            weight: n.input[1].clone(),
            bias: n.input.get(2).filter(|b| idx.contains_key(*b)).cloned(),
        })
        .collect();
    let mut links = Vec::new();
    for (a, d) in dense.iter().enumerate() {
        let out = &g.node[d.node].output[0];
        let Some(act) = g.node.iter().find(|n| {
            n.input.first() == Some(out)
                && matches!(
                    n.op_type.as_str(),
                    "Relu" | "Sigmoid" | "Tanh" | "LeakyRelu"
                )
        }) else {
            continue;
        };
        if uses.get(out) != Some(&1) || uses.get(&act.output[0]) != Some(&1) {
            continue;
        }
        if let Some(b) = dense
            .iter()
            .position(|e| g.node[e.node].input[0] == act.output[0])
        {
            links.push((a, b));
        }
    }
    if links.is_empty() {
        return Err(OptError::Unsupported(
            "structured pruning needs an MLP: Gemm(transB=1) → activation → Gemm".into(),
        ));
    }
    let mut kept = Vec::new();
    for (a, b) in links {
        let (wa_dims, wa) = graph::const_f32(g, &idx, &dense[a].weight)
            .ok_or_else(|| OptError::Unsupported("weight is not float".into()))?;
        let (wb_dims, wb) = graph::const_f32(g, &idx, &dense[b].weight)
            .ok_or_else(|| OptError::Unsupported("weight is not float".into()))?;
        let bias_vals = dense[a]
            .bias
            .as_ref()
            .and_then(|b| graph::const_f32(g, &idx, b));
        let (units, fan_in) = (wa_dims[0] as usize, wa_dims[1] as usize);
        let (outs, units_b) = (wb_dims[0] as usize, wb_dims[1] as usize);
        if units != units_b {
            continue;
        }
        let keep_n = ((units as f64) * (1.0 - ratio)).round().max(1.0) as usize;
        let mut score: Vec<(f32, usize)> = (0..units)
            .map(|u| {
                let inc: f32 = wa[u * fan_in..(u + 1) * fan_in].iter().map(|x| x * x).sum();
                let outg: f32 = (0..outs).map(|o| wb[o * units + u].powi(2)).sum();
                (inc.sqrt() * outg.sqrt(), u)
            })
            .collect();
        score.sort_by(|x, y| y.0.total_cmp(&x.0));
        let mut keep: Vec<usize> = score[..keep_n].iter().map(|s| s.1).collect();
        keep.sort_unstable();
        let new_wa: Vec<f32> = keep
            .iter()
            .flat_map(|&u| wa[u * fan_in..(u + 1) * fan_in].to_vec())
            .collect();
        let new_wb: Vec<f32> = (0..outs)
            .flat_map(|o| keep.iter().map(move |&u| (o, u)))
            .map(|(o, u)| wb[o * units + u])
            .collect();
        let set = |g: &mut hone_onnx::proto::GraphProto, name: &str, dims: &[i64], v: &[f32]| {
            if let Some(t) = g.initializer.iter_mut().find(|t| t.name == name) {
                *t = hone_onnx::tensor_f32(name, dims, v);
            }
        };
        set(
            g,
            &dense[a].weight.clone(),
            &[keep_n as i64, fan_in as i64],
            &new_wa,
        );
        set(
            g,
            &dense[b].weight.clone(),
            &[outs as i64, keep_n as i64],
            &new_wb,
        );
        if let Some(bias) = &dense[a].bias
            && let Some((_, bv)) = bias_vals
        {
            let nb: Vec<f32> = keep.iter().map(|&u| bv[u]).collect();
            set(g, &bias.clone(), &[keep_n as i64], &nb);
        }
        kept.push(keep_n);
    }
    // Shapes recorded for intermediate values are now stale.
    g.value_info.clear();
    Ok((model, kept))
}
