//! The registry of models: what each model directory became (ready versions,
//! failures, unloaded), and every read of it the front ends make (lookup,
//! readiness, index, metrics).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use hone_core::{Error, Result};

use super::stamp::DirStamp;
use crate::metrics::MetricSource;
use crate::model::LoadedModel;

/// One version directory and what became of it.
#[derive(Clone)]
pub enum VersionState {
    Ready(Arc<LoadedModel>),
    Unavailable(String),
}

pub struct ModelEntry {
    pub versions: BTreeMap<i64, VersionState>,
    /// Set when the model as a whole could not load (bad config, no versions),
    /// or was unloaded on request.
    pub error: Option<String>,
    /// Unloaded through the repository API: listed, but not counted against
    /// server readiness.
    pub unloaded: bool,
    /// What the model directory looked like when this entry was made; the
    /// poller reloads when it changes.
    pub stamp: DirStamp,
    /// Under a memory budget: not in memory, and why (not loaded yet,
    /// evicted); the next request loads it.
    pub dormant: Option<Dormant>,
}

/// Why a model that serves on demand is not in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dormant {
    NotYetLoaded,
    Evicted,
}

impl Dormant {
    pub fn reason(self) -> &'static str {
        match self {
            Dormant::NotYetLoaded => "not loaded yet: it loads on its first request",
            Dormant::Evicted => {
                "evicted to keep within --model-memory-budget: it loads on its next request"
            }
        }
    }
}

impl ModelEntry {
    /// A model that could not load as a whole, and why.
    pub fn failed(stamp: DirStamp, reason: String) -> Self {
        Self {
            versions: BTreeMap::new(),
            error: Some(reason),
            unloaded: false,
            stamp,
            dormant: None,
        }
    }

    /// A model known from its directory, loaded only when asked for.
    pub fn dormant(stamp: DirStamp, why: Dormant) -> Self {
        Self {
            versions: BTreeMap::new(),
            error: None,
            unloaded: false,
            stamp,
            dormant: Some(why),
        }
    }

    /// The ready versions, by number.
    pub fn ready(&self) -> BTreeMap<i64, Arc<LoadedModel>> {
        self.versions
            .iter()
            .filter_map(|(v, s)| match s {
                VersionState::Ready(m) => Some((*v, m.clone())),
                VersionState::Unavailable(_) => None,
            })
            .collect()
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct IndexEntry {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    pub state: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// What the model takes loaded (measured, else estimated), and whether
    /// it is in memory now: hone's addition to Triton's index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resident: Option<bool>,
}

/// Versions already serving, and the directory stamp they came from.
pub type Previous = (BTreeMap<i64, Arc<LoadedModel>>, DirStamp);

#[derive(Default)]
pub struct Registry {
    models: RwLock<BTreeMap<String, ModelEntry>>,
}

impl Registry {
    /// The model version to serve: the one asked for, or the newest ready one.
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<LoadedModel>> {
        let models = self
            .models
            .read()
            .map_err(|_| Error::internal("repository lock poisoned"))?;
        let entry = models
            .get(name)
            .ok_or_else(|| Error::not_found(format!("unknown model '{name}'")))?;
        if let Some(d) = entry.dormant {
            return Err(Error::unavailable(format!(
                "model '{name}' is {}",
                d.reason()
            )));
        }
        let state = match version {
            Some(v) if !v.is_empty() => {
                let n: i64 = v.parse().map_err(|_| {
                    Error::not_found(format!("model '{name}' has no version '{v}'"))
                })?;
                entry.versions.get(&n).ok_or_else(|| {
                    Error::not_found(format!("model '{name}' has no version '{v}'"))
                })?
            }
            _ => entry
                .versions
                .values()
                .rev()
                .find(|s| matches!(s, VersionState::Ready(_)))
                .or_else(|| entry.versions.values().next_back())
                .ok_or_else(|| {
                    Error::unavailable(format!(
                        "model '{name}' is not available: {}",
                        entry.error.as_deref().unwrap_or("no version loaded")
                    ))
                })?,
        };
        match state {
            VersionState::Ready(m) => Ok(m.clone()),
            VersionState::Unavailable(reason) => Err(Error::unavailable(format!(
                "model '{name}' is not available: {reason}"
            ))),
        }
    }

    /// The ready versions of a model by number (empty for an unknown one).
    pub fn ready(&self, name: &str) -> BTreeMap<i64, Arc<LoadedModel>> {
        self.models
            .read()
            .ok()
            .and_then(|m| m.get(name).map(ModelEntry::ready))
            .unwrap_or_default()
    }

    /// Ready version numbers of a model, newest last.
    pub fn ready_versions(&self, name: &str) -> Vec<String> {
        let Ok(models) = self.models.read() else {
            return Vec::new();
        };
        models
            .get(name)
            .map_or_else(Vec::new, |e| e.ready().keys().map(i64::to_string).collect())
    }

    /// Whether any model is known that was not unloaded on request.
    pub fn any_model(&self) -> bool {
        self.models
            .read()
            .is_ok_and(|m| m.values().any(|e| !e.unloaded))
    }

    /// Whether the model is known and out of memory until asked for.
    pub fn is_dormant(&self, name: &str) -> bool {
        self.models
            .read()
            .is_ok_and(|m| m.get(name).is_some_and(|e| e.dormant.is_some()))
    }

    /// Every model not unloaded on request has a ready version (one that
    /// loads on demand counts as ready: it serves when asked).
    pub fn all_ready(&self) -> bool {
        let Ok(models) = self.models.read() else {
            return false;
        };
        let mut counted = models
            .values()
            .filter(|e| !e.unloaded && e.dormant.is_none());
        counted.all(|e| {
            e.versions
                .values()
                .any(|s| matches!(s, VersionState::Ready(m) if m.healthy()))
        })
    }

    /// Every ready version of every model.
    pub fn loaded(&self) -> Vec<Arc<LoadedModel>> {
        let Ok(models) = self.models.read() else {
            return Vec::new();
        };
        models
            .values()
            .flat_map(|e| e.versions.values())
            .filter_map(|s| match s {
                VersionState::Ready(m) => Some(m.clone()),
                VersionState::Unavailable(_) => None,
            })
            .collect()
    }

    /// Triton's repository index: one row per version (or per model when it
    /// failed as a whole).
    pub fn index(&self, ready_only: bool) -> Vec<IndexEntry> {
        let Ok(models) = self.models.read() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, e) in models.iter() {
            let failed = e.error.as_deref().or(e.dormant.map(Dormant::reason));
            if let Some(err) = failed {
                if !ready_only {
                    out.push(IndexEntry {
                        name: name.clone(),
                        version: String::new(),
                        state: "UNAVAILABLE".into(),
                        reason: err.to_string(),
                        memory_bytes: None,
                        resident: None,
                    });
                }
                continue;
            }
            for (v, s) in &e.versions {
                let (state, reason) = match s {
                    VersionState::Ready(_) => ("READY", String::new()),
                    VersionState::Unavailable(r) => ("UNAVAILABLE", r.clone()),
                };
                if ready_only && state != "READY" {
                    continue;
                }
                out.push(IndexEntry {
                    name: name.clone(),
                    version: v.to_string(),
                    state: state.into(),
                    reason,
                    memory_bytes: None,
                    resident: None,
                });
            }
        }
        out
    }

    /// Every model and version with its loaded model, or why it has none
    /// (a model that failed as a whole has one entry with an empty version).
    pub fn versions(&self) -> Vec<(String, String, VersionState)> {
        let Ok(models) = self.models.read() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, e) in models.iter() {
            if e.versions.is_empty() {
                let why = e
                    .error
                    .as_deref()
                    .or(e.dormant.map(Dormant::reason))
                    .unwrap_or("no versions")
                    .to_string();
                out.push((name.clone(), String::new(), VersionState::Unavailable(why)));
            }
            for (v, s) in &e.versions {
                out.push((name.clone(), v.to_string(), s.clone()));
            }
        }
        out
    }

    /// The Prometheus text of every version's statistics.
    pub fn render_metrics(&self) -> String {
        let Ok(models) = self.models.read() else {
            return String::new();
        };
        let mut versions: Vec<(String, String, Option<Arc<LoadedModel>>)> = Vec::new();
        for (name, e) in models.iter() {
            // A model that failed as a whole (or was unloaded) has no
            // versions; it still gets a `hone_model_ready ... 0` series, with
            // an empty version label, so an alert on it can fire. One out of
            // memory under the budget is not failing: `hone_model_resident`
            // tells of it.
            if e.dormant.is_some() {
                continue;
            }
            if e.versions.is_empty() {
                versions.push((name.clone(), String::new(), None));
            }
            for (v, s) in &e.versions {
                let m = match s {
                    VersionState::Ready(m) => Some(m.clone()),
                    VersionState::Unavailable(_) => None,
                };
                versions.push((name.clone(), v.to_string(), m));
            }
        }
        drop(models);
        let sources: Vec<MetricSource<'_>> = versions
            .iter()
            .map(|(n, v, m)| MetricSource {
                model: n,
                version: v,
                ready: m.as_ref().is_some_and(|m| m.healthy()),
                stats: m.as_ref().map(|m| &*m.stats),
                drift: m.as_ref().and_then(|m| m.drift.as_deref()),
            })
            .collect();
        crate::metrics::render(&sources)
    }

    /// Models in memory, for eviction: name, when last used, and whether
    /// idle (no request holds any of its versions).
    pub(crate) fn residents(&self) -> Vec<(String, u64, bool)> {
        let Ok(models) = self.models.read() else {
            return Vec::new();
        };
        models
            .iter()
            .filter(|(_, e)| e.dormant.is_none() && !e.versions.is_empty())
            .map(|(name, e)| {
                let ready = e.ready();
                let used = ready.values().map(|m| m.last_used.get()).max();
                // The registry's own reference is the only one when idle.
                let idle = ready.values().all(|m| Arc::strong_count(m) <= 2);
                (name.clone(), used.unwrap_or(0), idle)
            })
            .collect()
    }

    /// The ready versions of a model and the stamp they were loaded from.
    pub(crate) fn previous(&self, name: &str) -> Previous {
        let Ok(models) = self.models.read() else {
            return Default::default();
        };
        models
            .get(name)
            .map_or_else(Default::default, |e| (e.ready(), e.stamp.clone()))
    }

    /// The stamp of every known model.
    pub(crate) fn stamps(&self) -> Option<BTreeMap<String, DirStamp>> {
        let m = self.models.read().ok()?;
        Some(
            m.iter()
                .map(|(n, e)| (n.clone(), e.stamp.clone()))
                .collect(),
        )
    }

    pub(crate) fn stamp(&self, name: &str) -> Result<DirStamp> {
        let models = self
            .models
            .read()
            .map_err(|_| Error::internal("repository lock poisoned"))?;
        let e = models
            .get(name)
            .ok_or_else(|| Error::not_found(format!("unknown model '{name}'")))?;
        Ok(e.stamp.clone())
    }

    /// Puts `entry` in place of the model's entry (or removes it) and hands
    /// back the old one for the caller to drop.
    pub(crate) fn replace(
        &self,
        name: &str,
        entry: Option<ModelEntry>,
    ) -> Result<Option<ModelEntry>> {
        let mut models = self
            .models
            .write()
            .map_err(|_| Error::internal("repository lock poisoned"))?;
        Ok(match entry {
            Some(e) => models.insert(name.to_string(), e),
            None => models.remove(name),
        })
    }

    /// Removes every model; dropping them drains and stops their schedulers.
    pub(crate) fn clear(&self) {
        let old = match self.models.write() {
            Ok(mut models) => std::mem::take(&mut *models),
            Err(_) => return,
        };
        drop(old);
    }
}
