//! Writing into a model repository atomically: the next version of a model
//! is built in a hidden staging directory inside the repository (the same
//! file system) and renamed into place, so a reader or a polling server never
//! sees half a version. Used by `ship` and by the optimize search.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{PipelineError, Result};

/// The next version number of a model: one past the largest numeric version
/// directory (1 for a new model).
pub fn next_version(model_dir: &Path) -> u64 {
    std::fs::read_dir(model_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
        + 1
}

/// Publishes `files` as the next version of `name` (built in a hidden staging directory inside the repository, on the same file system, then renamed into place); the
/// config is written only when the model has none.
pub fn publish_files(
    repo: &Path,
    name: &str,
    files: &[(&str, &[u8])],
    config: Option<&str>,
    cancel: &AtomicBool,
) -> Result<(u64, PathBuf)> {
    std::fs::create_dir_all(repo)
        .map_err(|e| PipelineError::Message(format!("cannot create {}: {e}", repo.display())))?;
    let model_dir = repo.join(name);
    let version = next_version(&model_dir);
    let staging = repo.join(format!(".hone-ship-{}-{}", name, std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let result = (|| -> Result<PathBuf> {
        let new_model = !model_dir.exists();
        let vdir = if new_model {
            let dir = staging_dir(&staging)?;
            if let Some(config) = config {
                std::fs::write(dir.join("config.pbtxt"), config)?;
            }
            staging.join(version.to_string())
        } else {
            staging.join("version")
        };
        std::fs::create_dir_all(&vdir)?;
        for (file, bytes) in files {
            std::fs::write(vdir.join(file), bytes)?;
        }
        if cancel.load(Ordering::Relaxed) {
            return Err(PipelineError::Message(
                "interrupted; the repository was not changed".into(),
            ));
        }
        let dest = model_dir.join(version.to_string());
        if new_model {
            std::fs::rename(&staging, &model_dir)?;
        } else {
            if let Some(config) = config
                && !model_dir.join("config.pbtxt").exists()
            {
                let tmp = staging.join("config.pbtxt");
                std::fs::write(&tmp, config)?;
                std::fs::rename(&tmp, model_dir.join("config.pbtxt"))?;
            }
            std::fs::rename(&vdir, &dest)?;
        }
        Ok(dest)
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result.map(|d| (version, d)).map_err(|e| {
        PipelineError::Message(format!(
            "cannot write the model into {}: {e}",
            repo.display()
        ))
    })
}

fn staging_dir(p: &Path) -> Result<&Path> {
    std::fs::create_dir_all(p)?;
    Ok(p)
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| PipelineError::Message(format!("cannot create {}: {e}", dir.display())))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            PipelineError::Message(format!("cannot write {}: {e}", path.display()))
        })
}
