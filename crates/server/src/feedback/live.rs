//! A model version's labelled predictions (the newest, up to a bound) and
//! the live figures over them: accuracy, AUC and log-loss for classifiers,
//! MAE and R² for regression, computed as `hone eval` computes them.

use std::collections::VecDeque;
use std::sync::Arc;

use hone_data::metrics::{self, Report};
use serde::Serialize;

use super::truth::Truth;

struct Labelled {
    /// When the prediction was made.
    at_unix: f64,
    y: f32,
    p: Box<[f32]>,
}

pub(super) struct Live {
    pub truth: Arc<Truth>,
    rows: VecDeque<Labelled>,
    cap: usize,
}

/// Live figures of one version.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Figures {
    /// Labelled rows the figures cover.
    pub labels: usize,
    /// The metrics (None until a label arrived, or when the predictions
    /// cannot be scored, with `error` saying why).
    pub live: Option<Report>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Live {
    pub fn new(truth: Arc<Truth>, cap: usize) -> Self {
        Self {
            truth,
            rows: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    pub fn push(&mut self, at_unix: f64, y: f32, p: &[f32]) {
        if self.rows.len() == self.cap {
            self.rows.pop_front();
        }
        self.rows.push_back(Labelled {
            at_unix,
            y,
            p: p.into(),
        });
    }

    /// The figures over the rows predicted at or after `since` (all kept
    /// rows when None).
    pub fn figures(&self, since: Option<f64>) -> Figures {
        let rows: Vec<&Labelled> = self
            .rows
            .iter()
            .filter(|r| since.is_none_or(|s| r.at_unix >= s))
            .collect();
        let width = rows.first().map_or(0, |r| r.p.len());
        if rows.is_empty() || rows.iter().any(|r| r.p.len() != width) {
            return Figures {
                labels: rows.len(),
                live: None,
                error: None,
            };
        }
        let values: Vec<f32> = rows.iter().flat_map(|r| r.p.iter().copied()).collect();
        let y: Vec<f32> = rows.iter().map(|r| r.y).collect();
        match metrics::score(Some(self.truth.task), None, values, width, &y) {
            Ok((_, report, _)) => Figures {
                labels: rows.len(),
                live: Some(report),
                error: None,
            },
            Err(e) => Figures {
                labels: rows.len(),
                live: None,
                error: Some(e.to_string()),
            },
        }
    }
}
