//! Models in and out of memory under `--model-memory-budget`: room made
//! before a load by evicting the least recently used idle model, what a
//! load kept measured, and loads on demand, one per model however many
//! requests wait for it.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use hone_core::{Error, Result};
use tokio::sync::watch;

use super::loader::{self, Sizing};
use super::registry::{Dormant, ModelEntry, Previous, Registry};
use super::repo::Repository;
use super::stamp::DirStamp;

const MIB: f64 = (1 << 20) as f64;

/// The entry of a model that cannot fit even alone, `size` saying why.
fn too_big(dir: &Path, size: &str, limit: u64) -> ModelEntry {
    ModelEntry::failed(
        DirStamp::read(dir),
        format!(
            "{size}, more than the whole --model-memory-budget of {:.1} MiB: raise the budget, or lower its instance_group count",
            limit as f64 / MIB
        ),
    )
}

impl Repository {
    /// Reads what a model's files say it takes, and records it.
    pub(super) fn size_up(&self, name: &str, dir: &Path) -> Result<Sizing> {
        let s = loader::sizing(name, dir)?;
        self.memory.sized(name, s.on_disk, s.estimated, s.pinned);
        Ok(s)
    }

    /// Builds a model's entry: room made for it first (under a budget),
    /// and the heap its load kept measured. The caller holds `changing`,
    /// so no other load is counted with it.
    pub(super) fn load_within_budget(
        &self,
        name: &str,
        dir: &Path,
        previous: Option<&Previous>,
    ) -> ModelEntry {
        // A config the sizing cannot read fails the load itself, with the
        // same message.
        let _ = self.size_up(name, dir);
        let limit = self.memory.limit;
        if let Some(limit) = limit {
            let need = self.memory.need(name);
            if need > limit {
                let how = match self.memory.footprint(name) {
                    Some(f) if f.measured.is_some() => "as measured at its last load",
                    _ => "estimated from its files, once per engine instance",
                };
                let size = format!("it needs about {:.1} MiB loaded ({how})", need as f64 / MIB);
                return too_big(dir, &size, limit);
            }
            self.make_room(name, need, limit);
        }
        let before = hone_runtime::memory::heap_in_use();
        let began = Instant::now();
        let entry = loader::build_entry(name, dir, previous, &self.engines);
        // Session creation frees its working copies of the weights (the
        // parsed file, the unpacked tensors): past the budget's headroom
        // their pages go back, or RSS would hold them on top of the model.
        self.memory.settle();
        let ready = entry.ready();
        // Versions kept from before were not loaded now: the difference
        // would miss them, so the earlier measurement stands.
        let reused = previous.is_some_and(|(old, _)| {
            ready
                .values()
                .any(|m| old.values().any(|o| Arc::ptr_eq(m, o)))
        });
        let kept = match (before, hone_runtime::memory::heap_in_use()) {
            (Some(b), Some(a)) if !reused => Some(a.saturating_sub(b)),
            _ => None,
        };
        let resident = entry.error.is_none() && !ready.is_empty();
        drop(ready);
        self.memory.loaded(name, kept, began.elapsed(), resident);
        let Some(limit) = limit.filter(|_| resident) else {
            return entry;
        };
        let bytes = self.memory.footprint(name).map_or(0, |f| f.bytes());
        if bytes > limit {
            crate::scheduler::joined_here(|| drop(entry));
            self.memory.left(name, false);
            let size = format!("loaded, it takes {:.1} MiB", bytes as f64 / MIB);
            return too_big(dir, &size, limit);
        }
        // The estimate may have been low: what it really took decides.
        self.make_room(name, bytes, limit);
        entry
    }

    /// Evicts models until `need` more bytes fit beside the resident ones:
    /// idle before busy, least recently used first, never a pinned one.
    fn make_room(&self, name: &str, need: u64, limit: u64) {
        loop {
            let used = self.memory.resident_bytes(name);
            if used.saturating_add(need) <= limit {
                return;
            }
            let mut candidates: Vec<(String, u64, bool)> = self
                .models
                .residents()
                .into_iter()
                .filter(|(n, ..)| n != name)
                .filter(|(n, ..)| !self.memory.footprint(n).is_some_and(|f| f.pinned))
                .collect();
            candidates.sort_by_key(|(_, used, idle)| (!idle, *used));
            let Some((victim, ..)) = candidates.into_iter().next() else {
                tracing::warn!(
                    model = name,
                    "loading past --model-memory-budget: {:.1} MiB resident, every other model pinned",
                    used as f64 / MIB
                );
                return;
            };
            self.evict(&victim);
        }
    }

    /// Takes a model out of memory; its next request loads it again. A
    /// request that holds it finishes first.
    fn evict(&self, name: &str) {
        let stamp = self.models.stamp(name).unwrap_or_default();
        let entry = ModelEntry::dormant(stamp, Dormant::Evicted);
        if let Ok(old) = self.models.replace(name, Some(entry)) {
            crate::scheduler::joined_here_keeping_pages(|| drop(old));
        }
        self.memory.left(name, true);
        self.memory.settle();
        tracing::info!(model = name, "evicted to keep within --model-memory-budget");
    }

    /// Loads a model that is out of memory (blocking). Ok when it is in
    /// memory now, or was brought in by someone else meanwhile.
    fn bring_in(&self, name: &str) -> Result<()> {
        let dir = self.model_dir(name)?;
        let _one_at_a_time = self
            .changing
            .lock()
            .map_err(|_| Error::internal("repository lock poisoned"))?;
        if !self.models.is_dormant(name) {
            return Ok(());
        }
        let entry = self.load_within_budget(name, &dir, None);
        let failure = entry.error.clone();
        self.models.replace(name, Some(entry))?;
        match failure {
            Some(reason) => Err(Error::unavailable(format!(
                "model '{name}' failed to load: {reason}"
            ))),
            None => {
                tracing::info!(model = name, "loaded on request");
                Ok(())
            }
        }
    }

    /// Loads a model that is out of memory for a request, waiting at most
    /// until `until`. Every request that waits for one model shares its
    /// single load.
    pub async fn bring_in_for(self: &Arc<Self>, name: &str, until: Option<Instant>) -> Result<()> {
        let mut flight = {
            let mut flights = self
                .flights
                .lock()
                .map_err(|_| Error::internal("repository lock poisoned"))?;
            match flights.get(name) {
                Some(f) => f.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    flights.insert(name.to_string(), rx.clone());
                    let (repo, name) = (self.clone(), name.to_string());
                    tokio::task::spawn_blocking(move || {
                        let r = repo.bring_in(&name);
                        // Gone before the answer: a request that comes
                        // later finds the model in memory, or starts anew.
                        if let Ok(mut f) = repo.flights.lock() {
                            f.remove(&name);
                        }
                        let _ = tx.send(Some(r));
                    });
                    rx
                }
            }
        };
        let landed = async {
            match flight.wait_for(Option::is_some).await {
                Ok(r) => r.clone().unwrap_or(Ok(())),
                Err(_) => {
                    if let Ok(mut f) = self.flights.lock() {
                        f.remove(name);
                    }
                    Err(Error::internal(format!(
                        "the load of model '{name}' stopped"
                    )))
                }
            }
        };
        match until {
            Some(t) => tokio::time::timeout_at(t.into(), landed)
                .await
                .map_err(|_| {
                    Error::unavailable(format!(
                        "model '{name}' is still loading and the request's deadline passed"
                    ))
                })?,
            None => landed.await,
        }
    }

    /// Runs a registry lookup; when the model is out of memory under the
    /// budget, loads it (waiting at most until `until`) and looks again.
    pub async fn lookup<T>(
        self: &Arc<Self>,
        name: &str,
        until: Option<Instant>,
        f: impl Fn(&Registry) -> Result<T>,
    ) -> Result<T> {
        Ok(self.lookup_timed(name, until, f).await?.0)
    }

    /// As [`Repository::lookup`], with how long it waited for a load
    /// (None: the model was in memory).
    pub async fn lookup_timed<T>(
        self: &Arc<Self>,
        name: &str,
        until: Option<Instant>,
        f: impl Fn(&Registry) -> Result<T>,
    ) -> Result<(T, Option<std::time::Duration>)> {
        let mut waited = None;
        // Twice more at most: a model evicted again between its load and
        // the second look (a budget too small for the traffic) says so.
        for _ in 0..2 {
            match f(&self.models) {
                Err(_) if self.models.is_dormant(name) => {
                    let began = Instant::now();
                    self.bring_in_for(name, until).await?;
                    waited = Some(waited.unwrap_or_default() + began.elapsed());
                }
                r => return Ok((r?, waited)),
            }
        }
        Ok((f(&self.models)?, waited))
    }

    /// A model directory that changed, or appeared, while out of memory
    /// under the budget: stamped and sized again, still out of memory.
    /// False when it is in memory (or pinned): then it reloads.
    pub(super) fn restamp_dormant(&self, name: &str) -> Result<bool> {
        let dir = self.model_dir(name)?;
        let _one_at_a_time = self
            .changing
            .lock()
            .map_err(|_| Error::internal("repository lock poisoned"))?;
        let known = self.models.stamp(name).is_ok();
        if known && !self.models.is_dormant(name) {
            return Ok(false);
        }
        if self.size_up(name, &dir).is_ok_and(|s| s.pinned) {
            return Ok(false);
        }
        let why = match self.memory.footprint(name) {
            Some(f) if f.evictions > 0 => Dormant::Evicted,
            _ => Dormant::NotYetLoaded,
        };
        self.models
            .replace(name, Some(ModelEntry::dormant(DirStamp::read(&dir), why)))?;
        Ok(true)
    }
}

/// An ensemble's steps find their models here, loaded first when a
/// memory budget left them out.
impl crate::model::Models for Arc<Repository> {
    fn model<'a>(
        &'a self,
        name: &'a str,
        version: Option<&'a str>,
        until: Option<Instant>,
    ) -> futures_util::future::BoxFuture<'a, Result<Arc<crate::model::LoadedModel>>> {
        Box::pin(async move {
            let m = self
                .lookup(name, until, move |models| models.get(name, version))
                .await?;
            // A step model is used, as the model a client names is: under
            // a budget it must not look idle and be evicted first.
            if self.memory().limit.is_some() {
                m.last_used.touch();
            }
            Ok(m)
        })
    }
}

/// The models as they are, with no loading: for callers without the
/// repository's handle (tests, tools).
impl crate::model::Models for Registry {
    fn model<'a>(
        &'a self,
        name: &'a str,
        version: Option<&'a str>,
        _until: Option<Instant>,
    ) -> futures_util::future::BoxFuture<'a, Result<Arc<crate::model::LoadedModel>>> {
        Box::pin(std::future::ready(self.get(name, version)))
    }
}
