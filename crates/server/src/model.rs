//! A loaded, serving model version: its configuration and signature, its
//! statistics, and the scheduler that runs its requests.

use std::sync::Arc;
use std::time::Instant;

use hone_core::{ModelMetadata, NamedTensor, Result, Tensor, TensorSpec};

use crate::config::ModelConfig;
use crate::metrics::{FailReason, ModelStats};
use crate::scheduler::Scheduler;
use crate::validate::prepare_inputs;

pub struct LoadedModel {
    pub name: String,
    pub version: String,
    pub config: ModelConfig,
    pub metadata: ModelMetadata,
    /// What requests must match, per input in model order.
    pub input_specs: Vec<TensorSpec>,
    pub stats: Arc<ModelStats>,
    pub(crate) scheduler: Scheduler,
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
        prepare_inputs(
            &self.name,
            &self.input_specs,
            self.config.max_batch_size(),
            inputs,
        )
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
