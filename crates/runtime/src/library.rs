//! Where `libonnxruntime.so` comes from.
//!
//! Order: `ORT_DYLIB_PATH` if set (the operator's explicit choice); else the
//! copy cached under `$HONE_CACHE_DIR` (default `$XDG_CACHE_HOME/hone` or
//! `~/.cache/hone`); else the pinned `onnxruntime` wheel is fetched from PyPI
//! with `pip download`, its sha256 checked, and the library extracted into
//! that cache. A cached copy is loaded only from directories this user owns
//! and nobody else can write, and only when its own sha256 still matches the
//! pinned one: a library that another user could swap, or that changed
//! since it was fetched, is never loaded into the process.

use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use hone_core::{Error, Result};
use sha2::{Digest, Sha256};

/// The ONNX Runtime release the `ort` crate here is built against (API 31).
pub const ORT_VERSION: &str = "1.31.1";
/// The one wheel hone trusts for it, and that wheel's sha256.
const WHEEL_FILE: &str = "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl";
const WHEEL_SHA256: &str = "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f";
const WHEEL_MEMBER: &str = "onnxruntime/capi/libonnxruntime.so.1.31.1";
/// sha256 of that member: what a cached copy must hash to every time it loads.
const LIB_SHA256: &str = "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3";

static INIT: OnceLock<Result<(PathBuf, ort::environment::Environment)>> = OnceLock::new();

/// Why the pinned library could not be fetched or checked.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    /// A step failed; the context says which (and on what file).
    #[error("{context}: {source}")]
    Step {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// What was fetched is not what was pinned.
    #[error("{0}")]
    Mismatch(String),
}

/// `map_err` for a failure while doing what `context` says.
fn step<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
    context: impl std::fmt::Display,
) -> impl FnOnce(E) -> FetchError {
    let context = context.to_string();
    move |e| FetchError::Step {
        context,
        source: e.into(),
    }
}

fn fix_hint() -> String {
    format!(
        "set ORT_DYLIB_PATH to a libonnxruntime.so {ORT_VERSION} (e.g. from `pip install onnxruntime=={ORT_VERSION}`: \
         site-packages/onnxruntime/capi/libonnxruntime.so.{ORT_VERSION}), or allow `python3 -m pip download` to reach PyPI"
    )
}

/// Loads ONNX Runtime once per process. Every later call returns the same
/// outcome, so a broken library is reported with one clear line.
pub fn init() -> Result<&'static Path> {
    environment().map(|(p, _)| p.as_path())
}

pub(crate) fn environment() -> Result<(&'static PathBuf, &'static ort::environment::Environment)> {
    let outcome = INIT.get_or_init(|| {
        let path = library_path()?;
        let builder = ort::init_from(&path).map_err(|e| {
            Error::internal(format!(
                "cannot load ONNX Runtime from {}: {e}; {}",
                path.display(),
                fix_hint()
            ))
        })?;
        // ONNX Runtime's own log lines go through tracing (target
        // `onnxruntime`), so `--log-format json` stays JSON. A failed run is
        // returned to hone, which reports it, so ORT's copy is only debug.
        let logger: ort::logging::LoggerFunction =
            std::sync::Arc::new(|level, category, _id, location, message| {
                use ort::logging::LogLevel;
                match level {
                    LogLevel::Fatal => {
                        tracing::error!(target: "onnxruntime", category, location, "{message}")
                    }
                    LogLevel::Error | LogLevel::Warning => {
                        tracing::debug!(target: "onnxruntime", category, location, "{message}")
                    }
                    LogLevel::Info | LogLevel::Verbose => {
                        tracing::trace!(target: "onnxruntime", category, location, "{message}")
                    }
                }
            });
        let env = builder
            .with_name("hone")
            .with_logger(logger)
            .build()
            .map_err(|e| {
                Error::internal(format!(
                    "cannot start ONNX Runtime from {}: {e}; {}",
                    path.display(),
                    fix_hint()
                ))
            })?;
        // ort keeps only a weak reference to the environment; it lives in this
        // static for the life of the process.
        Ok((path, env))
    });
    match outcome {
        Ok((p, env)) => Ok((p, env)),
        Err(e) => Err(e.clone()),
    }
}

/// The cache root. No world-writable fallback (such as /tmp) when HOME is
/// unset: another user could plant a library there.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("HONE_CACHE_DIR") {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(d).join("hone"));
    }
    match std::env::var_os("HOME") {
        Some(h) if !h.is_empty() => Ok(PathBuf::from(h).join(".cache").join("hone")),
        _ => Err(Error::internal(format!(
            "no private directory to cache ONNX Runtime in: HOME, XDG_CACHE_HOME and HONE_CACHE_DIR are all unset; set one of them, or {}",
            fix_hint()
        ))),
    }
}

/// The library file to load, fetching it first if needed.
pub fn library_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(Error::internal(format!(
                "ORT_DYLIB_PATH={} does not name a file; {}",
                p.display(),
                fix_hint()
            )));
        }
        return Ok(p);
    }
    let root = cache_dir()?;
    let dir = root.join(format!("onnxruntime-{ORT_VERSION}"));
    let lib = dir.join(format!("libonnxruntime.so.{ORT_VERSION}"));
    if lib.is_file() {
        private(&[&root, &dir, &lib])?;
        match sha256_file(&lib) {
            Ok(h) if h == LIB_SHA256 => return Ok(lib),
            Ok(h) => tracing::warn!(
                "{} has sha256 {h}, not the pinned {LIB_SHA256}: fetching it again",
                lib.display()
            ),
            Err(e) => tracing::warn!("{e}: fetching it again"),
        }
    }
    fetch(&root, &dir, &lib).map_err(|e| {
        Error::internal(format!(
            "ONNX Runtime {ORT_VERSION} is not cached at {} and fetching it failed: {e}; {}",
            lib.display(),
            fix_hint()
        ))
    })?;
    private(&[&root, &dir, &lib])?;
    Ok(lib)
}

fn sha256_file(path: &Path) -> std::result::Result<String, FetchError> {
    let bytes = std::fs::read(path).map_err(step(format_args!("read {}", path.display())))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// This process's effective user id (from procfs: no libc call needed).
fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Refuses paths another user could write to or replace: each must be
/// owned by this user (or root) and not writable by group or others.
fn private(paths: &[&Path]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let me = euid();
    for p in paths {
        let m = std::fs::symlink_metadata(p)
            .map_err(|e| Error::internal(format!("cannot inspect {}: {e}", p.display())))?;
        let owner_ok = m.uid() == 0 || Some(m.uid()) == me;
        if !owner_ok || m.mode() & 0o022 != 0 || m.file_type().is_symlink() {
            return Err(Error::internal(format!(
                "refusing to load ONNX Runtime from {}: it must be a directory or file owned by this user and not writable by group or others (mode {:o}, owner {}); fix its permissions, point HONE_CACHE_DIR at a private directory, or {}",
                p.display(),
                m.mode() & 0o7777,
                m.uid(),
                fix_hint()
            )));
        }
    }
    Ok(())
}

fn fetch(root: &Path, dir: &Path, lib: &Path) -> std::result::Result<(), FetchError> {
    // Created private (0700); an existing directory keeps its mode and is
    // checked by `private` before anything from it loads.
    for d in [root, dir] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(d)
            .map_err(step(format_args!("create {}", d.display())))?;
    }
    let tmp = dir.join(format!("download-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    tracing::info!("fetching ONNX Runtime {ORT_VERSION} from PyPI (one time, ~24 MB)");
    let python = std::env::var("HONE_PYTHON").unwrap_or_else(|_| "python3".into());
    // The platform flags pin the exact wheel whatever the local interpreter is.
    let out = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
        ])
        .args([
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--abi",
            "cp311",
        ])
        .args(["--platform", "manylinux_2_28_x86_64", "-d"])
        .arg(&tmp)
        .arg(format!("onnxruntime=={ORT_VERSION}"))
        .output()
        .map_err(step(format_args!("cannot run `{python} -m pip`")))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(FetchError::Mismatch(format!(
            "pip download failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let result = extract(&tmp.join(WHEEL_FILE), lib);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn extract(wheel: &Path, lib: &Path) -> std::result::Result<(), FetchError> {
    let bytes = std::fs::read(wheel).map_err(step(format_args!("read {}", wheel.display())))?;
    let digest = Sha256::digest(&bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    if hex != WHEEL_SHA256 {
        return Err(FetchError::Mismatch(format!(
            "{WHEEL_FILE} has sha256 {hex}, expected {WHEEL_SHA256}; refusing to use it"
        )));
    }
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(step(format_args!("{WHEEL_FILE} is not a zip")))?;
    let mut member = archive
        .by_name(WHEEL_MEMBER)
        .map_err(step(format_args!("{WHEEL_FILE} lacks {WHEEL_MEMBER}")))?;
    let mut data = Vec::with_capacity(member.size() as usize);
    member
        .read_to_end(&mut data)
        .map_err(step(format_args!("unzip {WHEEL_MEMBER}")))?;
    let hex: String = Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if hex != LIB_SHA256 {
        return Err(FetchError::Mismatch(format!(
            "{WHEEL_MEMBER} has sha256 {hex}, expected {LIB_SHA256}; refusing to use it"
        )));
    }
    // Write then rename so a concurrent or interrupted fetch never leaves a
    // half-written library where the next run would load it.
    let part = lib.with_extension(format!("part{}", std::process::id()));
    std::fs::write(&part, &data).map_err(step(format_args!("write {}", part.display())))?;
    std::fs::rename(&part, lib).map_err(step(format_args!("rename to {}", lib.display())))?;
    Ok(())
}
