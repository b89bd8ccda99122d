//! The Python a converter runs in: the user's own (`--python`), or a
//! virtual environment hone builds under its cache from hash-pinned lock
//! files, one package group at a time, on first use.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::ImportError;
use crate::format::Group;

/// The converter's scripts (the entry point first), written beside the
/// environment they run in.
const SCRIPTS: [(&str, &str); 3] = [
    ("hone_import.py", include_str!("../python/hone_import.py")),
    ("hone_formats.py", include_str!("../python/hone_formats.py")),
    ("hone_common.py", include_str!("../python/hone_common.py")),
];

/// An interpreter ready to run the converter.
#[derive(Debug, Clone)]
pub struct Python {
    pub interpreter: PathBuf,
    /// Where the converter script lies.
    pub script: PathBuf,
    /// Whether hone built this environment (and so keeps user site-packages out).
    pub managed: bool,
}

fn env_err(what: impl Into<String>) -> impl FnOnce(String) -> ImportError {
    let what = what.into();
    move |why| ImportError::Environment { what, why }
}

/// The directory of this build's environment: named by the hash of every
/// lock, so a new pin gets a new environment and a new hone with the same
/// pins reuses it.
pub fn managed_dir(cache: &Path) -> PathBuf {
    cache.join(format!(
        "python-{}",
        short_hash(Group::ALL.iter().map(|g| g.lock()))
    ))
}

fn short_hash<'a>(parts: impl Iterator<Item = &'a str>) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
    }
    h.finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The managed environment with `group` installed, built or completed
/// first if needed. pip's own progress goes to this process's stderr.
pub fn managed(cache: &Path, group: Group) -> Result<Python, ImportError> {
    let dir = managed_dir(cache);
    private_dir(cache)?;
    private_dir(&dir)?;
    // Two imports at once (tests, a CI matrix) build it once.
    let lock_path = dir.join(".lock");
    let lock = std::fs::File::create(&lock_path).map_err(ImportError::io("create", &lock_path))?;
    lock.lock().map_err(ImportError::io("lock", &lock_path))?;
    let venv = dir.join("venv");
    let interpreter = venv.join("bin/python");
    if !interpreter.is_file() {
        eprintln!(
            "building hone's Python environment for imports in {} (once)",
            venv.display()
        );
        let _ = std::fs::remove_dir_all(&venv);
        run(
            Command::new(host_python()).args(["-m", "venv"]).arg(&venv),
            "python3 -m venv",
        )?;
    }
    let stamp = dir.join(format!("{}.installed", group.name()));
    if !stamp.is_file() {
        let reqs = dir.join(format!("{}.txt", group.name()));
        std::fs::write(&reqs, group.lock()).map_err(ImportError::io("write", &reqs))?;
        eprintln!(
            "installing the {} converter's pinned packages (hash-checked) into {}",
            group.name(),
            venv.display()
        );
        run(
            Command::new(&interpreter)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--require-hashes",
                    "--no-deps",
                    "--only-binary",
                    ":all:",
                    "-r",
                ])
                .arg(&reqs)
                .env("PYTHONNOUSERSITE", "1"),
            &format!("pip install of the {} packages", group.name()),
        )?;
        std::fs::write(&stamp, b"").map_err(ImportError::io("write", &stamp))?;
    }
    let script = write_script(&dir)?;
    Ok(Python {
        interpreter,
        script,
        managed: true,
    })
}

/// The user's interpreter, checked to run, with the script beside hone's
/// cache (it needs numpy, onnx, onnxruntime and the format's framework).
pub fn user(python: &Path, cache: &Path) -> Result<Python, ImportError> {
    let out = Command::new(python)
        .args(["-c", "import numpy, onnx, onnxruntime"])
        .output()
        .map_err(|e| {
            env_err(format!("--python {}", python.display()))(format!("cannot run it: {e}"))
        })?;
    if !out.status.success() {
        return Err(env_err(format!("--python {}", python.display()))(format!(
            "it lacks numpy, onnx or onnxruntime, which the converter needs beside the model's framework: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )));
    }
    let dir = managed_dir(cache);
    private_dir(cache)?;
    private_dir(&dir)?;
    Ok(Python {
        interpreter: python.to_path_buf(),
        script: write_script(&dir)?,
        managed: false,
    })
}

/// Writes the converter's scripts into a directory named by their hash
/// (two hone builds sharing an environment never overwrite each other's)
/// and returns the entry point.
fn write_script(env: &Path) -> Result<PathBuf, ImportError> {
    let dir = env.join(format!(
        "scripts-{}",
        short_hash(SCRIPTS.iter().map(|(_, text)| *text))
    ));
    private_dir(&dir)?;
    for (name, text) in SCRIPTS {
        let p = dir.join(name);
        if std::fs::read(&p).ok().as_deref() != Some(text.as_bytes()) {
            let tmp = dir.join(format!(".{name}.{}", std::process::id()));
            std::fs::File::create(&tmp)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(ImportError::io("write", &tmp))?;
            std::fs::rename(&tmp, &p).map_err(ImportError::io("write", &p))?;
        }
    }
    Ok(dir.join(SCRIPTS[0].0))
}

/// `HONE_PYTHON3`, else `python3`: what builds the virtual environment.
fn host_python() -> PathBuf {
    std::env::var_os("HONE_PYTHON3")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"))
}

fn run(cmd: &mut Command, what: &str) -> Result<(), ImportError> {
    // pip's progress goes to stderr: stdout is hone's answer (--prepare
    // prints the interpreter there).
    let status = cmd
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status()
        .map_err(|e| env_err(what)(format!("cannot start it: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(env_err(what)(format!(
            "it failed ({status}); see its output above. Without network access to PyPI, point --python at an interpreter that has the converter's packages"
        )))
    }
}

/// Creates `dir` private (0700) or checks an existing one: the environment
/// runs code, so no other user may write to it.
fn private_dir(dir: &Path) -> Result<(), ImportError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(ImportError::io("create", dir))?;
    let m = std::fs::symlink_metadata(dir).map_err(ImportError::io("inspect", dir))?;
    if m.mode() & 0o022 != 0 || m.file_type().is_symlink() {
        return Err(env_err(dir.display().to_string())(format!(
            "it is writable by group or others (mode {:o}); hone runs code from it, so fix its permissions or set HONE_CACHE_DIR to a private directory",
            m.mode() & 0o7777
        )));
    }
    Ok(())
}
