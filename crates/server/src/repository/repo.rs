//! The repository itself: its root directory, the registry of what each
//! model became, and the engine loader; opening it loads every model.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hone_core::{Error, Result};

use super::loader;
use super::registry::{ModelEntry, Registry};
use crate::engine::EngineLoader;

pub struct Repository {
    pub(super) root: PathBuf,
    pub(super) models: Registry,
    /// Serialises loads and unloads so two of them never race on one model.
    pub(super) changing: Mutex<()>,
    pub(super) engines: Arc<dyn EngineLoader>,
}

impl Repository {
    /// Scans `root` and loads every model it finds, in parallel. A model that
    /// fails is recorded with its reason; the others still serve.
    pub fn open(root: &Path, engines: Arc<dyn EngineLoader>) -> Result<Self> {
        let repo = Self::empty(root, engines)?;
        repo.load_all();
        Ok(repo)
    }

    /// A repository on `root` with nothing loaded yet (the server answers
    /// on its ports, not ready, while [`Repository::load_all`] runs).
    pub fn empty(root: &Path, engines: Arc<dyn EngineLoader>) -> Result<Self> {
        model_dirs(root)
            .map_err(|e| Error::invalid(format!("model repository {}: {e}", root.display())))?;
        Ok(Self {
            root: root.to_path_buf(),
            models: Registry::default(),
            changing: Mutex::new(()),
            engines,
        })
    }

    /// Loads every model directory, in parallel threads. Load and unload
    /// requests that arrive meanwhile wait for it.
    pub fn load_all(&self) {
        let _one_at_a_time = self.changing.lock();
        let root = &self.root;
        // An unreadable root serves nothing and says why; the next poll or
        // load tries again.
        let mut names = model_dirs(root).unwrap_or_else(|e| {
            tracing::error!("cannot list the model repository {}: {e}", root.display());
            Vec::new()
        });
        names.sort();
        let engines_ref = &self.engines;
        let loaded: Vec<(String, ModelEntry)> = std::thread::scope(|s| {
            let handles: Vec<_> = names
                .iter()
                .map(|name| {
                    let dir = root.join(name);
                    s.spawn(move || {
                        (
                            name.clone(),
                            loader::build_entry(name, &dir, None, engines_ref),
                        )
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        for (name, entry) in loaded {
            let _ = self.models.replace(&name, Some(entry));
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The registry: lookups, readiness, the index and metrics.
    pub fn models(&self) -> &Registry {
        &self.models
    }

    pub(super) fn model_dir(&self, name: &str) -> Result<PathBuf> {
        // The name comes from a URL: it must stay inside the repository.
        if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\', '\0']) {
            return Err(Error::invalid(format!("invalid model name '{name}'")));
        }
        Ok(self.root.join(name))
    }
}

/// The model directories under `root` (hidden ones, such as staging
/// directories, left out).
pub(super) fn model_dirs(root: &Path) -> std::io::Result<Vec<String>> {
    Ok(std::fs::read_dir(root)?
        .filter_map(|d| d.ok())
        .filter(|d| d.path().is_dir())
        .filter_map(|d| d.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect())
}
