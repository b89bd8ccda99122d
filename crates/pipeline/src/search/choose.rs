//! The choice among judged candidates: best on the objective, with
//! noise-sized differences settled by accuracy, and the sentence that says why.

use super::options::Objective;
use super::report::Candidate;

/// Latency and throughput differences smaller than this fraction are within
/// run-to-run noise (batch-1 p50 moves by several percent between runs even
/// on a quiet machine), so they do not decide between candidates.
pub const TIE: f64 = 0.05;

fn objective_value(c: &Candidate, objective: Objective) -> f64 {
    match objective {
        Objective::Latency => c.p50_ms.unwrap_or(f64::MAX),
        Objective::Throughput => c.throughput.unwrap_or(0.0),
        Objective::Size => c.size_bytes.unwrap_or(u64::MAX) as f64,
    }
}

/// Picks among the candidates within budget: the best on the objective,
/// except that candidates within [`TIE`] of it on latency or throughput
/// count as equally fast and the most accurate of them (smallest drop) wins.
/// Returns the choice and the one that measured best.
pub fn choose<'a>(
    passing: &[&'a Candidate],
    objective: Objective,
) -> (Option<&'a Candidate>, Option<&'a Candidate>) {
    // Lower is better for every key.
    let key = |c: &Candidate| match objective {
        Objective::Throughput => -objective_value(c, objective),
        _ => objective_value(c, objective),
    };
    let Some(fastest) = passing
        .iter()
        .copied()
        .min_by(|a, b| key(a).total_cmp(&key(b)))
    else {
        return (None, None);
    };
    let best = objective_value(fastest, objective);
    let tied = |c: &Candidate| {
        let v = objective_value(c, objective);
        match objective {
            Objective::Latency => v <= best * (1.0 + TIE),
            Objective::Throughput => v * (1.0 + TIE) >= best,
            Objective::Size => v <= best,
        }
    };
    let chosen = passing.iter().copied().filter(|c| tied(c)).min_by(|a, b| {
        let drop = |c: &Candidate| c.drop.unwrap_or(f64::MAX);
        drop(a).total_cmp(&drop(b)).then(key(a).total_cmp(&key(b)))
    });
    (chosen, Some(fastest))
}

/// Why the choice was made (or why nothing was chosen), in one paragraph.
pub fn reason(
    chosen: Option<&Candidate>,
    fastest: Option<&Candidate>,
    baseline: &Candidate,
    candidates: &[Candidate],
    objective: Objective,
    max_drop: f64,
) -> String {
    let tie_note = match (chosen, fastest) {
        (Some(c), Some(f)) if c.name != f.name => format!(
            "; {} measured {:.1} % better on {:?}, inside the {:.0} % that runs differ by, so the more accurate one was taken",
            f.name,
            100.0 * (objective_value(c, objective) / objective_value(f, objective) - 1.0).abs(),
            objective,
            100.0 * TIE
        ),
        _ => String::new(),
    };
    let tried = || {
        candidates
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(c) = chosen else {
        let best = candidates
            .iter()
            .filter(|c| c.drop.is_some())
            .min_by(|a, b| {
                a.drop
                    .unwrap_or(f64::MAX)
                    .total_cmp(&b.drop.unwrap_or(f64::MAX))
            });
        return match best {
            Some(b) => format!(
                "no candidate keeps the drop within {max_drop}; the closest is {} with drop {:.4}. Tried: {}",
                b.name,
                b.drop.unwrap_or(f64::NAN),
                tried()
            ),
            None => format!("no candidate could be judged. Tried: {}", tried()),
        };
    };
    if c.name == baseline.name {
        let best = fastest
            .filter(|f| f.name != c.name)
            .or_else(|| {
                candidates
                    .iter()
                    .filter(|x| x.meets_budget)
                    .min_by(|a, b| {
                        objective_value(a, objective).total_cmp(&objective_value(b, objective))
                    })
            })
            .map(|f| {
                format!(
                    "; the best candidate within budget, {}, measured {:.3} ms against fp32's {:.3} ms",
                    f.name,
                    f.p50_ms.unwrap_or(f64::NAN),
                    c.p50_ms.unwrap_or(f64::NAN)
                )
            })
            .unwrap_or_default();
        return format!(
            "fp32, the input model unchanged: no candidate within the budget beats it on {objective:?} on this machine by more than the {:.0} % that runs differ by{best}",
            100.0 * TIE
        );
    }
    let vs = match objective {
        Objective::Latency => format!(
            "p50 {:.3} ms vs fp32 {:.3} ms ({:.2}× faster)",
            c.p50_ms.unwrap_or(0.0),
            baseline.p50_ms.unwrap_or(0.0),
            baseline.p50_ms.unwrap_or(0.0) / c.p50_ms.unwrap_or(f64::MAX)
        ),
        Objective::Throughput => format!(
            "{:.0} rows/s vs fp32 {:.0} ({:.2}×)",
            c.throughput.unwrap_or(0.0),
            baseline.throughput.unwrap_or(0.0),
            c.throughput.unwrap_or(0.0) / baseline.throughput.unwrap_or(f64::MAX)
        ),
        Objective::Size => format!(
            "{} bytes vs fp32 {} ({:.2}× smaller)",
            c.size_bytes.unwrap_or(0),
            baseline.size_bytes.unwrap_or(0),
            baseline.size_bytes.unwrap_or(0) as f64 / c.size_bytes.unwrap_or(1).max(1) as f64
        ),
    };
    let slower = objective == Objective::Latency
        && c.p50_ms.unwrap_or(f64::MAX) > baseline.p50_ms.unwrap_or(0.0);
    let vs = if slower {
        format!(
            "{vs}; no candidate beats fp32 on this model and machine, keep fp32 if latency is all that matters"
        )
    } else {
        vs
    };
    format!(
        "{}: best {:?} of the {} candidates within the budget (drop {:.4} ≤ {}); {vs}{tie_note}",
        c.name,
        objective,
        candidates.iter().filter(|c| c.meets_budget).count(),
        c.drop.unwrap_or(0.0),
        max_drop
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::recipe::{CalMethod, Recipe, Static};

    fn cand(recipe: Recipe, drop: f64, p50: f64, tp: f64, size: u64) -> Candidate {
        Candidate {
            metric: Some(1.0 - drop),
            drop: Some(drop),
            p50_ms: Some(p50),
            p99_ms: Some(p50),
            throughput: Some(tp),
            best_batch: Some(1),
            size_bytes: Some(size),
            intra_op_threads: Some(1),
            instances: Some(1),
            meets_budget: true,
            ..Candidate::new(recipe, String::new())
        }
    }

    #[test]
    fn noise_sized_differences_go_to_the_more_accurate_candidate() {
        // The resnet18 case: entropy 2 % faster than minmax but 50× the drop.
        let st = |method| {
            Recipe::Static(Static {
                method,
                s8_activations: false,
            })
        };
        let minmax = cand(st(CalMethod::MinMax), 0.0001, 8.434, 126.0, 100);
        let entropy = cand(st(CalMethod::Entropy), 0.0052, 8.268, 122.0, 100);
        let slow = cand(Recipe::Input, 0.0, 24.0, 44.0, 400);
        let all = [&minmax, &entropy, &slow];
        let (c, f) = choose(&all, Objective::Latency);
        assert_eq!(
            (c.unwrap().name.as_str(), f.unwrap().name.as_str()),
            ("int8-static-minmax", "int8-static-entropy")
        );
        // A real difference still decides.
        let fast = cand(Recipe::Fp16, 0.005, 7.0, 140.0, 100);
        let (c, _) = choose(&[&minmax, &fast], Objective::Latency);
        assert_eq!(c.unwrap().name, "fp16");
        let (c, _) = choose(&[&minmax, &entropy], Objective::Throughput);
        assert_eq!(c.unwrap().name, "int8-static-minmax");
        let (c, _) = choose(&[&minmax, &slow], Objective::Size);
        assert_eq!(c.unwrap().name, "int8-static-minmax");
        assert!(choose(&[], Objective::Latency).0.is_none());
    }
}
