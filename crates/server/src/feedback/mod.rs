//! Ground truth after deployment: every answer of a model version that has
//! a card is kept in a bounded record (`record`) under its request id;
//! labels posted later (`POST /v2/models/{m}/feedback`) join it, and each
//! version's labelled rows give live figures (`live`) beside the card's
//! validation figures (`truth`), as JSON, metrics, the dashboard and a
//! rollout gate.

mod live;
mod record;
pub(crate) mod truth;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use hone_core::element::read_all;
use hone_core::{DataType, Error, Tensor, TensorData};
use hone_data::metrics::Report;
use serde::Serialize;
use serde_json::Value;

pub(crate) use live::Figures;
pub(crate) use record::Outcome;
use record::{Entry, Record, Values};
pub(crate) use truth::Truth;

/// Rows of predictions kept per model for labels to join (`--feedback-rows`).
pub const DEFAULT_RECORD_ROWS: usize = 100_000;
/// Labelled rows per version the live figures cover (`--feedback-window`).
pub const DEFAULT_WINDOW_ROWS: usize = 10_000;

struct ModelFeedback {
    record: Record,
    outcomes: [u64; 4],
    versions: BTreeMap<String, live::Live>,
}

impl ModelFeedback {
    fn bump(&mut self, o: Outcome) {
        if let Some(n) = self.outcomes.get_mut(o as usize) {
            *n += 1;
        }
    }
}

/// The feedback of every model.
pub struct Feedback {
    record_rows: usize,
    window_rows: usize,
    models: RwLock<HashMap<String, Arc<Mutex<ModelFeedback>>>>,
}

/// The answer to one feedback post.
#[derive(Debug, Serialize)]
pub(crate) struct Receipt {
    pub id: String,
    pub outcome: &'static str,
    /// Labelled rows joined (0 unless matched).
    pub rows: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// One version in the feedback view.
#[derive(Debug, Serialize)]
pub(crate) struct VersionView {
    pub version: String,
    pub task: &'static str,
    #[serde(flatten)]
    pub figures: Figures,
    /// The card's validation figures, to compare with.
    pub card: BTreeMap<String, f64>,
}

/// `GET /v2/models/{m}/feedback`.
#[derive(Debug, Serialize)]
pub(crate) struct View {
    pub model: String,
    /// Predictions kept for labels to join: requests, rows, capacity.
    pub record: RecordView,
    /// Feedback posts by outcome.
    pub labels: BTreeMap<&'static str, u64>,
    pub window_s: Option<f64>,
    pub versions: Vec<VersionView>,
}

#[derive(Debug, Serialize)]
pub(crate) struct RecordView {
    pub requests: usize,
    pub rows: usize,
    pub capacity_rows: usize,
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Default for Feedback {
    fn default() -> Self {
        Self::new(DEFAULT_RECORD_ROWS, DEFAULT_WINDOW_ROWS)
    }
}

impl Feedback {
    /// `record_rows` 0 turns feedback off.
    pub fn new(record_rows: usize, window_rows: usize) -> Self {
        Self {
            record_rows,
            window_rows,
            models: RwLock::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.record_rows > 0
    }

    /// Labelled rows per version the live figures cover.
    pub fn window_rows(&self) -> usize {
        self.window_rows
    }

    /// Whether answers of `name` were ever recorded.
    pub(crate) fn knows(&self, name: &str) -> bool {
        self.model(name).is_some()
    }

    fn model(&self, name: &str) -> Option<Arc<Mutex<ModelFeedback>>> {
        self.models.read().ok()?.get(name).cloned()
    }

    fn model_or_new(&self, name: &str) -> Option<Arc<Mutex<ModelFeedback>>> {
        if let Some(m) = self.model(name) {
            return Some(m);
        }
        let mut all = self.models.write().ok()?;
        let m = all.entry(name.to_string()).or_insert_with(|| {
            Arc::new(Mutex::new(ModelFeedback {
                record: Record::new(self.record_rows),
                outcomes: [0; 4],
                versions: BTreeMap::new(),
            }))
        });
        Some(m.clone())
    }

    /// Keeps one answer of `model`/`version` under `id`.
    pub(crate) fn record(
        &self,
        model: &str,
        version: &str,
        truth: &Arc<Truth>,
        id: &str,
        outputs: &[Tensor],
    ) {
        let Some(t) = outputs.get(truth.output) else {
            return;
        };
        let rows = t.batch();
        // FP32 outputs (the usual case) are read as they are packed, with no
        // allocation for a one-row answer of up to four values.
        let values = match (&t.data, t.dtype) {
            (TensorData::Raw(b), DataType::F32) => Values::collect(b.len() / 4, read_all::<f32>(b)),
            _ => match t.to_f64s() {
                Some(v) => Values::collect(v.len(), v.into_iter().map(|v| v as f32)),
                None => return,
            },
        };
        let n = values.as_slice().len();
        let width = n.checked_div(rows).unwrap_or(0);
        if width == 0 || width * rows != n {
            return;
        }
        let at_unix = now_unix();
        if let Some(m) = self.model_or_new(model)
            && let Ok(mut m) = m.lock()
            && let Some(version) = m.record.version_index(version, truth)
        {
            let entry = Entry {
                version,
                values,
                width,
                at_unix,
                labelled: false,
                seq: 0,
            };
            m.record.insert(id, entry);
        }
    }

    /// Joins labels to recorded answers: per item, a request id and one
    /// label per row of that request. All or nothing: labels that do not fit
    /// their prediction (count, class, number) are an error naming the item
    /// and label, and then no item is applied. Otherwise each item's
    /// outcome is counted and answered.
    pub(crate) fn label(
        &self,
        model: &str,
        items: &[(&str, &[Value])],
    ) -> Result<Vec<Receipt>, (usize, Error)> {
        let poisoned = || (0, Error::internal("feedback lock poisoned"));
        let m = self.model_or_new(model).ok_or_else(poisoned)?;
        let mut guard = m.lock().map_err(|_| poisoned())?;
        let mf = &mut *guard;
        // Checked first, so a bad item leaves the record as it was.
        let mut targets = Vec::with_capacity(items.len());
        for (i, (id, labels)) in items.iter().enumerate() {
            let Ok(entry) = mf.record.find(id) else {
                targets.push(None);
                continue;
            };
            let rows = entry.rows();
            let entry_version = entry.version;
            let Some(truth) = mf.record.version_of(entry_version) else {
                targets.push(None);
                continue;
            };
            if labels.len() != rows {
                return Err((
                    i,
                    Error::invalid(format!(
                        "labels: {} given for request '{id}', which had {rows} rows",
                        labels.len(),
                    )),
                ));
            }
            let ys = labels
                .iter()
                .enumerate()
                .map(|(j, l)| truth.target(l, j))
                .collect::<Result<Vec<f32>, Error>>()
                .map_err(|e| (i, e))?;
            targets.push(Some(ys));
        }
        let mut receipts = Vec::with_capacity(items.len());
        for ((id, _), ys) in items.iter().zip(targets) {
            let receipt = |outcome: Outcome, rows, version| Receipt {
                id: id.to_string(),
                outcome: outcome.label(),
                rows,
                version,
            };
            // Found again: an id twice in one post is a duplicate the
            // second time.
            let (entry, ys) = match (mf.record.find(id), ys) {
                (Ok(e), Some(ys)) => (e, ys),
                (found, _) => {
                    let o = found.err().unwrap_or(Outcome::Unmatched);
                    mf.bump(o);
                    receipts.push(receipt(o, 0, None));
                    continue;
                }
            };
            entry.labelled = true;
            let (at_unix, width, vi) = (entry.at_unix, entry.width, entry.version);
            let values = entry.values.as_slice().to_vec();
            let Some((version, truth)) = mf.record.version_named(vi) else {
                receipts.push(receipt(Outcome::Unmatched, 0, None));
                continue;
            };
            let live = mf
                .versions
                .entry(version.clone())
                .or_insert_with(|| live::Live::new(truth.clone(), self.window_rows));
            for (row, y) in values.chunks(width.max(1)).zip(&ys) {
                live.push(at_unix, *y, row);
            }
            mf.bump(Outcome::Matched);
            receipts.push(receipt(Outcome::Matched, ys.len(), Some(version)));
        }
        Ok(receipts)
    }

    /// Live figures of every version of `model` with labels, over the
    /// predictions of the last `window_s` seconds (all kept when None).
    pub(crate) fn view(&self, model: &str, window_s: Option<f64>) -> View {
        let since = window_s.map(|w| now_unix() - w);
        let mut view = View {
            model: model.to_string(),
            record: RecordView {
                requests: 0,
                rows: 0,
                capacity_rows: self.record_rows,
            },
            labels: Outcome::ALL.iter().map(|o| (o.label(), 0)).collect(),
            window_s,
            versions: Vec::new(),
        };
        let Some(m) = self.model(model) else {
            return view;
        };
        let Ok(m) = m.lock() else { return view };
        (view.record.requests, view.record.rows) = m.record.held();
        for o in Outcome::ALL {
            view.labels
                .insert(o.label(), m.outcomes.get(o as usize).copied().unwrap_or(0));
        }
        for (v, live) in &m.versions {
            view.versions.push(VersionView {
                version: v.clone(),
                task: live.truth.task.name(),
                figures: live.figures(since),
                card: live.truth.card.iter().cloned().collect(),
            });
        }
        view
    }

    /// One version's live and card figures (None before its first label).
    pub(crate) fn version_view(&self, model: &str, version: &str) -> Option<VersionView> {
        let m = self.model(model)?;
        let m = m.lock().ok()?;
        let live = m.versions.get(version)?;
        Some(VersionView {
            version: version.to_string(),
            task: live.truth.task.name(),
            figures: live.figures(None),
            card: live.truth.card.iter().cloned().collect(),
        })
    }

    /// The live figures of one version over predictions made at or after
    /// `since_unix` (a rollout's start).
    pub(crate) fn figures(&self, model: &str, version: &str, since_unix: f64) -> Option<Figures> {
        let m = self.model(model)?;
        let m = m.lock().ok()?;
        Some(m.versions.get(version)?.figures(Some(since_unix)))
    }

    /// Feedback posts by outcome, live figures and the card's figures per
    /// version, in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        // The names only: view() takes the lock again, and a writer waiting
        // between two reads of one thread would block both.
        let mut names: Vec<String> = match self.models.read() {
            Ok(all) => all.keys().cloned().collect(),
            Err(_) => return,
        };
        names.sort();
        let esc = crate::metrics::escape;
        let _ = writeln!(
            out,
            "# HELP hone_feedback_total Feedback posts by outcome (matched, late: the prediction had left the record, unmatched, duplicate).\n# TYPE hone_feedback_total counter"
        );
        let mut views = Vec::new();
        for name in &names {
            let v = self.view(name, None);
            for (o, n) in &v.labels {
                let _ = writeln!(
                    out,
                    "hone_feedback_total{{model=\"{}\",outcome=\"{o}\"}} {n}",
                    esc(name)
                );
            }
            views.push(v);
        }
        let _ = writeln!(
            out,
            "# HELP hone_live_labels Labelled rows the live figures cover.\n# TYPE hone_live_labels gauge"
        );
        for v in &views {
            for x in &v.versions {
                let _ = writeln!(
                    out,
                    "hone_live_labels{{model=\"{}\",version=\"{}\"}} {}",
                    esc(&v.model),
                    esc(&x.version),
                    x.figures.labels
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP hone_live_metric A version's figure on its labelled live predictions (accuracy, auc, logloss, f1; mae, rmse, r2).\n# TYPE hone_live_metric gauge"
        );
        for v in &views {
            for x in &v.versions {
                let Some(r) = &x.figures.live else { continue };
                for (k, val) in live_entries(r) {
                    let _ = writeln!(
                        out,
                        "hone_live_metric{{model=\"{}\",version=\"{}\",metric=\"{k}\"}} {val}",
                        esc(&v.model),
                        esc(&x.version)
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP hone_card_metric A version's validation figure from its model card, for comparison with hone_live_metric.\n# TYPE hone_card_metric gauge"
        );
        for v in &views {
            for x in &v.versions {
                for (k, val) in &x.card {
                    if val.is_finite() {
                        let _ = writeln!(
                            out,
                            "hone_card_metric{{model=\"{}\",version=\"{}\",metric=\"{}\"}} {val}",
                            esc(&v.model),
                            esc(&x.version),
                            esc(k)
                        );
                    }
                }
            }
        }
    }
}

/// The finite figures of a report, as metric label and value.
fn live_entries(r: &Report) -> Vec<(&'static str, f64)> {
    r.entries()
        .into_iter()
        .filter(|(k, v)| v.is_finite() && *k != "mse")
        .collect()
}
