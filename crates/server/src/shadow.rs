//! Shadow traffic: a share of the requests a model's serving versions
//! answer is sent again, after the answer, to a shadow version; the two
//! outputs are compared and the divergence recorded. The client never
//! waits for or sees the shadow. Shadow calls run as tasks bounded by a
//! semaphore: past it, shadow work is dropped (counted), never queued
//! behind real requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hone_core::{NamedTensor, Tensor};
use serde_json::{Value as Json, json};

use crate::drift::values;
use crate::model::LoadedModel;
use crate::split::ShadowTarget;

/// Shadow calls in flight at once, server-wide.
const IN_FLIGHT: usize = 8;

/// What the comparisons of one model's shadow version found.
#[derive(Debug, Default, Clone)]
pub struct Divergence {
    pub compared: u64,
    pub rows: u64,
    /// Rows whose predicted class differs (classifier outputs only).
    pub class_rows: u64,
    pub class_mismatch: u64,
    pub elements: u64,
    pub sum_abs_diff: f64,
    pub max_abs_diff: f64,
    /// Shadow calls that failed or whose outputs did not match in shape.
    pub errors: u64,
    /// Shadow calls left out because IN_FLIGHT were running.
    pub dropped: u64,
}

impl Divergence {
    pub fn mean_abs_diff(&self) -> Option<f64> {
        (self.elements > 0).then(|| self.sum_abs_diff / self.elements as f64)
    }
    pub fn class_mismatch_ratio(&self) -> Option<f64> {
        (self.class_rows > 0).then(|| self.class_mismatch as f64 / self.class_rows as f64)
    }
    pub fn to_json(&self) -> Json {
        json!({
            "compared": self.compared, "rows": self.rows, "errors": self.errors,
            "dropped": self.dropped, "max_abs_diff": self.max_abs_diff,
            "mean_abs_diff": self.mean_abs_diff(),
            "class_mismatch_ratio": self.class_mismatch_ratio(),
        })
    }
}

pub struct Shadows {
    permits: Arc<tokio::sync::Semaphore>,
    /// (model, shadow version) → what its comparisons found.
    found: Mutex<HashMap<(String, i64), Divergence>>,
}

impl Default for Shadows {
    fn default() -> Self {
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT)),
            found: Mutex::default(),
        }
    }
}

impl Shadows {
    fn update(&self, model: &str, version: i64, f: impl FnOnce(&mut Divergence)) {
        if let Ok(mut m) = self.found.lock() {
            f(m.entry((model.to_string(), version)).or_default());
        }
    }

    pub fn get(&self, model: &str, version: i64) -> Option<Divergence> {
        self.found
            .lock()
            .ok()?
            .get(&(model.to_string(), version))
            .cloned()
    }

    /// Every shadow version of `model` and its divergence.
    pub fn of(&self, model: &str) -> Vec<(i64, Divergence)> {
        let Ok(m) = self.found.lock() else {
            return Vec::new();
        };
        let mut v: Vec<(i64, Divergence)> = m
            .iter()
            .filter(|((n, _), _)| n == model)
            .map(|((_, v), d)| (*v, d.clone()))
            .collect();
        v.sort_by_key(|(v, _)| *v);
        v
    }

    /// Forgets the comparisons against one shadow version (a new rollout
    /// to it starts afresh).
    pub fn reset(&self, model: &str, version: i64) {
        if let Ok(mut m) = self.found.lock() {
            m.remove(&(model.to_string(), version));
        }
    }

    /// After `name` answered: the copy goes to `target`'s version if it is
    /// ready (a missing one counts as an error).
    pub fn send(
        self: &Arc<Self>,
        repo: &Arc<crate::repository::Repository>,
        name: &str,
        target: ShadowTarget,
        inputs: Vec<NamedTensor>,
        primary: Vec<Tensor>,
    ) {
        match repo.models().get(name, Some(&target.version.to_string())) {
            Ok(m) => self.dispatch(repo.clone(), m, inputs, primary),
            Err(_) => self.update(name, target.version, |d| d.errors += 1),
        }
    }

    /// Sends a copy of an answered request to the shadow version, unless
    /// IN_FLIGHT shadow calls already run. Must be called on a runtime.
    pub fn dispatch(
        self: &Arc<Self>,
        repo: Arc<crate::repository::Repository>,
        shadow: Arc<LoadedModel>,
        inputs: Vec<NamedTensor>,
        primary: Vec<Tensor>,
    ) {
        let Ok(version) = shadow.version.parse::<i64>() else {
            return;
        };
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.update(&shadow.name, version, |d| d.dropped += 1);
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            let r = shadow
                .infer(&repo, inputs, crate::model::Deadline::default(), true)
                .await;
            drop(permit);
            me.update(&shadow.name, version, |d| match r {
                Ok(ran) => compare(d, &primary, &ran.outputs),
                Err(_) => d.errors += 1,
            });
        });
    }

    /// Prometheus text of every shadow comparison.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let Ok(m) = self.found.lock() else { return };
        if m.is_empty() {
            return;
        }
        let mut rows: Vec<_> = m.iter().collect();
        rows.sort_by(|a, b| a.0.cmp(b.0));
        type Family = (
            &'static str,
            &'static str,
            &'static str,
            fn(&Divergence) -> Option<f64>,
        );
        let fams: [Family; 6] = [
            (
                "hone_shadow_requests_total",
                "counter",
                "Requests compared against the shadow version.",
                |d| Some(d.compared as f64),
            ),
            (
                "hone_shadow_errors_total",
                "counter",
                "Shadow calls that failed or answered in another shape.",
                |d| Some(d.errors as f64),
            ),
            (
                "hone_shadow_dropped_total",
                "counter",
                "Shadow calls left out: too many in flight.",
                |d| Some(d.dropped as f64),
            ),
            (
                "hone_shadow_max_abs_diff",
                "gauge",
                "Largest absolute difference between primary and shadow outputs.",
                |d| Some(d.max_abs_diff),
            ),
            (
                "hone_shadow_mean_abs_diff",
                "gauge",
                "Mean absolute difference between primary and shadow outputs.",
                Divergence::mean_abs_diff,
            ),
            (
                "hone_shadow_class_mismatch_ratio",
                "gauge",
                "Share of rows whose predicted class differs (classifier outputs).",
                Divergence::class_mismatch_ratio,
            ),
        ];
        for (name, kind, help, f) in fams {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for ((model, v), d) in &rows {
                if let Some(x) = f(d) {
                    let model = crate::metrics::escape(model);
                    let _ = writeln!(
                        out,
                        "{name}{{model=\"{model}\",shadow_version=\"{v}\"}} {x}"
                    );
                }
            }
        }
    }
}

/// The version to shadow this request to, if the split names one other
/// than the version that served it and the draw picks this request.
pub fn pick(split: Option<&crate::split::Split>, served: &LoadedModel) -> Option<ShadowTarget> {
    let t = split?.shadow?;
    let draw = t.share >= 1.0 || (t.share > 0.0 && crate::observe::context::unit() < t.share);
    (draw && served.version != t.version.to_string()).then_some(t)
}

/// The class of each row of a [batch, classes] output (a single column
/// is a probability, thresholded at 0.5).
fn classes(v: &[f64], shape: &[i64]) -> Option<Vec<usize>> {
    let [_, w] = shape else { return None };
    let w = usize::try_from(*w).ok().filter(|w| *w >= 1)?;
    Some(
        v.chunks(w)
            .map(|row| match row {
                [p] => usize::from(*p >= 0.5),
                _ => row
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i),
            })
            .collect(),
    )
}

fn compare(d: &mut Divergence, primary: &[Tensor], shadow: &[Tensor]) {
    if primary.len() != shadow.len() || primary.iter().zip(shadow).any(|(a, b)| a.shape != b.shape)
    {
        d.errors += 1;
        return;
    }
    d.compared += 1;
    d.rows += primary
        .first()
        .and_then(|t| t.shape.first())
        .map_or(0, |&n| n.max(0) as u64);
    let mut classified = false;
    for (a, b) in primary.iter().zip(shadow) {
        let (Some(x), Some(y)) = (values(a), values(b)) else {
            continue;
        };
        for (p, q) in x.iter().zip(&y) {
            let diff = (p - q).abs();
            let diff = if diff.is_nan() { f64::INFINITY } else { diff };
            d.sum_abs_diff += diff;
            d.max_abs_diff = d.max_abs_diff.max(diff);
        }
        d.elements += x.len() as u64;
        // The first [batch, classes] float output is the classifier's.
        if !classified
            && a.dtype.is_float()
            && let (Some(ca), Some(cb)) = (classes(&x, &a.shape), classes(&y, &b.shape))
        {
            classified = true;
            d.class_rows += ca.len() as u64;
            d.class_mismatch += ca.iter().zip(&cb).filter(|(p, q)| p != q).count() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divergence_of_two_answers() {
        let a = Tensor::from_f32(vec![2, 3], &[0.1, 0.7, 0.2, 0.5, 0.3, 0.2]).unwrap();
        let b = Tensor::from_f32(vec![2, 3], &[0.1, 0.6, 0.3, 0.2, 0.3, 0.5]).unwrap();
        let mut d = Divergence::default();
        compare(&mut d, std::slice::from_ref(&a), &[b]);
        assert_eq!(
            (d.compared, d.rows, d.class_rows, d.class_mismatch),
            (1, 2, 2, 1)
        );
        assert!((d.max_abs_diff - 0.3).abs() < 1e-6);
        assert!((d.mean_abs_diff().unwrap() - 0.8 / 6.0).abs() < 1e-6);
        let other = Tensor::from_f32(vec![3, 2], &[0.0; 6]).unwrap();
        compare(&mut d, &[a], &[other]);
        assert_eq!(d.errors, 1);
    }
}
