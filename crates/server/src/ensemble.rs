//! An ensemble's run: its steps are other models of the repository, called
//! through their own validation and batcher, in dependency order with
//! independent steps side by side. A tensor moves from the step that makes
//! it to the one that takes it; it is copied only when several steps (or the
//! answer) read it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;

use hone_core::{Error, ModelMetadata, NamedTensor, Result, Tensor};

use crate::config::{EnsembleConfig, EnsembleStep};
use crate::model::{Composite, Deadline, LoadedModel, Models};
use crate::scheduler::{Ran, StepTime, Timing};

/// Ensembles may call ensembles; a cycle between them is cut here.
const MAX_DEPTH: u32 = 8;

tokio::task_local! {
    static DEPTH: u32;
}

#[derive(Debug)]
pub(crate) struct Ensemble {
    steps: Vec<EnsembleStep>,
    inputs: Vec<String>,
    outputs: Vec<String>,
    /// How many times each tensor is read: by steps, and once more when it
    /// is an output of the ensemble.
    reads: HashMap<String, usize>,
}

impl Ensemble {
    pub(crate) fn new(cfg: &EnsembleConfig, meta: &ModelMetadata) -> Self {
        let mut reads: HashMap<String, usize> = HashMap::new();
        let steps_read = cfg
            .steps
            .iter()
            .flat_map(|s| s.input_map.iter().map(|(_, t)| t));
        for t in steps_read.chain(meta.outputs.iter().map(|o| &o.name)) {
            *reads.entry(t.clone()).or_default() += 1;
        }
        Self {
            steps: cfg.steps.clone(),
            inputs: meta.inputs.iter().map(|i| i.name.clone()).collect(),
            outputs: meta.outputs.iter().map(|o| o.name.clone()).collect(),
            reads,
        }
    }
}

impl Composite for Ensemble {
    fn run<'a>(
        &'a self,
        models: &'a dyn Models,
        inputs: Vec<Tensor>,
        client: Option<Instant>,
        live: bool,
    ) -> BoxFuture<'a, Result<Ran>> {
        Box::pin(self.run_steps(models, inputs, client, live))
    }
}

impl Ensemble {
    /// Runs every step on `inputs` (validated, in the ensemble's input
    /// order) and returns the ensemble's outputs in its output order.
    async fn run_steps(
        &self,
        models: &dyn Models,
        inputs: Vec<Tensor>,
        client: Option<Instant>,
        live: bool,
    ) -> Result<Ran> {
        let start = Instant::now();
        let depth = DEPTH.try_with(|d| *d).unwrap_or(0);
        if depth >= MAX_DEPTH {
            return Err(Error::invalid(format!(
                "ensembles nest deeper than {MAX_DEPTH}: do two ensembles call each other?"
            )));
        }
        let rows = inputs.first().map_or(1, Tensor::batch);
        let mut pool: HashMap<String, (Tensor, usize)> = HashMap::new();
        for (name, t) in self.inputs.iter().zip(inputs) {
            let n = self.reads.get(name).copied().unwrap_or(0);
            pool.insert(name.clone(), (t, n));
        }
        let mut pending: Vec<usize> = (0..self.steps.len()).collect();
        let mut times = Vec::with_capacity(self.steps.len());
        while !pending.is_empty() {
            let (ready, rest): (Vec<usize>, Vec<usize>) = pending.iter().partition(|&&i| {
                self.steps
                    .get(i)
                    .is_some_and(|s| s.input_map.iter().all(|(_, t)| pool.contains_key(t)))
            });
            if ready.is_empty() {
                return Err(Error::internal("an ensemble step's inputs are never made"));
            }
            pending = rest;
            let mut calls = Vec::with_capacity(ready.len());
            for &i in &ready {
                let step = self.steps.get(i).ok_or_else(|| Error::internal("step"))?;
                let named = step
                    .input_map
                    .iter()
                    .map(|(input, t)| Ok((input.clone(), take(&mut pool, t)?)))
                    .collect::<Result<Vec<NamedTensor>>>()?;
                let call = DEPTH.scope(depth + 1, call(models, step, named, client, live));
                calls.push(Box::pin(call));
            }
            // The first failure ends the request; the other steps of the
            // wave are dropped (cancelled) with it.
            for (made, time) in futures_util::future::try_join_all(calls).await? {
                times.push(time);
                for (name, t) in made {
                    let n = self.reads.get(&name).copied().unwrap_or(0);
                    pool.insert(name, (t, n));
                }
            }
        }
        let outputs = self
            .outputs
            .iter()
            .map(|o| take(&mut pool, o))
            .collect::<Result<Vec<_>>>()?;
        let finished = Instant::now();
        Ok(Ran {
            outputs,
            timing: Timing {
                enqueued: start,
                started: start,
                finished,
                batch_requests: 1,
                batch_rows: rows,
            },
            steps: times,
        })
    }
}

/// A tensor for one reader: moved out on its last read, cloned before.
fn take(pool: &mut HashMap<String, (Tensor, usize)>, name: &str) -> Result<Tensor> {
    let Some((t, left)) = pool.get_mut(name) else {
        return Err(Error::internal(format!(
            "ensemble tensor '{name}' is missing"
        )));
    };
    if *left > 1 {
        *left -= 1;
        return Ok(t.clone());
    }
    pool.remove(name)
        .map(|(t, _)| t)
        .ok_or_else(|| Error::internal("ensemble tensor"))
}

/// One step: its model (loaded first under a memory budget), called as any
/// request is; its outputs renamed to the ensemble's tensors. A failure
/// names the step.
async fn call(
    models: &dyn Models,
    step: &EnsembleStep,
    inputs: Vec<NamedTensor>,
    client: Option<Instant>,
    live: bool,
) -> Result<(Vec<(String, Tensor)>, StepTime)> {
    let named = |e: Error| {
        Error::new(
            e.kind,
            format!("ensemble step '{}': {}", step.model_name, e.message),
        )
    };
    let version = (step.model_version > 0).then(|| step.model_version.to_string());
    let m: Arc<LoadedModel> = models
        .model(&step.model_name, version.as_deref(), client)
        .await
        .map_err(named)?;
    let started = Instant::now();
    let deadline = Deadline {
        timeout_us: None,
        client,
    };
    let ran = Box::pin(m.infer(models, inputs, deadline, live))
        .await
        .map_err(named)?;
    m.answered(started);
    let mut outputs: Vec<Option<Tensor>> = ran.outputs.into_iter().map(Some).collect();
    let mut made = Vec::with_capacity(step.output_map.len());
    for (output, tensor) in &step.output_map {
        let i = m.metadata.outputs.iter().position(|o| &o.name == output);
        let t = i.and_then(|i| outputs.get_mut(i)).and_then(Option::take);
        let t = t.ok_or_else(|| {
            named(Error::invalid(format!(
                "the model has no output '{output}' (its output_map names it)"
            )))
        })?;
        made.push((tensor.clone(), t));
    }
    let time = StepTime {
        model: m.name.clone(),
        version: m.version.clone(),
        started,
        took: started.elapsed(),
    };
    Ok((made, time))
}
