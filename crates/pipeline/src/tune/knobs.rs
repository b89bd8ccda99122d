//! What `hone tune` varies and records: the objective and options, the
//! serving knobs of one trial, and a trial's measurement.

use std::path::PathBuf;
use std::time::Duration;

use hone_loadgen::Protocol;
use hone_server::config::{DynamicBatching, ModelConfig};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Most requests a second (within `max_p99` when given).
    Throughput,
    /// Lowest p99 latency.
    Latency,
}

#[derive(Debug, Clone)]
pub struct TuneOptions {
    pub repository: PathBuf,
    pub model: String,
    pub objective: Objective,
    pub max_p99: Option<Duration>,
    pub concurrency: usize,
    /// The whole search, final comparison included.
    pub budget: Duration,
    /// Measured seconds per configuration (default: from the budget).
    pub trial: Option<Duration>,
    pub protocol: Protocol,
    /// Write the winner's config.pbtxt into the repository.
    pub write: bool,
    /// Also try the model's other versions (those `hone optimize` wrote
    /// beside the original), not only the newest.
    pub include_optimized: bool,
}

/// The serving knobs one trial sets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Knobs {
    /// The model version served.
    pub version: u64,
    pub instances: u32,
    pub intra_op_threads: u32,
    /// 0: the model does not batch.
    pub max_batch_size: u32,
    pub queue_delay_us: u64,
    /// ONNX Runtime graph optimization (1 basic, 2 extended); None: all.
    pub graph_level: Option<i64>,
}

impl Knobs {
    pub fn label(&self) -> String {
        let mut s = format!(
            "v{}: {} inst × {} thr",
            self.version, self.instances, self.intra_op_threads
        );
        if self.max_batch_size > 0 {
            s.push_str(&format!(
                ", batch ≤{}, delay {} µs",
                self.max_batch_size, self.queue_delay_us
            ));
        }
        if let Some(l) = self.graph_level {
            s.push_str(&format!(", graph level {l}"));
        }
        s
    }

    /// `base` with these knobs set.
    pub(super) fn apply(&self, base: &ModelConfig) -> ModelConfig {
        let mut c = base.clone();
        c.instance_count = self.instances;
        c.parameters.insert(
            "intra_op_thread_count".into(),
            self.intra_op_threads.to_string(),
        );
        if self.max_batch_size > 0 {
            c.max_batch_size = Some(self.max_batch_size);
            let d = c
                .dynamic_batching
                .get_or_insert_with(DynamicBatching::default);
            d.max_queue_delay_us = self.queue_delay_us;
        }
        c.optimization_level = self.graph_level;
        c
    }

    /// What a loaded configuration of `version` amounts to.
    pub(super) fn of(c: &ModelConfig, version: u64) -> Knobs {
        let instances = c.instance_count.max(1);
        Knobs {
            version,
            instances,
            intra_op_threads: c
                .parameters
                .get("intra_op_thread_count")
                .and_then(|t| t.parse().ok())
                .filter(|&t| t > 0)
                .unwrap_or_else(|| hone_runtime::sizing::threads_per_instance(instances) as u32),
            max_batch_size: c.max_batch_size(),
            queue_delay_us: c
                .dynamic_batching
                .as_ref()
                .map_or(0, |d| d.max_queue_delay_us),
            graph_level: c.optimization_level,
        }
    }
}

/// One configuration as measured.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    /// Which dimension the search was exploring.
    pub stage: String,
    pub label: String,
    pub knobs: Knobs,
    pub throughput: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub mean_batch: f64,
    /// Why the configuration could not be measured.
    pub error: Option<String>,
    /// Not beaten on both throughput and p99 by another trial.
    pub pareto: bool,
}

impl Trial {
    pub(super) fn ok(&self) -> bool {
        self.error.is_none() && self.throughput > 0.0
    }
}
