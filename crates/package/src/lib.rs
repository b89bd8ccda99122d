//! `hone package`: a container image built without Docker, a registry or
//! the network, and the Kubernetes/KServe manifests that run it.
//!
//! `layer` writes one reproducible layer, `userland` collects the libraries
//! hone needs from this machine, `repo` reads the models the image labels,
//! `base` reads a base image, `image` assembles and writes the archive,
//! `k8s` (with `yaml`) writes the manifests.

pub mod base;
mod error;
pub mod image;
pub mod k8s;
pub mod layer;
pub mod paths;
pub mod repo;
pub mod userland;
mod yaml;

use std::path::{Path, PathBuf};
use std::time::Instant;

use layer::{Content, Tree};

use error::at;
pub use error::{Error, Result};
pub use paths::{HONE_IN_IMAGE, LIB_DIR_IN_IMAGE, MODELS_IN_IMAGE, PORTS};

#[derive(Debug, Clone)]
pub struct Options {
    pub repository: PathBuf,
    pub output: PathBuf,
    /// `NAME[:TAG]`.
    pub tag: String,
    pub base: Option<PathBuf>,
    pub no_models: bool,
    /// The running hone binary (stripped into the image).
    pub hone: PathBuf,
    /// The verified libonnxruntime this hone loads.
    pub onnxruntime: PathBuf,
    /// An RFC 3339 time for the config (from SOURCE_DATE_EPOCH); none keeps
    /// the image reproducible.
    pub created: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerReport {
    pub name: String,
    pub digest: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub image: String,
    pub reference: String,
    pub manifest_digest: String,
    pub config_digest: String,
    pub layers: Vec<LayerReport>,
    pub total_bytes: u64,
    pub models: Vec<repo::Version>,
    pub seconds: f64,
}

/// The image's entrypoint: serve the baked-in (or mounted) repository on
/// every interface.
pub fn entrypoint() -> Vec<String> {
    [
        HONE_IN_IMAGE,
        "serve",
        "--model-repository",
        MODELS_IN_IMAGE,
        "--host",
        "0.0.0.0",
    ]
    .map(String::from)
    .to_vec()
}

/// `NAME:TAG` with `latest` when no tag is given.
pub fn reference(tag: &str) -> String {
    let last = tag.rsplit('/').next().unwrap_or(tag);
    if last.contains(':') {
        tag.into()
    } else {
        format!("{tag}:latest")
    }
}

/// A reference `docker load` and registries accept: a lowercase name of
/// `[a-z0-9._/-]` (a registry host may carry a port), then a tag of
/// `[A-Za-z0-9_.-]`, at most 128 characters.
pub fn check_reference(r: &str) -> Result<()> {
    let (name, tag) = match r.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, t),
        _ => (r, "latest"),
    };
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._/-:".contains(c))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if name_ok && tag_ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "--tag {r:?}: expected NAME[:TAG], the name lowercase letters, digits and ._/- and the tag letters, digits and _.- (at most 128)"
        )))
    }
}

pub fn package(opts: &Options) -> Result<Report> {
    let start = Instant::now();
    let reference = reference(&opts.tag);
    check_reference(&reference)?;
    let versions = repo::scan(&opts.repository)?;
    let lib_name = opts
        .onnxruntime
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::Invalid("the ONNX Runtime library path has no file name".into()))?;
    let lib_in_image = format!("{LIB_DIR_IN_IMAGE}/{lib_name}");
    if let Some(dir) = opts.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(at(format_args!("cannot create {}", dir.display())))?;
    }
    let stripped = strip(&opts.hone, &opts.output)?;

    let base = opts.base.as_deref().map(base::read).transpose()?;
    let mut layers = Vec::new();
    let mut history = Vec::new();
    match &base {
        Some(b) => layers.extend(b.layers.iter().cloned()),
        None => {
            let t = userland::tree(&[&opts.hone, &opts.onnxruntime])?;
            layers.push(layer::build("userland", &t)?);
            history.push("hone package: runtime userland (libraries hone and ONNX Runtime load, CA bundle, user 65532)".into());
        }
    }
    let mut t = Tree::default();
    t.file(
        &lib_in_image,
        Content::Disk(opts.onnxruntime.clone()),
        0o755,
    );
    layers.push(layer::build("onnxruntime", &t)?);
    history.push(format!("hone package: ONNX Runtime ({lib_name})"));
    let mut t = Tree::default();
    t.file(
        HONE_IN_IMAGE,
        Content::Disk(stripped.path().to_path_buf()),
        0o755,
    );
    layers.push(layer::build("hone", &t)?);
    history.push(format!("hone package: hone {}", env!("CARGO_PKG_VERSION")));
    if !opts.no_models {
        let mut t = Tree::default();
        t.add_dir_from_disk(&opts.repository, MODELS_IN_IMAGE)?;
        layers.push(layer::build("models", &t)?);
        history.push("hone package: the model repository".into());
    }

    let mut labels = if opts.no_models {
        Default::default()
    } else {
        repo::labels(&versions)
    };
    labels.insert("org.opencontainers.image.title".into(), reference.clone());
    labels.insert(
        "org.opencontainers.image.description".into(),
        "hone serve: KServe V2 (REST :8000, gRPC :8001), metrics :8002".into(),
    );
    let run = image::RunConfig {
        user: format!("{}:{}", paths::UID, paths::UID),
        entrypoint: entrypoint(),
        cmd: Vec::new(),
        env: vec![
            "PATH=/usr/local/bin:/usr/bin:/bin".into(),
            format!("ORT_DYLIB_PATH={lib_in_image}"),
            "HOME=/tmp".into(),
        ],
        ports: PORTS.to_vec(),
        workdir: "/".into(),
        labels: labels.clone(),
    };
    let base_layers = base.as_ref().map_or(0, |b| b.layers.len());
    let img = image::assemble(
        layers,
        &run,
        base.as_ref().map(|b| &b.config),
        &history,
        opts.created.as_deref(),
        &labels,
        &reference,
    )?;
    image::write_archive(&img, &opts.output)?;
    let layers: Vec<LayerReport> = img
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| LayerReport {
            name: if i < base_layers {
                format!("base layer {}", i + 1)
            } else {
                l.name.clone()
            },
            digest: format!("sha256:{}", l.digest),
            bytes: l.blob.len() as u64,
        })
        .collect();
    let total_bytes = std::fs::metadata(&opts.output).map_or(0, |m| m.len());
    Ok(Report {
        image: opts.output.display().to_string(),
        manifest_digest: format!("sha256:{}", img.manifest_digest()),
        config_digest: format!("sha256:{}", img.config_digest()),
        reference,
        layers,
        total_bytes,
        models: versions,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// A stripped copy of the binary, removed when dropped.
struct Stripped(PathBuf);

impl Stripped {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Stripped {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Debug info is most of a release binary and nothing the server needs.
fn strip(bin: &Path, output: &Path) -> Result<Stripped> {
    let out = Stripped(output.with_extension("hone.stripped"));
    let status = std::process::Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&out.0)
        .arg(bin)
        .status();
    match status {
        Ok(s) if s.success() => Ok(out),
        other => {
            // No binutils: the image still works, only larger.
            tracing::warn!("strip failed ({other:?}): the hone layer keeps its debug info");
            std::fs::copy(bin, &out.0)
                .map_err(at(format_args!("cannot copy {}", bin.display())))?;
            Ok(out)
        }
    }
}

/// Renders the report as a table.
pub fn render(r: &Report) -> String {
    let mut s = format!("{} ({})\n", r.image, r.reference);
    s += &format!("{:<14} {:>12}  digest\n", "layer", "bytes");
    for l in &r.layers {
        s += &format!("{:<14} {:>12}  {}\n", l.name, l.bytes, l.digest);
    }
    s += &format!(
        "{:<14} {:>12}  manifest {}\n",
        "image tar", r.total_bytes, r.manifest_digest
    );
    for v in &r.models {
        s += &format!(
            "model {} v{} {} sha256 {}{}\n",
            v.model,
            v.version,
            v.file,
            v.sha256,
            v.metric
                .as_deref()
                .map_or(String::new(), |m| format!(" {m}"))
        );
    }
    s += &format!("packaged in {:.1} s\n", r.seconds);
    s
}
