//! fp16: float32 weights and activations to float16, with float32 kept at
//! the model's inputs and outputs (Cast at the edges) and around ops on a
//! block-list, which run in float32 between a Cast in and a Cast out.
//!
//! Which tensors are float comes from ONNX Runtime itself: a session over
//! the model with every node output exposed reports each one's type, so no
//! shape inference of our own is needed.

use std::collections::{HashMap, HashSet};

use hone_core::{Backend, DataType};
use hone_onnx::proto::{ModelProto, NodeProto, TensorProto, ValueInfoProto};
use hone_onnx::{Attr, elem};
use hone_runtime::{OrtBackend, SessionConfig};

use crate::Result;
use crate::graph::{self, Names, node};

/// Ops that stay float32 unless asked otherwise: their float inputs are
/// indices/scales by definition, or ORT's CPU provider has no fp16 kernel.
pub const DEFAULT_BLOCK: &[&str] = &[
    "Resize",
    "Upsample",
    "Range",
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "NonMaxSuppression",
    "TopK",
    "Einsum",
    "CumSum",
];

/// Element type of every value the graph computes, as ORT infers it.
pub fn tensor_types(model: &ModelProto, cfg: &SessionConfig) -> Result<HashMap<String, DataType>> {
    let mut m = model.clone();
    let g = graph::graph_mut(&mut m)?;
    let existing: HashSet<String> = g.output.iter().map(|o| o.name.clone()).collect();
    let extra: Vec<String> = g
        .node
        .iter()
        .flat_map(|n| n.output.iter().cloned())
        .filter(|o| !o.is_empty() && !existing.contains(o))
        .collect();
    for o in extra {
        g.output.push(ValueInfoProto {
            name: o,
            ..Default::default()
        });
    }
    let b = OrtBackend::from_bytes(&hone_onnx::encode(&m), cfg)?;
    let meta = b.metadata();
    Ok(meta
        .inputs
        .iter()
        .chain(&meta.outputs)
        .map(|s| (s.name.clone(), s.dtype))
        .collect())
}

fn to_half(t: &TensorProto) -> Result<TensorProto> {
    let v = hone_onnx::to_f32(t)?;
    let mut raw = Vec::with_capacity(v.len() * 2);
    for x in v {
        raw.extend_from_slice(&half::f16::from_f32(x).to_le_bytes());
    }
    Ok(TensorProto {
        name: t.name.clone(),
        dims: t.dims.clone(),
        data_type: elem::FLOAT16,
        raw_data: raw.into(),
        ..Default::default()
    })
}

/// Converts the model. `block` lists op types kept in float32.
pub fn convert(
    model: &ModelProto,
    types: &HashMap<String, DataType>,
    block: &HashSet<String>,
) -> Result<ModelProto> {
    convert_keeping(model, types, block, &HashSet::new())
}

/// Float16's largest finite value is 65504; a node whose float32 output
/// comes within a factor 4 of it can overflow inside its kernel (sums,
/// products) even when its output does not.
pub const FP16_SAFE_MAX: f32 = 16384.0;

/// The nodes that write or read a value beyond [`FP16_SAFE_MAX`]: float
/// tensors by the given ranges (from calibration over every float node
/// output and the graph inputs), float initializers by their contents. In
/// float16 such a value, or its copy between two nodes, would be infinite.
pub fn overflowing_nodes(model: &ModelProto, ranges: &HashMap<String, (f32, f32)>) -> Vec<String> {
    let Ok(g) = graph::graph(model) else {
        return Vec::new();
    };
    let mut big: HashSet<&str> = ranges
        .iter()
        .filter(|(_, (lo, hi))| lo.abs().max(hi.abs()) > FP16_SAFE_MAX)
        .map(|(k, _)| k.as_str())
        .collect();
    for t in &g.initializer {
        if t.data_type == elem::FLOAT
            && hone_onnx::to_f32(t)
                .is_ok_and(|v| v.iter().any(|x| x.is_finite() && x.abs() > FP16_SAFE_MAX))
        {
            big.insert(t.name.as_str());
        }
    }
    g.node
        .iter()
        .filter(|n| {
            n.input
                .iter()
                .chain(&n.output)
                .any(|t| big.contains(t.as_str()))
        })
        .map(|n| n.name.clone())
        .collect()
}

/// Every float tensor a node computes, for [`overflowing_nodes`]' ranges.
pub fn float_outputs(model: &ModelProto, types: &HashMap<String, DataType>) -> Vec<String> {
    graph::graph(model).map_or_else(
        |_| Vec::new(),
        |g| {
            g.node
                .iter()
                .flat_map(|n| n.output.iter())
                .filter(|o| types.get(o.as_str()) == Some(&DataType::F32))
                .cloned()
                .collect()
        },
    )
}

/// [`convert`], also keeping the nodes named in `keep` in float32.
pub fn convert_keeping(
    model: &ModelProto,
    types: &HashMap<String, DataType>,
    block: &HashSet<String>,
    keep: &HashSet<String>,
) -> Result<ModelProto> {
    let mut model = model.clone();
    let g = graph::graph_mut(&mut model)?;
    let mut names = Names::new(g);
    let is_float = |t: &str| types.get(t) == Some(&DataType::F32);
    let blocked = |n: &NodeProto| {
        block.contains(&n.op_type) || keep.contains(&n.name) || !n.domain.is_empty()
    };

    // Float initializers: fp16 for unblocked readers, the fp32 original kept for blocked ones.
    let mut init_users: HashMap<String, (bool, bool)> = HashMap::new();
    for n in &g.node {
        for i in &n.input {
            let e = init_users.entry(i.clone()).or_default();
            if blocked(n) { e.1 = true } else { e.0 = true }
        }
    }
    let mut half_name: HashMap<String, String> = HashMap::new();
    let mut new_inits = Vec::new();
    for t in &g.initializer {
        if t.data_type != elem::FLOAT {
            continue;
        }
        let (unblocked, _) = init_users.get(&t.name).copied().unwrap_or_default();
        if unblocked {
            let mut h = to_half(t)?;
            let hn = names.make(&format!("{}_fp16", t.name));
            h.name = hn.clone();
            new_inits.push(h);
            half_name.insert(t.name.clone(), hn);
        }
    }
    let init_names: HashSet<String> = g.initializer.iter().map(|t| t.name.clone()).collect();

    // Values that will be float16: float outputs of unblocked nodes.
    // `half_of[v]` is the name of v's fp16 copy, `full_of[v]` of its fp32 one.
    let mut half_of: HashMap<String, String> = half_name.clone();
    let mut full_of: HashMap<String, String> = HashMap::new();
    let mut nodes = Vec::new();
    for i in &g.input {
        if is_float(&i.name) && !init_names.contains(&i.name) {
            let h = names.make(&format!("{}_fp16", i.name));
            nodes.push(node(
                "Cast",
                names.make("cast_in"),
                &[&i.name],
                &[&h],
                vec![("to", Attr::Int(elem::FLOAT16 as i64))],
            ));
            half_of.insert(i.name.clone(), h);
            full_of.insert(i.name.clone(), i.name.clone());
        }
    }
    for i in &init_names {
        full_of.insert(i.clone(), i.clone());
    }
    let outputs: HashSet<String> = g.output.iter().map(|o| o.name.clone()).collect();
    for mut n in std::mem::take(&mut g.node) {
        if blocked(&n) {
            for inp in n.input.iter_mut() {
                if let Some(f) = full_of.get(inp.as_str()) {
                    *inp = f.clone();
                } else if let Some(h) = half_of.get(inp.as_str()) {
                    let f = names.make(&format!("{inp}_fp32"));
                    nodes.push(node(
                        "Cast",
                        names.make("cast_up"),
                        &[h],
                        &[&f],
                        vec![("to", Attr::Int(elem::FLOAT as i64))],
                    ));
                    full_of.insert(inp.clone(), f.clone());
                    *inp = f;
                }
            }
            let outs: Vec<String> = n.output.iter().filter(|o| is_float(o)).cloned().collect();
            nodes.push(n);
            for o in outs {
                full_of.insert(o.clone(), o.clone());
            }
            continue;
        }
        for inp in n.input.iter_mut() {
            if inp.is_empty() {
                continue;
            }
            if let Some(h) = half_of.get(inp.as_str()) {
                *inp = h.clone();
            } else if let Some(f) = full_of.get(inp.as_str())
                && is_float(inp)
            {
                let h = names.make(&format!("{inp}_fp16"));
                nodes.push(node(
                    "Cast",
                    names.make("cast_down"),
                    &[f],
                    &[&h],
                    vec![("to", Attr::Int(elem::FLOAT16 as i64))],
                ));
                half_of.insert(inp.clone(), h.clone());
                *inp = h;
            }
        }
        // Attributes that name float32 become float16.
        for a in n.attribute.iter_mut() {
            if n.op_type == "Cast" && a.name == "to" && a.i == elem::FLOAT as i64 {
                a.i = elem::FLOAT16 as i64;
            }
            if let Some(t) = a.t.as_mut()
                && t.data_type == elem::FLOAT
            {
                *t = to_half(t)?;
            }
        }
        let mut casts = Vec::new();
        for o in n.output.iter_mut() {
            if !is_float(o) {
                continue;
            }
            let h = names.make(&format!("{o}_fp16"));
            half_of.insert(o.clone(), h.clone());
            if outputs.contains(o.as_str()) {
                casts.push(node(
                    "Cast",
                    names.make("cast_out"),
                    &[&h],
                    &[o],
                    vec![("to", Attr::Int(elem::FLOAT as i64))],
                ));
                full_of.insert(o.clone(), o.clone());
            }
            *o = h;
        }
        nodes.push(n);
        nodes.extend(casts);
    }
    // Casts nobody reads (an input cast down for a reader that turned out
    // to be block-listed) go, and so may the casts that fed them.
    loop {
        let read: HashSet<&str> = nodes
            .iter()
            .flat_map(|n| n.input.iter().map(String::as_str))
            .chain(outputs.iter().map(String::as_str))
            .collect();
        let dead: HashSet<usize> = (0..nodes.len())
            .filter(|&i| {
                nodes[i].op_type == "Cast"
                    && nodes[i].output.iter().all(|o| !read.contains(o.as_str()))
            })
            .collect();
        if dead.is_empty() {
            break;
        }
        nodes = nodes
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !dead.contains(i))
            .map(|(_, n)| n)
            .collect();
    }
    g.node = nodes;
    g.initializer.extend(new_inits);
    g.value_info.clear();
    graph::remove_unused_initializers(g);
    Ok(model)
}
