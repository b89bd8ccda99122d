//! The state every front end shares, split by who needs it: the data
//! plane, the limits, the control plane and health.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hone_core::{Error, Result};

use crate::auth::Keys;
use crate::budget::Budget;
use crate::listen::HttpLimits;
use crate::repository::{self, Repository};
use crate::rollout::status::Rollouts;
use crate::shadow::Shadows;
use crate::traffic::Traffic;

/// The server name announced in server metadata.
pub const SERVER_NAME: &str = "hone";
/// Protocol extensions announced in server metadata.
pub const EXTENSIONS: &[&str] = &[
    "binary_tensor_data",
    "model_configuration",
    "statistics",
    "model_repository",
];

/// How the set of served models may change while running (Triton's
/// `--model-control-mode`, with one difference: every mode loads the whole
/// repository at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelControl {
    /// Fixed at start; the load/unload API is refused.
    None,
    /// The repository load/unload API (HTTP and gRPC) loads, reloads and
    /// unloads models.
    Explicit,
    /// As `Explicit`, and the repository is also rescanned this often:
    /// new or changed model directories load, removed ones unload.
    Poll(std::time::Duration),
}

/// Server-wide limits every request is read under.
pub struct Limits {
    pub max_request_bytes: usize,
    /// Request bytes being read, decoded or queued, server-wide.
    pub budget: Arc<Budget>,
    /// Permits for large decode/encode/compression jobs: one fewer than the
    /// cores, so they never starve the async I/O threads.
    pub heavy: tokio::sync::Semaphore,
    /// Permits for discarding the bodies of refused requests.
    pub drains: tokio::sync::Semaphore,
    /// Header and body read timeouts of the HTTP port.
    pub http: HttpLimits,
}

/// The control plane: what changes which versions serve and where their
/// traffic goes (the repository API, run-time splits, rollouts). The
/// rollout loop holds this, not the whole server.
pub struct Control {
    pub repo: Arc<Repository>,
    pub mode: ModelControl,
    /// Traffic splits set at run time (the data plane reads them).
    pub traffic: Arc<Traffic>,
    /// Shadow calls and what their comparisons found.
    pub shadows: Arc<Shadows>,
    /// Rollouts, running and finished.
    pub rollouts: Rollouts,
    /// Ground truth and live figures (a rollout's accuracy gate).
    pub feedback: Arc<crate::feedback::Feedback>,
}

/// Whether the server takes traffic: readiness reads these.
pub struct Health {
    /// `--strict-readiness`: ready only when every model is.
    pub strict: bool,
    pub(crate) shutting_down: AtomicBool,
    /// True until the repository has loaded at start: the ports already
    /// answer, readiness is false.
    pub(crate) loading: AtomicBool,
}

/// What every front end shares: the data plane (repository, run-time
/// traffic, shadows, observation), the limits, the keys, the control plane
/// and health.
pub struct ServerState {
    pub repo: Arc<Repository>,
    /// API and admin keys; empty means open.
    pub keys: Keys,
    pub limits: Limits,
    /// Access log, trace export and payload sampling.
    pub observer: crate::observe::Observer,
    pub traffic: Arc<Traffic>,
    pub shadows: Arc<Shadows>,
    /// Predictions kept for labels, and the live figures.
    pub feedback: Arc<crate::feedback::Feedback>,
    pub control: Arc<Control>,
    pub health: Health,
}

impl ServerState {
    /// Ready while not shutting down and, under strict readiness (Triton's
    /// default), there is a model and every model has a ready version (a
    /// pod with an empty repository must not take traffic); without it, as
    /// soon as the server is up, even if a model failed.
    pub fn ready(&self) -> bool {
        let h = &self.health;
        let models = self.repo.models();
        !h.shutting_down.load(Ordering::Relaxed)
            && !h.loading.load(Ordering::Relaxed)
            && (!h.strict || (models.any_model() && models.all_ready()))
    }
}

impl Control {
    /// Loads (or reloads) a model through the repository API. Session
    /// creation blocks, so it runs off the async workers.
    pub async fn load_model(&self, name: &str) -> Result<repository::Change> {
        self.allow_changes()?;
        let (repo, name) = (self.repo.clone(), name.to_string());
        tokio::task::spawn_blocking(move || repo.load(&name))
            .await
            .map_err(|e| Error::internal(format!("model loader panicked: {e}")))?
    }

    pub async fn unload_model(&self, name: &str) -> Result<repository::Change> {
        self.allow_changes()?;
        let (repo, name) = (self.repo.clone(), name.to_string());
        tokio::task::spawn_blocking(move || repo.unload(&name))
            .await
            .map_err(|e| Error::internal(format!("model unloader panicked: {e}")))?
    }

    fn allow_changes(&self) -> Result<()> {
        if self.mode == ModelControl::None {
            return Err(Error::unavailable(
                "model load/unload is off: the server runs with --model-control-mode none",
            ));
        }
        Ok(())
    }
}
