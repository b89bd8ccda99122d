//! `hone optimize`'s search: build compressed candidates of a model (the
//! passes live in `hone_optimize`), judge each on EVAL (a metric against
//! labels, or fidelity to the fp32 model's own outputs), measure each
//! in-process as it would be served, and pick the best one for the
//! objective whose drop stays inside the budget.
//!
//! [`run`] reads as the list of stages; each stage has its own module.

mod build;
mod calibration;
mod choose;
mod fallback;
mod half;
mod html;
mod judge;
mod latency;
mod options;
mod output;
mod plan;
mod prune;
mod recipe;
mod report;
mod served;
mod setup;
mod stem;
mod timing;

use std::time::Instant;

pub use choose::{TIE, choose};
pub use options::{InMemory, Objective, OptimizeOptions, Technique};
pub use recipe::{CalMethod, Dynamic, Recipe, Static};
pub use report::{Candidate, OptimizeReport, SideBySide, Verdict, render, report_paths};

use crate::Result;
use calibration::Calibration;
use report::Candidate as C;

/// Progress: (step, total, what).
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize, &str);

/// Runs the search. The report is returned even when nothing met the
/// budget (then `chosen` is `None`).
pub fn run(opts: &OptimizeOptions, progress: Progress<'_>) -> Result<OptimizeReport> {
    let start = Instant::now();
    let within_budget = || start.elapsed() < opts.time_budget;

    // 1. The fp32 model, EVAL, the judge, and the fp32 figures.
    let s = setup::setup(opts)?;
    let plan = plan::plan(&s.fp32, opts)?;
    let total = plan.len() + 1;
    progress(0, total, "fp32 baseline");
    let mut baseline = s.scorer.candidate(
        Recipe::Input,
        "the input model".into(),
        s.fp32_bytes.clone(),
    );
    if let Verdict::Failed(v) = &baseline.verdict {
        return Err(crate::PipelineError::Message(format!(
            "the fp32 model itself cannot be judged: {v}"
        )));
    }

    // 2. Every planned candidate, built, judged and measured in turn.
    let mut cal = Calibration::new(&s, opts)?;
    let mut candidates: Vec<Candidate> = Vec::new();
    for (i, recipe) in plan.into_iter().enumerate() {
        progress(i + 1, total, &recipe.to_string());
        if !within_budget() {
            candidates.push(C::skipped(recipe, "time budget spent"));
            continue;
        }
        candidates.push(
            match build::build(&recipe, &s, &mut cal, opts, &candidates) {
                Ok((bytes, detail)) => s.scorer.candidate(recipe, detail, bytes),
                Err(e) => C::failed(recipe, &e.to_string()),
            },
        );
    }

    // 3. Per-node fallback from the fastest int8 model over budget.
    if opts.has(Technique::Fallback)
        && within_budget()
        && let Some(src) = fallback::source(&candidates)
    {
        progress(total, total, &format!("fallback from {src}"));
        if let Some(c) = fallback::fallback(&s.scorer, &s.fp32, &src, &cal, opts, start) {
            candidates.push(c);
        }
    }

    // 4a. Latency-aware int8: the fastest static candidate within budget,
    // with the node kinds that run slower in int8 here left float.
    if opts.has(Technique::Static) && opts.objective != Objective::Size && within_budget() {
        let fastest = candidates
            .iter()
            .filter_map(|c| match c.recipe {
                Recipe::Static(st) if c.meets_budget => Some((st, c.p50_ms)),
                _ => None,
            })
            .min_by(|a, b| a.1.unwrap_or(f64::MAX).total_cmp(&b.1.unwrap_or(f64::MAX)))
            .map(|(st, _)| st);
        if let Some(src) = fastest {
            progress(total, total, &format!("{src}+latency"));
            match latency::latency_aware(&s.scorer, &s.fp32, src, &cal) {
                Some(latency::Outcome::Variant(c)) => candidates.push(*c),
                Some(latency::Outcome::AllPay(note)) => {
                    if let Some(c) = candidates
                        .iter_mut()
                        .find(|c| c.recipe == Recipe::Static(src))
                    {
                        c.detail = format!("{}; {note}", c.detail);
                    }
                }
                None => {}
            }
        }
    }

    // 4b. Image stems: the static candidate chosen so far, again on the
    // rewritten graph. The rewrite is exact in fp32, so speed decides; it
    // adds weights, so a size objective has no use for it.
    if opts.has(Technique::Static) && opts.objective != Objective::Size && within_budget() {
        let statics: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| c.meets_budget && matches!(c.recipe, Recipe::Static(_)))
            .collect();
        if let (
            Some(&Candidate {
                recipe: Recipe::Static(src),
                ..
            }),
            _,
        ) = choose(&statics, opts.objective)
        {
            progress(total, total, &format!("{src}+s2d"));
            if let Some(c) = stem::s2d_candidate(&s.scorer, &s.fp32, src, &cal) {
                candidates.push(c);
            }
        }
    }

    // 5. Final timing: the baseline again, then latency contenders side by side.
    timing::remeasure_baseline(&s.scorer, &s.fp32_bytes, &mut baseline);
    let side_by_side = if opts.objective == Objective::Latency {
        timing::side_by_side(
            &s.scorer,
            &s.fp32_bytes,
            &mut baseline,
            &mut candidates,
            &mut |names| progress(total, total, &format!("side by side: {}", names.join(", "))),
        )
    } else {
        None
    };

    // 6. The choice. After a side-by-side run only its figures are compared:
    // the others were over 1.3× the fastest when timed alone, and solo
    // figures taken at another moment are not comparable with paired ones.
    let passing: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.meets_budget)
        .filter(|c| {
            side_by_side
                .as_ref()
                .is_none_or(|sbs| sbs.models.contains(&c.name))
        })
        .collect();
    // The input model contends too, so the choice is never worse than it:
    // when nothing beats fp32 beyond the noise, fp32 is the answer. (On
    // size it never wins, and with nothing within budget there is no
    // choice to make.)
    let mut contenders = passing;
    if !contenders.is_empty() && opts.objective != Objective::Size {
        contenders.push(&baseline);
    }
    let (chosen, fastest) = choose(&contenders, opts.objective);
    let reason = choose::reason(
        chosen,
        fastest,
        &baseline,
        &candidates,
        opts.objective,
        opts.max_drop,
    );
    let chosen = chosen.cloned();

    // 7. The report, and the files.
    let mut report = OptimizeReport {
        model: opts.model.display().to_string(),
        data: opts.data.display().to_string(),
        output_judged: s
            .meta
            .outputs
            .get(s.scorer.out_index)
            .map(|o| o.name.clone())
            .unwrap_or_default(),
        judge: s.scorer.judge.name().to_string(),
        judged_as: s.scorer.judged_as(),
        higher_is_better: s.scorer.judge.higher_is_better(),
        max_drop: opts.max_drop,
        relative: s.scorer.relative,
        objective: opts.objective,
        canonical: s.canonical.clone(),
        baseline,
        candidates,
        chosen: chosen.as_ref().map(|c| c.name.clone()),
        reason,
        written: Vec::new(),
        seconds: 0.0,
        side_by_side,
        timing: if opts.threads > 0 {
            format!("every model timed with --threads {}", opts.threads)
        } else {
            "each model timed as hone serve runs a file of its size by default: latency in one session of cores / instances intra-op threads, throughput with all instances at once".into()
        },
        machine: hone_optimize::machine::Machine::detect(),
    };
    report.seconds = start.elapsed().as_secs_f64();
    output::write_outputs(opts, &mut report, chosen.as_ref(), s.card.as_ref())?;
    Ok(report)
}
