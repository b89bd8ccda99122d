//! A fake engine for registry, reload and shutdown tests: no ONNX Runtime.
//! A model file holds `scale=K` (the engine multiplies its input by K;
//! `scale=K;sleep_ms=N` also takes N ms per call) or
//! `fail` (loading fails). Every engine shares one gate that tests can close
//! to hold calls inside the engine.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use hone_core::{Backend, DataType, Error, ModelMetadata, Result, Tensor, TensorData, TensorSpec};
use hone_runtime::SessionConfig;
use hone_server::grpc::proto;
use hone_server::{EngineLoader, Server, ServerOptions};

#[derive(Default)]
pub struct FakeLoader {
    /// Engine instances built so far.
    pub loads: AtomicUsize,
    /// Engine calls entered so far.
    pub calls: Arc<AtomicUsize>,
    /// While set, loading fails (a restart that cannot get its engine back).
    pub refuse_loads: std::sync::atomic::AtomicBool,
    /// While closed, loading waits (a repository that takes long to load).
    load_gate: Arc<(Mutex<bool>, Condvar)>,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl FakeLoader {
    /// Engine calls wait inside the engine until [`FakeLoader::open`].
    pub fn close(&self) {
        *self.gate.0.lock().unwrap() = true;
    }

    pub fn open(&self) {
        *self.gate.0.lock().unwrap() = false;
        self.gate.1.notify_all();
    }

    /// Loads wait until [`FakeLoader::release_loads`].
    pub fn hold_loads(&self) {
        *self.load_gate.0.lock().unwrap() = true;
    }

    pub fn release_loads(&self) {
        *self.load_gate.0.lock().unwrap() = false;
        self.load_gate.1.notify_all();
    }
}

struct FakeEngine {
    meta: ModelMetadata,
    scale: f32,
    sleep: std::time::Duration,
    calls: Arc<AtomicUsize>,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl EngineLoader for FakeLoader {
    fn load(&self, path: &Path, _cfg: &SessionConfig) -> Result<Box<dyn Backend>> {
        let (held, cv) = &*self.load_gate;
        let mut g = held.lock().unwrap();
        while *g {
            g = cv.wait(g).unwrap();
        }
        drop(g);
        if self.refuse_loads.load(Ordering::SeqCst) {
            return Err(Error::internal("fake engine: loads refused"));
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::invalid(e.to_string()))?;
        let (text, sleep_ms) = match text.trim().split_once(";sleep_ms=") {
            Some((a, b)) => (a.to_string(), b.trim().parse::<u64>().unwrap_or(0)),
            None => (text.clone(), 0),
        };
        let scale: f32 = text
            .trim()
            .strip_prefix("scale=")
            .and_then(|s| s.parse().ok())
            // Like ONNX Runtime's, the message quotes the absolute path.
            .ok_or_else(|| {
                Error::invalid(format!(
                    "fake engine cannot load {}: {text:?}",
                    path.display()
                ))
            })?;
        self.loads.fetch_add(1, Ordering::SeqCst);
        let spec = |name: &str| TensorSpec {
            name: name.into(),
            dtype: DataType::F32,
            dims: vec![-1, 2],
        };
        Ok(Box::new(FakeEngine {
            meta: ModelMetadata {
                inputs: vec![spec("x")],
                outputs: vec![spec("y")],
            },
            scale,
            sleep: std::time::Duration::from_millis(sleep_ms),
            calls: self.calls.clone(),
            gate: self.gate.clone(),
        }))
    }
}

impl Backend for FakeEngine {
    fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }

    fn infer(&mut self, batch: &[&[Tensor]]) -> Result<Vec<Tensor>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let (closed, cv) = &*self.gate;
        let mut g = closed.lock().unwrap();
        while *g {
            g = cv.wait(g).unwrap();
        }
        drop(g);
        std::thread::sleep(self.sleep);
        let mut out = Vec::new();
        // The injected fault: an input starting with 13 crashes the engine.
        if let Some(TensorData::Raw(b)) = batch.first().and_then(|r| r.first()).map(|t| &t.data)
            && b.get(..4) == Some(&13f32.to_le_bytes()[..])
        {
            panic!("injected engine fault");
        }
        let mut rows = 0;
        for req in batch {
            let t = &req[0];
            rows += t.batch();
            let TensorData::Raw(b) = &t.data else {
                return Err(Error::invalid("fake engine: f32 only"));
            };
            out.extend(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()) * self.scale),
            );
        }
        Ok(vec![Tensor::from_f32(vec![rows as i64, 2], &out)?])
    }
}

/// Writes version `v` of model `name` holding `content`, with `config`.
pub fn write_model(root: &Path, name: &str, v: u32, content: &str, config: &str) {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join(v.to_string())).unwrap();
    std::fs::write(dir.join(v.to_string()).join("model.onnx"), content).unwrap();
    std::fs::write(dir.join("config.pbtxt"), config).unwrap();
}

/// One engine instance, as most tests want.
pub const ONE_INSTANCE: &str = "instance_group [{ count: 1 kind: KIND_CPU }]\n";

/// A server on a fresh repository `hone-<tag>-<pid>` holding model `m`
/// version 1 (`content`, one instance, plus `config`); `adjust` may write
/// more files into the repository and change the options.
pub async fn fake_server(
    tag: &str,
    content: &str,
    config: &str,
    adjust: impl FnOnce(&Path, ServerOptions) -> ServerOptions,
) -> (Server, Arc<FakeLoader>, PathBuf) {
    let dir = std::env::temp_dir().join(format!("hone-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    write_model(&dir, "m", 1, content, &format!("{ONE_INSTANCE}{config}"));
    let opts = adjust(&dir, ServerOptions::ephemeral(&dir));
    let loader = Arc::new(FakeLoader::default());
    let server = Server::start_with(opts, loader.clone()).await.unwrap();
    (server, loader, dir)
}

/// A gRPC inference request for model `m` with input x = [[1, 2]].
pub fn grpc_request_x() -> proto::ModelInferRequest {
    proto::ModelInferRequest {
        model_name: "m".into(),
        inputs: vec![proto::model_infer_request::InferInputTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape: vec![1, 2],
            ..Default::default()
        }],
        raw_input_contents: vec![
            [1f32, 2.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>()
                .into(),
        ],
        ..Default::default()
    }
}
