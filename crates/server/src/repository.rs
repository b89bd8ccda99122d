//! The model repository: Triton's `<repo>/<model>/<version>/model.onnx`
//! layout, loaded into ready-to-serve model versions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use hone_core::{Backend, Error, ModelMetadata, Result, Tensor, TensorSpec};
use hone_runtime::OrtBackend;

use crate::config::{ModelConfig, VersionPolicy};
use crate::metrics::{FailReason, MetricSource, ModelStats};
use crate::scheduler::{BatchPolicy, Scheduler};

/// A loaded, serving model version.
pub struct LoadedModel {
    pub name: String,
    pub version: String,
    pub config: ModelConfig,
    pub metadata: ModelMetadata,
    /// What requests must match, per input in model order.
    pub input_specs: Vec<TensorSpec>,
    pub stats: Arc<ModelStats>,
    scheduler: Scheduler,
}

/// A request input before validation: name, dtype, shape and payload.
pub type NamedTensor = (String, Tensor);

impl LoadedModel {
    /// Checks names, dtypes and shapes against the model and returns the
    /// tensors in model input order.
    pub fn prepare(&self, inputs: Vec<NamedTensor>) -> Result<Vec<Tensor>> {
        let mut slots: Vec<Option<Tensor>> = vec![None; self.input_specs.len()];
        for (name, t) in inputs {
            let Some(i) = self.input_specs.iter().position(|s| s.name == name) else {
                let names: Vec<&str> = self.input_specs.iter().map(|s| s.name.as_str()).collect();
                return Err(Error::invalid(format!(
                    "unexpected input '{name}' for model '{}' (inputs: {names:?})",
                    self.name
                )));
            };
            if slots[i].is_some() {
                return Err(Error::invalid(format!(
                    "input '{name}' given more than once"
                )));
            }
            let spec = &self.input_specs[i];
            let shape_fits = t.shape.len() == spec.dims.len()
                && t.shape
                    .iter()
                    .zip(&spec.dims)
                    .all(|(&got, &want)| want < 0 || got == want);
            if t.dtype != spec.dtype || !shape_fits {
                return Err(Error::invalid(format!(
                    "input '{name}': expected {} {:?}, received {} {:?}",
                    spec.dtype, spec.dims, t.dtype, t.shape
                )));
            }
            let mbs = self.config.max_batch_size() as i64;
            if mbs > 0 {
                let b = t.shape.first().copied().unwrap_or(0);
                if b < 1 || b > mbs {
                    return Err(Error::invalid(format!(
                        "input '{name}': batch size {b} is outside 1..={mbs} (max_batch_size)"
                    )));
                }
            }
            slots[i] = Some(t);
        }
        let mut out = Vec::with_capacity(slots.len());
        for (slot, spec) in slots.into_iter().zip(&self.input_specs) {
            out.push(slot.ok_or_else(|| Error::invalid(format!("missing input '{}'", spec.name)))?);
        }
        if self.config.max_batch_size() > 0
            && out.iter().any(|t| t.shape.first() != out[0].shape.first())
        {
            return Err(Error::invalid(
                "all inputs must have the same batch size (dim 0)",
            ));
        }
        Ok(out)
    }

    /// Validates, queues and runs one request; failures are counted.
    pub async fn infer(&self, inputs: Vec<NamedTensor>) -> Result<Vec<Tensor>> {
        let start = Instant::now();
        let prepared = match self.prepare(inputs) {
            Ok(p) => p,
            Err(e) => {
                self.stats.fail(FailReason::Invalid, start.elapsed());
                return Err(e);
            }
        };
        match self.scheduler.infer(prepared).await {
            Ok(out) => {
                self.stats.succeed(start.elapsed());
                Ok(out)
            }
            Err(e) => {
                // Queue-full rejections are counted by the scheduler.
                if e.kind != hone_core::ErrorKind::Unavailable {
                    self.stats.fail(FailReason::Backend, start.elapsed());
                }
                Err(e)
            }
        }
    }

    pub fn output_spec(&self, name: &str) -> Option<&TensorSpec> {
        self.metadata.outputs.iter().find(|o| o.name == name)
    }
}

/// One version directory and what became of it.
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
}

/// A cheap fingerprint of a model directory: the config text and, per
/// version directory, the model file's size and modification time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DirStamp {
    config: Option<String>,
    files: Vec<(i64, Option<(u64, SystemTime)>)>,
}

impl DirStamp {
    fn read(dir: &Path) -> DirStamp {
        let config = std::fs::read_to_string(dir.join("config.pbtxt")).ok();
        // The file name can be changed by the config; stamping every file in
        // the version directory covers that without parsing.
        let mut files: Vec<(i64, Option<(u64, SystemTime)>)> = Vec::new();
        if let Ok(d) = std::fs::read_dir(dir) {
            for e in d.filter_map(|e| e.ok()) {
                let Some(v) = e.file_name().to_str().and_then(|n| n.parse::<i64>().ok()) else {
                    continue;
                };
                if v <= 0 || !e.path().is_dir() {
                    continue;
                }
                let mut newest: Option<(u64, SystemTime)> = None;
                if let Ok(inner) = std::fs::read_dir(e.path()) {
                    for f in inner.filter_map(|f| f.ok()) {
                        if let Ok(m) = f.metadata() {
                            let t = m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                            let (len, at) = newest.unwrap_or((0, SystemTime::UNIX_EPOCH));
                            newest = Some((len + m.len(), at.max(t)));
                        }
                    }
                }
                files.push((v, newest));
            }
        }
        files.sort_by_key(|f| f.0);
        DirStamp { config, files }
    }

    fn version(&self, v: i64) -> Option<(u64, SystemTime)> {
        self.files.iter().find(|f| f.0 == v).and_then(|f| f.1)
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
}

pub struct Repository {
    root: PathBuf,
    models: RwLock<BTreeMap<String, ModelEntry>>,
    /// Serialises loads and unloads so two of them never race on one model.
    changing: Mutex<()>,
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

/// What a load, unload or poll did to one model.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Loaded { name: String, versions: Vec<String> },
    Unloaded { name: String },
}

impl Repository {
    /// Scans `root` and loads every model it finds, in parallel. A model that
    /// fails is recorded with its reason; the others still serve.
    pub fn load(root: &Path) -> Result<Self> {
        let dirs = std::fs::read_dir(root)
            .map_err(|e| Error::invalid(format!("model repository {}: {e}", root.display())))?;
        let mut names: Vec<(String, PathBuf)> = dirs
            .filter_map(|d| d.ok())
            .filter(|d| d.path().is_dir())
            .filter_map(|d| Some((d.file_name().into_string().ok()?, d.path())))
            .filter(|(n, _)| !n.starts_with('.'))
            .collect();
        names.sort();
        let loaded: Vec<(String, ModelEntry)> = std::thread::scope(|s| {
            let handles: Vec<_> = names
                .iter()
                .map(|(name, dir)| s.spawn(move || (name.clone(), load_model(name, dir, None))))
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        Ok(Self {
            root: root.to_path_buf(),
            models: RwLock::new(loaded.into_iter().collect()),
            changing: Mutex::new(()),
        })
    }

    /// Loads a model, or reloads it from what its directory now holds
    /// (Triton's repository `load`). Versions whose files and config are
    /// unchanged keep serving without a pause; a new version is loaded beside
    /// the old ones and swapped in only once ready, so requests never see a
    /// gap. Fails, naming the reasons, when the model or any selected version
    /// failed to load; versions that did load still serve.
    pub fn load_model(&self, name: &str) -> Result<Change> {
        let dir = self.model_dir(name)?;
        if !dir.is_dir() {
            return Err(Error::not_found(format!(
                "no model directory {} in the repository",
                dir.display()
            )));
        }
        let _one_at_a_time = self
            .changing
            .lock()
            .map_err(|_| Error::internal("repository lock poisoned"))?;
        let previous = self.ready_of(name);
        let mut entry = load_model(name, &dir, Some(&previous));
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
        let ready = |e: &ModelEntry| {
            e.versions
                .iter()
                .filter(|(_, s)| matches!(s, VersionState::Ready(_)))
                .map(|(v, _)| v.to_string())
                .collect::<Vec<_>>()
        };
        // A reload never takes a serving model out of service: when nothing
        // new is ready (a broken config, a corrupt new version under a
        // `latest 1` policy), what served goes on serving beside the failure.
        if ready(&entry).is_empty() && !previous.0.is_empty() {
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
            if let Some(f) = &mut failure {
                f.push_str(&format!("; version(s) {} keep serving", kept.join(", ")));
            }
        }
        let versions = ready(&entry);
        let old = self.replace(name, Some(entry))?;
        // Dropping the old entry drains and joins its schedulers: outside the lock.
        drop(old);
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
    pub fn unload_model(&self, name: &str) -> Result<Change> {
        self.model_dir(name)?;
        let _one_at_a_time = self
            .changing
            .lock()
            .map_err(|_| Error::internal("repository lock poisoned"))?;
        let stamp = {
            let models = self
                .models
                .read()
                .map_err(|_| Error::internal("repository lock poisoned"))?;
            let e = models
                .get(name)
                .ok_or_else(|| Error::not_found(format!("unknown model '{name}'")))?;
            e.stamp.clone()
        };
        let old = self.replace(
            name,
            Some(ModelEntry {
                versions: BTreeMap::new(),
                error: Some("unloaded".into()),
                unloaded: true,
                stamp,
            }),
        )?;
        drop(old);
        tracing::info!(model = name, "unloaded");
        Ok(Change::Unloaded {
            name: name.to_string(),
        })
    }

    /// One pass of repository polling: loads new model directories, reloads
    /// changed ones and unloads those that disappeared. Models unloaded
    /// through the API stay unloaded until their directory changes.
    pub fn poll(&self) -> Vec<Result<Change>> {
        let mut on_disk: Vec<String> = match std::fs::read_dir(&self.root) {
            Ok(d) => d
                .filter_map(|d| d.ok())
                .filter(|d| d.path().is_dir())
                .filter_map(|d| d.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect(),
            Err(e) => {
                tracing::warn!("repository poll: {}: {e}", self.root.display());
                return Vec::new();
            }
        };
        on_disk.sort();
        let known: BTreeMap<String, DirStamp> = match self.models.read() {
            Ok(m) => m
                .iter()
                .map(|(n, e)| (n.clone(), e.stamp.clone()))
                .collect(),
            Err(_) => return Vec::new(),
        };
        let mut changes = Vec::new();
        for name in &on_disk {
            let changed = known
                .get(name)
                .is_none_or(|stamp| *stamp != DirStamp::read(&self.root.join(name)));
            if changed {
                changes.push(self.load_model(name));
            }
        }
        for name in known.keys().filter(|n| !on_disk.contains(n)) {
            let gone = match self.changing.lock() {
                Ok(_one_at_a_time) => self.replace(name, None).ok().flatten(),
                Err(_) => None,
            };
            if gone.is_some() {
                tracing::info!(model = name.as_str(), "directory removed: unloaded");
                changes.push(Ok(Change::Unloaded { name: name.clone() }));
            }
        }
        changes
    }

    fn model_dir(&self, name: &str) -> Result<PathBuf> {
        // The name comes from a URL: it must stay inside the repository.
        if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\', '\0']) {
            return Err(Error::invalid(format!("invalid model name '{name}'")));
        }
        Ok(self.root.join(name))
    }

    /// The ready versions of a model and the stamp they were loaded from.
    fn ready_of(&self, name: &str) -> (BTreeMap<i64, Arc<LoadedModel>>, DirStamp) {
        let Ok(models) = self.models.read() else {
            return Default::default();
        };
        models.get(name).map_or_else(Default::default, |e| {
            let ready = e
                .versions
                .iter()
                .filter_map(|(v, s)| match s {
                    VersionState::Ready(m) => Some((*v, m.clone())),
                    VersionState::Unavailable(_) => None,
                })
                .collect();
            (ready, e.stamp.clone())
        })
    }

    /// Puts `entry` in place of the model's entry (or removes it) and hands
    /// back the old one for the caller to drop.
    fn replace(&self, name: &str, entry: Option<ModelEntry>) -> Result<Option<ModelEntry>> {
        let mut models = self
            .models
            .write()
            .map_err(|_| Error::internal("repository lock poisoned"))?;
        Ok(match entry {
            Some(e) => models.insert(name.to_string(), e),
            None => models.remove(name),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The model version to serve: the one asked for, or the newest ready one.
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<LoadedModel>> {
        let models = self
            .models
            .read()
            .map_err(|_| Error::internal("repository lock poisoned"))?;
        let entry = models
            .get(name)
            .ok_or_else(|| Error::not_found(format!("unknown model '{name}'")))?;
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

    /// Ready version numbers of a model, newest last.
    pub fn ready_versions(&self, name: &str) -> Vec<String> {
        let Ok(models) = self.models.read() else {
            return Vec::new();
        };
        models.get(name).map_or_else(Vec::new, |e| {
            e.versions
                .iter()
                .filter(|(_, s)| matches!(s, VersionState::Ready(_)))
                .map(|(v, _)| v.to_string())
                .collect()
        })
    }

    pub fn all_ready(&self) -> bool {
        let Ok(models) = self.models.read() else {
            return false;
        };
        models.values().filter(|e| !e.unloaded).all(|e| {
            e.versions
                .values()
                .any(|s| matches!(s, VersionState::Ready(_)))
        })
    }

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
            if let Some(err) = &e.error {
                if !ready_only {
                    out.push(IndexEntry {
                        name: name.clone(),
                        version: String::new(),
                        state: "UNAVAILABLE".into(),
                        reason: err.clone(),
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
                });
            }
        }
        out
    }

    pub fn render_metrics(&self) -> String {
        let Ok(models) = self.models.read() else {
            return String::new();
        };
        let versions: Vec<(String, String, Option<Arc<LoadedModel>>)> = models
            .iter()
            .flat_map(|(name, e)| {
                e.versions.iter().map(move |(v, s)| {
                    let m = match s {
                        VersionState::Ready(m) => Some(m.clone()),
                        VersionState::Unavailable(_) => None,
                    };
                    (name.clone(), v.to_string(), m)
                })
            })
            .collect();
        drop(models);
        let sources: Vec<MetricSource<'_>> = versions
            .iter()
            .map(|(n, v, m)| MetricSource {
                model: n,
                version: v,
                ready: m.is_some(),
                stats: m.as_ref().map(|m| &*m.stats),
            })
            .collect();
        crate::metrics::render(&sources)
    }

    /// Stops every scheduler after draining its queue.
    pub fn shutdown(&self) {
        if let Ok(mut models) = self.models.write() {
            models.clear();
        }
    }
}

/// Versions already serving, and the directory stamp they came from.
type Previous = (BTreeMap<i64, Arc<LoadedModel>>, DirStamp);

/// Loads a model directory. With `previous`, ready versions whose config and
/// files have not changed are reused as they are.
fn load_model(name: &str, dir: &Path, previous: Option<&Previous>) -> ModelEntry {
    let stamp = DirStamp::read(dir);
    let fail = |reason: String| {
        tracing::error!(model = name, "model failed to load: {reason}");
        ModelEntry {
            versions: BTreeMap::new(),
            error: Some(reason),
            unloaded: false,
            stamp: stamp.clone(),
        }
    };
    let cfg_path = dir.join("config.pbtxt");
    let config = if cfg_path.is_file() {
        let text = match std::fs::read_to_string(&cfg_path) {
            Ok(t) => t,
            Err(e) => return fail(format!("cannot read {}: {e}", cfg_path.display())),
        };
        match ModelConfig::parse(&text) {
            Ok((c, warnings)) => {
                for w in warnings {
                    tracing::warn!(model = name, "config.pbtxt: {w}");
                }
                if !c.name.is_empty() && c.name != name {
                    tracing::warn!(
                        model = name,
                        "config.pbtxt names the model '{}'; serving it as '{name}' (its directory)",
                        c.name
                    );
                }
                c
            }
            Err(e) => return fail(e.message),
        }
    } else {
        ModelConfig::default()
    };
    let mut found: Vec<i64> = match std::fs::read_dir(dir) {
        Ok(d) => d
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str()?.parse::<i64>().ok())
            .filter(|v| *v > 0)
            .collect(),
        Err(e) => return fail(format!("cannot list {}: {e}", dir.display())),
    };
    found.sort_unstable();
    let selected: Vec<i64> = match &config.version_policy {
        VersionPolicy::Latest(n) => found
            .iter()
            .rev()
            .take((*n).max(1) as usize)
            .rev()
            .copied()
            .collect(),
        VersionPolicy::All => found.clone(),
        VersionPolicy::Specific(v) => found.iter().filter(|f| v.contains(f)).copied().collect(),
    };
    if selected.is_empty() {
        return fail(format!(
            "no version directory (e.g. {}/1/{}) matches the version policy",
            dir.display(),
            config.default_model_filename
        ));
    }
    let versions = selected
        .into_iter()
        .map(|v| {
            if let Some((ready, old)) = previous
                && let Some(m) = ready.get(&v)
                && old.config == stamp.config
                && old.version(v).is_some()
                && old.version(v) == stamp.version(v)
            {
                return (v, VersionState::Ready(m.clone()));
            }
            let path = dir.join(v.to_string()).join(&config.default_model_filename);
            let state = match load_version(name, v, &path, config.clone()) {
                Ok(m) => {
                    tracing::info!(model = name, version = v, "ready");
                    VersionState::Ready(Arc::new(m))
                }
                Err(e) => {
                    tracing::error!(model = name, version = v, "failed to load: {e}");
                    VersionState::Unavailable(e.message)
                }
            };
            (v, state)
        })
        .collect();
    ModelEntry {
        versions,
        error: None,
        unloaded: false,
        stamp,
    }
}

fn load_version(
    name: &str,
    version: i64,
    path: &Path,
    mut config: ModelConfig,
) -> Result<LoadedModel> {
    if !path.is_file() {
        return Err(Error::invalid(format!("{} does not exist", path.display())));
    }
    if config.instance_count == 0 {
        let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
        config.instance_count = crate::config::default_instances(bytes);
    }
    let session_cfg = config.session_config()?;
    let instances = config.instance_count.max(1) as usize;
    let mut backends: Vec<Box<dyn Backend>> = Vec::with_capacity(instances);
    for _ in 0..instances {
        backends.push(Box::new(OrtBackend::load(path, &session_cfg)?));
    }
    let metadata = backends[0].metadata().clone();
    config.complete(name, &metadata)?;
    let input_specs = config.input_specs(&metadata);
    let policy = match &config.dynamic_batching {
        Some(d) => BatchPolicy {
            max_batch_size: config.max_batch_size() as usize,
            dynamic: true,
            preferred: d.preferred_batch_size.iter().map(|&p| p as usize).collect(),
            max_delay: std::time::Duration::from_micros(d.max_queue_delay_us),
            max_queue: d.effective_queue_size() as usize,
        },
        None => BatchPolicy {
            max_batch_size: config.max_batch_size() as usize,
            dynamic: false,
            max_queue: crate::config::DEFAULT_MAX_QUEUE_SIZE as usize,
            ..Default::default()
        },
    };
    let stats = Arc::new(ModelStats::default());
    let scheduler = Scheduler::start(
        &format!("{name}:{version}"),
        backends,
        policy,
        stats.clone(),
    );
    Ok(LoadedModel {
        name: name.to_string(),
        version: version.to_string(),
        config,
        metadata,
        input_specs,
        stats,
        scheduler,
    })
}
