//! The loader: one model directory's files → its config → the versions its
//! policy selects → engine instances → a running scheduler per version.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use hone_core::{Backend, Error, Result};

use super::registry::{ModelEntry, Previous, VersionState};
use super::stamp::DirStamp;
use crate::config::{ModelConfig, VersionPolicy};
use crate::engine::EngineLoader;
use crate::metrics::ModelStats;
use crate::model::{LoadedModel, Runner};
use crate::scheduler::{BatchPolicy, Scheduler};

/// Builds the registry entry of a model directory. With `previous`, ready
/// versions whose config and files have not changed are reused as they are.
pub fn build_entry(
    name: &str,
    dir: &Path,
    previous: Option<&Previous>,
    engines: &Arc<dyn EngineLoader>,
) -> ModelEntry {
    let stamp = DirStamp::read(dir);
    let fail = |reason: String| {
        let reason = redact(&reason, dir, name);
        tracing::error!(model = name, "model failed to load: {reason}");
        ModelEntry {
            versions: BTreeMap::new(),
            error: Some(reason),
            unloaded: false,
            stamp: stamp.clone(),
            dormant: None,
        }
    };
    let config = match read_config(name, dir) {
        Ok(c) => c,
        Err(e) => return fail(e.message),
    };
    let selected = match selected_versions(&config, dir) {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot list {name}/: {e}")),
    };
    if selected.is_empty() {
        return fail(format!(
            "no version directory (e.g. {name}/1/{}) matches the version policy",
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
            let state = match start_version(name, v, &path, config.clone(), engines) {
                Ok(m) => {
                    tracing::info!(model = name, version = v, "ready");
                    VersionState::Ready(Arc::new(m))
                }
                Err(e) => {
                    let reason = redact(&e.message, dir, name);
                    tracing::error!(model = name, version = v, "failed to load: {reason}");
                    VersionState::Unavailable(reason)
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
        dormant: None,
    }
}

/// What a model's files say about its memory, before it loads.
pub struct Sizing {
    /// Bytes of the selected versions' files.
    pub on_disk: u64,
    /// Those files once, or once per engine instance when the instances do
    /// not share their weights (see `ModelConfig::shares_weights`).
    pub estimated: u64,
    /// The config's `pinned` parameter.
    pub pinned: bool,
}

/// Reads a model directory's config and sizes the versions its policy
/// selects.
pub fn sizing(name: &str, dir: &Path) -> Result<Sizing> {
    let config = read_config(name, dir)?;
    let pinned = match config.parameters.get("pinned").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            return Err(Error::invalid(format!(
                "config parameter pinned is '{v}': give \"true\" or \"false\""
            )));
        }
    };
    let (mut on_disk, mut estimated) = (0u64, 0u64);
    for v in selected_versions(&config, dir).unwrap_or_default() {
        let vdir = dir.join(v.to_string());
        let files = dir_bytes(&vdir);
        let instances = match config.instance_count {
            0 => {
                let model = std::fs::metadata(vdir.join(&config.default_model_filename))
                    .map_or(0, |m| m.len());
                hone_runtime::sizing::default_instances(model)
            }
            n => n,
        };
        let copies = match config.shares_weights(instances) {
            Ok(false) => u64::from(instances.max(1)),
            _ => 1,
        };
        on_disk += files;
        estimated += files.saturating_mul(copies);
    }
    Ok(Sizing {
        on_disk,
        estimated,
        pinned,
    })
}

/// Bytes of the files under `dir`, at any depth (external data may sit in
/// a subdirectory).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The version numbers under `dir` that the config's policy selects.
fn selected_versions(config: &ModelConfig, dir: &Path) -> std::io::Result<Vec<i64>> {
    let mut found: Vec<i64> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str()?.parse::<i64>().ok())
        .filter(|v| *v > 0)
        .collect();
    found.sort_unstable();
    Ok(match &config.version_policy {
        VersionPolicy::Latest(n) => found
            .iter()
            .rev()
            .take((*n).max(1) as usize)
            .rev()
            .copied()
            .collect(),
        VersionPolicy::All => found,
        VersionPolicy::Specific(v) => found.into_iter().filter(|f| v.contains(f)).collect(),
    })
}

/// Reasons reach clients (the repository index, 503 bodies): they name
/// files relative to the repository, never by the server's absolute path,
/// even when ONNX Runtime's own message quotes it.
fn redact(reason: &str, dir: &Path, name: &str) -> String {
    let abs = dir.display().to_string();
    if abs.is_empty() {
        return reason.to_string();
    }
    reason.replace(&abs, name)
}

/// The model's `config.pbtxt`, or the default config when it has none.
fn read_config(name: &str, dir: &Path) -> Result<ModelConfig> {
    let cfg_path = dir.join("config.pbtxt");
    if !cfg_path.is_file() {
        return Ok(ModelConfig::default());
    }
    let text = std::fs::read_to_string(&cfg_path)
        .map_err(|e| Error::invalid(format!("cannot read {name}/config.pbtxt: {e}")))?;
    let (c, warnings) = ModelConfig::parse(&text)?;
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
    Ok(c)
}

/// A model file of another framework in a version directory: (its name,
/// the framework), for an error that points at `hone import`.
fn foreign_model(dir: &Path) -> Option<(String, &'static str)> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    names.sort();
    names.into_iter().find_map(|(n, p)| {
        let ext = n.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        let framework = match ext.as_deref() {
            _ if p.join("saved_model.pb").is_file() => "TensorFlow SavedModel",
            Some("keras" | "h5" | "hdf5") => "Keras",
            Some("skops" | "joblib" | "pkl" | "pickle") => "scikit-learn",
            Some("ubj") => "XGBoost",
            Some("json") if n.contains("xgb") || n == "model.json" => "XGBoost",
            Some("cbm") => "CatBoost",
            Some("pt" | "pth" | "pt2") => "PyTorch",
            Some("txt") if starts_with(&p, b"tree") => "LightGBM",
            _ => return None,
        };
        Some((n, framework))
    })
}

fn starts_with(p: &Path, magic: &[u8]) -> bool {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(p)
        .and_then(|f| f.take(magic.len() as u64).read_to_end(&mut head))
        .is_ok()
        && head == magic
}

/// Loads one version's engines and starts its scheduler.
fn start_version(
    name: &str,
    version: i64,
    path: &Path,
    mut config: ModelConfig,
    engines: &Arc<dyn EngineLoader>,
) -> Result<LoadedModel> {
    let kind = Kind::of(&config)?;
    if let Kind::Ensemble(e) = &kind {
        return start_ensemble(name, version, path, e.clone(), config);
    }
    if matches!(kind, Kind::Onnx) && !path.is_file() {
        if let Some((file, framework)) = path.parent().and_then(foreign_model) {
            return Err(Error::invalid(format!(
                "{name}/{version}/{file} is a {framework} model and hone serves ONNX: convert it once with `hone import {name}/{version}/{file} -o {name}/{version}/{}` (checked against {framework} on the way)",
                config.default_model_filename
            )));
        }
        return Err(Error::invalid(format!(
            "{name}/{version}/{} does not exist",
            config.default_model_filename
        )));
    }
    if config.instance_count == 0 {
        let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
        config.instance_count = hone_runtime::sizing::default_instances(bytes);
    }
    let session_cfg = config.session_config()?;
    let instances = config.instance_count.max(1) as usize;
    // One way to make an instance, used again when one crashes.
    let rebuild: crate::scheduler::Rebuild = match kind {
        Kind::Step(step) => {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            let params = config.parameters.clone();
            Arc::new(move || hone_steps::load(step, &dir, &params))
        }
        _ => {
            let (engines, path, cfg) = (engines.clone(), path.to_path_buf(), session_cfg.clone());
            Arc::new(move || engines.load(&path, &cfg))
        }
    };
    // Instances share one copy of the weights where the engine allows it
    // and the config asks for it (see ModelConfig::shares_weights).
    let share = config.shares_weights(config.instance_count)?;
    let first = rebuild()?;
    let mut backends: Vec<Box<dyn Backend>> = Vec::with_capacity(instances);
    for _ in 1..instances {
        backends.push(match first.share().filter(|_| share) {
            Some(b) => b,
            None => rebuild()?,
        });
    }
    backends.insert(0, first);
    let metadata = backends
        .first()
        .map(|b| b.metadata().clone())
        .ok_or_else(|| Error::internal("no engine instance"))?;
    config.complete(name, &metadata)?;
    let input_specs = config.input_specs(&metadata);
    let limits = config.element_limits(&input_specs)?;
    let policy = match &config.dynamic_batching {
        Some(d) => BatchPolicy {
            max_batch_size: config.max_batch_size() as usize,
            max_batch_elements: limits.per_batch,
            dynamic: true,
            preferred: d.preferred_batch_size.iter().map(|&p| p as usize).collect(),
            max_delay: std::time::Duration::from_micros(d.max_queue_delay_us),
            max_queue: d.effective_queue_size() as usize,
        },
        None => BatchPolicy {
            max_batch_size: config.max_batch_size() as usize,
            max_batch_elements: limits.per_batch,
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
        rebuild,
    );
    let drift = drift(path, &config, name, version);
    let truth = crate::feedback::Truth::load(path, &metadata)
        .unwrap_or_else(|e| {
            tracing::warn!(model = name, version, "feedback off: {e}");
            None
        })
        .map(Arc::new);
    let tabular = crate::tabular::Tabular::load(path, &metadata).unwrap_or_else(|e| {
        tracing::warn!(model = name, version, "features by name off: {e}");
        None
    });
    let class_labels = class_labels(path, &config)?;
    let unseen = config.parameters.get("unseen_category").map(String::as_str);
    let tabular = tabular.map(|t| t.unseen(unseen)).transpose()?;
    let split = crate::split::Split::from_parameters(&config.parameters)?.map(Arc::new);
    Ok(LoadedModel {
        last_used: crate::model::LastUsed::now(),
        split,
        truth,
        tabular,
        class_labels,
        name: name.to_string(),
        version: version.to_string(),
        config,
        metadata,
        input_specs,
        limits,
        stats,
        drift,
        runner: Runner::Engine(scheduler),
    })
}

/// The labels files the config's outputs name (`label_filename`), read
/// from the model's directory, one label per line.
fn class_labels(path: &Path, config: &ModelConfig) -> Result<BTreeMap<String, Vec<String>>> {
    let dir = path
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    config
        .label_files
        .iter()
        .map(|(output, file)| {
            let text = std::fs::read_to_string(dir.join(file)).map_err(|e| {
                Error::invalid(format!(
                    "output '{output}': cannot read its label_filename {file}: {e}"
                ))
            })?;
            let labels = text.lines().map(|l| l.trim_end().to_string()).collect();
            Ok((output.clone(), labels))
        })
        .collect()
}

/// Live drift against the profile or card beside `path`. A broken profile
/// costs the model its drift series, not its serving.
fn drift(
    path: &Path,
    config: &ModelConfig,
    name: &str,
    version: i64,
) -> Option<Arc<crate::drift::DriftMonitor>> {
    crate::drift::DriftMonitor::for_model(path, &config.parameters, &format!("{name}:{version}"))
        .unwrap_or_else(|e| {
            tracing::warn!(model = name, version, "drift monitoring off: {e}");
            None
        })
}

/// What a version directory holds, as its config says.
enum Kind {
    Onnx,
    Step(hone_steps::Kind),
    Ensemble(crate::config::EnsembleConfig),
}

impl Kind {
    fn of(config: &ModelConfig) -> Result<Self> {
        if let Some(e) = &config.ensemble {
            return Ok(Kind::Ensemble(e.clone()));
        }
        match config.backend.as_str() {
            "onnxruntime" | "" => Ok(Kind::Onnx),
            b => hone_steps::Kind::from_backend(b)
                .map(Kind::Step)
                .ok_or_else(|| Error::invalid(format!("backend '{b}' is not served by hone"))),
        }
    }
}

/// An ensemble version: its signature is its config's; it runs its steps'
/// models, so it has no engine and no files.
fn start_ensemble(
    name: &str,
    version: i64,
    path: &Path,
    ensemble: crate::config::EnsembleConfig,
    mut config: ModelConfig,
) -> Result<LoadedModel> {
    if let Some(s) = ensemble.steps.iter().find(|s| s.model_name == name) {
        return Err(Error::invalid(format!(
            "ensemble_scheduling: step '{}' runs the ensemble itself",
            s.model_name
        )));
    }
    let class_labels = class_labels(path, &config)?;
    let mbs = config.max_batch_size.unwrap_or(0);
    config.max_batch_size = Some(mbs);
    let spec = |t: &crate::config::IoConfig| hone_core::TensorSpec {
        name: t.name.clone(),
        dtype: t.dtype,
        dims: if mbs > 0 {
            std::iter::once(-1).chain(t.dims.iter().copied()).collect()
        } else {
            t.dims.clone()
        },
    };
    let metadata = hone_core::ModelMetadata {
        inputs: config.inputs.iter().map(spec).collect(),
        outputs: config.outputs.iter().map(spec).collect(),
    };
    config.complete(name, &metadata)?;
    let input_specs = config.input_specs(&metadata);
    let limits = config.element_limits(&input_specs)?;
    let split = crate::split::Split::from_parameters(&config.parameters)?.map(Arc::new);
    // Its own inputs and outputs, against a profile or card in its version
    // directory, as for any model.
    let drift = drift(path, &config, name, version);
    let runner = Runner::Composite(Box::new(crate::ensemble::Ensemble::new(
        &ensemble, &metadata,
    )));
    Ok(LoadedModel {
        last_used: crate::model::LastUsed::now(),
        split,
        truth: None,
        tabular: None,
        class_labels,
        name: name.to_string(),
        version: version.to_string(),
        config,
        metadata,
        input_specs,
        limits,
        stats: Arc::new(ModelStats::default()),
        drift,
        runner,
    })
}
