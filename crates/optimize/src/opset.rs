//! Raising a model's default-domain opset op by op, for the passes that
//! need a newer one (per-channel QDQ needs `axis` on QuantizeLinear, opset
//! 13). Only the ops whose signature or meaning changed between the model's
//! opset and the target are rewritten; every other op means the same at
//! both. An op this module cannot convert stops the upgrade with its name,
//! and the caller stays at the model's opset.

use hone_onnx::proto::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};
use hone_onnx::{Attr, tensor_i64};

use crate::graph::{self, Names, node};
use crate::{OptError, Result};

/// The default-domain opset a model imports (1 when it imports none).
pub fn default_opset(model: &ModelProto) -> i64 {
    model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(1, |o| o.version)
}

/// Returns the model at opset `to` and the conversions made (op → count).
/// Errors name the op that cannot be converted from the model's opset.
pub fn upgrade(model: &ModelProto, to: i64) -> Result<(ModelProto, Vec<(String, usize)>)> {
    let from = default_opset(model);
    let mut m = model.clone();
    if from >= to {
        return Ok((m, Vec::new()));
    }
    if from < 10 {
        return Err(OptError::Unsupported(format!(
            "opset {from} is older than 10, where QuantizeLinear starts"
        )));
    }
    let mut done: Vec<(String, usize)> = Vec::new();
    let g = graph::graph_mut(&mut m)?;
    let mut names = Names::new(g);
    convert_graph(g, from, to, &mut names, &mut done)?;
    graph::require_opset(&mut m, to);
    Ok((m, done))
}

fn count(done: &mut Vec<(String, usize)>, op: &str) {
    match done.iter_mut().find(|(o, _)| o == op) {
        Some((_, n)) => *n += 1,
        None => done.push((op.to_string(), 1)),
    }
}

fn take_attr(n: &mut NodeProto, name: &str) -> Option<AttributeProto> {
    let i = n.attribute.iter().position(|a| a.name == name)?;
    Some(n.attribute.remove(i))
}

fn convert_graph(
    g: &mut GraphProto,
    from: i64,
    to: i64,
    names: &mut Names,
    done: &mut Vec<(String, usize)>,
) -> Result<()> {
    let mut inits: Vec<TensorProto> = Vec::new();
    let mut out: Vec<NodeProto> = Vec::with_capacity(g.node.len());
    for mut n in std::mem::take(&mut g.node) {
        // Subgraphs (If, Loop, Scan) run at the model's opset too.
        for a in n.attribute.iter_mut() {
            if let Some(sub) = a.g.as_mut() {
                convert_graph(sub, from, to, names, done)?;
            }
            for sub in a.graphs.iter_mut() {
                convert_graph(sub, from, to, names, done)?;
            }
        }
        if !n.domain.is_empty() && n.domain != "ai.onnx" {
            out.push(n);
            continue;
        }
        let op = n.op_type.clone();
        match op.as_str() {
            // Opset 13: `axes` / `split` move from an attribute to an input.
            "Squeeze" | "Unsqueeze" | "ReduceSum" | "Split" if to >= 13 => {
                let attr = if op == "Split" { "split" } else { "axes" };
                if let Some(a) = take_attr(&mut n, attr) {
                    let t = names.make(&format!("{}_{attr}", n.name));
                    inits.push(tensor_i64(&t, &[a.ints.len() as i64], &a.ints));
                    n.input.truncate(1);
                    n.input.push(t);
                    count(done, &op);
                } else if op == "Unsqueeze" {
                    return Err(OptError::Unsupported("Unsqueeze without axes".into()));
                }
                out.push(n);
            }
            // Opset 13: Softmax works on one axis instead of flattening from
            // `axis` (default 1). Flatten → Softmax(-1) → Reshape keeps the
            // old meaning for any rank.
            "Softmax" | "LogSoftmax" | "Hardmax" if to >= 13 && from < 13 => {
                let axis = graph::attr_i(&n, "axis", 1);
                if axis == -1 {
                    out.push(n);
                    continue;
                }
                let x = n.input[0].clone();
                let y = n.output[0].clone();
                let shape = names.make(&format!("{y}_shape"));
                let flat = names.make(&format!("{y}_flat"));
                let soft = names.make(&format!("{y}_2d"));
                out.push(node(
                    "Shape",
                    names.make(&format!("{}_shape", n.name)),
                    &[&x],
                    &[&shape],
                    vec![],
                ));
                out.push(node(
                    "Flatten",
                    names.make(&format!("{}_flatten", n.name)),
                    &[&x],
                    &[&flat],
                    vec![("axis", Attr::Int(axis))],
                ));
                out.push(node(
                    &op,
                    n.name.clone(),
                    &[&flat],
                    &[&soft],
                    vec![("axis", Attr::Int(-1))],
                ));
                out.push(node(
                    "Reshape",
                    names.make(&format!("{}_reshape", n.name)),
                    &[&soft, &shape],
                    &[&y],
                    vec![],
                ));
                count(done, &op);
            }
            // Opset 11: Clip's bounds and Pad's pads become inputs.
            "Clip" if from < 11 => {
                let lo = take_attr(&mut n, "min").map(|a| a.f);
                let hi = take_attr(&mut n, "max").map(|a| a.f);
                n.input.truncate(1);
                for (v, suffix) in [(lo, "min"), (hi, "max")] {
                    match v {
                        Some(v) => {
                            let t = names.make(&format!("{}_{suffix}", n.name));
                            inits.push(hone_onnx::tensor_f32(&t, &[], &[v]));
                            n.input.push(t);
                        }
                        None => n.input.push(String::new()),
                    }
                }
                while n.input.last().is_some_and(String::is_empty) {
                    n.input.pop();
                }
                count(done, &op);
                out.push(n);
            }
            "Pad" if from < 11 => {
                let pads = take_attr(&mut n, "pads")
                    .ok_or_else(|| OptError::Unsupported("Pad without pads".into()))?;
                let value = take_attr(&mut n, "value").map_or(0.0, |a| a.f);
                let p = names.make(&format!("{}_pads", n.name));
                let v = names.make(&format!("{}_value", n.name));
                inits.push(tensor_i64(&p, &[pads.ints.len() as i64], &pads.ints));
                inits.push(hone_onnx::tensor_f32(&v, &[], &[value]));
                n.input.truncate(1);
                n.input.push(p);
                n.input.push(v);
                count(done, &op);
                out.push(n);
            }
            // Opset 12: Dropout's ratio becomes an input; at inference it is
            // the identity either way.
            "Dropout" if from < 12 => {
                take_attr(&mut n, "ratio");
                count(done, &op);
                out.push(n);
            }
            // Resize-10's sampling has no exact spelling in Resize-11's
            // coordinate modes for every case; Upsample is gone from 10.
            "Resize" | "Upsample" if from < 11 => {
                return Err(OptError::Unsupported(format!("{op} from opset {from}")));
            }
            _ => out.push(n),
        }
    }
    g.node = out;
    g.initializer.extend(inits);
    Ok(())
}
