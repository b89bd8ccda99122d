//! Final timing: the fp32 baseline measured again once the machine is warm,
//! and the latency contenders timed side by side in interleaved rounds, so
//! the figures that decide were taken under the same conditions.

use hone_optimize::measure;
use hone_runtime::SessionConfig;

use super::judge::Scorer;
use super::report::{Candidate, SideBySide};

/// Measures the baseline again; keeps its faster run, so speed-ups are never
/// flattered by a cold first measurement.
pub(crate) fn remeasure_baseline(scorer: &Scorer, fp32_bytes: &[u8], baseline: &mut Candidate) {
    let (speed, instances) = scorer.speed_cfg(fp32_bytes);
    let Ok(p) = measure::measure(
        fp32_bytes,
        &scorer.row,
        &speed,
        instances,
        scorer.measure,
        &scorer.perf_batches,
    ) else {
        return;
    };
    if p.p50_ms < baseline.p50_ms.unwrap_or(f64::MAX) {
        baseline.p50_ms = Some(p.p50_ms);
        baseline.p99_ms = Some(p.p99_ms);
    }
    if p.throughput > baseline.throughput.unwrap_or(0.0) {
        baseline.throughput = Some(p.throughput);
        baseline.best_batch = Some(p.best_batch);
    }
}

/// Batch-1 latencies side by side: the fp32 model and up to four contenders
/// within budget (each within 1.3× of the fastest) run in interleaved
/// rounds, and their figures replace the solo ones (see
/// `measure::side_by_side` for why). `announce` hears which models run.
pub(crate) fn side_by_side(
    scorer: &Scorer,
    fp32_bytes: &[u8],
    baseline: &mut Candidate,
    candidates: &mut [Candidate],
    announce: &mut dyn FnMut(&[String]),
) -> Option<SideBySide> {
    let p50 = |c: &Candidate| c.p50_ms.unwrap_or(f64::MAX);
    let mut order: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].meets_budget && candidates[i].p50_ms.is_some())
        .collect();
    order.sort_by(|&a, &b| p50(&candidates[a]).total_cmp(&p50(&candidates[b])));
    let best = p50(&candidates[*order.first()?]);
    order.retain(|&i| p50(&candidates[i]) <= best * 1.3);
    order.truncate(4);
    let names: Vec<String> = std::iter::once("fp32".to_string())
        .chain(order.iter().map(|&i| candidates[i].name.clone()))
        .collect();
    announce(&names);
    let models: Vec<(&[u8], SessionConfig)> = std::iter::once(fp32_bytes)
        .chain(order.iter().map(|&i| candidates[i].bytes.as_slice()))
        .map(|b| (b, scorer.speed_cfg(b).0))
        .collect();
    let budget = scorer.measure / 2 * models.len() as u32;
    let (figures, rounds) = measure::side_by_side(&models, &scorer.row, budget).ok()?;
    let mut figs = figures.into_iter();
    if let Some((p50, p99)) = figs.next() {
        baseline.p50_ms = Some(p50);
        baseline.p99_ms = Some(p99);
    }
    for (&i, (p50, p99)) in order.iter().zip(figs) {
        candidates[i].p50_ms = Some(p50);
        candidates[i].p99_ms = Some(p99);
    }
    Some(SideBySide {
        models: names,
        rounds,
    })
}
