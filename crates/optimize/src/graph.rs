//! Helpers shared by the passes: initializer lookup, consumers, unique
//! names, and the quantization arithmetic.

use std::collections::{HashMap, HashSet};

use hone_onnx::proto::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto};
use hone_onnx::{Attr, elem};

use crate::{OptError, Result};

pub fn graph(model: &ModelProto) -> Result<&GraphProto> {
    model
        .graph
        .as_ref()
        .ok_or_else(|| OptError::Unsupported("the model has no graph".into()))
}

pub fn graph_mut(model: &mut ModelProto) -> Result<&mut GraphProto> {
    model
        .graph
        .as_mut()
        .ok_or_else(|| OptError::Unsupported("the model has no graph".into()))
}

/// Initializers by name.
pub fn initializers(g: &GraphProto) -> HashMap<String, usize> {
    g.initializer
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i))
        .collect()
}

/// A float32 initializer's dims and values, when `name` is one.
pub fn const_f32(
    g: &GraphProto,
    idx: &HashMap<String, usize>,
    name: &str,
) -> Option<(Vec<i64>, Vec<f32>)> {
    let t = &g.initializer[*idx.get(name)?];
    if t.data_type != elem::FLOAT {
        return None;
    }
    hone_onnx::to_f32(t).ok().map(|v| (t.dims.clone(), v))
}

/// How many nodes read each tensor (graph outputs count as readers).
pub fn use_counts(g: &GraphProto) -> HashMap<String, usize> {
    let mut m: HashMap<String, usize> = HashMap::new();
    for n in &g.node {
        for i in &n.input {
            *m.entry(i.clone()).or_default() += 1;
        }
    }
    for o in &g.output {
        *m.entry(o.name.clone()).or_default() += 1;
    }
    m
}

/// Drops initializers nothing reads any more.
pub fn remove_unused_initializers(g: &mut GraphProto) {
    let used: HashSet<String> = g
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .chain(g.output.iter().map(|o| o.name.clone()))
        .collect();
    g.initializer.retain(|t| used.contains(&t.name));
}

pub fn attr_i(n: &NodeProto, name: &str, default: i64) -> i64 {
    hone_onnx::attr(n, name).map_or(default, |a| a.i)
}

pub fn attr_f(n: &NodeProto, name: &str, default: f32) -> f32 {
    hone_onnx::attr(n, name).map_or(default, |a| a.f)
}

/// A node with the given inputs, outputs and attributes.
pub fn node(
    op: &str,
    name: String,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<(&str, Attr)>,
) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name,
        op_type: op.to_string(),
        attribute: attrs
            .into_iter()
            .map(|(n, v)| hone_onnx::builder_attribute(n, v))
            .collect(),
        ..Default::default()
    }
}

pub fn tensor_i8(name: &str, dims: &[i64], v: &[i8]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: elem::INT8,
        raw_data: v.iter().map(|&x| x as u8).collect::<Vec<u8>>().into(),
        ..Default::default()
    }
}

pub fn tensor_u8(name: &str, dims: &[i64], v: &[u8]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: elem::UINT8,
        raw_data: v.to_vec().into(),
        ..Default::default()
    }
}

pub fn tensor_i32(name: &str, dims: &[i64], v: &[i32]) -> TensorProto {
    let mut raw = Vec::with_capacity(v.len() * 4);
    for x in v {
        raw.extend_from_slice(&x.to_le_bytes());
    }
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: elem::INT32,
        raw_data: raw.into(),
        ..Default::default()
    }
}

/// Makes names that do not collide with anything in the graph.
pub struct Names {
    taken: HashSet<String>,
    n: usize,
}

impl Names {
    pub fn new(g: &GraphProto) -> Self {
        let mut taken: HashSet<String> = g.initializer.iter().map(|t| t.name.clone()).collect();
        for n in &g.node {
            taken.extend(n.output.iter().cloned());
            taken.insert(n.name.clone());
        }
        taken.extend(g.input.iter().map(|i| i.name.clone()));
        Names { taken, n: 0 }
    }

    pub fn make(&mut self, base: &str) -> String {
        loop {
            self.n += 1;
            let s = format!("{base}_hone{}", self.n);
            if self.taken.insert(s.clone()) {
                return s;
            }
        }
    }
}

/// Symmetric int8 quantization of `w` with one scale, or one per slice
/// along `axis` of `dims`. Returns (quantized, scales).
pub fn quantize_symmetric(w: &[f32], dims: &[i64], axis: Option<usize>) -> (Vec<i8>, Vec<f32>) {
    quantize_symmetric_to(w, dims, axis, 127.0)
}

/// As [`quantize_symmetric`], to ±`qmax` (63 for 7-bit weights).
pub fn quantize_symmetric_to(
    w: &[f32],
    dims: &[i64],
    axis: Option<usize>,
    qmax: f32,
) -> (Vec<i8>, Vec<f32>) {
    let scale_of = |m: f32| if m > 0.0 { m / qmax } else { 1.0 };
    match axis {
        None => {
            let m = w.iter().fold(0f32, |a, &x| a.max(x.abs()));
            let s = scale_of(m);
            (
                w.iter()
                    .map(|&x| (x / s).round().clamp(-qmax, qmax) as i8)
                    .collect(),
                vec![s],
            )
        }
        Some(axis) => {
            let d: Vec<usize> = dims.iter().map(|&x| x as usize).collect();
            let channels = d[axis];
            let inner: usize = d[axis + 1..].iter().product();
            let mut maxes = vec![0f32; channels];
            for (i, &x) in w.iter().enumerate() {
                let c = (i / inner) % channels;
                maxes[c] = maxes[c].max(x.abs());
            }
            let scales: Vec<f32> = maxes.into_iter().map(scale_of).collect();
            let q = w
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    let c = (i / inner) % channels;
                    (x / scales[c]).round().clamp(-qmax, qmax) as i8
                })
                .collect();
            (q, scales)
        }
    }
}

/// Ensures the default-domain opset is at least `v` (QDQ with `axis` needs 13).
pub fn require_opset(model: &mut ModelProto, v: i64) {
    match model
        .opset_import
        .iter_mut()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
    {
        Some(o) if o.version < v => o.version = v,
        Some(_) => {}
        None => model.opset_import.push(OperatorSetIdProto {
            domain: String::new(),
            version: v,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_per_channel() {
        // dims [2, 3], axis 0: rows have max 1.27 and 0.127.
        let w = [1.27, -0.635, 0.0, 0.127, 0.0635, -0.127];
        let (q, s) = quantize_symmetric(&w, &[2, 3], Some(0));
        assert_eq!(q, vec![127, -64, 0, 127, 64, -127]);
        assert!((s[0] - 0.01).abs() < 1e-7 && (s[1] - 0.001).abs() < 1e-8);
        let (q, s) = quantize_symmetric(&w, &[2, 3], None);
        assert_eq!(s.len(), 1);
        assert_eq!(q[3], 13);
        // Per column of a [2, 3] matrix (axis 1).
        let (_, s) = quantize_symmetric(&w, &[2, 3], Some(1));
        assert_eq!(s.len(), 3);
        assert!((s[0] - 0.01).abs() < 1e-7);
    }
}
