//! Gradual rollout with automatic promotion and rollback: traffic moves to
//! a new version step by step (for example 5, 25, 50, 100 %), and each step
//! is promoted only while the new version's error rate, p99 latency and
//! divergence from the stable version (measured on shadow copies of the
//! stable version's requests) stay within limits against the stable one.
//! On a breach all traffic goes back at once, the reason is logged and
//! kept. One rollout per model runs at a time, as a task of its own.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hone_core::{Error, Result};

use crate::metrics::quantile_of;
use crate::split::{ShadowTarget, Split};
use crate::state::Control;

pub mod status;

use status::now;
pub use status::{Policy, Status, Step, StepProgress};

/// A live gate must be one that can be judged: feedback on, a card on the
/// new version whose task fits the figure, and a label count the live
/// window can hold.
fn check_live_gate(state: &Control, p: &Policy, target: &crate::model::LoadedModel) -> Result<()> {
    let bad = |m: String| Err(Error::invalid(format!("rollout policy: {m}")));
    if !state.feedback.enabled() {
        return bad("a live gate needs feedback, which is off (--feedback-rows 0)".into());
    }
    let Some(truth) = &target.truth else {
        return bad(format!(
            "version {} has no model card, so its answers cannot be labelled for a live gate",
            p.to
        ));
    };
    let regression = truth.task == hone_data::Task::Regression;
    if p.min_live_accuracy.is_some() && regression {
        return bad(
            "min_live_accuracy gates a classifier; this model is a regression (use max_live_mae)"
                .into(),
        );
    }
    if p.max_live_mae.is_some() && !regression {
        return bad(
            "max_live_mae gates a regression; this model is a classifier (use min_live_accuracy)"
                .into(),
        );
    }
    let window = state.feedback.window_rows() as u64;
    if p.min_labels > window {
        return bad(format!(
            "min_labels {} is more than the {window} labelled rows the server keeps per version (--feedback-window)",
            p.min_labels
        ));
    }
    Ok(())
}

/// Starts a rollout of `model` under `policy`; refused while one runs.
pub fn start(state: &Arc<Control>, model: &str, policy: Policy) -> Result<Status> {
    policy.check()?;
    let ready = state.repo.models().ready(model);
    if ready.is_empty() {
        state.repo.models().get(model, None)?;
    }
    let Some(target) = ready.get(&policy.to) else {
        return Err(Error::invalid(format!(
            "model '{model}' has no ready version {}",
            policy.to
        )));
    };
    if policy.live_gate() {
        check_live_gate(state, &policy, target)?;
    }
    let from = match policy.from {
        Some(f) if ready.contains_key(&f) && f != policy.to => f,
        Some(f) => {
            return Err(Error::invalid(format!(
                "from: version {f} is not another ready version"
            )));
        }
        // The version serving now: the split's `stable` label, else its
        // heaviest weight, else the newest other ready version.
        None => {
            let (split, _) = state.traffic.effective(model, &ready);
            let other = |v: &i64| *v != policy.to && ready.contains_key(v);
            split
                .as_ref()
                .and_then(|s| s.labels.get("stable").copied().filter(other))
                .or_else(|| {
                    split.as_ref().and_then(|s| {
                        s.weights
                            .iter()
                            .filter(|(v, w)| **w > 0 && other(v))
                            .max_by_key(|(v, w)| (**w, **v))
                            .map(|(v, _)| *v)
                    })
                })
                .or_else(|| ready.keys().rev().copied().find(|v| *v != policy.to))
                .ok_or_else(|| {
                    Error::invalid("a rollout needs another ready version to move traffic from")
                })?
        }
    };
    let status = Arc::new(Mutex::new(Status {
        model: model.to_string(),
        from,
        to: policy.to,
        policy: policy.clone(),
        state: "running",
        percent: 0,
        reason: None,
        started_unix: now(),
        finished_unix: None,
        steps: Vec::new(),
        current: None,
    }));
    {
        let mut m = state
            .rollouts
            .map
            .lock()
            .map_err(|_| Error::internal("rollout lock poisoned"))?;
        if m.get(model)
            .is_some_and(|s| s.lock().is_ok_and(|s| s.state == "running"))
        {
            return Err(Error::invalid(format!(
                "a rollout of '{model}' is running: promote or roll it back first"
            )));
        }
        m.insert(model.to_string(), status.clone());
        state.rollouts.started(model);
    }
    state.shadows.reset(model, policy.to);
    tracing::info!(model, from, to = policy.to, steps = ?policy.steps, "rollout started");
    let (st, name) = (state.clone(), model.to_string());
    tokio::spawn(async move { drive(st, name, from, policy, status).await });
    state
        .rollouts
        .status(model)
        .ok_or_else(|| Error::internal("rollout vanished"))
}

/// The split that sends `percent` to `to` and the rest to `from`.
fn split(from: i64, to: i64, percent: u32, shadow: f64) -> Split {
    let mut s = Split::default();
    s.weights.insert(from, 100 - percent);
    s.weights.insert(to, percent);
    s.labels.insert("stable".into(), from);
    s.labels.insert("canary".into(), to);
    if shadow > 0.0 && percent < 100 {
        s.shadow = Some(ShadowTarget {
            version: to,
            share: shadow,
        });
    }
    s
}

/// Requests, failures and latency buckets of one version so far.
struct Counts {
    ok: u64,
    failed: u64,
    buckets: Vec<u64>,
}

fn counts(state: &Control, model: &str, v: i64) -> Option<Counts> {
    let m = state.repo.models().get(model, Some(&v.to_string())).ok()?;
    Some(Counts {
        ok: m.stats.success.load(Relaxed),
        failed: m.stats.total_failures(),
        buckets: m.stats.request.buckets(),
    })
}

/// (requests, error rate, p99) between two snapshots.
fn delta(a: &Counts, b: &Counts) -> (u64, f64, Option<f64>) {
    let ok = b.ok.saturating_sub(a.ok);
    let failed = b.failed.saturating_sub(a.failed);
    let n = ok + failed;
    let rate = if n == 0 {
        0.0
    } else {
        failed as f64 / n as f64
    };
    let d: Vec<u64> = b
        .buckets
        .iter()
        .zip(&a.buckets)
        .map(|(x, y)| x.saturating_sub(*y))
        .collect();
    (n, rate, quantile_of(&d, 0.99))
}

async fn drive(
    state: Arc<Control>,
    model: String,
    from: i64,
    p: Policy,
    status: Arc<Mutex<Status>>,
) {
    let set = |f: &dyn Fn(&mut Status)| {
        if let Ok(mut s) = status.lock() {
            f(&mut s);
        }
    };
    // The stable version's p99 from the last step where it had traffic:
    // at 100 % it has none of its own.
    let mut stable_p99: Option<f64> = None;
    let began = now();
    let to = p.to.to_string();
    // Scoring the labelled rows (an AUC sort over up to the window) holds
    // the feedback lock inference records under: once a second is enough.
    let mut live_cache: Option<(Instant, Option<crate::feedback::Figures>)> = None;
    for (i, &percent) in p.steps.iter().enumerate() {
        let last = i + 1 == p.steps.len();
        if status.lock().map_or(true, |s| s.state != "running") {
            return; // promoted or rolled back by hand
        }
        state
            .traffic
            .set(&model, Some(split(from, p.to, percent, p.shadow_share)));
        let started_unix = now();
        let progress = |new_requests| StepProgress {
            percent,
            new_requests,
            needed: p.step_requests,
            started_unix,
            deadline_unix: started_unix + p.step_timeout_secs,
            next_percent: p.steps.get(i + 1).copied(),
        };
        set(&|s| {
            s.percent = percent;
            s.current = Some(progress(0));
        });
        let t0 = Instant::now();
        let (Some(n0), Some(s0)) = (counts(&state, &model, p.to), counts(&state, &model, from))
        else {
            return finish(
                &state,
                &model,
                from,
                &p,
                &status,
                Some("a version went away during the rollout".into()),
            );
        };
        let timeout = Duration::from_secs_f64(p.step_timeout_secs);
        let c0 = state
            .shadows
            .get(&model, p.to)
            .map_or((0, 0), |d| (d.compared, d.errors));
        let verdict = loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if status.lock().map_or(true, |s| s.state != "running") {
                return;
            }
            let (Some(n1), Some(s1)) = (counts(&state, &model, p.to), counts(&state, &model, from))
            else {
                break Err("a version went away during the rollout".to_string());
            };
            // At 0 % the new version answers only shadow copies: those
            // are its requests and failures.
            let (nn, nerr, np99) = if percent == 0 {
                let d = state.shadows.get(&model, p.to).unwrap_or_default();
                let (c, e) = (d.compared - c0.0, d.errors - c0.1);
                let n = c + e;
                (n, if n == 0 { 0.0 } else { e as f64 / n as f64 }, None)
            } else {
                delta(&n0, &n1)
            };
            let (sn, serr, sp99) = delta(&s0, &s1);
            if sn >= 20 {
                stable_p99 = sp99.or(stable_p99);
            }
            let div = state.shadows.get(&model, p.to);
            let class = div.as_ref().and_then(|d| d.class_mismatch_ratio());
            let mad = div.as_ref().and_then(|d| d.mean_abs_diff());
            set(&|s| s.current = Some(progress(nn)));
            if p.live_gate()
                && live_cache
                    .as_ref()
                    .is_none_or(|(t, _)| t.elapsed() >= Duration::from_secs(1))
            {
                live_cache = Some((Instant::now(), state.feedback.figures(&model, &to, began)));
            }
            let live = live_cache.as_ref().and_then(|(_, f)| f.clone());
            let labels = live.as_ref().map_or(0, |f| f.labels);
            let report = live.as_ref().and_then(|f| f.live.as_ref());
            let (acc, mae) = (report.and_then(|r| r.accuracy), report.and_then(|r| r.mae));
            let labelled = labels as u64 >= p.min_labels;
            // With a live gate the last step waits for its labels.
            let done = nn >= p.step_requests && (!last || !p.live_gate() || labelled);
            // Judged early once a tenth of the step is in, so a bad version
            // goes back before it answers the whole step.
            let judge = done || nn >= (p.step_requests / 10).max(20);
            let mut breach = None;
            if judge {
                if nerr > serr + p.max_error_rate_increase {
                    breach = Some(format!(
                        "error rate {:.2} % against the stable version's {:.2} %",
                        nerr * 100.0,
                        serr * 100.0
                    ));
                } else if let (Some(a), Some(b)) = (np99, stable_p99)
                    && a > b * p.max_p99_ratio
                    && (a - b) * 1e3 > p.p99_slack_ms
                {
                    breach = Some(format!(
                        "p99 {:.1} ms against the stable version's {:.1} ms (limit ×{})",
                        a * 1e3,
                        b * 1e3,
                        p.max_p99_ratio
                    ));
                } else if let Some(c) = class.filter(|c| *c > p.max_class_mismatch) {
                    breach = Some(format!(
                        "{:.1} % of shadow-compared rows change class (limit {:.1} %)",
                        c * 100.0,
                        p.max_class_mismatch * 100.0
                    ));
                } else if let (Some(m), Some(lim)) = (mad, p.max_mean_abs_diff)
                    && m > lim
                {
                    breach = Some(format!(
                        "mean absolute output difference {m:.4} (limit {lim})"
                    ));
                } else if let (true, Some(a), Some(lim)) = (labelled, acc, p.min_live_accuracy)
                    && a < lim
                {
                    breach = Some(format!(
                        "live accuracy {a:.4} on {labels} labelled predictions (gate {lim})"
                    ));
                } else if let (true, Some(m), Some(lim)) = (labelled, mae, p.max_live_mae)
                    && m > lim
                {
                    breach = Some(format!(
                        "live MAE {m:.4} on {labels} labelled predictions (gate {lim})"
                    ));
                } else if labelled
                    && ((p.min_live_accuracy.is_some() && acc.is_none())
                        || (p.max_live_mae.is_some() && mae.is_none()))
                {
                    let why = live.as_ref().and_then(|f| f.error.clone());
                    breach = Some(format!(
                        "the live gate's figure cannot be computed on {labels} labels{}",
                        why.map(|w| format!(": {w}")).unwrap_or_default()
                    ));
                }
            }
            let timed_out = !done && t0.elapsed() > timeout;
            if breach.is_some() || done || timed_out {
                let step = Step {
                    percent,
                    seconds: t0.elapsed().as_secs_f64(),
                    new_requests: nn,
                    new_error_rate: nerr,
                    stable_requests: sn,
                    stable_error_rate: serr,
                    new_p99_s: np99,
                    stable_p99_s: stable_p99,
                    class_mismatch: class,
                    mean_abs_diff: mad,
                    live_labels: p.live_gate().then_some(labels),
                    live_accuracy: acc,
                    live_mae: mae,
                    passed: breach.is_none() && done,
                };
                set(&|s| s.steps.push(step.clone()));
                break match (breach, timed_out) {
                    (Some(b), _) => Err(b),
                    (None, true) if nn >= p.step_requests => Err(format!(
                        "only {labels} of the {} labels the live gate needs arrived for version {} in {:.0} s",
                        p.min_labels, p.to, p.step_timeout_secs
                    )),
                    (None, true) => Err(format!(
                        "only {nn} requests reached version {} in {:.0} s at {percent} %",
                        p.to, p.step_timeout_secs
                    )),
                    (None, false) => Ok(()),
                };
            }
        };
        if let Err(reason) = verdict {
            return finish(&state, &model, from, &p, &status, Some(reason));
        }
    }
    finish(&state, &model, from, &p, &status, None);
}

/// Promotes (`reason` None) or rolls back, and records it.
fn finish(
    state: &Control,
    model: &str,
    from: i64,
    p: &Policy,
    status: &Mutex<Status>,
    reason: Option<String>,
) {
    let Ok(mut s) = status.lock() else { return };
    if s.state != "running" {
        return;
    }
    match &reason {
        None => {
            let mut sp = split(from, p.to, 100, 0.0);
            sp.weights.remove(&from);
            sp.labels.insert("stable".into(), p.to);
            sp.labels.remove("canary");
            state.traffic.set(model, Some(sp));
            s.state = "promoted";
            s.percent = 100;
            tracing::info!(model, version = p.to, "rollout promoted");
            state.rollouts.event(model, "promoted");
        }
        Some(why) => {
            state.traffic.set(model, Some(split(from, p.to, 0, 0.0)));
            s.state = "rolled_back";
            s.percent = 0;
            tracing::warn!(
                model,
                version = p.to,
                reason = why.as_str(),
                "rollout rolled back"
            );
            state.rollouts.event(model, "rolled_back");
        }
    }
    s.reason = reason;
    s.finished_unix = Some(now());
    s.current = None;
}

/// Ends the model's running rollout by hand: all to the new version
/// (`promote`) or all back.
pub fn decide(state: &Control, model: &str, promote: bool) -> Result<Status> {
    let st = state
        .rollouts
        .map
        .lock()
        .map_err(|_| Error::internal("rollout lock poisoned"))?
        .get(model)
        .cloned()
        .ok_or_else(|| Error::not_found(format!("no rollout of '{model}'")))?;
    let (from, p) = {
        let s = st
            .lock()
            .map_err(|_| Error::internal("rollout lock poisoned"))?;
        if s.state != "running" {
            return Err(Error::invalid(format!(
                "the rollout of '{model}' already ended: {}",
                s.state
            )));
        }
        (s.from, s.policy.clone())
    };
    let reason = (!promote).then(|| "rolled back by hand".to_string());
    finish(state, model, from, &p, &st, reason);
    state
        .rollouts
        .status(model)
        .ok_or_else(|| Error::internal("rollout vanished"))
}

/// Rollouts set in config: a model whose config has a `rollout` parameter
/// (the policy as JSON, e.g. `{"to": 2, "steps": [5, 25, 50, 100]}`) starts
/// that rollout once version `to` is ready, once per (model, version).
/// Checked every second, so a reload or a poll that brings the new version
/// in starts it.
pub async fn watch_config(state: Arc<Control>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tried: std::collections::HashSet<(String, i64)> = Default::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        for m in state.repo.models().loaded() {
            let Some(text) = m.config.parameters.get("rollout") else {
                continue;
            };
            let policy: Policy = match serde_json::from_str(text) {
                Ok(p) => p,
                Err(e) => {
                    if tried.insert((m.name.clone(), -1)) {
                        tracing::warn!(
                            model = m.name.as_str(),
                            "config parameter rollout is not a policy: {e}"
                        );
                    }
                    continue;
                }
            };
            let key = (m.name.clone(), policy.to);
            let ready = state.repo.models().ready(&m.name);
            if tried.contains(&key) || !ready.contains_key(&policy.to) {
                continue;
            }
            tried.insert(key);
            // A rollout to that version already ran or runs (through the API).
            if state
                .rollouts
                .status(&m.name)
                .is_some_and(|s| s.to == policy.to)
            {
                continue;
            }
            if let Err(e) = start(&state, &m.name, policy) {
                tracing::warn!(
                    model = m.name.as_str(),
                    "the config's rollout did not start: {e}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_splits() {
        let s = split(1, 2, 25, 0.1);
        assert_eq!(s.weights, [(1, 75), (2, 25)].into());
        assert_eq!(
            s.shadow,
            Some(ShadowTarget {
                version: 2,
                share: 0.1
            })
        );
        assert!(split(1, 2, 100, 0.1).shadow.is_none());
    }
}
