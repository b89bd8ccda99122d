//! The per-model queue and dynamic batcher.
//!
//! Each model version has one bounded queue and `instance_count` engine
//! threads. A thread takes the oldest request, then keeps taking queued
//! requests whose non-batch dimensions match (setting others aside for the
//! next batch) until the batch is full, a preferred size is reached with
//! nothing else waiting, or the queue delay runs out; it makes one engine
//! call and splits the outputs back. Each
//! thread owns its engine session, so no lock is held around inference.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hone_core::{Backend, Error, Result, Tensor};
use tokio::sync::oneshot;

use crate::metrics::{FailReason, ModelStats};

#[derive(Debug, Clone, Default)]
pub struct BatchPolicy {
    /// 0: requests run one by one, as sent.
    pub max_batch_size: usize,
    /// Tensor elements a coalesced batch may hold (0: no bound); a single
    /// request is never split.
    pub max_batch_elements: usize,
    /// False: no coalescing across requests even when the model batches.
    pub dynamic: bool,
    pub preferred: Vec<usize>,
    pub max_delay: Duration,
    pub max_queue: usize,
}

/// Makes a fresh engine instance (after one crashed).
pub type Rebuild = Arc<dyn Fn() -> Result<Box<dyn Backend>> + Send + Sync>;

struct Job {
    inputs: Vec<Tensor>,
    rows: usize,
    /// Elements over all inputs.
    elements: usize,
    enqueued: Instant,
    /// Past this the request is answered with a timeout instead of run.
    deadline: Option<Instant>,
    reply: oneshot::Sender<Result<Ran>>,
}

/// One request's outputs and where its time went.
#[derive(Debug)]
pub struct Ran {
    pub outputs: Vec<Tensor>,
    pub timing: Timing,
    /// An ensemble's steps, each with its model and time (empty for a model
    /// that runs on an engine).
    pub steps: Vec<StepTime>,
}

/// One ensemble step's model and the time it took, for `Server-Timing`
/// and trace spans.
#[derive(Debug, Clone)]
pub struct StepTime {
    pub model: String,
    pub version: String,
    pub started: Instant,
    pub took: Duration,
}

/// When a request entered the queue, when the engine took its batch and
/// when the engine call returned; the batch it ran in.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub enqueued: Instant,
    pub started: Instant,
    pub finished: Instant,
    /// Requests and rows in the engine call.
    pub batch_requests: usize,
    pub batch_rows: usize,
}

impl Timing {
    pub fn queue(&self) -> Duration {
        self.started.saturating_duration_since(self.enqueued)
    }
    pub fn compute(&self) -> Duration {
        self.finished.saturating_duration_since(self.started)
    }
}

pub struct Scheduler {
    tx: Option<flume::Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
    stats: Arc<ModelStats>,
}

impl Scheduler {
    /// Starts one engine thread per backend. `rebuild` makes a fresh engine
    /// when one crashes (panics) mid-call.
    pub fn start(
        label: &str,
        backends: Vec<Box<dyn Backend>>,
        policy: BatchPolicy,
        stats: Arc<ModelStats>,
        rebuild: Rebuild,
    ) -> Self {
        let (tx, rx) = flume::bounded::<Job>(policy.max_queue.max(1));
        let policy = Arc::new(policy);
        let threads = backends
            .into_iter()
            .enumerate()
            .filter_map(|(i, backend)| {
                let rx = rx.clone();
                let policy = policy.clone();
                let stats = stats.clone();
                let rebuild = rebuild.clone();
                let name = format!("{label}#{i}");
                std::thread::Builder::new()
                    .name(name.clone())
                    .spawn(move || run_instance(&name, backend, rx, &policy, &stats, &*rebuild))
                    .map_err(|e| tracing::error!("cannot start engine thread for {label}: {e}"))
                    .ok()
            })
            .collect();
        Self {
            tx: Some(tx),
            threads,
            stats,
        }
    }

    /// Queues one request (inputs already validated, in model order) and waits
    /// for its outputs. A full queue fails at once rather than waiting. A
    /// request still queued at its `deadline`, or whose caller has gone (the
    /// future was dropped), is never run: it is answered (or dropped) and
    /// counted as TIMEOUT or CANCELLED.
    pub async fn infer(&self, inputs: Vec<Tensor>, deadline: Option<Instant>) -> Result<Ran> {
        let rows = inputs.first().map_or(1, Tensor::batch);
        let elements = inputs.iter().map(Tensor::element_count).sum();
        let (reply, rx) = oneshot::channel();
        let job = Job {
            inputs,
            rows,
            elements,
            enqueued: Instant::now(),
            deadline,
            reply,
        };
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| Error::unavailable("model is shutting down"))?;
        // Counted before sending: the engine thread may take the job and
        // decrement before try_send returns.
        self.stats.pending.fetch_add(1, Relaxed);
        match tx.try_send(job) {
            Ok(()) => {}
            Err(flume::TrySendError::Full(j)) => {
                self.stats.pending.fetch_sub(1, Relaxed);
                self.stats.fail(FailReason::Rejected, j.enqueued.elapsed());
                return Err(Error::unavailable(format!(
                    "queue full: {} requests are waiting; retry later or raise dynamic_batching.default_queue_policy.max_queue_size",
                    tx.len()
                )));
            }
            Err(flume::TrySendError::Disconnected(_)) => {
                self.stats.pending.fetch_sub(1, Relaxed);
                return Err(Error::unavailable("model is shutting down"));
            }
        }
        rx.await
            .unwrap_or_else(|_| Err(Error::internal("engine thread stopped")))
    }

    /// Stops taking requests, lets the engine threads finish what is queued,
    /// and waits for them.
    pub fn shutdown(&mut self) {
        self.tx = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

thread_local! {
    /// Set while repository code, on a blocking thread, drops versions.
    static JOIN_HERE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, which drops model versions, with their engine threads joined
/// on this (blocking) thread: unload and reload return the memory before
/// the next load allocates.
pub fn joined_here<T>(f: impl FnOnce() -> T) -> T {
    let r = joined_here_keeping_pages(f);
    // The sessions are gone: their pages go back to the OS, not just to
    // the allocator, so RSS follows what is loaded.
    hone_runtime::memory::release_free_memory();
    r
}

/// As [`joined_here`], leaving the freed pages with the allocator: the
/// memory budget evicts to load another model at once, which reuses them
/// without faulting in fresh ones.
pub fn joined_here_keeping_pages<T>(f: impl FnOnce() -> T) -> T {
    let before = JOIN_HERE.replace(true);
    let r = f();
    JOIN_HERE.set(before);
    r
}

impl Drop for Scheduler {
    /// The last holder of a model version may instead be a request handler
    /// on an async thread while an engine thread is still inside a long call
    /// (or skipping abandoned jobs): then the queue is closed here and the
    /// threads are joined on a thread of their own, never on the caller's.
    fn drop(&mut self) {
        if JOIN_HERE.get() {
            self.shutdown();
            return;
        }
        self.tx = None;
        let threads = std::mem::take(&mut self.threads);
        if threads.is_empty() {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("hone-reaper".into())
            .spawn(move || {
                for t in threads {
                    let _ = t.join();
                }
            });
        if let Err(e) = spawned {
            // Without a thread to join them, the engine threads finish
            // their queue and exit on their own, detached.
            tracing::warn!("cannot start a thread to join engine threads: {e}");
        }
    }
}

/// Requests can share a batch when every input has the same dtype and the
/// same dims after the first.
fn compatible(a: &Job, b: &Job) -> bool {
    a.inputs.len() == b.inputs.len()
        && a.inputs.iter().zip(&b.inputs).all(|(x, y)| {
            x.dtype == y.dtype
                && x.shape.len() == y.shape.len()
                && x.shape.get(1..) == y.shape.get(1..)
        })
}

fn run_instance(
    name: &str,
    mut backend: Box<dyn Backend>,
    rx: flume::Receiver<Job>,
    policy: &BatchPolicy,
    stats: &ModelStats,
    rebuild: &(dyn Fn() -> Result<Box<dyn Backend>> + Send + Sync),
) {
    // Requests taken off the queue that did not fit the batch being formed,
    // oldest first: they start the next batches, so none is overtaken for long.
    let mut set_aside: VecDeque<Job> = VecDeque::new();
    loop {
        let first = match set_aside.pop_front() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
        };
        let mut rows = first.rows;
        let mut elements = first.elements;
        let enqueued = first.enqueued;
        let mut jobs = vec![first];
        if policy.dynamic && policy.max_batch_size > 0 {
            // Every job joins a batch compatible with its first job.
            let max_elements = match policy.max_batch_elements {
                0 => usize::MAX,
                n => n,
            };
            let fits = |jobs: &[Job], rows: usize, elements: usize, j: &Job| {
                jobs.first().is_some_and(|f| compatible(f, j))
                    && rows + j.rows <= policy.max_batch_size
                    && elements.saturating_add(j.elements) <= max_elements
            };
            let mut i = 0;
            while let Some(candidate) = set_aside.get(i)
                && rows < policy.max_batch_size
            {
                if fits(&jobs, rows, elements, candidate) {
                    if let Some(j) = set_aside.remove(i) {
                        rows += j.rows;
                        elements += j.elements;
                        jobs.push(j);
                    }
                } else {
                    i += 1;
                }
            }
            let deadline = enqueued + policy.max_delay;
            // Bounded so one thread never hoards a queue's worth of requests.
            while rows < policy.max_batch_size && set_aside.len() < policy.max_batch_size {
                if policy.preferred.contains(&rows) && rx.is_empty() {
                    break;
                }
                let next = match rx.try_recv() {
                    Ok(j) => Some(j),
                    Err(flume::TryRecvError::Empty) if Instant::now() < deadline => {
                        rx.recv_deadline(deadline).ok()
                    }
                    Err(_) => None,
                };
                let Some(job) = next else { break };
                if fits(&jobs, rows, elements, &job) {
                    rows += job.rows;
                    elements += job.elements;
                    jobs.push(job);
                } else {
                    let full = jobs.first().is_some_and(|f| compatible(f, &job));
                    set_aside.push_back(job);
                    if full {
                        break;
                    }
                }
            }
        }
        if execute(backend.as_mut(), jobs, stats) == Engine::Crashed {
            match restart(name, rebuild, &rx, stats) {
                Some(b) => backend = b,
                None => return,
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Engine {
    Fine,
    /// The call panicked: the engine's state cannot be trusted any more.
    Crashed,
}

/// Replaces a crashed engine. The model reports not ready until it is back;
/// a rebuild that fails is retried with a growing pause. None when the
/// scheduler is shutting down meanwhile.
fn restart(
    name: &str,
    rebuild: &(dyn Fn() -> Result<Box<dyn Backend>> + Send + Sync),
    rx: &flume::Receiver<Job>,
    stats: &ModelStats,
) -> Option<Box<dyn Backend>> {
    stats.engine_restarts.fetch_add(1, Relaxed);
    stats.engines_down.fetch_add(1, Relaxed);
    let mut pause = Duration::from_millis(100);
    loop {
        match rebuild() {
            Ok(b) => {
                stats.engines_down.fetch_sub(1, Relaxed);
                tracing::warn!(engine = name, "engine restarted after a crash");
                return Some(b);
            }
            Err(e) => {
                tracing::error!(
                    engine = name,
                    "engine restart failed, retrying in {pause:?}: {e}"
                );
                if rx.is_disconnected() {
                    return None;
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn execute(backend: &mut dyn Backend, mut jobs: Vec<Job>, stats: &ModelStats) -> Engine {
    let start = Instant::now();
    stats.pending.fetch_sub(jobs.len() as i64, Relaxed);
    // Work nobody will read, or that is already late, never reaches the
    // engine. Taken out in place: no allocation per batch.
    let gone = |j: &mut Job| j.reply.is_closed() || j.deadline.is_some_and(|d| d <= start);
    for j in jobs.extract_if(.., gone) {
        let waited = start - j.enqueued;
        if j.reply.is_closed() {
            stats.fail(FailReason::Cancelled, waited);
        } else {
            stats.fail(FailReason::Timeout, waited);
            let _ = j.reply.send(Err(Error::unavailable(format!(
                "request timeout expired: it waited {} µs in the queue",
                waited.as_micros()
            ))));
        }
    }
    if jobs.is_empty() {
        return Engine::Fine;
    }
    let rows: usize = jobs.iter().map(|j| j.rows).sum();
    for j in &jobs {
        stats.queue.observe(start - j.enqueued);
    }
    let batch: Vec<&[Tensor]> = jobs.iter().map(|j| j.inputs.as_slice()).collect();
    let (result, mut health) = call(backend, &batch, jobs.len());
    let finished = Instant::now();
    stats.computed(jobs.len(), rows, finished - start);
    drop(batch);
    let batch_requests = jobs.len();
    let timing = |enqueued| Timing {
        enqueued,
        started: start,
        finished,
        batch_requests,
        batch_rows: rows,
    };
    match result {
        Ok(outputs) if jobs.len() == 1 => {
            let job = jobs.into_iter().next().map(|j| (j.reply, j.enqueued));
            if let Some((reply, enqueued)) = job {
                let timing = Timing {
                    batch_requests: 1,
                    ..timing(enqueued)
                };
                let _ = reply.send(Ok(Ran {
                    outputs,
                    timing,
                    steps: Vec::new(),
                }));
            }
        }
        Ok(outputs) => {
            if let Some(bad) = outputs.iter().find(|o| o.batch() != rows) {
                let e = Error::internal(format!(
                    "engine returned {} rows for a batch of {rows}; is dim 0 really a batch dimension?",
                    bad.batch()
                ));
                for j in jobs {
                    let _ = j.reply.send(Err(e.clone()));
                }
                return health;
            }
            let mut start_row = 0;
            let timings: Vec<Timing> = jobs.iter().map(|j| timing(j.enqueued)).collect();
            for (j, timing) in jobs.into_iter().zip(timings) {
                let end = start_row + j.rows;
                let part = outputs
                    .iter()
                    .map(|o| o.slice_batch(start_row, end))
                    .collect();
                start_row = end;
                let _ = j.reply.send(Ok(Ran {
                    outputs: part,
                    timing,
                    steps: Vec::new(),
                }));
            }
        }
        // One request's input can fail the whole batch (a sequence longer
        // than the model's position table): each runs again alone, so only
        // the request at fault gets the error.
        Err(_) if jobs.len() > 1 && health == Engine::Fine => {
            for j in jobs {
                let started = Instant::now();
                let (r, h) = if health == Engine::Fine {
                    call(backend, &[j.inputs.as_slice()], 1)
                } else {
                    (
                        Err(Error::internal(
                            "the engine crashed on this batch; it is being restarted",
                        )),
                        Engine::Crashed,
                    )
                };
                health = h;
                if let Err(e) = &r {
                    tracing::warn!("inference failed: {e}");
                }
                let timing = Timing {
                    enqueued: j.enqueued,
                    started,
                    finished: Instant::now(),
                    batch_requests: 1,
                    batch_rows: j.rows,
                };
                let _ = j.reply.send(r.map(|outputs| Ran {
                    outputs,
                    timing,
                    steps: Vec::new(),
                }));
            }
        }
        Err(e) => {
            tracing::warn!("inference failed: {e}");
            for j in jobs {
                let _ = j.reply.send(Err(e.clone()));
            }
        }
    }
    health
}

/// One engine call. A panic inside the engine (a bug in a kernel, an
/// injected fault) fails this call, not the thread: the engine is then
/// replaced.
fn call(
    backend: &mut dyn Backend,
    batch: &[&[Tensor]],
    requests: usize,
) -> (Result<Vec<Tensor>>, Engine) {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| backend.infer(batch))) {
        Ok(r) => (r, Engine::Fine),
        Err(_) => {
            tracing::error!("the engine panicked during a call of {requests} request(s)");
            (
                Err(Error::internal(
                    "the engine crashed on this batch; it is being restarted",
                )),
                Engine::Crashed,
            )
        }
    }
}

#[cfg(test)]
mod tests;
