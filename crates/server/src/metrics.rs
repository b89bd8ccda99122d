//! Per model-version counters and histograms, rendered as Prometheus text and
//! as Triton's statistics JSON. Lock-free: the hot path only does atomic adds.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value as Json, json};

/// Upper bounds in seconds; chosen to resolve both a 50 µs MLP call and a
/// multi-second queue wait.
const BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(BUCKETS.len());
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    pub fn sum_ns(&self) -> u64 {
        self.sum_ns.load(Relaxed)
    }

    /// The bucket counts so far (the last is past the last bound).
    pub fn buckets(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Relaxed)).collect()
    }

    /// The bucket bound (seconds) the `q` quantile falls under, as
    /// Prometheus's histogram_quantile reads it without interpolation;
    /// None before any observation, infinite past the last bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let want = (q * n as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Relaxed);
            if seen >= want {
                return Some(BUCKETS.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        Some(f64::INFINITY)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let (lead, own) = if labels.is_empty() {
            (String::new(), String::new())
        } else {
            (format!("{labels},"), format!("{{{labels}}}"))
        };
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{lead}le=\"{b}\"}} {cumulative}");
        }
        // The last bucket counts what exceeded every bound.
        cumulative += self.buckets.last().map_or(0, |n| n.load(Relaxed));
        let _ = writeln!(out, "{name}_bucket{{{lead}le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum{own} {}", self.sum_ns() as f64 / 1e9);
        let _ = writeln!(out, "{name}_count{own} {}", self.count());
    }

    /// A whole unlabelled histogram family, with its help line.
    pub(crate) fn render_family(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        self.render(out, name, "");
    }
}

/// Why a request failed, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// Malformed request or one that does not fit the model.
    Invalid,
    /// Queue full or model shutting down.
    Rejected,
    /// The engine failed.
    Backend,
    /// Its deadline passed while it waited in the queue; never run.
    Timeout,
    /// The client went away while it waited; never run.
    Cancelled,
}

impl FailReason {
    pub const ALL: [FailReason; 5] = [
        FailReason::Invalid,
        FailReason::Rejected,
        FailReason::Backend,
        FailReason::Timeout,
        FailReason::Cancelled,
    ];
    pub fn label(self) -> &'static str {
        match self {
            FailReason::Invalid => "INVALID",
            FailReason::Rejected => "REJECTED",
            FailReason::Backend => "BACKEND",
            FailReason::Timeout => "TIMEOUT",
            FailReason::Cancelled => "CANCELLED",
        }
    }
}

#[derive(Default)]
pub struct ModelStats {
    pub success: AtomicU64,
    failures: [AtomicU64; 5],
    pub fail_ns: AtomicU64,
    /// Rows inferred (sum of batch sizes).
    pub inference_count: AtomicU64,
    /// Engine calls; inference_count / execution_count is the mean batch.
    pub execution_count: AtomicU64,
    pub pending: AtomicI64,
    /// Engine instances replaced after a crash.
    pub engine_restarts: AtomicU64,
    /// Engine instances crashed and not yet back: the version is not ready.
    pub engines_down: AtomicI64,
    pub request: Histogram,
    pub queue: Histogram,
    pub compute: Histogram,
    pub last_inference_ms: AtomicU64,
    /// Requests that reached the engine and the engine time charged to them
    /// (each request of a batch is charged the whole call, as Triton does).
    pub compute_requests: AtomicU64,
    pub compute_request_ns: AtomicU64,
}

impl ModelStats {
    pub fn fail(&self, reason: FailReason, elapsed: Duration) {
        if let Some(f) = self.failures.get(reason as usize) {
            f.fetch_add(1, Relaxed);
        }
        self.fail_ns.fetch_add(elapsed.as_nanos() as u64, Relaxed);
    }

    /// Records one engine call that served `requests` requests.
    pub fn computed(&self, requests: usize, rows: usize, elapsed: Duration) {
        self.compute.observe(elapsed);
        self.execution_count.fetch_add(1, Relaxed);
        self.inference_count.fetch_add(rows as u64, Relaxed);
        self.compute_requests.fetch_add(requests as u64, Relaxed);
        self.compute_request_ns
            .fetch_add(elapsed.as_nanos() as u64 * requests as u64, Relaxed);
    }

    /// Triton's per-request compute statistics. Input staging and output
    /// copies happen inside the engine call, so their time is in `infer`;
    /// the counts agree because perf_analyzer requires that.
    pub fn compute_stats(&self) -> [(u64, u64); 3] {
        let n = self.compute_requests.load(Relaxed);
        [(n, 0), (n, self.compute_request_ns.load(Relaxed)), (n, 0)]
    }

    pub fn failures(&self, reason: FailReason) -> u64 {
        self.failures
            .get(reason as usize)
            .map_or(0, |f| f.load(Relaxed))
    }

    pub fn succeed(&self, elapsed: Duration) {
        self.success.fetch_add(1, Relaxed);
        self.request.observe(elapsed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.last_inference_ms
            .store(now.as_millis() as u64, Relaxed);
    }

    pub fn total_failures(&self) -> u64 {
        FailReason::ALL.iter().map(|r| self.failures(*r)).sum()
    }

    /// Triton's `/v2/models/{m}/stats` entry for this version.
    pub fn to_json(&self, name: &str, version: &str) -> Json {
        let d = |count: u64, ns: u64| json!({"count": count, "ns": ns});
        let fails = self.total_failures();
        let [input, infer, output] = self.compute_stats();
        json!({
            "name": name,
            "version": version,
            "last_inference": self.last_inference_ms.load(Relaxed),
            "inference_count": self.inference_count.load(Relaxed),
            "execution_count": self.execution_count.load(Relaxed),
            "inference_stats": {
                "success": d(self.success.load(Relaxed), self.request.sum_ns()),
                "fail": d(fails, self.fail_ns.load(Relaxed)),
                "queue": d(self.queue.count(), self.queue.sum_ns()),
                "compute_input": d(input.0, input.1),
                "compute_infer": d(infer.0, infer.1),
                "compute_output": d(output.0, output.1),
                "cache_hit": d(0, 0),
                "cache_miss": d(0, 0),
            },
            "batch_stats": [],
        })
    }
}

/// The `q` quantile's bucket bound over bucket counts (a difference of two
/// [`Histogram::buckets`] snapshots: the quantile of that interval).
pub fn quantile_of(counts: &[u64], q: f64) -> Option<f64> {
    let n: u64 = counts.iter().sum();
    if n == 0 {
        return None;
    }
    let want = (q * n as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= want {
            return Some(BUCKETS.get(i).copied().unwrap_or(f64::INFINITY));
        }
    }
    Some(f64::INFINITY)
}

/// One model version as the metrics page sees it.
pub struct MetricSource<'a> {
    pub model: &'a str,
    pub version: &'a str,
    pub ready: bool,
    pub stats: Option<&'a ModelStats>,
    pub drift: Option<&'a crate::drift::DriftMonitor>,
}

/// The Prometheus text exposition of every model version.
pub fn render(sources: &[MetricSource<'_>]) -> String {
    let mut out = String::with_capacity(4096 + sources.len() * 4096);
    let family = |out: &mut String,
                  name: &str,
                  kind: &str,
                  help: &str,
                  f: &dyn Fn(&mut String, &MetricSource<'_>, &str)| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for s in sources {
            let labels = format!(
                "model=\"{}\",version=\"{}\"",
                escape(s.model),
                escape(s.version)
            );
            f(out, s, &labels);
        }
    };
    family(
        &mut out,
        "hone_model_ready",
        "gauge",
        "1 when the model version is loaded and serving, 0 when it failed to load.",
        &|o, s, l| {
            let _ = writeln!(o, "hone_model_ready{{{l}}} {}", u8::from(s.ready));
        },
    );
    type Get = fn(&ModelStats) -> u64;
    let counters: [(&str, &str, Get); 3] = [
        (
            "hone_request_success_total",
            "Inference requests that succeeded.",
            |s| s.success.load(Relaxed),
        ),
        (
            "hone_inference_count_total",
            "Inferences performed (a batch of N counts N).",
            |s| s.inference_count.load(Relaxed),
        ),
        (
            "hone_execution_count_total",
            "Engine executions (one per dynamic batch).",
            |s| s.execution_count.load(Relaxed),
        ),
    ];
    for (name, help, get) in counters {
        family(&mut out, name, "counter", help, &|o, s, l| {
            if let Some(st) = s.stats {
                let _ = writeln!(o, "{name}{{{l}}} {}", get(st));
            }
        });
    }
    family(
        &mut out,
        "hone_request_failure_total",
        "counter",
        "Inference requests that failed, by reason.",
        &|o, s, l| {
            if let Some(st) = s.stats {
                for r in FailReason::ALL {
                    let _ = writeln!(
                        o,
                        "hone_request_failure_total{{{l},reason=\"{}\"}} {}",
                        r.label(),
                        st.failures(r)
                    );
                }
            }
        },
    );
    family(
        &mut out,
        "hone_pending_requests",
        "gauge",
        "Requests waiting in the queue for an engine.",
        &|o, s, l| {
            if let Some(st) = s.stats {
                let _ = writeln!(
                    o,
                    "hone_pending_requests{{{l}}} {}",
                    st.pending.load(Relaxed)
                );
            }
        },
    );
    family(
        &mut out,
        "hone_engine_restarts_total",
        "counter",
        "Engine instances replaced after crashing mid-call.",
        &|o, s, l| {
            if let Some(st) = s.stats {
                let _ = writeln!(
                    o,
                    "hone_engine_restarts_total{{{l}}} {}",
                    st.engine_restarts.load(Relaxed)
                );
            }
        },
    );
    type Hist = fn(&ModelStats) -> &Histogram;
    let hists: [(&str, &str, Hist); 3] = [
        (
            "hone_request_duration_seconds",
            "End-to-end time of successful requests, from decode to reply.",
            |s| &s.request,
        ),
        (
            "hone_queue_duration_seconds",
            "Time requests waited in the batcher queue.",
            |s| &s.queue,
        ),
        (
            "hone_compute_duration_seconds",
            "Engine time per execution (one batch).",
            |s| &s.compute,
        ),
    ];
    for (name, help, get) in hists {
        family(&mut out, name, "histogram", help, &|o, s, l| {
            if let Some(st) = s.stats {
                get(st).render(o, name, l);
            }
        });
    }
    render_drift(&mut out, sources);
    out
}

/// Drift gauges of the versions that have a reference profile; the others
/// have no series at all.
fn render_drift(out: &mut String, sources: &[MetricSource<'_>]) {
    let snaps: Vec<(String, crate::drift::Snapshot)> = sources
        .iter()
        .filter_map(|s| {
            let d = s.drift?;
            let l = format!(
                "model=\"{}\",version=\"{}\"",
                escape(s.model),
                escape(s.version)
            );
            Some((l, d.snapshot()))
        })
        .collect();
    if snaps.is_empty() {
        return;
    }
    let head = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
    };
    head(
        out,
        "hone_drift_window_rows",
        "gauge",
        "Input rows in the drift window.",
    );
    for (l, d) in &snaps {
        let _ = writeln!(out, "hone_drift_window_rows{{{l}}} {}", d.rows);
    }
    let gauges: [(&str, &str, &str, bool); 3] = [
        (
            "hone_feature_drift_psi",
            "Population Stability Index of an input feature over the window against its reference (hone_feature_drift_verdict says whether it matters).",
            "feature",
            true,
        ),
        (
            "hone_feature_drift_js",
            "Jensen-Shannon distance (base 2, 0-1) of an input feature over the window against its reference.",
            "feature",
            false,
        ),
        (
            "hone_prediction_drift_psi",
            "Population Stability Index of an output column over the window against its reference.",
            "output",
            true,
        ),
    ];
    for (name, help, key, psi) in gauges {
        head(out, name, "gauge", help);
        for (l, d) in &snaps {
            let list = if key == "output" {
                &d.outputs
            } else {
                &d.features
            };
            for f in list {
                let v = if psi { f.psi } else { f.jensen_shannon };
                if let Some(v) = v {
                    let _ = writeln!(out, "{name}{{{l},{key}=\"{}\"}} {v}", escape(&f.name));
                }
            }
        }
    }
    head(
        out,
        "hone_feature_drift_verdict",
        "gauge",
        "1 for an input feature's or output's current drift verdict (not_enough_data, stable, moderate, major), 0 for the others: significance for the window's size and PSI above sampling noise.",
    );
    for (l, d) in &snaps {
        for (key, list) in [("feature", &d.features), ("output", &d.outputs)] {
            for f in list.iter() {
                for v in crate::drift::Verdict::ALL {
                    let _ = writeln!(
                        out,
                        "hone_feature_drift_verdict{{{l},{key}=\"{}\",verdict=\"{}\"}} {}",
                        escape(&f.name),
                        v.as_str(),
                        u8::from(f.verdict == v)
                    );
                }
            }
        }
    }
    head(
        out,
        "hone_feature_drift_expected_psi",
        "gauge",
        "The PSI sampling alone reaches for an input feature at the window's and the reference's sizes.",
    );
    for (l, d) in &snaps {
        for f in &d.features {
            if let Some(e) = f.expected_psi.filter(|e| e.is_finite()) {
                let _ = writeln!(
                    out,
                    "hone_feature_drift_expected_psi{{{l},feature=\"{}\"}} {e}",
                    escape(&f.name)
                );
            }
        }
    }
    head(
        out,
        "hone_feature_out_of_range_rows",
        "gauge",
        "Input values in the window below or above the reference range, not finite (NaN, ±Inf), or (categorical features) no category seen in the reference.",
    );
    for (l, d) in &snaps {
        for f in &d.features {
            let unseen = f.unseen.map(|n| ("unseen", n));
            for (side, n) in [
                ("below", f.below_range),
                ("above", f.above_range),
                ("non_finite", f.non_finite),
            ]
            .into_iter()
            .chain(unseen)
            {
                let _ = writeln!(
                    out,
                    "hone_feature_out_of_range_rows{{{l},feature=\"{}\",side=\"{side}\"}} {n}",
                    escape(&f.name)
                );
            }
        }
    }
    head(
        out,
        "hone_drift_dropped_samples_total",
        "counter",
        "Requests left out of drift because its queue was full.",
    );
    for (l, d) in &snaps {
        let _ = writeln!(
            out,
            "hone_drift_dropped_samples_total{{{l}}} {}",
            d.dropped_samples
        );
    }
}

/// A Prometheus label value, escaped.
pub(crate) fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_buckets() {
        let st = ModelStats::default();
        st.succeed(Duration::from_micros(70));
        st.fail(FailReason::Rejected, Duration::from_micros(5));
        st.compute.observe(Duration::from_secs(20));
        let text = render(&[MetricSource {
            drift: None,
            model: "m",
            version: "1",
            ready: true,
            stats: Some(&st),
        }]);
        assert!(
            text.contains("hone_request_success_total{model=\"m\",version=\"1\"} 1\n"),
            "{text}"
        );
        assert!(text.contains(
            "hone_request_failure_total{model=\"m\",version=\"1\",reason=\"REJECTED\"} 1\n"
        ));
        assert!(text.contains(
            "hone_request_duration_seconds_bucket{model=\"m\",version=\"1\",le=\"0.00005\"} 0\n"
        ));
        assert!(text.contains(
            "hone_request_duration_seconds_bucket{model=\"m\",version=\"1\",le=\"0.0001\"} 1\n"
        ));
        assert!(text.contains(
            "hone_compute_duration_seconds_bucket{model=\"m\",version=\"1\",le=\"10\"} 0\n"
        ));
        assert!(text.contains(
            "hone_compute_duration_seconds_bucket{model=\"m\",version=\"1\",le=\"+Inf\"} 1\n"
        ));
        assert!(text.contains("hone_model_ready{model=\"m\",version=\"1\"} 1\n"));
    }
}
