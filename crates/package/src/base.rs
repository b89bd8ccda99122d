//! A base image the user already has, read from an OCI image layout (a
//! directory, or a tar of one) or a `docker save` archive: its config and
//! its layers, kept byte for byte.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result, at};
use crate::layer::{self, Layer, sha256_hex};

pub struct Base {
    pub config: Value,
    pub layers: Vec<Layer>,
}

/// Files of the image by path (a directory or a tar's members).
fn files(path: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let io = |e: std::io::Error| at(format_args!("cannot read base image {}", path.display()))(e);
    let mut out = BTreeMap::new();
    if path.is_dir() {
        walk(path, path, &mut out).map_err(io)?;
        return Ok(out);
    }
    let f = std::fs::File::open(path).map_err(io)?;
    let mut ar = tar::Archive::new(f);
    for e in ar.entries().map_err(io)? {
        let mut e = e.map_err(io)?;
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = e.path().map_err(io)?.display().to_string();
        let name = name.trim_start_matches("./").to_string();
        let mut b = Vec::new();
        e.read_to_end(&mut b).map_err(io)?;
        out.insert(name, b);
    }
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            walk(root, &p, out)?;
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.insert(rel.display().to_string(), std::fs::read(&p)?);
        }
    }
    Ok(())
}

fn json(files: &BTreeMap<String, Vec<u8>>, name: &str) -> Result<Value> {
    let b = files
        .get(name)
        .ok_or_else(|| Error::Invalid(format!("the base image has no {name}")))?;
    serde_json::from_slice(b).map_err(at(format_args!("the base image's {name}")))
}

fn blob<'a>(files: &'a BTreeMap<String, Vec<u8>>, digest: &str) -> Result<&'a Vec<u8>> {
    let hex = digest.trim_start_matches("sha256:");
    let b = files
        .get(&format!("blobs/sha256/{hex}"))
        .ok_or_else(|| Error::Invalid(format!("the base image lacks blob {digest}")))?;
    if sha256_hex(b) != hex {
        return Err(Error::Invalid(format!(
            "the base image's blob {digest} is corrupt"
        )));
    }
    Ok(b)
}

pub fn read(path: &Path) -> Result<Base> {
    let files = files(path)?;
    if files.contains_key("index.json") {
        let index = json(&files, "index.json")?;
        let mut desc = index["manifests"]
            .get(0)
            .cloned()
            .ok_or_else(|| Error::Invalid("the base image's index lists no manifest".into()))?;
        // An index of platforms: take linux/amd64.
        if desc["mediaType"]
            .as_str()
            .is_some_and(|m| m.contains("index"))
        {
            let inner: Value =
                serde_json::from_slice(blob(&files, desc["digest"].as_str().unwrap_or(""))?)
                    .map_err(at(format_args!("base image index")))?;
            desc = inner["manifests"]
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .find(|m| m["platform"]["architecture"] == "amd64")
                        .cloned()
                })
                .ok_or_else(|| {
                    Error::Invalid("the base image has no linux/amd64 manifest".into())
                })?;
        }
        let manifest: Value =
            serde_json::from_slice(blob(&files, desc["digest"].as_str().unwrap_or(""))?)
                .map_err(at(format_args!("base image manifest")))?;
        let config: Value = serde_json::from_slice(blob(
            &files,
            manifest["config"]["digest"].as_str().unwrap_or(""),
        )?)
        .map_err(at(format_args!("base image config")))?;
        let diff_ids = diff_ids(&config);
        let descs = manifest["layers"].as_array().cloned().unwrap_or_default();
        if descs.len() != diff_ids.len() {
            return Err(Error::Invalid(
                "the base image's layers and diff_ids disagree".into(),
            ));
        }
        let mut layers = Vec::new();
        for (i, (d, id)) in descs.iter().zip(diff_ids).enumerate() {
            let b = blob(&files, d["digest"].as_str().unwrap_or(""))?.clone();
            let mt = d["mediaType"].as_str().unwrap_or(layer::GZIP).to_string();
            layers.push(layer::foreign(&format!("base {i}"), b, mt, id));
        }
        return Ok(Base { config, layers });
    }
    // docker save: manifest.json names the config and layer files.
    let m = json(&files, "manifest.json")?;
    let m = m
        .get(0)
        .ok_or_else(|| Error::Invalid("the base image's manifest.json is empty".into()))?;
    let cfg_name = m["Config"].as_str().unwrap_or("");
    let config: Value = serde_json::from_slice(
        files
            .get(cfg_name)
            .ok_or_else(|| Error::Invalid(format!("the base image lacks {cfg_name}")))?,
    )
    .map_err(at(format_args!("base image config")))?;
    let diff_ids = diff_ids(&config);
    let names: Vec<&str> = m["Layers"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if names.len() != diff_ids.len() {
        return Err(Error::Invalid(
            "the base image's layers and diff_ids disagree".into(),
        ));
    }
    let mut layers = Vec::new();
    for (i, (n, id)) in names.iter().zip(diff_ids).enumerate() {
        let b = files
            .get(*n)
            .ok_or_else(|| Error::Invalid(format!("the base image lacks {n}")))?
            .clone();
        let mt = if b.starts_with(&[0x1f, 0x8b]) {
            layer::GZIP
        } else {
            "application/vnd.oci.image.layer.v1.tar"
        };
        layers.push(layer::foreign(&format!("base {i}"), b, mt.into(), id));
    }
    Ok(Base { config, layers })
}

fn diff_ids(config: &Value) -> Vec<String> {
    config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|s| s.trim_start_matches("sha256:").to_string())
                .collect()
        })
        .unwrap_or_default()
}
