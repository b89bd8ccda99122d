//! Tensors whose bytes live in files beside the model (ONNX external data:
//! `location`, `offset`, `length` entries on a tensor whose
//! `data_location` is EXTERNAL). Read: the bytes come into the model, each
//! file read once and shared by its tensors; a location that is absolute or
//! leaves the model's directory is refused. Written: large tensors go to
//! one file beside the model, as exporters write models over protobuf's
//! 2 GB limit.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;

use crate::proto::tensor_proto::DataLocation;
use crate::proto::{GraphProto, ModelProto, StringStringEntryProto, TensorProto};
use crate::{OnnxError, Result};

/// Serialized models above this are written with external data: protobuf
/// (and ONNX Runtime's parser) refuse messages of 2 GiB.
pub const PROTOBUF_LIMIT: usize = (2 << 30) - (64 << 20);

/// Every tensor of a graph, its subgraphs included.
fn tensors_mut(
    g: &mut GraphProto,
    f: &mut dyn FnMut(&mut TensorProto) -> Result<()>,
) -> Result<()> {
    for t in &mut g.initializer {
        f(t)?;
    }
    for n in &mut g.node {
        for a in &mut n.attribute {
            if let Some(t) = a.t.as_mut() {
                f(t)?;
            }
            for t in &mut a.tensors {
                f(t)?;
            }
            if let Some(sub) = a.g.as_mut() {
                tensors_mut(sub, f)?;
            }
            for sub in &mut a.graphs {
                tensors_mut(sub, f)?;
            }
        }
    }
    Ok(())
}

fn is_external(t: &TensorProto) -> bool {
    t.data_location == DataLocation::External as i32
}

/// Whether any tensor of `g` (its subgraphs included) keeps its bytes in
/// an external file.
fn any_external(g: &GraphProto) -> bool {
    g.initializer.iter().any(is_external)
        || g.node.iter().flat_map(|n| &n.attribute).any(|a| {
            a.t.as_ref().is_some_and(is_external)
                || a.tensors.iter().any(is_external)
                || a.g.as_ref().is_some_and(any_external)
                || a.graphs.iter().any(any_external)
        })
}

/// Whether any tensor keeps its bytes in an external file.
pub fn has_external(model: &ModelProto) -> bool {
    model.graph.as_ref().is_some_and(any_external)
}

/// The file a `location` names, inside `dir` (the model's directory).
fn resolve(dir: &Path, location: &str, tensor: &str) -> Result<PathBuf> {
    let rel = Path::new(location);
    let escapes = rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if location.is_empty() || escapes {
        return Err(OnnxError::Unsupported(format!(
            "tensor {tensor:?}: external data location {location:?} is not a file inside the model's directory"
        )));
    }
    let path = dir.join(rel);
    // A symbolic link out of the directory escapes as surely as `..`.
    if let (Ok(d), Ok(p)) = (dir.canonicalize(), path.canonicalize())
        && !p.starts_with(&d)
    {
        return Err(OnnxError::Unsupported(format!(
            "tensor {tensor:?}: external data {location:?} resolves to {}, outside the model's directory",
            p.display()
        )));
    }
    Ok(path)
}

fn entry<'a>(t: &'a TensorProto, key: &str) -> Option<&'a str> {
    t.external_data
        .iter()
        .find(|e| e.key == key)
        .map(|e| e.value.as_str())
}

/// Reads every external tensor's bytes into the model. Returns how many
/// tensors were external.
pub fn inline(model: &mut ModelProto, dir: &Path) -> Result<usize> {
    let mut files: HashMap<PathBuf, Bytes> = HashMap::new();
    let mut count = 0;
    let Some(g) = model.graph.as_mut() else {
        return Ok(0);
    };
    tensors_mut(g, &mut |t| {
        if !is_external(t) {
            return Ok(());
        }
        let location = entry(t, "location").unwrap_or_default().to_string();
        let path = resolve(dir, &location, &t.name)?;
        let data = match files.get(&path) {
            Some(b) => b.clone(),
            None => {
                let b = Bytes::from(std::fs::read(&path).map_err(|source| OnnxError::Io {
                    action: "read external data",
                    path: path.clone(),
                    source,
                })?);
                files.insert(path.clone(), b.clone());
                b
            }
        };
        let number = |key: &str| -> Result<Option<usize>> {
            entry(t, key)
                .map(|v| {
                    v.trim().parse::<usize>().map_err(|_| {
                        OnnxError::Unsupported(format!(
                            "tensor {:?}: external data {key} {v:?} is not a byte count",
                            t.name
                        ))
                    })
                })
                .transpose()
        };
        let offset = number("offset")?.unwrap_or(0);
        let end = match number("length")? {
            Some(len) => offset.checked_add(len),
            None => Some(data.len()),
        };
        let range = end
            .filter(|e| *e <= data.len() && offset <= *e)
            .map(|e| offset..e)
            .ok_or_else(|| {
                OnnxError::Unsupported(format!(
                    "tensor {:?}: external data {location:?} holds {} bytes, not the {}..{:?} it names",
                    t.name,
                    data.len(),
                    offset,
                    end
                ))
            })?;
        t.raw_data = data.slice(range);
        t.external_data.clear();
        t.data_location = DataLocation::Default as i32;
        count += 1;
        Ok(())
    })?;
    Ok(count)
}

/// Moves every tensor of at least `min_bytes` raw bytes into one data file
/// named `location` (beside the model), each at a 4096-byte aligned offset
/// so it can be memory-mapped. Returns the data file's contents.
pub fn externalize(model: &mut ModelProto, location: &str, min_bytes: usize) -> Vec<u8> {
    let mut data: Vec<u8> = Vec::new();
    if let Some(g) = model.graph.as_mut() {
        let _ = tensors_mut(g, &mut |t| {
            if is_external(t) || t.raw_data.len() < min_bytes {
                return Ok(());
            }
            let offset = data.len().div_ceil(4096) * 4096;
            data.resize(offset, 0);
            data.extend_from_slice(&t.raw_data);
            let kv = |k: &str, v: String| StringStringEntryProto {
                key: k.to_string(),
                value: v,
            };
            t.external_data = vec![
                kv("location", location.to_string()),
                kv("offset", offset.to_string()),
                kv("length", t.raw_data.len().to_string()),
            ];
            t.raw_data = Bytes::new();
            t.data_location = DataLocation::External as i32;
            Ok(())
        });
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ModelProto {
        let mut g = GraphProto::default();
        g.initializer
            .push(crate::tensor_f32("w", &[256], &[1.5; 256]));
        g.initializer
            .push(crate::tensor_f32("b", &[2], &[0.5, -0.5]));
        ModelProto {
            graph: Some(g),
            ..Default::default()
        }
    }

    #[test]
    fn tensors_go_out_and_come_back() {
        let dir = std::env::temp_dir().join(format!("hone-ext-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let original = model();
        let mut m = original.clone();
        let data = externalize(&mut m, "m.onnx.data", 1024);
        assert!(has_external(&m));
        assert_eq!(data.len(), 1024, "only the large tensor moves");
        std::fs::write(dir.join("m.onnx.data"), &data).unwrap();
        assert_eq!(inline(&mut m, &dir).unwrap(), 1);
        assert_eq!(m, original);

        for bad in ["../m.onnx.data", "/etc/passwd", ""] {
            let mut m = original.clone();
            externalize(&mut m, bad, 1024);
            let e = inline(&mut m, &dir).unwrap_err().to_string();
            assert!(e.contains("\"w\""), "{bad}: {e}");
        }
        let mut m = original.clone();
        externalize(&mut m, "m.onnx.data", 1024);
        std::fs::write(dir.join("m.onnx.data"), &data[..100]).unwrap();
        let e = inline(&mut m, &dir).unwrap_err().to_string();
        assert!(e.contains("holds 100 bytes"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
