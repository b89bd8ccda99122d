//! In-process speed of a model: batch-1 latency percentiles and the best
//! throughput over a few batch sizes, measured through the runtime crate
//! with the same session settings for every candidate.

use std::time::{Duration, Instant};

use hone_core::{Backend, Tensor, TensorData};
use hone_runtime::{OrtBackend, SessionConfig};

use crate::Result;

#[derive(Debug, Clone, Copy, Default)]
pub struct Perf {
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Rows per second at `best_batch`.
    pub throughput: f64,
    pub best_batch: usize,
}

/// A batch of `n` rows made by repeating a one-row tensor.
fn repeat_rows(t: &Tensor, n: usize) -> hone_core::Result<Tensor> {
    let mut shape = t.shape.clone();
    if shape.is_empty() {
        return Ok(t.clone());
    }
    shape[0] = n as i64;
    match &t.data {
        TensorData::Raw(b) => Tensor::from_wire_bytes(t.dtype, shape, b.repeat(n).into()),
        TensorData::Strings(s) => {
            let v: Vec<_> = (0..n).flat_map(|_| s.iter().cloned()).collect();
            Tensor::new(t.dtype, shape, TensorData::Strings(v))
        }
    }
}

/// Measures `model`. `row` holds one example (batch 1) per model input.
/// Latency is one session's; throughput is that of `instances` sessions
/// running at once, as a server with that many instances would run them.
pub fn measure(
    model: &[u8],
    row: &[Tensor],
    cfg: &SessionConfig,
    instances: usize,
    budget: Duration,
    batches: &[usize],
) -> Result<Perf> {
    let mut b = OrtBackend::from_bytes(model, cfg)?;
    // Warm up: first runs allocate and pick kernels.
    for _ in 0..3 {
        b.infer(&[row])?;
    }
    let lat_budget = budget / 2;
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < 20 || (start.elapsed() < lat_budget && times.len() < 2000) {
        let t = Instant::now();
        b.infer(&[row])?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    let (p50, p99) = (pct(0.5), pct(0.99));

    let mut best = (1000.0 / p50.max(1e-9), 1usize);
    let per = budget / 2 / batches.len().max(1) as u32;
    if instances > 1 {
        drop(b);
        best = (0.0, 1);
        for (n, rate) in concurrent_rates(model, row, cfg, instances, per, batches)? {
            if rate > best.0 {
                best = (rate, n);
            }
        }
        return Ok(Perf {
            p50_ms: p50,
            p99_ms: p99,
            throughput: best.0,
            best_batch: best.1,
        });
    }
    for &n in batches.iter().filter(|&&n| n > 1) {
        let inputs: Vec<Tensor> = row
            .iter()
            .map(|t| repeat_rows(t, n))
            .collect::<hone_core::Result<_>>()?;
        b.infer(&[&inputs])?;
        let start = Instant::now();
        let mut runs = 0;
        while runs < 3 || start.elapsed() < per {
            b.infer(&[&inputs])?;
            runs += 1;
        }
        let rate = (runs * n) as f64 / start.elapsed().as_secs_f64();
        if rate > best.0 {
            best = (rate, n);
        }
    }
    Ok(Perf {
        p50_ms: p50,
        p99_ms: p99,
        throughput: best.0,
        best_batch: best.1,
    })
}

/// Rows per second of `instances` sessions running batches of each size at
/// once. Each session runs on its own thread in the same time windows, set
/// by the clock rather than a barrier, so one that fails cannot strand the
/// others.
fn concurrent_rates(
    model: &[u8],
    row: &[Tensor],
    cfg: &SessionConfig,
    instances: usize,
    per: Duration,
    batches: &[usize],
) -> Result<Vec<(usize, f64)>> {
    let inputs = batches
        .iter()
        .map(|&n| {
            let x = row
                .iter()
                .map(|t| repeat_rows(t, n))
                .collect::<hone_core::Result<Vec<Tensor>>>()?;
            Ok((n, x))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut sessions = Vec::with_capacity(instances);
    for _ in 0..instances {
        let mut b = OrtBackend::from_bytes(model, cfg)?;
        for (_, x) in &inputs {
            b.infer(&[x])?;
        }
        sessions.push(b);
    }
    let t0 = Instant::now() + Duration::from_millis(20);
    let windows: Vec<Instant> = (0..inputs.len() as u32)
        .map(|k| t0 + (per + Duration::from_millis(20)) * k)
        .collect();
    let per_thread: Vec<Result<Vec<f64>>> = std::thread::scope(|s| {
        let handles: Vec<_> = sessions
            .into_iter()
            .map(|mut b| {
                let (inputs, windows) = (&inputs, &windows);
                s.spawn(move || -> Result<Vec<f64>> {
                    let mut rates = Vec::with_capacity(inputs.len());
                    for ((n, x), &start) in inputs.iter().zip(windows) {
                        std::thread::sleep(start.saturating_duration_since(Instant::now()));
                        let (begin, end) = (Instant::now(), start + per);
                        let mut runs = 0;
                        while runs == 0 || Instant::now() < end {
                            b.infer(&[x])?;
                            runs += 1;
                        }
                        rates.push((runs * n) as f64 / begin.elapsed().as_secs_f64());
                    }
                    Ok(rates)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(hone_core::Error::internal("a measuring thread panicked").into())
                })
            })
            .collect()
    });
    let mut total = vec![0.0; inputs.len()];
    for rates in per_thread {
        for (t, r) in total.iter_mut().zip(rates?) {
            *t += r;
        }
    }
    Ok(inputs.iter().map(|(n, _)| *n).zip(total).collect())
}

/// Batch-1 latency (p50, p99 in ms) of several models measured side by
/// side: each round runs every model a few times in turn, for about
/// `budget` in all. Timed one after another, seconds apart, models on a
/// shared machine see different neighbours and clock speeds, and that drift
/// is as large as the differences being decided; interleaved, it lands on
/// all of them alike. Returns the figures and the number of rounds.
pub fn side_by_side(
    models: &[(&[u8], SessionConfig)],
    row: &[Tensor],
    budget: Duration,
) -> Result<(Vec<(f64, f64)>, usize)> {
    let mut sessions = Vec::with_capacity(models.len());
    let mut reps = Vec::with_capacity(models.len());
    for (m, cfg) in models {
        let mut b = OrtBackend::from_bytes(m, cfg)?;
        for _ in 0..3 {
            b.infer(&[row])?;
        }
        let t = Instant::now();
        b.infer(&[row])?;
        // About 100 ms of one model per turn, so what a switch costs (caches
        // refilled; with spinning on, the last session's workers still
        // holding a core) is a small share of each turn; medians ignore it.
        let once = t.elapsed().as_secs_f64().max(1e-6);
        reps.push(((0.1 / once) as usize).clamp(3, 2000));
        sessions.push(b);
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); models.len()];
    let start = Instant::now();
    let mut rounds = 0;
    while rounds < 5 || (start.elapsed() < budget && rounds < 10_000) {
        for ((b, t), &n) in sessions.iter_mut().zip(&mut times).zip(&reps) {
            for _ in 0..n {
                let s = Instant::now();
                b.infer(&[row])?;
                t.push(s.elapsed().as_secs_f64() * 1e3);
            }
        }
        rounds += 1;
    }
    let figures = times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            let pct = |p: f64| t[((t.len() - 1) as f64 * p).round() as usize];
            (pct(0.5), pct(0.99))
        })
        .collect();
    Ok((figures, rounds))
}
