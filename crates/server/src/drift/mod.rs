//! Live drift of a model version's inputs and outputs against its reference
//! profile (`profile`): requests hand their tensors (reference-counted, no
//! copy) to a worker thread through a bounded queue, so binning never runs
//! on the request path and a busy worker drops samples rather than slow a
//! request; the worker bins rows into a sliding window (`window`); a
//! snapshot compares the window with the reference (`distance`).

mod distance;
mod profile;
mod verdict;
mod window;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hone_core::{DataType, Tensor};
use serde::Serialize;

use profile::{Profile, Reference};
pub use verdict::Verdict;
use window::Window;

use crate::error::SetupError;

/// Samples waiting for the worker; past this, new ones are dropped.
const QUEUE: usize = 1024;

/// The window, from config `parameters`: `drift_window_rows` (default
/// 10000), `drift_window_seconds` (default 3600) and
/// `drift_max_rows_per_second` (default 1000: beyond it requests are not
/// sampled, so drift costs the same at any load); `drift: "off"` turns
/// monitoring off for a model that has a profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftSettings {
    pub window: Duration,
    pub rows: u64,
    pub rows_per_second: u64,
    /// How often the worker records every feature's PSI for the history
    /// (`drift_history_seconds`, default 60; 120 points are kept).
    pub history_every: Duration,
}

impl DriftSettings {
    pub fn from_params(p: &BTreeMap<String, String>) -> Result<Option<DriftSettings>, SetupError> {
        if p.get("drift").is_some_and(|v| v == "off" || v == "false") {
            return Ok(None);
        }
        let num = |k: &str, d: f64| -> Result<f64, SetupError> {
            match p.get(k) {
                None => Ok(d),
                Some(v) => v
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x > 0.0)
                    .ok_or_else(|| {
                        SetupError::Invalid(format!(
                            "parameter {k} = {v:?}: expected a positive number"
                        ))
                    }),
            }
        };
        Ok(Some(DriftSettings {
            window: Duration::from_secs_f64(num("drift_window_seconds", 3600.0)?.min(1e9)),
            rows: num("drift_window_rows", 10_000.0)? as u64,
            rows_per_second: num("drift_max_rows_per_second", 1000.0)? as u64,
            history_every: Duration::from_secs_f64(num("drift_history_seconds", 60.0)?.min(1e9)),
        }))
    }
}

#[derive(Clone, Copy)]
enum Side {
    Inputs,
    Outputs,
}

struct Sides {
    inputs: Window,
    outputs: Window,
    /// Tensors whose row width did not match the profile.
    mismatched: u64,
    /// (unix seconds, PSI per input feature), oldest first.
    history: std::collections::VecDeque<(u64, Vec<Option<f64>>)>,
}

/// History points kept: two hours at the default interval.
const HISTORY: usize = 120;

pub struct DriftMonitor {
    profile: Arc<Profile>,
    settings: DriftSettings,
    tx: flume::Sender<(Side, Tensor)>,
    state: Arc<Mutex<Sides>>,
    dropped: AtomicU64,
    started: Instant,
    /// The second (since `started`) the budget below counts for.
    second: AtomicU64,
    /// Rows sampled in that second.
    taken: AtomicU64,
    /// Rows seen in that second.
    seen_in_second: AtomicU64,
    /// One request in this many rows is sampled: the last second's rows
    /// over the budget, so a steady load is sampled evenly across each
    /// second rather than first come, first taken.
    stride: AtomicU64,
    seen: AtomicU64,
    sampled: AtomicU64,
}

impl std::fmt::Debug for DriftMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriftMonitor")
            .field("source", &self.profile.source)
            .finish_non_exhaustive()
    }
}

impl DriftMonitor {
    /// The monitor for the model file at `model`, when a profile lies beside
    /// it and the config leaves monitoring on.
    pub fn for_model(
        model: &Path,
        params: &BTreeMap<String, String>,
        label: &str,
    ) -> Result<Option<Arc<DriftMonitor>>, SetupError> {
        let Some(settings) = DriftSettings::from_params(params)? else {
            return Ok(None);
        };
        match profile::load(model)? {
            Some(p) if !p.inputs.is_empty() => Ok(Some(DriftMonitor::start(p, settings, label))),
            _ => Ok(None),
        }
    }

    fn start(profile: Profile, settings: DriftSettings, label: &str) -> Arc<DriftMonitor> {
        let widths = |r: &[Reference]| r.iter().map(Reference::bins).collect::<Vec<_>>();
        let state = Arc::new(Mutex::new(Sides {
            inputs: Window::new(settings.window, settings.rows, widths(&profile.inputs)),
            outputs: Window::new(settings.window, settings.rows, widths(&profile.outputs)),
            mismatched: 0,
            history: std::collections::VecDeque::new(),
        }));
        let profile = Arc::new(profile);
        let (tx, rx) = flume::bounded::<(Side, Tensor)>(QUEUE);
        let (p, st) = (profile.clone(), state.clone());
        // Ends when the monitor (the only sender) is dropped with its model.
        let spawned = std::thread::Builder::new()
            .name(format!("drift {label}"))
            .spawn(move || {
                let mut next_point = Instant::now() + settings.history_every;
                loop {
                    let got = rx.recv_timeout(Duration::from_secs(1).min(settings.history_every));
                    if Instant::now() >= next_point {
                        next_point += settings.history_every;
                        let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
                        let (_, counts) = s.inputs.totals(Instant::now());
                        let psis = features(&p.inputs, &counts).iter().map(|f| f.psi).collect();
                        let unix = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs());
                        s.history.push_back((unix, psis));
                        while s.history.len() > HISTORY {
                            s.history.pop_front();
                        }
                    }
                    let (side, t) = match got {
                        Ok(x) => x,
                        Err(flume::RecvTimeoutError::Timeout) => continue,
                        Err(flume::RecvTimeoutError::Disconnected) => break,
                    };
                    let refs = match side {
                        Side::Inputs => &p.inputs,
                        Side::Outputs => &p.outputs,
                    };
                    let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
                    let Sides {
                        inputs,
                        outputs,
                        mismatched,
                        ..
                    } = &mut *s;
                    let w = match side {
                        Side::Inputs => inputs,
                        Side::Outputs => outputs,
                    };
                    if !bin(refs, &t, w, Instant::now()) {
                        *mismatched += 1;
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("drift monitoring for {label} is off: cannot start its thread: {e}");
        }
        Arc::new(DriftMonitor {
            profile,
            settings,
            tx,
            state,
            dropped: AtomicU64::new(0),
            started: Instant::now(),
            second: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            seen_in_second: AtomicU64::new(0),
            stride: AtomicU64::new(1),
            seen: AtomicU64::new(0),
            sampled: AtomicU64::new(0),
        })
    }

    /// Whether a request of `rows` rows is sampled: one every `stride`
    /// rows (the last second's load over the budget), and never more than
    /// twice the budget in a second, so a burst after a quiet second is
    /// sampled too instead of the first rows spending the whole budget. A
    /// few atomics, no lock, no allocation.
    fn sample(&self, rows: u64) -> bool {
        self.seen.fetch_add(rows, Relaxed);
        let budget = self.settings.rows_per_second.max(1);
        let now = self.started.elapsed().as_secs();
        // A plain load first: the shared line is written once a second,
        // not by every request.
        if self.second.load(Relaxed) != now {
            let old = self.second.swap(now, Relaxed);
            if old != now {
                let last = self.seen_in_second.swap(0, Relaxed);
                // After an idle gap the last busy second says nothing.
                let stride = if now == old + 1 {
                    last.div_ceil(budget)
                } else {
                    1
                };
                self.stride.store(stride.max(1), Relaxed);
                self.taken.store(0, Relaxed);
            }
        }
        let before = self.seen_in_second.fetch_add(rows, Relaxed);
        let stride = self.stride.load(Relaxed).max(1);
        // Sampled when this request's rows cross a multiple of the stride.
        if stride > 1 && before / stride == (before + rows) / stride {
            return false;
        }
        let cap = budget.saturating_mul(2);
        if self.taken.load(Relaxed) >= cap || self.taken.fetch_add(rows, Relaxed) + rows > cap {
            return false;
        }
        self.sampled.fetch_add(rows, Relaxed);
        true
    }

    fn offer(&self, side: Side, t: Option<&Tensor>) {
        if let Some(t) = t
            && self.tx.try_send((side, t.clone())).is_err()
        {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    /// The first input of a validated request, if sampled; the answer says
    /// whether to offer its outputs too.
    pub fn offer_inputs(&self, inputs: &[Tensor]) -> bool {
        let rows = inputs.first().map_or(0, |t| t.batch() as u64);
        if !self.sample(rows) {
            return false;
        }
        self.offer(Side::Inputs, inputs.first());
        true
    }

    /// The first output of a sampled request, when the profile has output
    /// references.
    pub fn offer_outputs(&self, outputs: &[Tensor]) {
        if !self.profile.outputs.is_empty() {
            self.offer(Side::Outputs, outputs.first());
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (in_rows, in_counts) = s.inputs.totals(now);
        let (out_rows, out_counts) = s.outputs.totals(now);
        let mut inputs = features(&self.profile.inputs, &in_counts);
        let mut outputs = features(&self.profile.outputs, &out_counts);
        judge(&mut inputs, &mut outputs);
        Snapshot {
            source: self.profile.source.clone(),
            window_seconds: self.settings.window.as_secs_f64(),
            window_max_rows: self.settings.rows,
            rows: in_rows,
            output_rows: out_rows,
            features: inputs,
            outputs,
            dropped_samples: self.dropped.load(Relaxed),
            rows_seen: self.seen.load(Relaxed),
            rows_sampled: self.sampled.load(Relaxed),
            mismatched_tensors: s.mismatched,
            history: s.history.iter().cloned().collect(),
        }
    }
}

/// The counts the chi-square test compares: for a numeric feature the
/// rows below and above the reference range join its first and last bins,
/// because the reference has none there by construction and a test on an
/// expected count of zero would call two tail rows a drift (the JSON still
/// counts them apart). A categorical feature keeps unseen categories as a
/// bin of their own: they are drift.
fn test_counts(
    reference: &[f64],
    current: &[f64],
    bins: usize,
    categorical: bool,
) -> Option<(Vec<f64>, Vec<f64>)> {
    if categorical || bins == 0 {
        return Some((reference.to_vec(), current.to_vec()));
    }
    let mut r = reference.get(..bins)?.to_vec();
    let mut c = current.get(..bins)?.to_vec();
    let (below, above) = (current.get(bins)?, current.get(bins + 1)?);
    *c.first_mut()? += below;
    *c.last_mut()? += above;
    let (rb, ra) = (reference.get(bins)?, reference.get(bins + 1)?);
    *r.first_mut()? += rb;
    *r.last_mut()? += ra;
    Some((r, c))
}

/// Every feature's (and output's) verdict, tested together: Holm's
/// correction keeps the chance of any false alarm in a snapshot at
/// [`verdict::ALPHA`], however many features the model has.
fn judge(features: &mut [FeatureDrift], outputs: &mut [FeatureDrift]) {
    let p: Vec<Option<f64>> = features
        .iter()
        .chain(outputs.iter())
        .map(|f| f.p_value)
        .collect();
    let significant = verdict::holm(&p, verdict::ALPHA);
    for (f, sig) in features
        .iter_mut()
        .chain(outputs.iter_mut())
        .zip(significant)
    {
        f.verdict = verdict::verdict(f.rows, sig, f.psi, f.expected_psi.unwrap_or(f64::INFINITY));
    }
}

/// Bins every row of `t` into the window; false when its row width is not
/// the profile's.
fn bin(refs: &[Reference], t: &Tensor, w: &mut Window, now: Instant) -> bool {
    let Some(values) = values(t) else {
        return false;
    };
    let rows = t.batch().max(1);
    let width = values.len() / rows;
    if width != refs.len() || width == 0 {
        return false;
    }
    w.record(now, rows as u64, |counts| {
        for row in values.chunks(width) {
            for ((x, r), c) in row.iter().zip(refs).zip(counts.iter_mut()) {
                let i = match r.bin(*x) {
                    Ok(i) => i,
                    Err(k) => r.bins() + k,
                };
                if let Some(n) = c.get_mut(i) {
                    *n += 1;
                }
            }
        }
    });
    true
}

/// A tensor's elements as f64, for the numeric types a profile describes
/// (shadow comparisons read outputs with it too).
pub(crate) fn values(t: &Tensor) -> Option<Vec<f64>> {
    // Strings have no histogram; every other element type reads as f64.
    match t.dtype {
        DataType::U32 | DataType::U64 => None,
        _ => t.to_f64s(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FeatureDrift {
    pub name: String,
    /// not_enough_data, stable, moderate or major ([`Verdict`]).
    pub verdict: Verdict,
    pub psi: Option<f64>,
    /// The PSI sampling alone gives at these sample sizes; bands count
    /// from here.
    pub expected_psi: Option<f64>,
    /// The chi-square test's p-value for "same distribution as the
    /// reference" (before Holm's correction over every feature).
    pub p_value: Option<f64>,
    /// Rows of the window this feature's figures come from.
    pub rows: u64,
    pub jensen_shannon: Option<f64>,
    pub below_range: u64,
    pub above_range: u64,
    pub non_finite: u64,
    /// Categorical features: values that are no category of the reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unseen: Option<u64>,
    /// Categorical features: the label of each bin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
    pub edges: Vec<f64>,
    pub reference: Vec<f64>,
    pub current: Vec<u64>,
}

/// What the window holds now against the reference.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub source: String,
    pub window_seconds: f64,
    pub window_max_rows: u64,
    pub rows: u64,
    pub output_rows: u64,
    pub features: Vec<FeatureDrift>,
    pub outputs: Vec<FeatureDrift>,
    pub dropped_samples: u64,
    /// Rows of every request since load, and of those sampled into drift.
    pub rows_seen: u64,
    pub rows_sampled: u64,
    pub mismatched_tensors: u64,
    /// Every `drift_history_seconds`: (unix seconds, PSI per input feature).
    pub history: Vec<(u64, Vec<Option<f64>>)>,
}

fn features(refs: &[Reference], counts: &[Vec<u64>]) -> Vec<FeatureDrift> {
    refs.iter()
        .zip(counts)
        .map(|(r, c)| {
            let n = r.bins();
            let at = |i: usize| c.get(i).copied().unwrap_or(0);
            // Out-of-range values are bins the reference never filled.
            let mut reference = r.counts.clone();
            reference.extend([0.0, 0.0]);
            let current: Vec<f64> = (0..n + 2).map(|i| at(i) as f64).collect();
            let psi = distance::psi(&reference, &current);
            let categorical = r.categories.is_some();
            let (n_ref, n_cur): (f64, f64) = (reference.iter().sum(), current.iter().sum());
            FeatureDrift {
                name: r.name.clone(),
                // Set with every feature's test at hand ([`judge`]).
                verdict: Verdict::NotEnoughData,
                psi,
                expected_psi: (n_cur > 0.0).then(|| verdict::expected_psi(n, n_ref, n_cur)),
                p_value: test_counts(&reference, &current, n, categorical)
                    .and_then(|(r, c)| verdict::chi_square_p(&r, &c)),
                rows: n_cur as u64,
                jensen_shannon: distance::jensen_shannon(&reference, &current),
                below_range: if categorical { 0 } else { at(n) },
                above_range: at(n + 1),
                unseen: categorical.then(|| at(n)),
                categories: r
                    .categories
                    .as_ref()
                    .map(|c| c.iter().map(|(l, _)| l.clone()).collect()),
                non_finite: at(n + 2),
                edges: r.edges.clone(),
                reference: r.counts.clone(),
                current: (0..n).map(at).collect(),
            }
        })
        .collect()
}
