//! A loaded, serving model version: its configuration and signature, its
//! statistics, and the scheduler that runs its requests.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use futures_util::future::BoxFuture;

use hone_core::{ModelMetadata, NamedTensor, Result, Tensor, TensorSpec};

use crate::config::ModelConfig;
use crate::metrics::{FailReason, ModelStats};
use crate::scheduler::{Ran, Scheduler};

/// The other models of the repository, as a step of an ensemble finds
/// them (a model out of memory under a budget is loaded first, within
/// `until`).
pub trait Models: Send + Sync {
    fn model<'a>(
        &'a self,
        name: &'a str,
        version: Option<&'a str>,
        until: Option<Instant>,
    ) -> BoxFuture<'a, Result<Arc<LoadedModel>>>;
}

/// A model made of other models (an ensemble): it runs them instead of an
/// engine.
pub(crate) trait Composite: Send + Sync + std::fmt::Debug {
    fn run<'a>(
        &'a self,
        models: &'a dyn Models,
        inputs: Vec<Tensor>,
        client: Option<Instant>,
        live: bool,
    ) -> BoxFuture<'a, Result<Ran>>;
}

/// What runs a model version's requests.
pub(crate) enum Runner {
    /// Engine instances behind the batcher.
    Engine(Scheduler),
    Composite(Box<dyn Composite>),
}
use crate::validate::prepare_inputs;

/// How long a request may wait before the engine takes it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Deadline {
    /// Triton's request `timeout` parameter, in microseconds; the model's
    /// queue policy decides whether it counts (see
    /// [`crate::config::DynamicBatching::queue_timeout_us`]).
    pub timeout_us: Option<u64>,
    /// A deadline the client set on the call itself (gRPC `grpc-timeout`).
    pub client: Option<Instant>,
}

pub struct LoadedModel {
    pub name: String,
    pub version: String,
    pub config: ModelConfig,
    pub metadata: ModelMetadata,
    /// What requests must match, per input in model order.
    pub input_specs: Vec<TensorSpec>,
    /// Elements a request and a batch may hold.
    pub limits: crate::config::ElementLimits,
    pub stats: Arc<ModelStats>,
    /// Live drift against the profile beside the model file, if any.
    pub drift: Option<Arc<crate::drift::DriftMonitor>>,
    /// The card's task, classes and output: answers are recorded for
    /// ground-truth labels to join (None: no card).
    pub(crate) truth: Option<Arc<crate::feedback::Truth>>,
    /// Class labels of outputs whose config names a `label_filename`.
    pub(crate) class_labels: std::collections::BTreeMap<String, Vec<String>>,
    /// A hone-trained model's features by name (None: no hone card).
    pub(crate) tabular: Option<crate::tabular::Tabular>,
    /// The traffic split of the model's config, if it sets one.
    pub split: Option<Arc<crate::split::Split>>,
    pub(crate) runner: Runner,
    /// When it last served: the memory budget evicts the least recent.
    pub(crate) last_used: LastUsed,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl LoadedModel {
    /// Checks names, dtypes and shapes against the model and returns the
    /// tensors in model input order.
    pub fn prepare(&self, inputs: Vec<NamedTensor>) -> Result<Vec<Tensor>> {
        let inputs = match &self.tabular {
            Some(t) if t.named(&inputs) => t.encode(inputs)?.0,
            _ => inputs,
        };
        let tensors = prepare_inputs(
            &self.name,
            &self.input_specs,
            self.config.max_batch_size(),
            inputs,
        )?;
        let elements: usize = tensors.iter().map(Tensor::element_count).sum();
        if elements > self.limits.per_request {
            return Err(hone_core::Error::invalid(format!(
                "the request holds {elements} tensor elements, over the {} this model accepts per request (config parameters max_elements_per_request / max_elements_per_batch)",
                self.limits.per_request
            )));
        }
        Ok(tensors)
    }

    /// Validates, queues and runs one request; failures are counted. Only
    /// `live` requests (not a smoke test's) are offered to drift.
    pub async fn infer(
        &self,
        models: &dyn Models,
        inputs: Vec<NamedTensor>,
        d: Deadline,
        live: bool,
    ) -> Result<Ran> {
        let start = Instant::now();
        let queue_us = match &self.config.dynamic_batching {
            Some(b) => b.queue_timeout_us(d.timeout_us),
            None => d.timeout_us.filter(|&t| t > 0),
        };
        let policy = queue_us.map(|us| start + std::time::Duration::from_micros(us));
        let deadline = match (policy, d.client) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let prepared = match self.prepare(inputs) {
            Ok(p) => p,
            Err(e) => {
                self.stats.fail(FailReason::Invalid, start.elapsed());
                return Err(e);
            }
        };
        let sampled = live
            && self
                .drift
                .as_ref()
                .is_some_and(|d| d.offer_inputs(&prepared));
        let ran = match &self.runner {
            Runner::Engine(s) => s.infer(prepared, deadline).await,
            Runner::Composite(c) => {
                // Steps run within the request's own deadline: its queue
                // timeout or the client's, whichever comes first.
                let r = c.run(models, prepared, deadline, live).await;
                if let Ok(ran) = &r {
                    let t = &ran.timing;
                    self.stats.queue.observe(std::time::Duration::ZERO);
                    self.stats.computed(1, t.batch_rows, t.compute());
                }
                r
            }
        };
        match ran {
            // Success is recorded by the front end once the reply is encoded
            // (see `answered`), so the request histogram spans decode to reply.
            Ok(out) => {
                if let Some(d) = self.drift.as_ref().filter(|_| sampled) {
                    d.offer_outputs(&out.outputs);
                }
                Ok(out)
            }
            Err(e) => {
                // Queue-full rejections are counted by the scheduler; an
                // input the engine refused is the request's fault.
                match e.kind {
                    hone_core::ErrorKind::Unavailable => {}
                    hone_core::ErrorKind::InvalidInput => {
                        self.stats.fail(FailReason::Invalid, start.elapsed());
                    }
                    _ => self.stats.fail(FailReason::Backend, start.elapsed()),
                }
                Err(e)
            }
        }
    }

    /// Records a successful request whose decoding began at `since`, once
    /// its reply is encoded.
    pub fn answered(&self, since: Instant) {
        self.stats.succeed(since.elapsed());
    }

    /// False while a crashed engine instance is being replaced.
    pub fn healthy(&self) -> bool {
        self.stats
            .engines_down
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
    }

    /// The class labels of a classifier whose card names them (the truth a
    /// labelled answer is read by).
    pub(crate) fn labels(&self) -> Option<&crate::feedback::Truth> {
        self.truth
            .as_deref()
            .filter(|t| t.task != hone_data::Task::Regression)
    }

    pub fn output_spec(&self, name: &str) -> Option<&TensorSpec> {
        self.metadata.outputs.iter().find(|o| o.name == name)
    }
}

/// Milliseconds since the process's first call: a cheap clock for "least
/// recently used".
pub(crate) fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// When a model version last served a request.
#[derive(Debug, Default)]
pub(crate) struct LastUsed(AtomicU64);

impl LastUsed {
    pub(crate) fn now() -> Self {
        Self(AtomicU64::new(now_ms()))
    }

    /// A plain store: every request makes it, on every core.
    pub(crate) fn touch(&self) {
        self.0.store(now_ms(), Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}
