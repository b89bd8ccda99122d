//! A rollout's policy, its judged steps and status, and the table of every
//! model's rollout with the events the metrics page counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use hone_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// What a rollout does and the limits it holds the new version to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The new version.
    pub to: i64,
    /// The stable version (default: the newest other ready version).
    #[serde(default)]
    pub from: Option<i64>,
    /// Percent of traffic at each step, ascending, ending at 100. A first
    /// step of 0 is shadow only: the new version answers no client until
    /// its shadow copies have passed.
    #[serde(default = "default_steps")]
    pub steps: Vec<u32>,
    /// Requests the new version answers at a step before it is judged.
    #[serde(default = "default_step_requests")]
    pub step_requests: u64,
    /// A step that gets fewer requests than that in this time fails.
    #[serde(default = "default_step_timeout")]
    pub step_timeout_secs: f64,
    /// The new version's error rate may exceed the stable one's by this.
    #[serde(default = "default_error_rate")]
    pub max_error_rate_increase: f64,
    /// The new version's p99 may be this many times the stable one's.
    #[serde(default = "default_p99_ratio")]
    pub max_p99_ratio: f64,
    /// ...and must also exceed it by this many milliseconds: the server's
    /// latency buckets are coarse (1, 2.5, 5 ms, ...), so at small
    /// latencies one bucket up is no evidence of a slower model.
    #[serde(default = "default_p99_slack")]
    pub p99_slack_ms: f64,
    /// Share of the stable version's requests also sent to the new one as
    /// shadow copies, so outputs can be compared (0: no comparison).
    #[serde(default = "default_shadow_share")]
    pub shadow_share: f64,
    /// Most rows whose predicted class may differ (classifiers).
    #[serde(default = "default_class_mismatch")]
    pub max_class_mismatch: f64,
    /// Largest mean absolute output difference allowed (None: not judged).
    #[serde(default)]
    pub max_mean_abs_diff: Option<f64>,
    /// Lowest live accuracy allowed on the new version's labelled
    /// predictions since the rollout began (classifiers; None: not judged).
    #[serde(default)]
    pub min_live_accuracy: Option<f64>,
    /// Highest live mean absolute error allowed (regression; None: not
    /// judged).
    #[serde(default)]
    pub max_live_mae: Option<f64>,
    /// Labels the live gate needs before it judges; with a live gate the
    /// last step does not promote until they have arrived.
    #[serde(default = "default_min_labels")]
    pub min_labels: u64,
}

fn default_min_labels() -> u64 {
    100
}

fn default_steps() -> Vec<u32> {
    vec![5, 25, 50, 100]
}
fn default_step_requests() -> u64 {
    500
}
fn default_step_timeout() -> f64 {
    600.0
}
fn default_error_rate() -> f64 {
    0.01
}
fn default_p99_ratio() -> f64 {
    2.0
}
fn default_p99_slack() -> f64 {
    10.0
}
fn default_shadow_share() -> f64 {
    0.1
}
fn default_class_mismatch() -> f64 {
    0.05
}

impl Policy {
    /// Whether the policy judges live figures from ground truth.
    pub fn live_gate(&self) -> bool {
        self.min_live_accuracy.is_some() || self.max_live_mae.is_some()
    }

    pub fn check(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::invalid(format!("rollout policy: {m}")));
        if self.steps.is_empty() || self.steps.last() != Some(&100) {
            return bad("steps must end at 100");
        }
        if self.steps.windows(2).any(|w| matches!(w, [a, b] if a >= b))
            || self.steps.iter().any(|s| *s > 100)
        {
            return bad("steps must rise strictly to 100");
        }
        if self.steps.first() == Some(&0) && self.shadow_share <= 0.0 {
            return bad("a 0 % step (shadow only) needs shadow_share above 0");
        }
        if self.step_requests == 0
            || self.step_timeout_secs.is_nan()
            || self.step_timeout_secs <= 0.0
        {
            return bad("step_requests and step_timeout_secs must be positive");
        }
        if !(0.0..=1.0).contains(&self.shadow_share)
            || self.max_p99_ratio.is_nan()
            || self.max_p99_ratio <= 0.0
        {
            return bad("shadow_share is a share (0-1) and max_p99_ratio positive");
        }
        if self
            .min_live_accuracy
            .is_some_and(|a| !(0.0..=1.0).contains(&a))
            || self.max_live_mae.is_some_and(|m| m.is_nan() || m < 0.0)
            || self.min_labels == 0
        {
            return bad(
                "min_live_accuracy is a share (0-1), max_live_mae not negative and min_labels positive",
            );
        }
        Ok(())
    }
}

/// One judged step.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub percent: u32,
    pub seconds: f64,
    pub new_requests: u64,
    pub new_error_rate: f64,
    pub stable_requests: u64,
    pub stable_error_rate: f64,
    pub new_p99_s: Option<f64>,
    pub stable_p99_s: Option<f64>,
    pub class_mismatch: Option<f64>,
    pub mean_abs_diff: Option<f64>,
    /// Labelled predictions of the new version since the rollout began,
    /// and its live accuracy or MAE on them (with a live gate).
    pub live_labels: Option<usize>,
    pub live_accuracy: Option<f64>,
    pub live_mae: Option<f64>,
    pub passed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub model: String,
    pub from: i64,
    pub to: i64,
    pub policy: Policy,
    /// running, promoted, rolled_back
    pub state: &'static str,
    pub percent: u32,
    pub reason: Option<String>,
    pub started_unix: f64,
    pub finished_unix: Option<f64>,
    pub steps: Vec<Step>,
    /// The step under way, while the rollout runs.
    pub current: Option<StepProgress>,
}

/// How far the running step is: the new version's requests in it against
/// the `step_requests` it needs, and when the step fails for want of them.
#[derive(Debug, Clone, Serialize)]
pub struct StepProgress {
    pub percent: u32,
    pub new_requests: u64,
    pub needed: u64,
    pub started_unix: f64,
    pub deadline_unix: f64,
    /// The step after this one; None at the last.
    pub next_percent: Option<u32>,
}

#[derive(Default)]
pub struct Rollouts {
    pub(crate) map: Mutex<HashMap<String, Arc<Mutex<Status>>>>,
    /// (model, event) → count, for the metrics page.
    events: Mutex<HashMap<(String, &'static str), u64>>,
}

pub(crate) fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Rollouts {
    pub fn status(&self, model: &str) -> Option<Status> {
        let m = self.map.lock().ok()?;
        let s = m.get(model)?.lock().ok()?.clone();
        Some(s)
    }

    /// Both event counters of `model` exist from its first rollout on, at 0
    /// until they happen: an alert's `increase()` needs a sample before the
    /// first event to see it.
    pub(crate) fn started(&self, model: &str) {
        if let Ok(mut m) = self.events.lock() {
            for e in ["promoted", "rolled_back"] {
                m.entry((model.to_string(), e)).or_default();
            }
        }
    }

    pub(crate) fn event(&self, model: &str, e: &'static str) {
        if let Ok(mut m) = self.events.lock() {
            *m.entry((model.to_string(), e)).or_default() += 1;
        }
    }

    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let esc = crate::metrics::escape;
        if let Ok(m) = self.map.lock()
            && !m.is_empty()
        {
            let _ = writeln!(
                out,
                "# HELP hone_rollout_percent Percent of traffic the rollout gives the new version.\n# TYPE hone_rollout_percent gauge"
            );
            for (model, s) in m.iter() {
                if let Ok(s) = s.lock() {
                    let _ = writeln!(
                        out,
                        "hone_rollout_percent{{model=\"{}\",version=\"{}\",state=\"{}\"}} {}",
                        esc(model),
                        s.to,
                        s.state,
                        s.percent
                    );
                }
            }
        }
        if let Ok(e) = self.events.lock()
            && !e.is_empty()
        {
            let _ = writeln!(
                out,
                "# HELP hone_rollout_events_total Rollouts promoted or rolled back.\n# TYPE hone_rollout_events_total counter"
            );
            for ((model, ev), n) in e.iter() {
                let _ = writeln!(
                    out,
                    "hone_rollout_events_total{{model=\"{}\",event=\"{ev}\"}} {n}",
                    esc(model)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_checked() {
        let p: Policy = serde_json::from_str(r#"{"to": 2}"#).unwrap();
        assert_eq!(p.steps, [5, 25, 50, 100]);
        assert!(p.check().is_ok());
        for bad in [
            r#"{"to": 2, "steps": [5, 50]}"#,
            r#"{"to": 2, "steps": [50, 25, 100]}"#,
            r#"{"to": 2, "step_requests": 0}"#,
        ] {
            let p: Policy = serde_json::from_str(bad).unwrap();
            assert!(p.check().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Policy>(r#"{"to": 2, "stpes": [100]}"#).is_err());
    }
}
