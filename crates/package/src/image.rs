//! The image around the layers: config, manifest, index, and the one tar
//! that is both an OCI image layout and a `docker load` archive (the way
//! `docker save` writes it since Docker 25).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};

use crate::error::{Error, Result, at};
use crate::layer::{Layer, sha256_hex};

pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The runtime settings of the image config (`config` in the OCI spec).
#[derive(Debug, Clone, Default)]
pub struct RunConfig {
    pub user: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub ports: Vec<u16>,
    pub workdir: String,
    pub labels: BTreeMap<String, String>,
}

/// A finished image: the blobs by digest and the references to them.
#[derive(Debug, Clone)]
pub struct Image {
    pub layers: Vec<Layer>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    /// `name:tag` as given.
    pub reference: String,
}

impl Image {
    pub fn config_digest(&self) -> String {
        sha256_hex(&self.config)
    }
    pub fn manifest_digest(&self) -> String {
        sha256_hex(&self.manifest)
    }
}

/// `docker.io/library/hone:1`-style full name, as containerd records it.
fn full_name(reference: &str) -> String {
    let first = reference.split('/').next().unwrap_or("");
    let has_registry = reference.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        reference.into()
    } else if reference.contains('/') {
        format!("docker.io/{reference}")
    } else {
        format!("docker.io/library/{reference}")
    }
}

fn tag_of(reference: &str) -> &str {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    last.rsplit_once(':').map_or("latest", |(_, t)| t)
}

/// Builds config and manifest. `base` is the base image's config, whose
/// settings ours are laid over.
pub fn assemble(
    layers: Vec<Layer>,
    run: &RunConfig,
    base: Option<&Value>,
    history: &[String],
    created: Option<&str>,
    annotations: &BTreeMap<String, String>,
    reference: &str,
) -> Result<Image> {
    let mut cfg = base.cloned().unwrap_or_else(|| json!({}));
    let obj = cfg
        .as_object_mut()
        .ok_or_else(|| Error::Invalid("the base image's config is not a JSON object".into()))?;
    obj.insert("architecture".into(), json!("amd64"));
    obj.insert("os".into(), json!("linux"));
    match created {
        Some(c) => obj.insert("created".into(), json!(c)),
        None => obj.remove("created"),
    };
    // Base settings first, ours over them; the base's PATH is kept.
    let mut rc = obj
        .get("config")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let mut env: Vec<String> = rc["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for e in &run.env {
        let key = e.split('=').next().unwrap_or("");
        if key == "PATH" && env.iter().any(|x| x.starts_with("PATH=")) {
            continue;
        }
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    let mut labels: BTreeMap<String, String> = rc["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    labels.extend(run.labels.clone());
    let ports: BTreeMap<String, Value> = run
        .ports
        .iter()
        .map(|p| (format!("{p}/tcp"), json!({})))
        .collect();
    if let Some(m) = rc.as_object_mut() {
        m.insert("User".into(), json!(run.user));
        m.insert("Entrypoint".into(), json!(run.entrypoint));
        if run.cmd.is_empty() {
            m.remove("Cmd");
        } else {
            m.insert("Cmd".into(), json!(run.cmd));
        }
        m.insert("Env".into(), json!(env));
        m.insert("ExposedPorts".into(), json!(ports));
        m.insert("WorkingDir".into(), json!(run.workdir));
        m.insert("Labels".into(), json!(labels));
    }
    obj.insert("config".into(), rc);
    let mut diff_ids: Vec<Value> = obj
        .get("rootfs")
        .and_then(|r| r["diff_ids"].as_array().cloned())
        .unwrap_or_default();
    let base_layers = diff_ids.len();
    let ours = layers.len().saturating_sub(base_layers);
    for l in layers.iter().skip(base_layers) {
        diff_ids.push(json!(format!("sha256:{}", l.diff_id)));
    }
    obj.insert(
        "rootfs".into(),
        json!({"type": "layers", "diff_ids": diff_ids}),
    );
    let mut hist: Vec<Value> = obj
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for h in history.iter().take(ours) {
        let mut e = json!({"created_by": h, "comment": "hone package"});
        if let (Some(c), Some(m)) = (created, e.as_object_mut()) {
            m.insert("created".into(), json!(c));
        }
        hist.push(e);
    }
    obj.insert("history".into(), json!(hist));
    let config = serde_json::to_vec(&cfg).map_err(at("cannot encode JSON"))?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": format!("sha256:{}", sha256_hex(&config)), "size": config.len()},
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type,
            "digest": format!("sha256:{}", l.digest),
            "size": l.blob.len(),
        })).collect::<Vec<_>>(),
        "annotations": annotations,
    });
    let manifest = serde_json::to_vec(&manifest).map_err(at("cannot encode JSON"))?;
    Ok(Image {
        layers,
        config,
        manifest,
        reference: reference.into(),
    })
}

/// Writes the image as one tar: `oci-layout`, `index.json`, `manifest.json`
/// and `blobs/sha256/*`, sorted, owner 0, mtime 0.
pub fn write_archive(img: &Image, out: &Path) -> Result<()> {
    let io = |e: std::io::Error| at(format_args!("writing {}", out.display()))(e);
    let manifest_digest = img.manifest_digest();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [{
            "mediaType": MANIFEST,
            "digest": format!("sha256:{manifest_digest}"),
            "size": img.manifest.len(),
            "annotations": {
                "io.containerd.image.name": full_name(&img.reference),
                "org.opencontainers.image.ref.name": tag_of(&img.reference),
            },
        }],
    });
    let docker = json!([{
        "Config": format!("blobs/sha256/{}", img.config_digest()),
        "RepoTags": [img.reference],
        "Layers": img.layers.iter().map(|l| format!("blobs/sha256/{}", l.digest)).collect::<Vec<_>>(),
    }]);
    let mut blobs: BTreeMap<String, &[u8]> = BTreeMap::new();
    for l in &img.layers {
        blobs.insert(l.digest.clone(), &l.blob);
    }
    blobs.insert(img.config_digest(), &img.config);
    blobs.insert(manifest_digest, &img.manifest);
    let index = serde_json::to_vec(&index).map_err(at("cannot encode JSON"))?;
    let docker = serde_json::to_vec(&docker).map_err(at("cannot encode JSON"))?;
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    // Written beside, then renamed: a failed run leaves no half image.
    let tmp = out.with_extension("tar.partial");
    let file = std::fs::File::create(&tmp).map_err(io)?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    let mut put = |path: &str, data: &[u8], dir: bool| -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_mode(if dir { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        h.set_entry_type(if dir {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        tar.append_data(&mut h, path, data)
    };
    put("blobs/", &[], true).map_err(io)?;
    put("blobs/sha256/", &[], true).map_err(io)?;
    for (d, b) in &blobs {
        put(&format!("blobs/sha256/{d}"), b, false).map_err(io)?;
    }
    put("index.json", &index, false).map_err(io)?;
    put("manifest.json", &docker, false).map_err(io)?;
    put("oci-layout", layout, false).map_err(io)?;
    let mut w = tar.into_inner().map_err(io)?;
    w.flush().map_err(io)?;
    drop(w);
    std::fs::rename(&tmp, out).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_get_containerd_names() {
        assert_eq!(full_name("hone:1"), "docker.io/library/hone:1");
        assert_eq!(full_name("me/hone:1"), "docker.io/me/hone:1");
        assert_eq!(full_name("ghcr.io/me/hone:1"), "ghcr.io/me/hone:1");
        assert_eq!(full_name("localhost:5000/hone"), "localhost:5000/hone");
        assert_eq!(tag_of("localhost:5000/hone"), "latest");
        assert_eq!(tag_of("ghcr.io/me/hone:2.1"), "2.1");
    }
}
