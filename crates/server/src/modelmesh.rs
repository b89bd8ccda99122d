//! KServe ModelMesh's model runtime API (`mmesh.ModelRuntime`, on
//! `--modelmesh-port`, loopback only): ModelMesh places a model on this pod
//! with `loadModel`, hone links the files its puller fetched into the
//! model repository and loads them; inference then arrives on the V2 gRPC
//! port, the model named by ModelMesh's id (injected into the request's
//! model name, or in the `mm-model-id` header). Capacity, sizes and
//! eviction across the cluster are ModelMesh's.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tonic::{Request, Response, Status};

use crate::proto::mmesh::model_runtime_server::ModelRuntime;
use crate::proto::mmesh::runtime_status_response::{MethodInfo, Status as RuntimeState};
use crate::proto::mmesh::*;
use crate::repository::Repository;

pub use crate::proto::mmesh::model_runtime_server::ModelRuntimeServer;

/// The metadata header ModelMesh names the model in.
pub const MODEL_ID_HEADER: &str = "mm-model-id";

/// Loads may take this long before ModelMesh gives up on them.
const LOAD_TIMEOUT_MS: u32 = 120_000;
/// ModelMesh's guess for a model it has not sized yet.
const DEFAULT_MODEL_BYTES: u64 = 64 << 20;

pub struct MeshRuntime {
    repo: Arc<Repository>,
    /// Bytes ModelMesh may place here.
    capacity: u64,
    /// Models asked for and not unloaded since: a load ModelMesh cancelled
    /// (and unloaded) before it began must not leave the model loaded.
    wanted: Arc<Mutex<HashSet<String>>>,
    /// One load or unload at a time, in the order they reach it.
    ops: Arc<Mutex<()>>,
}

impl MeshRuntime {
    pub fn new(repo: Arc<Repository>, capacity: u64) -> Self {
        Self {
            repo,
            capacity,
            wanted: Arc::default(),
            ops: Arc::default(),
        }
    }

    /// Runs `f` on a blocking thread, one operation at a time.
    async fn serially<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Repository, &Mutex<HashSet<String>>) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let (repo, wanted, ops) = (self.repo.clone(), self.wanted.clone(), self.ops.clone());
        tokio::task::spawn_blocking(move || {
            let _one_at_a_time = ops
                .lock()
                .map_err(|_| Status::internal("runtime lock poisoned"))?;
            f(&repo, &wanted)
        })
        .await
        .map_err(|e| Status::internal(format!("model loader stopped: {e}")))?
    }
}

/// A model id names a directory of the repository: it must stay inside.
fn check_id(id: &str) -> Result<(), Status> {
    if id.is_empty() || id.starts_with('.') || id.contains(['/', '\\', '\0']) {
        return Err(Status::invalid_argument(format!(
            "modelId '{id}' cannot name a model directory"
        )));
    }
    Ok(())
}

/// The pulled files at `path` (the path itself), checked to exist.
fn source(path: &str, id: &str) -> Result<PathBuf, Status> {
    let p = PathBuf::from(path);
    std::fs::canonicalize(&p).map_err(|e| {
        Status::invalid_argument(format!(
            "modelPath '{path}' of model '{id}' cannot be read: {e}"
        ))
    })
}

/// Makes `root/id` serve what ModelMesh pulled to `src`: a Triton-style
/// model directory (config or numbered versions) as it is; otherwise a
/// directory holding one `.onnx` file (external data beside it), or that
/// file, as version 1.
fn link(root: &Path, id: &str, src: &Path) -> std::io::Result<()> {
    let dir = root.join(id);
    remove(&dir)?;
    let versioned = src.is_dir()
        && (src.join("config.pbtxt").is_file()
            || std::fs::read_dir(src)?.filter_map(|e| e.ok()).any(|e| {
                e.path().is_dir() && e.file_name().to_string_lossy().parse::<u64>().is_ok()
            }));
    if versioned {
        return std::os::unix::fs::symlink(src, &dir);
    }
    let (folder, file) = if src.is_file() {
        let parent = src.parent().unwrap_or(Path::new("/")).to_path_buf();
        let name = src.file_name().map(|n| n.to_string_lossy().into_owned());
        (parent, name.unwrap_or_default())
    } else {
        let mut onnx: Vec<String> = std::fs::read_dir(src)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".onnx"))
            .collect();
        onnx.sort();
        match onnx.as_slice() {
            [one] => (src.to_path_buf(), one.clone()),
            [] => {
                return Err(std::io::Error::other(format!(
                    "{} holds no .onnx file (hone serves ONNX; convert other formats with `hone import`)",
                    src.display()
                )));
            }
            many => {
                return Err(std::io::Error::other(format!(
                    "{} holds {} .onnx files and no config.pbtxt saying which to serve",
                    src.display(),
                    many.len()
                )));
            }
        }
    };
    std::fs::create_dir_all(&dir)?;
    std::os::unix::fs::symlink(&folder, dir.join("1"))?;
    if file != "model.onnx" {
        // The config names the file; a quoted string in pbtxt escapes `"`.
        let quoted = file.replace('\\', "\\\\").replace('"', "\\\"");
        std::fs::write(
            dir.join("config.pbtxt"),
            format!("default_model_filename: \"{quoted}\"\n"),
        )?;
    }
    Ok(())
}

/// Removes a model directory hone made (a link, or a directory of links).
fn remove(dir: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(dir),
        Ok(_) => std::fs::remove_file(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Bytes of the files under `p`, at any depth.
fn files_bytes(p: &Path) -> u64 {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => std::fs::read_dir(p).map_or(0, |d| {
            d.filter_map(|e| e.ok())
                .map(|e| files_bytes(&e.path()))
                .sum()
        }),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// Takes a model out of the repository and off the disk.
fn drop_model(repo: &Repository, id: &str) -> Result<(), Status> {
    repo.forget(id)
        .map_err(|e| Status::internal(format!("unloading '{id}': {e}")))?;
    remove(&repo.root().join(id))
        .map_err(|e| Status::internal(format!("removing '{id}' from the repository: {e}")))
}

#[tonic::async_trait]
impl ModelRuntime for MeshRuntime {
    async fn load_model(
        &self,
        r: Request<LoadModelRequest>,
    ) -> Result<Response<LoadModelResponse>, Status> {
        let r = r.into_inner();
        let id = r.model_id;
        check_id(&id)?;
        let src = source(&r.model_path, &id)?;
        if let Ok(mut w) = self.wanted.lock() {
            w.insert(id.clone());
        }
        let bytes = self
            .serially(move |repo, wanted| {
                if !wanted.lock().is_ok_and(|w| w.contains(&id)) {
                    return Err(Status::cancelled(format!(
                        "model '{id}' was unloaded before its load began"
                    )));
                }
                // Nothing is loaded yet: INVALID_ARGUMENT tells ModelMesh
                // no space was used.
                link(repo.root(), &id, &src)
                    .map_err(|e| Status::invalid_argument(format!("model '{id}': {e}")))?;
                if let Err(e) = repo.load(&id) {
                    let _ = drop_model(repo, &id);
                    return Err(Status::internal(e.message));
                }
                tracing::info!(model = id.as_str(), "loaded for ModelMesh");
                Ok(repo.memory().footprint(&id).map_or(0, |f| f.bytes()))
            })
            .await?;
        Ok(Response::new(LoadModelResponse {
            size_in_bytes: bytes,
            max_concurrency: 0,
        }))
    }

    async fn unload_model(
        &self,
        r: Request<UnloadModelRequest>,
    ) -> Result<Response<UnloadModelResponse>, Status> {
        let id = r.into_inner().model_id;
        check_id(&id)?;
        if let Ok(mut w) = self.wanted.lock() {
            w.remove(&id);
        }
        self.serially(move |repo, _| {
            drop_model(repo, &id)?;
            tracing::info!(model = id.as_str(), "unloaded for ModelMesh");
            Ok(())
        })
        .await?;
        Ok(Response::new(UnloadModelResponse {}))
    }

    /// Conservative and immediate: the files, once per engine instance
    /// hone would start for a file that size.
    async fn predict_model_size(
        &self,
        r: Request<PredictModelSizeRequest>,
    ) -> Result<Response<PredictModelSizeResponse>, Status> {
        let r = r.into_inner();
        let files = files_bytes(Path::new(&r.model_path));
        let instances = hone_runtime::sizing::default_instances(files);
        Ok(Response::new(PredictModelSizeResponse {
            size_in_bytes: files.saturating_mul(u64::from(instances)),
        }))
    }

    async fn model_size(
        &self,
        r: Request<ModelSizeRequest>,
    ) -> Result<Response<ModelSizeResponse>, Status> {
        let id = r.into_inner().model_id;
        let f = self
            .repo
            .memory()
            .footprint(&id)
            .filter(|f| f.resident)
            .ok_or_else(|| Status::not_found(format!("model '{id}' is not loaded")))?;
        Ok(Response::new(ModelSizeResponse {
            size_in_bytes: f.bytes(),
        }))
    }

    /// Called as ModelMesh starts: whatever is loaded is purged first (it
    /// would be a restarted mesh's, not placed by this one).
    async fn runtime_status(
        &self,
        _: Request<RuntimeStatusRequest>,
    ) -> Result<Response<RuntimeStatusResponse>, Status> {
        if let Ok(mut w) = self.wanted.lock() {
            w.clear();
        }
        self.serially(|repo, _| {
            let names: Vec<String> = repo.models().versions().into_iter().map(|v| v.0).collect();
            let mut on_disk: Vec<String> = std::fs::read_dir(repo.root())
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| !n.starts_with('.'))
                        .collect()
                })
                .unwrap_or_default();
            on_disk.extend(names);
            on_disk.sort();
            on_disk.dedup();
            for id in on_disk {
                drop_model(repo, &id)?;
            }
            Ok(())
        })
        .await?;
        // ModelMesh writes the model id into these fields (field 1: the
        // model name of each message), so requests arrive named by it.
        let inject = |m: &str| {
            (
                format!("inference.GRPCInferenceService/{m}"),
                MethodInfo {
                    id_injection_path: vec![1],
                },
            )
        };
        Ok(Response::new(RuntimeStatusResponse {
            status: RuntimeState::Ready as i32,
            capacity_in_bytes: self.capacity,
            max_loading_concurrency: 1,
            model_loading_timeout_ms: LOAD_TIMEOUT_MS,
            default_model_size_in_bytes: DEFAULT_MODEL_BYTES,
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            numeric_runtime_version: 0,
            method_infos: ["ModelInfer", "ModelMetadata", "ModelReady"]
                .into_iter()
                .map(inject)
                .collect(),
            limit_model_concurrency: false,
            allow_any_method: false,
        }))
    }
}
