//! The state every front end shares: the repository, the server-wide
//! limits and switches, and the shutdown flag readiness reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hone_core::{Error, Result};

use crate::auth::Keys;
use crate::budget::Budget;
use crate::listen::HttpLimits;
use crate::repository::{self, Repository};

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

pub struct ServerState {
    pub repo: Arc<Repository>,
    /// API and admin keys; empty means open.
    pub keys: Keys,
    pub max_request_bytes: usize,
    /// Request bytes being read, decoded or queued, server-wide.
    pub budget: Arc<Budget>,
    /// Permits for large decode/encode/compression jobs: one fewer than the
    /// cores, so they never starve the async I/O threads.
    pub heavy: tokio::sync::Semaphore,
    /// Permits for discarding the bodies of refused requests.
    pub drains: tokio::sync::Semaphore,
    pub model_control: ModelControl,
    /// Header and body read timeouts of the HTTP port.
    pub http_limits: HttpLimits,
    /// `--strict-readiness`: ready only when every model is.
    pub strict_readiness: bool,
    pub(crate) shutting_down: AtomicBool,
    /// True until the repository has loaded at start: the ports already
    /// answer, readiness is false.
    pub(crate) loading: AtomicBool,
    /// Access log, trace export and payload sampling.
    pub observer: crate::observe::Observer,
    /// Traffic splits set at run time.
    pub traffic: crate::traffic::Traffic,
    /// Shadow calls and what their comparisons found.
    pub shadows: Arc<crate::shadow::Shadows>,
    /// Rollouts, running and finished.
    pub rollouts: crate::rollout::status::Rollouts,
}

impl ServerState {
    /// Ready while not shutting down and, under strict readiness (Triton's
    /// default), every model has a ready version; without it, as soon as
    /// the server is up, even if a model failed.
    pub fn ready(&self) -> bool {
        !self.shutting_down.load(Ordering::Relaxed)
            && !self.loading.load(Ordering::Relaxed)
            && (!self.strict_readiness || self.repo.models().all_ready())
    }

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
        if self.model_control == ModelControl::None {
            return Err(Error::unavailable(
                "model load/unload is off: the server runs with --model-control-mode none",
            ));
        }
        Ok(())
    }
}
