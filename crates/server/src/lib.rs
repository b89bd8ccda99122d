//! hone's model server: a Triton-style model repository served over KServe V2
//! REST and gRPC, with dynamic batching and Prometheus metrics.
//!
//! A request flows: protocol decode (`codec`/`grpc`) → model lookup
//! (`repository`) → validation → batcher queue (`scheduler`) → engine →
//! split → encode.

pub(crate) mod auth;
pub mod budget;
pub(crate) mod classify;
pub mod codec;
pub(crate) mod compress;
pub mod config;
pub(crate) mod dashboard;
pub(crate) mod drift;
pub(crate) mod engine;
pub(crate) mod ensemble;
pub(crate) mod error;
pub mod feedback;
pub mod grpc;
pub(crate) mod grpc_admin;
mod grpc_infer;
pub(crate) mod http;
pub(crate) mod http_infer;
mod http_transport;
mod infer;
pub(crate) mod keycheck;
pub mod listen;
pub(crate) mod metrics;
pub(crate) mod metrics_port;
pub(crate) mod model;
pub mod modelmesh;
pub mod observe;
mod offload;
pub(crate) mod pbtxt;
pub mod proto;
pub mod repository;
pub(crate) mod rest;
pub(crate) mod rollout;
pub(crate) mod scheduler;
pub(crate) mod shadow;
pub(crate) mod split;
pub(crate) mod state;
mod tabular;
pub(crate) mod tfserving;
pub(crate) mod tls;
pub(crate) mod traffic;
pub(crate) mod traffic_admin;
pub(crate) mod validate;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hone_core::{Error, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use auth::Keys;
pub use engine::{EngineLoader, OrtLoader};
pub use listen::HttpLimits;
pub use model::Models;
pub use repository::Repository;
pub use state::{EXTENSIONS, ModelControl, SERVER_NAME, ServerState};
pub use tls::TlsFiles;

#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub model_repository: PathBuf,
    pub host: IpAddr,
    /// Port 0 picks a free port (tests use that).
    pub http_port: u16,
    pub grpc_port: Option<u16>,
    pub metrics_port: Option<u16>,
    pub max_request_bytes: usize,
    /// `--max-inflight-bytes`: request bytes read, decoded or queued at
    /// once, server-wide; None: [`budget::default_limit`].
    pub max_inflight_bytes: Option<usize>,
    pub model_control: ModelControl,
    /// `--api-key-file` / `--admin-key-file`, read; default open.
    pub keys: Keys,
    /// Triton's `--strict-readiness` (default true).
    pub strict_readiness: bool,
    /// Header and body read timeouts of the HTTP port.
    pub http_limits: HttpLimits,
    /// TLS on the HTTP and gRPC ports (`--tls-cert`, `--tls-key`,
    /// `--tls-client-ca`); None: plain.
    pub tls: Option<TlsFiles>,
    /// Access log, OTLP trace export, payload sampling.
    pub observe: observe::ObserveOptions,
    /// Rows of predictions kept per model for ground-truth labels to join
    /// (`--feedback-rows`; 0: off), and labelled rows per version the live
    /// figures cover (`--feedback-window`).
    pub feedback_rows: usize,
    pub feedback_window: usize,
    /// `--model-memory-budget`: bytes the loaded models may take together;
    /// models then load on their first request and the least recently
    /// used is evicted to make room. None: everything loads at start.
    pub model_memory_budget: Option<u64>,
    /// `--modelmesh-port`: serve KServe ModelMesh's runtime API here (on
    /// loopback only: ModelMesh's containers share the pod). Port 0 picks
    /// a free one.
    pub modelmesh_port: Option<u16>,
    /// `--custom-op-library`: custom operator libraries (onnxruntime-
    /// extensions, say) every ONNX Runtime session registers.
    pub custom_op_libraries: Vec<PathBuf>,
}

impl ServerOptions {
    pub fn new(model_repository: impl Into<PathBuf>) -> Self {
        Self {
            model_repository: model_repository.into(),
            host: IpAddr::from([127, 0, 0, 1]),
            http_port: 8000,
            grpc_port: Some(8001),
            metrics_port: Some(8002),
            max_request_bytes: 64 << 20,
            max_inflight_bytes: None,
            model_control: ModelControl::Explicit,
            keys: Keys::default(),
            strict_readiness: true,
            http_limits: HttpLimits::default(),
            tls: None,
            observe: observe::ObserveOptions::default(),
            feedback_rows: feedback::DEFAULT_RECORD_ROWS,
            feedback_window: feedback::DEFAULT_WINDOW_ROWS,
            model_memory_budget: None,
            modelmesh_port: None,
            custom_op_libraries: Vec::new(),
        }
    }

    /// Every port 0: what integration tests want.
    pub fn ephemeral(model_repository: impl Into<PathBuf>) -> Self {
        Self {
            http_port: 0,
            grpc_port: Some(0),
            metrics_port: Some(0),
            ..Self::new(model_repository)
        }
    }
}

/// A running server. Drop or [`Server::shutdown`] stops it.
pub struct Server {
    pub http_addr: SocketAddr,
    pub grpc_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    /// Where ModelMesh's runtime API listens, with `--modelmesh-port`.
    pub modelmesh_addr: Option<SocketAddr>,
    pub state: Arc<ServerState>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

async fn bind(host: IpAddr, port: u16, what: &str) -> Result<TcpListener> {
    TcpListener::bind((host, port))
        .await
        .map_err(|e| Error::unavailable(format!("cannot listen for {what} on {host}:{port}: {e}")))
}

impl Server {
    /// Loads the repository into ONNX Runtime sessions, binds the ports and
    /// starts serving.
    pub async fn start(opts: ServerOptions) -> Result<Server> {
        let engines = OrtLoader {
            op_libraries: opts.custom_op_libraries.clone(),
        };
        Self::start_with(opts, Arc::new(engines)).await
    }

    /// As [`Server::start`], with engines from `engines` (tests use a fake).
    pub async fn start_with(opts: ServerOptions, engines: Arc<dyn EngineLoader>) -> Result<Server> {
        let http = bind(opts.host, opts.http_port, "HTTP").await?;
        let grpc = match opts.grpc_port {
            Some(p) => Some(bind(opts.host, p, "gRPC").await?),
            None => None,
        };
        let metrics = match opts.metrics_port {
            Some(p) => Some(bind(opts.host, p, "metrics").await?),
            None => None,
        };
        let mesh = match opts.modelmesh_port {
            Some(p) => {
                Some(bind(IpAddr::from([127, 0, 0, 1]), p, "ModelMesh's runtime API").await?)
            }
            None => None,
        };
        if !opts.host.is_loopback()
            && opts.model_control != ModelControl::None
            && !opts.keys.admin_protected()
        {
            tracing::warn!(
                "listening on {} with repository load/unload open to anyone who reaches the port: set --admin-key-file, or --model-control-mode none",
                opts.host
            );
        }
        // Bad certificate files stop the start before any model loads.
        let acceptor = match &opts.tls {
            Some(t) => Some(tokio_rustls::TlsAcceptor::from(t.rustls_config()?)),
            None => None,
        };
        let grpc_tls = opts.tls.as_ref().map(TlsFiles::tonic_config).transpose()?;
        let observer = observe::Observer::start(&opts.observe)?;
        engines.init()?;
        // ModelMesh's models are linked into a directory of hone's own,
        // which a fresh pod has yet to make.
        if opts.modelmesh_port.is_some() {
            std::fs::create_dir_all(&opts.model_repository).map_err(|e| {
                Error::invalid(format!(
                    "model repository {}: {e}",
                    opts.model_repository.display()
                ))
            })?;
        }
        // The ports answer from here on (ready: false) while models load.
        let repo = Arc::new(
            Repository::empty(&opts.model_repository, engines)?
                .with_memory_budget(opts.model_memory_budget),
        );
        if let Some(b) = opts.model_memory_budget {
            tracing::info!(
                "model memory budget: {} MiB (--model-memory-budget); models load on their first request",
                b >> 20
            );
        }
        let budget = budget::Budget::new(
            opts.max_inflight_bytes
                .unwrap_or_else(|| budget::default_limit(opts.max_request_bytes)),
        );
        tracing::info!(
            "request memory budget: {} MiB in flight (--max-inflight-bytes)",
            budget.limit() >> 20
        );
        let traffic = Arc::new(traffic::Traffic::default());
        let shadows = Arc::new(shadow::Shadows::default());
        let feedback = Arc::new(feedback::Feedback::new(
            opts.feedback_rows,
            opts.feedback_window,
        ));
        let control = Arc::new(state::Control {
            feedback: feedback.clone(),
            repo: repo.clone(),
            mode: opts.model_control,
            traffic: traffic.clone(),
            shadows: shadows.clone(),
            rollouts: rollout::status::Rollouts::default(),
        });
        let state = Arc::new(ServerState {
            repo: repo.clone(),
            keys: opts.keys.clone(),
            limits: state::Limits {
                max_request_bytes: opts.max_request_bytes,
                budget: budget.clone(),
                drains: tokio::sync::Semaphore::new(2),
                heavy: tokio::sync::Semaphore::new(
                    hone_runtime::sizing::cores().saturating_sub(1).max(1),
                ),
                http: opts.http_limits,
            },
            observer,
            traffic,
            shadows,
            feedback,
            control,
            health: state::Health {
                strict: opts.strict_readiness,
                shutting_down: AtomicBool::new(false),
                loading: AtomicBool::new(true),
            },
        });
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let http_addr = http
            .local_addr()
            .map_err(|e| Error::internal(e.to_string()))?;
        let wait = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let app = http::router(state.clone());
        let rx = stop_rx.clone();
        tasks.spawn(listen::serve(http, app, opts.http_limits, acceptor, rx));
        let mut grpc_addr = None;
        if let Some(l) = grpc {
            grpc_addr = Some(l.local_addr().map_err(|e| Error::internal(e.to_string()))?);
            let svc = grpc::GrpcInferenceServiceServer::new(grpc::GrpcService {
                state: state.clone(),
            })
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip)
            .max_decoding_message_size(opts.max_request_bytes)
            .max_encoding_message_size(usize::MAX);
            let admin = grpc_admin::AdminServer::new(grpc_admin::AdminService {
                state: state.clone(),
            });
            let rx = stop_rx.clone();
            let incoming = tonic::transport::server::TcpIncoming::from(l).with_nodelay(Some(true));
            let mut builder =
                tonic::transport::Server::builder().layer(budget::GrpcBudget(budget.clone()));
            if let Some(t) = grpc_tls {
                builder = builder
                    .tls_config(t)
                    .map_err(|e| Error::invalid(format!("gRPC TLS: {e}")))?;
            }
            tasks.spawn(async move {
                let r = builder
                    .add_service(svc)
                    .add_service(admin)
                    .serve_with_incoming_shutdown(incoming, wait(rx))
                    .await;
                if let Err(e) = r {
                    tracing::error!("gRPC server: {e}");
                }
            });
        }
        let mut modelmesh_addr = None;
        if let Some(l) = mesh {
            modelmesh_addr = Some(l.local_addr().map_err(|e| Error::internal(e.to_string()))?);
            // What ModelMesh may place here: the budget, else half the
            // memory (the other half for requests and activations).
            let capacity = opts
                .model_memory_budget
                .unwrap_or_else(|| budget::memory_limit().unwrap_or(4 << 30) as u64 / 2);
            let svc = modelmesh::ModelRuntimeServer::new(modelmesh::MeshRuntime::new(
                repo.clone(),
                capacity,
            ));
            let incoming = tonic::transport::server::TcpIncoming::from(l).with_nodelay(Some(true));
            let rx = stop_rx.clone();
            tasks.spawn(async move {
                let r = tonic::transport::Server::builder()
                    .add_service(svc)
                    .serve_with_incoming_shutdown(incoming, wait(rx))
                    .await;
                if let Err(e) = r {
                    tracing::error!("ModelMesh runtime API: {e}");
                }
            });
        }
        tasks.spawn(rollout::watch_config(
            state.control.clone(),
            stop_rx.clone(),
        ));
        let mut metrics_addr = None;
        if let Some(l) = metrics {
            metrics_addr = Some(l.local_addr().map_err(|e| Error::internal(e.to_string()))?);
            let app = metrics_port::metrics_router(state.clone());
            let rx = stop_rx.clone();
            tasks.spawn(async move {
                if let Err(e) = axum::serve(l, app).with_graceful_shutdown(wait(rx)).await {
                    tracing::error!("metrics server: {e}");
                }
            });
        }
        let loader = repo.clone();
        tokio::task::spawn_blocking(move || loader.load_all())
            .await
            .map_err(|e| Error::internal(format!("repository loader panicked: {e}")))?;
        state.health.loading.store(false, Ordering::Relaxed);
        if state.health.strict && !state.repo.models().any_model() {
            tracing::warn!(
                "{} holds no model: readiness stays false until one is loaded (--strict-readiness false to be ready without one)",
                opts.model_repository.display()
            );
        }
        if let ModelControl::Poll(every) = opts.model_control {
            let repo = state.repo.clone();
            let mut rx = stop_rx.clone();
            tasks.spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = rx.wait_for(|s| *s) => break,
                    }
                    let repo = repo.clone();
                    let changes = match tokio::task::spawn_blocking(move || repo.poll()).await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::error!("repository poll panicked: {e}");
                            continue;
                        }
                    };
                    for change in changes {
                        match change {
                            Ok(c) => tracing::info!("repository poll: {c:?}"),
                            Err(e) => tracing::error!("repository poll: {e}"),
                        }
                    }
                }
            });
        }
        Ok(Server {
            http_addr,
            grpc_addr,
            metrics_addr,
            modelmesh_addr,
            state,
            stop,
            tasks,
        })
    }

    /// The start of a graceful stop: readiness turns false (so a load
    /// balancer or Kubernetes stops sending new work) while everything keeps
    /// serving. `hone serve` holds this for `--drain-secs` before
    /// [`Server::shutdown_within`].
    pub fn drain(&self) {
        self.state
            .health
            .shutting_down
            .store(true, Ordering::Relaxed);
    }

    /// [`Server::shutdown`], given up after `limit` (Triton's
    /// `--exit-timeout-secs`): a client that never finishes its request, or a
    /// stuck engine call, cannot keep the process alive. False when it gave up.
    pub async fn shutdown_within(self, limit: std::time::Duration) -> bool {
        tokio::time::timeout(limit, self.shutdown()).await.is_ok()
    }

    /// Stops accepting connections, lets in-flight requests finish, then
    /// drains every model queue.
    pub async fn shutdown(mut self) {
        self.state
            .health
            .shutting_down
            .store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        let repo = self.state.repo.clone();
        let _ = tokio::task::spawn_blocking(move || repo.shutdown()).await;
    }
}
