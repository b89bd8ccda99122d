//! The load steps: closed loop (N clients, each sending its next request
//! when the last one is answered, as perf_analyzer's concurrency mode does)
//! or open loop (requests sent at a fixed rate whether or not earlier ones
//! are answered, each from its own task and pooled connection, so a slow
//! server cannot slow the sender down and hide its own latency). Each step has a
//! warm-up whose requests are not counted, and reads the server's
//! statistics just before and after its measured part.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hone_core::{Error, Result};

use crate::conn;
use crate::pool::pool;
use crate::report::{Counters, Latency, Report, Step};
use crate::target::{Data, Payload, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    HttpJson,
    HttpBinary,
    Grpc,
}

impl Protocol {
    pub fn parse(s: &str) -> Result<Protocol> {
        match s {
            "http-json" | "http" => Ok(Protocol::HttpJson),
            "http-binary" => Ok(Protocol::HttpBinary),
            "grpc" => Ok(Protocol::Grpc),
            _ => Err(Error::invalid(format!(
                "--protocol {s}: expected http-json, http-binary or grpc"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::HttpJson => "http-json",
            Protocol::HttpBinary => "http-binary",
            Protocol::Grpc => "grpc",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Closed loop: this many clients, one request in flight each.
    Concurrency(usize),
    /// Open loop: requests due at this many a second.
    Rate(f64),
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Load::Concurrency(c) => write!(f, "c={c}"),
            Load::Rate(r) => write!(f, "{r} req/s"),
        }
    }
}

/// Everything `hone bench` was asked to do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The server (`http://HOST:PORT`, its API key file and CA file):
    /// metadata and statistics always come from here, over hone-client.
    pub server: hone_client::Options,
    /// `http://HOST:PORT` of the gRPC port (for `--protocol grpc`).
    pub grpc_url: String,
    pub model: String,
    pub version: Option<String>,
    pub protocol: Protocol,
    pub loads: Vec<Load>,
    pub duration: Duration,
    pub warmup: Duration,
    pub batch: usize,
    pub data: Data,
    /// Dims without the batch dimension, per input name (`--shape`).
    pub shapes: Vec<(String, Vec<i64>)>,
}

/// How the measured connections reach the server: read once from the
/// plan's options, shared by every client task.
struct Link {
    base: String,
    /// Sent as `Authorization: Bearer KEY` (HTTP and gRPC).
    key: Option<String>,
    /// Trust for `https://` (the plan's `cacert`), for the HTTP/1 connections.
    tls: Option<conn::Tls>,
}

/// What a progress line shows, about once a second.
#[derive(Debug, Clone)]
pub struct Progress {
    pub load: Load,
    pub warming: bool,
    pub elapsed: Duration,
    pub total: Duration,
    pub done: u64,
    pub errors: u64,
}

/// Open loop never holds more than this many requests in flight; sends
/// past it are counted as dropped (the client, not the server, saturated).
const MAX_OUTSTANDING: u64 = 4096;

/// One client's connection, in the plan's protocol.
enum Sender {
    Http(conn::Http),
    /// The channel and the key its requests carry.
    Grpc(hone_client::grpc::Grpc, Option<String>),
}

impl Sender {
    async fn open(plan: &Plan, link: &Link) -> Result<Sender> {
        Ok(match plan.protocol {
            Protocol::Grpc => Sender::Grpc(
                hone_client::grpc::connect(&plan.grpc_url, plan.server.cacert.as_deref())
                    .await
                    .map_err(client_error)?,
                link.key.clone(),
            ),
            _ => Sender::Http(
                conn::Http::connect(&link.base, link.key.as_deref(), link.tls.as_ref()).await?,
            ),
        })
    }

    /// One request: Ok, or the label its failure is counted under.
    async fn send(
        &mut self,
        plan: &Plan,
        path: &str,
        p: &Payload,
    ) -> std::result::Result<(), Failure> {
        match self {
            Sender::Http(h) => {
                let (body, header) = match plan.protocol {
                    Protocol::HttpBinary => (p.binary.0.clone(), Some(p.binary.1)),
                    _ => (p.json.clone(), None),
                };
                match h.request("POST", path, body, header).await {
                    Ok((200, _)) => Ok(()),
                    Ok((status, body)) => Err(Failure::Answer(
                        status.to_string(),
                        String::from_utf8_lossy(&body).into_owned(),
                    )),
                    Err(e) => Err(Failure::Connection(e.to_string())),
                }
            }
            Sender::Grpc(g, key) => match g
                .model_infer(hone_client::grpc::authorize(p.grpc.clone(), key.as_deref()))
                .await
            {
                Ok(_) => Ok(()),
                Err(s) => Err(Failure::Answer(
                    format!("{:?}", s.code()).to_uppercase(),
                    s.message().to_string(),
                )),
            },
        }
    }
}

/// A client error as the load generator reports it: a missing model is
/// NOT_FOUND, anything else UNAVAILABLE, with the client's whole message.
pub(crate) fn client_error(e: hone_client::ClientError) -> Error {
    match e.status() {
        Some(hone_client::StatusCode::NOT_FOUND) => Error::not_found(e.to_string()),
        _ => Error::unavailable(e.to_string()),
    }
}

enum Failure {
    /// A status (and the server's message).
    Answer(String, String),
    /// The connection broke; the client reconnects.
    Connection(String),
}

impl Failure {
    fn label(&self) -> String {
        match self {
            Failure::Answer(s, _) => s.clone(),
            Failure::Connection(_) => "connection".into(),
        }
    }
}

/// What one run of a load collected.
#[derive(Default)]
struct Samples {
    latencies_us: Vec<u32>,
    errors: BTreeMap<String, u64>,
    dropped: u64,
}

impl Samples {
    fn merge(&mut self, o: Samples) {
        self.latencies_us.extend(o.latencies_us);
        for (k, n) in o.errors {
            *self.errors.entry(k).or_default() += n;
        }
        self.dropped += o.dropped;
    }
}

/// Live counters the progress line reads.
#[derive(Default)]
struct Live {
    done: AtomicU64,
    errors: AtomicU64,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Runs every load step of `plan` against its server; `progress` is called
/// about once a second while a step runs.
pub async fn run(plan: &Plan, progress: &(dyn Fn(&Progress) + Sync)) -> Result<Report> {
    if plan.batch == 0 {
        return Err(Error::invalid("--batch must be at least 1"));
    }
    let client = hone_client::Client::new(&plan.server).map_err(client_error)?;
    let link = Arc::new(Link {
        base: client.base().to_string(),
        key: client.api_key().map(str::to_string),
        tls: plan
            .server
            .cacert
            .as_deref()
            .map(conn::Tls::from_pem_file)
            .transpose()?,
    });
    let target = Target::describe(
        &client,
        &plan.model,
        plan.version.as_deref(),
        plan.batch,
        &plan.shapes,
    )
    .await?;
    let payloads = Arc::new(pool(&target, &plan.data, 1)?);
    let path = match &plan.version {
        Some(v) => format!("/v2/models/{}/versions/{v}/infer", plan.model),
        None => format!("/v2/models/{}/infer", plan.model),
    };
    // One request first: a model that refuses it is a clear error, not a
    // table of failures.
    let mut probe = Sender::open(plan, &link).await?;
    if let Some(p) = payloads.first()
        && let Err(f) = probe.send(plan, &path, p).await
    {
        let why = match f {
            Failure::Answer(s, m) => format!("{s} {m}"),
            Failure::Connection(e) => e,
        };
        return Err(Error::invalid(format!(
            "the first request to '{}' failed: {why}",
            plan.model
        )));
    }
    drop(probe);
    let counters = || async {
        client
            .statistics(&plan.model, plan.version.as_deref())
            .await
            .ok()
            .and_then(|v| Counters::from_stats(&v))
    };
    let mut steps = Vec::new();
    for &load in &plan.loads {
        if !plan.warmup.is_zero() {
            drive(
                plan,
                &link,
                &path,
                &payloads,
                load,
                plan.warmup,
                true,
                progress,
            )
            .await?;
        }
        let before = counters().await;
        let start = Instant::now();
        let s = drive(
            plan,
            &link,
            &path,
            &payloads,
            load,
            plan.duration,
            false,
            progress,
        )
        .await?;
        let seconds = start.elapsed().as_secs_f64();
        let after = counters().await;
        let ok = s.latencies_us.len() as u64;
        let failed: u64 = s.errors.values().sum();
        let throughput = ok as f64 / seconds;
        steps.push(Step {
            load: load.to_string(),
            concurrency: match load {
                Load::Concurrency(c) => Some(c),
                Load::Rate(_) => None,
            },
            request_rate: match load {
                Load::Rate(r) => Some(r),
                Load::Concurrency(_) => None,
            },
            seconds,
            requests: ok + failed,
            ok,
            errors: s.errors,
            dropped: s.dropped,
            throughput,
            inferences_per_sec: throughput * plan.batch as f64,
            latency_us: Latency::of(s.latencies_us),
            server: before.zip(after).and_then(|(b, a)| b.split(&a)),
        });
    }
    Ok(Report {
        url: link.base.clone(),
        model: plan.model.clone(),
        protocol: plan.protocol.name().to_string(),
        batch: plan.batch,
        inputs: payloads
            .first()
            .map(|p| p.inputs.clone())
            .unwrap_or_default(),
        guessed_shapes: target.guessed,
        steps,
    })
}

/// One run of `load` for `length`, with a progress line.
#[allow(clippy::too_many_arguments)]
async fn drive(
    plan: &Plan,
    link: &Arc<Link>,
    path: &str,
    payloads: &Arc<Vec<Payload>>,
    load: Load,
    length: Duration,
    warming: bool,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<Samples> {
    let live = Arc::new(Live::default());
    let start = Instant::now();
    let work = async {
        match load {
            Load::Concurrency(c) => {
                closed(plan, link, path, payloads, c, start + length, &live).await
            }
            Load::Rate(r) => open(plan, link, path, payloads, r, start + length, &live).await,
        }
    };
    tokio::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            r = &mut work => return r,
            _ = tick.tick() => progress(&Progress {
                load,
                warming,
                elapsed: start.elapsed(),
                total: length,
                done: live.done.load(Relaxed),
                errors: live.errors.load(Relaxed),
            }),
        }
    }
}

async fn closed(
    plan: &Plan,
    link: &Arc<Link>,
    path: &str,
    payloads: &Arc<Vec<Payload>>,
    clients: usize,
    end: Instant,
    live: &Arc<Live>,
) -> Result<Samples> {
    if clients == 0 {
        return Err(Error::invalid("--concurrency must be at least 1"));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..clients {
        let (plan, link, path, payloads, live) = (
            plan.clone(),
            link.clone(),
            path.to_string(),
            payloads.clone(),
            live.clone(),
        );
        tasks.spawn(async move {
            let mut s = Samples::default();
            let mut sender = Sender::open(&plan, &link).await?;
            let mut i = k;
            while Instant::now() < end {
                let Some(p) = payloads.get(i % payloads.len().max(1)) else {
                    break;
                };
                i += 1;
                let t0 = Instant::now();
                match sender.send(&plan, &path, p).await {
                    Ok(()) => s.latencies_us.push(micros(t0.elapsed())),
                    Err(f) => {
                        live.errors.fetch_add(1, Relaxed);
                        *s.errors.entry(f.label()).or_default() += 1;
                        if matches!(f, Failure::Connection(_)) {
                            sender = Sender::open(&plan, &link).await?;
                        }
                    }
                }
                live.done.fetch_add(1, Relaxed);
            }
            Ok::<_, Error>(s)
        });
    }
    let mut all = Samples::default();
    while let Some(r) = tasks.join_next().await {
        all.merge(r.map_err(|e| Error::internal(format!("a client task failed: {e}")))??);
    }
    Ok(all)
}

async fn open(
    plan: &Plan,
    link: &Arc<Link>,
    path: &str,
    payloads: &Arc<Vec<Payload>>,
    rate: f64,
    end: Instant,
    live: &Arc<Live>,
) -> Result<Samples> {
    if !(rate.is_finite() && rate > 0.0) {
        return Err(Error::invalid("--request-rate must be a positive number"));
    }
    // Idle connections, reused; a new one is opened when none is free.
    let idle: Arc<std::sync::Mutex<Vec<Sender>>> = Arc::default();
    let shared = Arc::new(std::sync::Mutex::new(Samples::default()));
    let outstanding = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    let mut dropped = 0;
    for k in 0u64.. {
        let due = start + Duration::from_secs_f64(k as f64 / rate);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        if outstanding.load(Relaxed) >= MAX_OUTSTANDING {
            dropped += 1;
            continue;
        }
        outstanding.fetch_add(1, Relaxed);
        let (plan, link, path, payloads, live) = (
            plan.clone(),
            link.clone(),
            path.to_string(),
            payloads.clone(),
            live.clone(),
        );
        let (idle, shared, outstanding) = (idle.clone(), shared.clone(), outstanding.clone());
        tasks.spawn(async move {
            // From the send: the timer's millisecond granularity is the
            // client's, not the server's, and nothing here waits on answers.
            let t0 = Instant::now();
            let taken = idle.lock().ok().and_then(|mut v| v.pop());
            let sender = match taken {
                Some(s) => Ok(s),
                None => Sender::open(&plan, &link).await,
            };
            let outcome = match sender {
                Ok(mut s) => {
                    let p = payloads.get(k as usize % payloads.len().max(1));
                    let r = match p {
                        Some(p) => s.send(&plan, &path, p).await,
                        None => Ok(()),
                    };
                    if !matches!(r, Err(Failure::Connection(_)))
                        && let Ok(mut v) = idle.lock()
                    {
                        v.push(s);
                    }
                    r
                }
                Err(e) => Err(Failure::Connection(e.message)),
            };
            if let Ok(mut s) = shared.lock() {
                match outcome {
                    Ok(()) => s.latencies_us.push(micros(t0.elapsed())),
                    Err(f) => {
                        live.errors.fetch_add(1, Relaxed);
                        *s.errors.entry(f.label()).or_default() += 1;
                    }
                }
            }
            live.done.fetch_add(1, Relaxed);
            outstanding.fetch_sub(1, Relaxed);
        });
        // Reap finished tasks as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let mut s = std::mem::take(
        &mut *shared
            .lock()
            .map_err(|_| Error::internal("samples lock poisoned"))?,
    );
    s.dropped = dropped;
    Ok(s)
}
