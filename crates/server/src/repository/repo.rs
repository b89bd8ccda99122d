//! The repository itself: its root directory, the registry of what each
//! model became, and the engine loader; opening it loads every model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hone_core::{Error, Result};
use tokio::sync::watch;

use super::loader;
use super::memory::Residency;
use super::registry::{Dormant, ModelEntry, Registry};
use super::stamp::DirStamp;
use crate::engine::EngineLoader;

/// A load on demand in progress: its result, once there is one.
pub(super) type Flight = watch::Receiver<Option<Result<()>>>;

pub struct Repository {
    pub(super) root: PathBuf,
    pub(super) models: Registry,
    /// Serialises loads and unloads so two of them never race on one model.
    pub(super) changing: Mutex<()>,
    pub(super) engines: Arc<dyn EngineLoader>,
    /// The memory budget and every model's footprint.
    pub(super) memory: Residency,
    /// Loads on demand in progress, by model: requests for one model
    /// share its load.
    pub(super) flights: Mutex<HashMap<String, Flight>>,
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
            memory: Residency::default(),
            flights: Mutex::default(),
        })
    }

    /// Keeps the loaded models within `bytes` (`--model-memory-budget`):
    /// models then load on their first request, pinned ones at start, and
    /// the least recently used idle model is unloaded to make room. Set
    /// before [`Repository::load_all`].
    pub fn with_memory_budget(mut self, bytes: Option<u64>) -> Self {
        self.memory = Residency::new(bytes);
        self
    }

    /// The budget and every model's footprint.
    pub fn memory(&self) -> &Residency {
        &self.memory
    }

    /// Triton's repository index, each row with what its model takes in
    /// memory and whether it is resident.
    pub fn index(&self, ready_only: bool) -> Vec<super::IndexEntry> {
        let sizes = self.memory.snapshot();
        let mut rows = self.models.index(ready_only);
        for r in &mut rows {
            if let Some(f) = sizes.get(&r.name) {
                r.memory_bytes = Some(f.bytes());
                r.resident = Some(f.resident);
            }
        }
        rows
    }

    /// The Prometheus text of every version's statistics, then of the
    /// models' memory.
    pub fn render_metrics(&self) -> String {
        let mut text = self.models.render_metrics();
        self.memory.render(&mut text);
        text
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
        if self.memory.limit.is_some() {
            // Under a budget only pinned models load now, one at a time so
            // each load is measured alone; the rest wait for a request.
            for name in &names {
                let dir = root.join(name);
                let pinned = self.size_up(name, &dir).is_ok_and(|s| s.pinned);
                let entry = if pinned {
                    self.load_within_budget(name, &dir, None)
                } else {
                    ModelEntry::dormant(DirStamp::read(&dir), Dormant::NotYetLoaded)
                };
                let _ = self.models.replace(name, Some(entry));
            }
            return;
        }
        let engines_ref = &self.engines;
        let loaded: Vec<(String, ModelEntry, std::time::Duration)> = std::thread::scope(|s| {
            let handles: Vec<_> = names
                .iter()
                .map(|name| {
                    let dir = root.join(name);
                    s.spawn(move || {
                        let began = std::time::Instant::now();
                        let entry = loader::build_entry(name, &dir, None, engines_ref);
                        (name.clone(), entry, began.elapsed())
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        for (name, entry, took) in loaded {
            // Loaded side by side: no one load's heap can be told apart.
            if let Ok(s) = loader::sizing(&name, &root.join(&name)) {
                self.memory.sized(&name, s.on_disk, s.estimated, s.pinned);
            }
            let resident = !entry.ready().is_empty();
            self.memory.loaded(&name, None, took, resident);
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
