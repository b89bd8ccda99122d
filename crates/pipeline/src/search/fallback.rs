//! Per-node fallback: when the fastest int8 model misses the budget, return
//! its most sensitive nodes to fp32, a few at a time, until the budget holds.

use std::collections::HashSet;
use std::time::Instant;

use hone_onnx::proto::ModelProto;
use hone_optimize::{dynamic, qdq};

use super::build::dynamic_options;
use super::calibration::{Calibration, static_options};
use super::judge::Scorer;
use super::options::OptimizeOptions;
use super::recipe::Recipe;
use super::report::Candidate;

/// The int8 candidate to fall back from: the fastest one, when it misses
/// the budget and no int8 candidate as fast meets it.
pub(crate) fn source(candidates: &[Candidate]) -> Option<Recipe> {
    let fastest = candidates
        .iter()
        .filter(|c| c.recipe.is_plain_int8() && c.p50_ms.is_some())
        .min_by(|a, b| {
            a.p50_ms
                .unwrap_or(f64::MAX)
                .total_cmp(&b.p50_ms.unwrap_or(f64::MAX))
        });
    let best_passing_int8 = candidates
        .iter()
        .filter(|c| c.meets_budget && c.recipe.is_plain_int8())
        .map(|c| c.p50_ms.unwrap_or(f64::MAX))
        .fold(f64::MAX, f64::min);
    fastest
        .filter(|c| !c.meets_budget && c.p50_ms.unwrap_or(f64::MAX) < best_passing_int8)
        .map(|c| c.recipe.clone())
}

/// Greedy per-node fallback: rank the quantized nodes of candidate `src` by
/// how much leaving each alone in fp32 recovers, then return the top 1, 2,
/// 4, ... to fp32 until the budget holds.
pub(crate) fn fallback(
    scorer: &Scorer,
    fp32: &ModelProto,
    src: &Recipe,
    cal: &Calibration,
    opts: &OptimizeOptions,
    start: Instant,
) -> Option<Candidate> {
    let build = |exclude: HashSet<String>| -> Option<(ModelProto, Vec<String>)> {
        match src {
            Recipe::Dynamic(d) => {
                dynamic::quantize_dynamic(fp32, &dynamic_options(*d, exclude)).ok()
            }
            Recipe::Static(st) => {
                qdq::quantize_static(fp32, cal.computed(*st)?, &static_options(*st, exclude)).ok()
            }
            _ => None,
        }
    };
    let (_, nodes) = build(Default::default())?;
    let judge = |m: &ModelProto| scorer.drop_of_model(&hone_onnx::encode(m));
    // Every node is ranked while 60 % of the time left lasts; the rest is
    // for the top-k tries. (Ranking only the first nodes in graph order
    // would never find a sensitive head of a deep network.)
    let rank_until = start.elapsed()
        + opts
            .time_budget
            .saturating_sub(start.elapsed())
            .mul_f64(0.6);
    let mut sens: Vec<(f64, String)> = Vec::new();
    for n in &nodes {
        if start.elapsed() > rank_until {
            break;
        }
        let (m, _) = build([n.clone()].into())?;
        if let Some(d) = judge(&m) {
            sens.push((d, n.clone()));
        }
    }
    sens.sort_by(|a, b| a.0.total_cmp(&b.0));
    for k in [1usize, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128] {
        if k > sens.len() || start.elapsed() > opts.time_budget {
            break;
        }
        let exclude: HashSet<String> = sens.iter().take(k).map(|s| s.1.clone()).collect();
        let (m, _) = build(exclude.clone())?;
        if judge(&m).is_some_and(|d| d <= scorer.max_drop + 1e-12) {
            let mut names: Vec<String> = exclude.into_iter().collect();
            names.sort();
            return Some(scorer.candidate(
                Recipe::Fallback(Box::new(src.clone())),
                format!(
                    "{src} with {k} most sensitive node(s) kept in fp32: {}",
                    names.join(", ")
                ),
                hone_onnx::encode(&m),
            ));
        }
    }
    None
}
