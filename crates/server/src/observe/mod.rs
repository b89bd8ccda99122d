//! What the server records about each inference request beyond its
//! statistics: the access log line, trace spans (W3C `traceparent` in,
//! OTLP out) and sampled payloads. Every part is off unless configured, and
//! none of them blocks a request.

pub mod context;
pub mod otlp;
pub mod payload;

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hone_core::{NamedTensor, Tensor};

use crate::scheduler::{StepTime, Timing};
use context::TraceContext;
use otlp::{Attr, Exporter, Span};
use payload::{PayloadLog, Sample};

/// `hone serve`'s observability flags.
#[derive(Debug, Clone)]
pub struct ObserveOptions {
    /// `--access-log`: one info line per inference request (target
    /// `hone::access`).
    pub access_log: bool,
    /// `--otlp-endpoint`: where spans go (OTLP/HTTP JSON).
    pub otlp_endpoint: Option<String>,
    /// `--trace-sample-ratio`: the share of requests without a sampled
    /// `traceparent` that start a trace of their own.
    pub trace_sample_ratio: f64,
    /// `--payload-log DIR`, `--payload-log-ratio`, `--payload-log-max-bytes`.
    pub payload_dir: Option<PathBuf>,
    pub payload_ratio: f64,
    pub payload_max_bytes: u64,
}

impl Default for ObserveOptions {
    fn default() -> Self {
        Self {
            access_log: false,
            otlp_endpoint: None,
            trace_sample_ratio: 0.01,
            payload_dir: None,
            payload_ratio: 0.01,
            payload_max_bytes: 256 << 20,
        }
    }
}

pub struct Observer {
    access_log: bool,
    ratio: f64,
    pub exporter: Option<Exporter>,
    pub payloads: Option<PayloadLog>,
}

/// One request, from its arrival.
pub struct Observation {
    received: Instant,
    wall: SystemTime,
    protocol: &'static str,
    pub trace: Option<TraceContext>,
    pub request_id: String,
    /// Inputs kept for the payload log when this request is sampled.
    pub keep: Option<Vec<NamedTensor>>,
}

/// How a request ended.
#[derive(Default)]
pub struct Outcome<'a> {
    pub model: Option<(&'a str, &'a str)>,
    /// HTTP status, or the gRPC code.
    pub status: u16,
    pub error: Option<&'a str>,
    pub bytes_in: usize,
    pub bytes_out: usize,
    pub timing: Option<Timing>,
    /// An ensemble's steps.
    pub steps: &'a [StepTime],
}

impl Observer {
    pub fn start(o: &ObserveOptions) -> Result<Observer, crate::error::SetupError> {
        let exporter = o
            .otlp_endpoint
            .as_deref()
            .map(Exporter::start)
            .transpose()?;
        let payloads = o
            .payload_dir
            .as_deref()
            .map(|d| PayloadLog::start(d, o.payload_ratio, o.payload_max_bytes))
            .transpose()?;
        Ok(Observer {
            access_log: o.access_log,
            ratio: o.trace_sample_ratio,
            exporter,
            payloads,
        })
    }

    pub fn off() -> Observer {
        Observer {
            access_log: false,
            ratio: 0.0,
            exporter: None,
            payloads: None,
        }
    }

    /// Tracing is on: responses carry `traceparent`.
    pub fn tracing(&self) -> bool {
        self.exporter.is_some()
    }

    /// Starts recording a request; None when nothing is recorded, so the
    /// default server pays one branch.
    pub fn begin(
        &self,
        protocol: &'static str,
        traceparent: Option<&[u8]>,
        request_id: Option<&[u8]>,
    ) -> Option<Observation> {
        if !self.access_log && self.exporter.is_none() && self.payloads.is_none() {
            return None;
        }
        let trace = self
            .exporter
            .as_ref()
            .map(|_| TraceContext::from_header(traceparent, self.ratio))
            .or_else(|| {
                // Without export, a caller's trace id still reaches the logs.
                traceparent
                    .and_then(context::parse)
                    .map(|(trace_id, parent, flags)| TraceContext {
                        trace_id,
                        parent: Some(parent),
                        span_id: context::new_id(),
                        sampled: flags & 1 == 1,
                    })
            });
        let request_id = request_id
            .and_then(|b| std::str::from_utf8(b).ok())
            .filter(|s| !s.is_empty() && s.len() <= 128)
            .map_or_else(context::request_id, str::to_string);
        Some(Observation {
            received: Instant::now(),
            wall: SystemTime::now(),
            protocol,
            trace,
            request_id,
            keep: None,
        })
    }

    /// Whether to keep this request's inputs for the payload log.
    pub fn sample_payload(&self) -> bool {
        self.payloads.as_ref().is_some_and(PayloadLog::wants)
    }

    /// Records a finished request: access log, spans, payload sample.
    pub fn finish(
        &self,
        mut obs: Observation,
        out: &Outcome<'_>,
        outputs: Option<Vec<(String, Tensor)>>,
    ) {
        let end = Instant::now();
        let total = end - obs.received;
        let (model, version) = out.model.unwrap_or(("", ""));
        if self.access_log {
            let trace_id = obs.trace.map(|t| t.trace_hex());
            let (queue_us, compute_us, batch) = out.timing.map_or((0, 0, 0), |t| {
                (
                    t.queue().as_micros() as u64,
                    t.compute().as_micros() as u64,
                    t.batch_requests,
                )
            });
            tracing::info!(
                target: "hone::access",
                protocol = obs.protocol,
                model,
                version,
                status = out.status,
                bytes_in = out.bytes_in,
                bytes_out = out.bytes_out,
                total_us = total.as_micros() as u64,
                queue_us,
                compute_us,
                batch,
                request_id = obs.request_id.as_str(),
                trace_id = trace_id.as_deref(),
                error = out.error,
                "request"
            );
        }
        if let (Some(ex), Some(t)) = (&self.exporter, obs.trace.filter(|t| t.sampled)) {
            ex.send(spans(&obs, t, out, end));
        }
        if let (Some(p), Some(inputs), Some(outputs)) = (&self.payloads, obs.keep.take(), outputs) {
            p.send(Sample {
                time: obs.wall,
                model: model.to_string(),
                version: version.to_string(),
                request_id: obs.request_id,
                trace_id: obs.trace.map(|t| t.trace_hex()),
                inputs,
                outputs,
            });
        }
    }
}

impl Observer {
    /// Export and payload counters, in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        use std::sync::atomic::Ordering::Relaxed;
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        if let Some(e) = &self.exporter {
            counter(
                "hone_trace_spans_exported_total",
                "Spans the OTLP collector accepted.",
                e.stats.exported.load(Relaxed),
            );
            counter(
                "hone_trace_spans_dropped_total",
                "Spans dropped because the export queue was full.",
                e.stats.dropped.load(Relaxed),
            );
            counter(
                "hone_trace_spans_failed_total",
                "Spans whose export failed (collector down or refusing).",
                e.stats.failed.load(Relaxed),
            );
        }
        if let Some(p) = &self.payloads {
            counter(
                "hone_payload_samples_written_total",
                "Sampled request/response pairs written to the payload log.",
                p.stats.written.load(Relaxed),
            );
            counter(
                "hone_payload_samples_dropped_total",
                "Sampled pairs dropped: writer behind, write error, or one pair larger than a file.",
                p.stats.dropped.load(Relaxed),
            );
        }
    }
}

/// The server span and, for a request that ran, its phases as children:
/// decode (body, parse, validation), queue, compute, encode.
fn spans(obs: &Observation, t: TraceContext, out: &Outcome<'_>, end: Instant) -> Vec<Span> {
    let base = obs
        .wall
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let at = |i: Instant| base + i.saturating_duration_since(obs.received).as_nanos() as u64;
    let (model, version) = out.model.unwrap_or(("", ""));
    let mut attrs = vec![
        ("rpc.system", Attr::Str(obs.protocol.into())),
        ("hone.model", Attr::Str(model.into())),
        ("hone.model_version", Attr::Str(version.into())),
        ("hone.request_id", Attr::Str(obs.request_id.clone())),
        ("hone.status", Attr::Int(i64::from(out.status))),
        ("hone.bytes_in", Attr::Int(out.bytes_in as i64)),
        ("hone.bytes_out", Attr::Int(out.bytes_out as i64)),
    ];
    if obs.protocol == "http" {
        attrs.push((
            "http.response.status_code",
            Attr::Int(i64::from(out.status)),
        ));
    }
    let mut v = vec![Span {
        trace_id: t.trace_id,
        span_id: t.span_id,
        parent: t.parent,
        name: if model.is_empty() {
            "infer".into()
        } else {
            format!("infer {model}")
        },
        kind: 2,
        start_ns: at(obs.received),
        end_ns: at(end),
        attrs,
        error: out.error.map(str::to_string),
    }];
    if let Some(tm) = out.timing {
        let child = |name: &str, a: Instant, b: Instant, attrs| Span {
            trace_id: t.trace_id,
            span_id: context::new_id(),
            parent: Some(t.span_id),
            name: name.into(),
            kind: 1,
            start_ns: at(a),
            end_ns: at(b),
            attrs,
            error: None,
        };
        let batch = vec![
            ("hone.batch.requests", Attr::Int(tm.batch_requests as i64)),
            ("hone.batch.rows", Attr::Int(tm.batch_rows as i64)),
        ];
        v.push(child("decode", obs.received, tm.enqueued, Vec::new()));
        v.push(child("queue", tm.enqueued, tm.started, Vec::new()));
        v.push(child("compute", tm.started, tm.finished, batch));
        v.push(child("encode", tm.finished, end, Vec::new()));
        for step in out.steps {
            let attrs = vec![
                ("hone.model", Attr::Str(step.model.clone())),
                ("hone.model_version", Attr::Str(step.version.clone())),
            ];
            let name = format!("step {}", step.model);
            v.push(child(&name, step.started, step.started + step.took, attrs));
        }
    }
    v
}

/// `Server-Timing` (and the gRPC metadata of the same name): queue and
/// compute time in milliseconds, which browsers' tools and curl show; for
/// an ensemble, each step's time too (`step1;desc="model";dur=…`).
pub fn server_timing(t: &Timing, steps: &[StepTime]) -> String {
    use std::fmt::Write;
    let mut v = format!(
        "queue;dur={:.3}, compute;dur={:.3}",
        t.queue().as_secs_f64() * 1e3,
        t.compute().as_secs_f64() * 1e3
    );
    for (i, step) in steps.iter().enumerate() {
        // Model names are directory names; a quote or backslash would end
        // the quoted description early.
        let desc: String = step
            .model
            .chars()
            .filter(|c| !matches!(c, '"' | '\\'))
            .collect();
        let _ = write!(
            v,
            ", step{};desc=\"{desc}\";dur={:.3}",
            i + 1,
            step.took.as_secs_f64() * 1e3
        );
    }
    v
}
