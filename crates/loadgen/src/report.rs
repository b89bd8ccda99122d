//! Samples into figures: latency percentiles, throughput, errors by status,
//! the server's own split from the difference of its statistics, and the
//! table and JSON `hone bench` prints.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value as Json;

/// What one load step measured.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// `c=16` or `200 req/s`.
    pub load: String,
    pub concurrency: Option<usize>,
    pub request_rate: Option<f64>,
    pub seconds: f64,
    /// Answered requests (any status).
    pub requests: u64,
    pub ok: u64,
    /// Failed requests by HTTP status, gRPC code, or `connection`.
    pub errors: BTreeMap<String, u64>,
    /// Open loop only: sends skipped because too many were outstanding.
    pub dropped: u64,
    /// Successful requests a second.
    pub throughput: f64,
    /// Rows a second (throughput × batch).
    pub inferences_per_sec: f64,
    pub latency_us: Latency,
    /// From the server's statistics extension, when it has one.
    pub server: Option<ServerSplit>,
}

/// Client-side latency of successful requests, send to answer, in
/// microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Latency {
    pub fn of(mut us: Vec<u32>) -> Latency {
        if us.is_empty() {
            return Latency::default();
        }
        us.sort_unstable();
        let at = |p: f64| {
            let i = ((p * us.len() as f64).ceil() as usize).clamp(1, us.len()) - 1;
            us.get(i).copied().map_or(0, u64::from)
        };
        Latency {
            mean: us.iter().map(|&v| f64::from(v)).sum::<f64>() / us.len() as f64,
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: us.last().copied().map_or(0, u64::from),
        }
    }
}

/// What the server says it did during the step, per request.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ServerSplit {
    pub queue_us: f64,
    /// Input copy, inference and output copy.
    pub compute_us: f64,
    /// Requests per engine call.
    pub mean_batch: f64,
    pub executions: u64,
}

/// The statistics counters `hone bench` reads (summed over versions).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub success: u64,
    pub queue_ns: u64,
    pub compute_ns: u64,
    pub inferences: u64,
    pub executions: u64,
}

fn num(v: Option<&Json>) -> u64 {
    match v {
        Some(Json::Number(n)) => n.as_u64().unwrap_or(0),
        // Some servers write uint64 as strings (protobuf JSON mapping).
        Some(Json::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

impl Counters {
    /// From a `/v2/models/{m}/stats` answer (Triton's statistics extension).
    pub fn from_stats(v: &Json) -> Option<Counters> {
        let list = v.get("model_stats")?.as_array()?;
        let mut c = Counters::default();
        for m in list {
            let s = m.get("inference_stats")?;
            let ns = |k: &str| num(s.get(k).and_then(|x| x.get("ns")));
            c.success += num(s.get("success").and_then(|x| x.get("count")));
            c.queue_ns += ns("queue");
            c.compute_ns += ns("compute_input") + ns("compute_infer") + ns("compute_output");
            c.inferences += num(m.get("inference_count"));
            c.executions += num(m.get("execution_count"));
        }
        Some(c)
    }

    /// The split over the requests between `self` (before) and `after`.
    pub fn split(&self, after: &Counters) -> Option<ServerSplit> {
        let n = after.success.checked_sub(self.success).filter(|&n| n > 0)? as f64;
        let execs = after.executions.saturating_sub(self.executions);
        let infs = after.inferences.saturating_sub(self.inferences);
        Some(ServerSplit {
            queue_us: after.queue_ns.saturating_sub(self.queue_ns) as f64 / n / 1e3,
            compute_us: after.compute_ns.saturating_sub(self.compute_ns) as f64 / n / 1e3,
            mean_batch: if execs > 0 {
                infs as f64 / execs as f64
            } else {
                0.0
            },
            executions: execs,
        })
    }
}

/// Everything `hone bench` measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    pub model: String,
    pub protocol: String,
    pub batch: usize,
    /// `name DTYPE [shape]` per input, as sent.
    pub inputs: Vec<String>,
    /// Inputs whose dynamic dimensions got a default size (set with --shape).
    pub guessed_shapes: Vec<String>,
    pub steps: Vec<Step>,
}

impl Report {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} on {} ({}, batch {}): {}\n",
            self.model,
            self.url,
            self.protocol,
            self.batch,
            self.inputs.join(", ")
        );
        if !self.guessed_shapes.is_empty() {
            out.push_str(&format!(
                "dynamic dimensions of {} set to {} (choose with --shape NAME:D1,D2)\n",
                self.guessed_shapes.join(", "),
                crate::target::DEFAULT_DYNAMIC
            ));
        }
        out.push_str(
            "\nload          req/s   infer/s    p50 ms    p90 ms    p99 ms    max ms   server queue/compute ms  batch  errors\n",
        );
        for s in &self.steps {
            let ms = |us: u64| us as f64 / 1e3;
            let server = s.server.map_or_else(
                || "                     -      -".to_string(),
                |v| {
                    format!(
                        "{:>14.3} / {:<7.3} {:>6.2}",
                        v.queue_us / 1e3,
                        v.compute_us / 1e3,
                        v.mean_batch
                    )
                },
            );
            let mut errors: Vec<String> =
                s.errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            if s.dropped > 0 {
                errors.push(format!("dropped: {}", s.dropped));
            }
            out.push_str(&format!(
                "{:<10} {:>8.0} {:>9.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {server}  {}\n",
                s.load,
                s.throughput,
                s.inferences_per_sec,
                ms(s.latency_us.p50),
                ms(s.latency_us.p90),
                ms(s.latency_us.p99),
                ms(s.latency_us.max),
                if errors.is_empty() {
                    "0".to_string()
                } else {
                    errors.join(", ")
                }
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_sample_at_or_above() {
        let l = Latency::of((1..=100).collect());
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50, 90, 99, 100));
        assert!((l.mean - 50.5).abs() < 1e-9);
        assert_eq!(Latency::of(vec![7]).p99, 7);
        assert_eq!(Latency::of(Vec::new()).max, 0);
    }

    #[test]
    fn the_split_is_the_difference_per_request() {
        let stats = |n: u64, q: u64, execs: u64| {
            serde_json::json!({"model_stats": [{"inference_count": n, "execution_count": execs,
                "inference_stats": {"success": {"count": n, "ns": 0}, "queue": {"count": n, "ns": q},
                "compute_input": {"count": n, "ns": 0}, "compute_infer": {"count": n, "ns": n * 1000},
                "compute_output": {"count": n, "ns": "0"}}}]})
        };
        let a = Counters::from_stats(&stats(10, 0, 10)).unwrap();
        let b = Counters::from_stats(&stats(110, 200_000, 35)).unwrap();
        let s = a.split(&b).unwrap();
        assert!((s.queue_us - 2.0).abs() < 1e-9, "{s:?}");
        assert!((s.mean_batch - 4.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.executions, 25);
        assert!(b.split(&a).is_none());
    }
}
