//! The repository while serving: load (or reload) a model, unload it, poll
//! the directory for changes, and shut everything down, each without a gap
//! for the versions that keep serving.

use std::collections::BTreeMap;

use hone_core::{Error, Result};

use super::registry::{ModelEntry, VersionState};
use super::repo::{Repository, model_dirs};
use super::stamp::DirStamp;

/// What a load, unload or poll did to one model.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Loaded { name: String, versions: Vec<String> },
    Unloaded { name: String },
}

/// Refuses load/unload parameters that would change what gets loaded
/// (Triton's `config` and `file:` overrides) rather than ignore them; hone
/// loads from the repository directory only. Others (`unload_dependents`)
/// have nothing to act on and are accepted.
pub fn check_load_parameters<'a>(mut keys: impl Iterator<Item = &'a str>) -> Result<()> {
    match keys.find(|k| *k == "config" || k.starts_with("file:")) {
        Some(k) => Err(Error::invalid(format!(
            "parameter '{k}' is not supported: hone loads models from the repository directory only"
        ))),
        None => Ok(()),
    }
}

impl Repository {
    /// Loads a model, or reloads it from what its directory now holds
    /// (Triton's repository `load`). Versions whose files and config are
    /// unchanged keep serving without a pause; a new version is loaded beside
    /// the old ones and swapped in only once ready, so requests never see a
    /// gap. Fails, naming the reasons, when the model or any selected version
    /// failed to load; versions that did load still serve.
    pub fn load(&self, name: &str) -> Result<Change> {
        let dir = self.model_dir(name)?;
        if !dir.is_dir() {
            return Err(Error::not_found(format!(
                "no model directory '{name}' in the repository"
            )));
        }
        let _one_at_a_time = self
            .changing
            .lock()
            .map_err(|_| Error::internal("repository lock poisoned"))?;
        let previous = self.models.previous(name);
        let mut entry = self.load_within_budget(name, &dir, Some(&previous));
        let mut failure = entry.error.clone().or_else(|| {
            let bad: Vec<String> = entry
                .versions
                .iter()
                .filter_map(|(v, s)| match s {
                    VersionState::Unavailable(r) => Some(format!("version {v}: {r}")),
                    VersionState::Ready(_) => None,
                })
                .collect();
            (!bad.is_empty()).then(|| bad.join("; "))
        });
        // A reload never takes a serving model out of service: when nothing
        // new is ready (a broken config, a corrupt new version under a
        // `latest 1` policy), what served goes on serving beside the failure.
        if entry.ready().is_empty() && !previous.0.is_empty() {
            let kept: Vec<String> = previous.0.keys().map(i64::to_string).collect();
            tracing::warn!(
                model = name,
                "reload failed; version(s) {} keep serving",
                kept.join(", ")
            );
            entry.error = None;
            for (v, m) in previous.0 {
                entry.versions.insert(v, VersionState::Ready(m));
            }
            self.memory.stays(name);
            if let Some(f) = &mut failure {
                f.push_str(&format!("; version(s) {} keep serving", kept.join(", ")));
            }
        }
        let versions: Vec<String> = entry.ready().keys().map(i64::to_string).collect();
        let old = self.models.replace(name, Some(entry))?;
        // Dropping the old entry drains and joins its schedulers: outside the lock.
        crate::scheduler::joined_here(|| drop(old));
        match failure {
            Some(reason) => Err(Error::invalid(format!(
                "failed to load model '{name}': {reason}"
            ))),
            None => Ok(Change::Loaded {
                name: name.to_string(),
                versions,
            }),
        }
    }

    /// Stops serving a model (Triton's repository `unload`): queued requests
    /// finish, new ones get 503, and the index lists it as unloaded.
    pub fn unload(&self, name: &str) -> Result<Change> {
        self.model_dir(name)?;
        let _one_at_a_time = self
            .changing
            .lock()
            .map_err(|_| Error::internal("repository lock poisoned"))?;
        let stamp = self.models.stamp(name)?;
        let old = self.models.replace(
            name,
            Some(ModelEntry {
                versions: BTreeMap::new(),
                error: Some("unloaded".into()),
                unloaded: true,
                stamp,
                dormant: None,
            }),
        )?;
        crate::scheduler::joined_here(|| drop(old));
        self.memory.left(name, false);
        tracing::info!(model = name, "unloaded");
        Ok(Change::Unloaded {
            name: name.to_string(),
        })
    }

    /// Takes a model out of the registry altogether, as if its directory
    /// were gone (the caller removes it): queued requests finish first.
    pub fn forget(&self, name: &str) -> Result<()> {
        self.model_dir(name)?;
        let _one_at_a_time = self
            .changing
            .lock()
            .map_err(|_| Error::internal("repository lock poisoned"))?;
        let old = self.models.replace(name, None)?;
        crate::scheduler::joined_here(|| drop(old));
        self.memory.forget(name);
        Ok(())
    }

    /// One pass of repository polling: loads new model directories, reloads
    /// changed ones and unloads those that disappeared. Models unloaded
    /// through the API stay unloaded until their directory changes.
    pub fn poll(&self) -> Vec<Result<Change>> {
        let mut on_disk = match model_dirs(&self.root) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("repository poll: {}: {e}", self.root.display());
                return Vec::new();
            }
        };
        on_disk.sort();
        let Some(known) = self.models.stamps() else {
            return Vec::new();
        };
        let mut changes = Vec::new();
        for name in &on_disk {
            let changed = known
                .get(name)
                .is_none_or(|stamp| *stamp != DirStamp::read(&self.root.join(name)));
            if !changed {
                continue;
            }
            // Under a budget, a model out of memory stays out until asked for.
            let deferred =
                self.memory.limit.is_some() && self.restamp_dormant(name).unwrap_or(false);
            if !deferred {
                changes.push(self.load(name));
            }
        }
        for name in known.keys().filter(|n| !on_disk.contains(n)) {
            let gone = match self.changing.lock() {
                Ok(_one_at_a_time) => self.models.replace(name, None).ok().flatten(),
                Err(_) => None,
            };
            if gone.is_some() {
                crate::scheduler::joined_here(|| drop(gone));
                self.memory.forget(name);
                tracing::info!(model = name.as_str(), "directory removed: unloaded");
                changes.push(Ok(Change::Unloaded { name: name.clone() }));
            }
        }
        changes
    }

    /// Stops every scheduler after draining its queue.
    pub fn shutdown(&self) {
        crate::scheduler::joined_here(|| self.models.clear());
    }
}
