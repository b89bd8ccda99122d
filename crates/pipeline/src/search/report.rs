//! What a search produces: the candidates as judged and measured, the
//! report around them, and its text rendering. The HTML page (`html`) and
//! the JSON file read the same types.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::options::Objective;
use super::recipe::Recipe;

#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub name: String,
    pub technique: String,
    pub detail: String,
    /// The metric and drop as served: in the pass the model does worst in.
    pub metric: Option<f64>,
    pub drop: Option<f64>,
    /// That pass ("batch 1", "batches of ≤ 64").
    pub judged_in: Option<String>,
    /// The same in large padded batches (sequence models), reported beside.
    pub padded_metric: Option<f64>,
    pub padded_drop: Option<f64>,
    /// The figures in each served pass.
    pub by_pass: Vec<PassFigure>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub throughput: Option<f64>,
    pub best_batch: Option<usize>,
    pub size_bytes: Option<u64>,
    /// Intra-op threads of the session it was timed in.
    pub intra_op_threads: Option<usize>,
    /// Sessions run at once for the throughput figure.
    pub instances: Option<usize>,
    pub meets_budget: bool,
    pub verdict: Verdict,
    #[serde(skip)]
    pub bytes: Vec<u8>,
    /// What it is made of; `name` and `technique` are its words.
    #[serde(skip)]
    pub recipe: Recipe,
}

impl Candidate {
    pub(crate) fn new(recipe: Recipe, detail: String) -> Candidate {
        Candidate {
            name: recipe.to_string(),
            technique: recipe.technique_label().into(),
            detail,
            metric: None,
            drop: None,
            judged_in: None,
            padded_metric: None,
            padded_drop: None,
            by_pass: Vec::new(),
            p50_ms: None,
            p99_ms: None,
            throughput: None,
            best_batch: None,
            size_bytes: None,
            intra_op_threads: None,
            instances: None,
            meets_budget: false,
            verdict: Verdict::Pending,
            bytes: Vec::new(),
            recipe,
        }
    }

    /// The verdict, with the padded-batch figure and the pass that decided
    /// when the two figures differ.
    pub fn verdict_with_figures(&self) -> String {
        match (self.metric, self.padded_metric, self.padded_drop) {
            (Some(m), Some(p), Some(d)) if (m - p).abs() > 5e-5 => format!(
                "{} (as served, worst in {}; in padded batches {p:.4}, drop {d:.4})",
                self.verdict,
                self.judged_in.as_deref().unwrap_or("?")
            ),
            _ => self.verdict.to_string(),
        }
    }

    pub(crate) fn failed(recipe: Recipe, why: &str) -> Candidate {
        Candidate {
            verdict: Verdict::Failed(why.into()),
            ..Candidate::new(recipe, String::new())
        }
    }

    pub(crate) fn skipped(recipe: Recipe, why: &str) -> Candidate {
        Candidate {
            verdict: Verdict::Skipped(why.into()),
            ..Candidate::new(recipe, String::new())
        }
    }
}

/// What the search concluded about a candidate. Written (text, HTML and
/// JSON) as the sentence its `Display` gives.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Not judged yet.
    Pending,
    WithinBudget,
    OverBudget {
        drop: f64,
        max_drop: f64,
    },
    /// Built but could not be judged or measured, or not built at all.
    Failed(String),
    /// Never tried (the time budget was spent).
    Skipped(String),
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Pending => Ok(()),
            Verdict::WithinBudget => f.write_str("within budget"),
            Verdict::OverBudget { drop, max_drop } => {
                write!(f, "over budget: drop {drop:.4} > {max_drop}")
            }
            Verdict::Failed(why) => write!(f, "failed: {why}"),
            Verdict::Skipped(why) => write!(f, "skipped: {why}"),
        }
    }
}

impl Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PassFigure {
    pub pass: String,
    pub metric: f64,
    pub drop: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OptimizeReport {
    pub model: String,
    pub data: String,
    pub output_judged: String,
    pub judge: String,
    /// How the budget's figure is taken (batch sizes, padding).
    pub judged_as: String,
    pub higher_is_better: bool,
    pub max_drop: f64,
    pub relative: bool,
    pub objective: Objective,
    /// What canonicalization did before any technique (empty: nothing).
    pub canonical: Vec<String>,
    pub baseline: Candidate,
    pub candidates: Vec<Candidate>,
    pub chosen: Option<String>,
    pub reason: String,
    pub written: Vec<String>,
    pub seconds: f64,
    /// The models whose batch-1 p50/p99 come from one interleaved run.
    pub side_by_side: Option<SideBySide>,
    /// How timing sessions were set up.
    pub timing: String,
    /// The CPU the timings come from.
    pub machine: hone_optimize::machine::Machine,
}

#[derive(Debug, Clone, Serialize)]
pub struct SideBySide {
    pub models: Vec<String>,
    pub rounds: usize,
}

/// The candidate table a person reads.
pub fn render(r: &OptimizeReport) -> String {
    let mut s = format!(
        "judged by {} on {} (output {:?}) {}; budget: drop ≤ {}{}; objective: {:?}\n\n",
        r.judge,
        r.data,
        r.output_judged,
        r.judged_as,
        r.max_drop,
        if r.relative { " (relative)" } else { "" },
        r.objective
    );
    for step in &r.canonical {
        s.push_str(&format!("canonical form: {step}\n"));
    }
    if !r.canonical.is_empty() {
        s.push('\n');
    }
    s += &format!(
        "{:<32} {:>10} {:>9} {:>9} {:>9} {:>11} {:>10}  verdict\n",
        "candidate", r.judge, "drop", "p50 ms", "p99 ms", "rows/s", "size KB"
    );
    let fmt = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
    for c in std::iter::once(&r.baseline).chain(&r.candidates) {
        let mark = if r.chosen.as_deref() == Some(&c.name) {
            "* "
        } else {
            "  "
        };
        s += &format!(
            "{mark}{:<30} {:>10} {:>9} {:>9} {:>9} {:>11} {:>10}  {}\n",
            c.name,
            fmt(c.metric, 4),
            fmt(c.drop, 4),
            fmt(c.p50_ms, 3),
            fmt(c.p99_ms, 3),
            fmt(c.throughput, 0),
            fmt(c.size_bytes.map(|b| b as f64 / 1024.0), 1),
            if c.name == "fp32" {
                "baseline".to_string()
            } else {
                c.verdict_with_figures()
            }
        );
    }
    s += &format!("\n{}\n", r.reason);
    let setups: std::collections::BTreeSet<(usize, usize)> = std::iter::once(&r.baseline)
        .chain(&r.candidates)
        .filter_map(|c| Some((c.intra_op_threads?, c.instances?)))
        .collect();
    let setups: Vec<String> = setups
        .iter()
        .map(|(t, i)| format!("{t} thread(s) × {i} instance(s)"))
        .collect();
    s += &format!("{}: {}\n", r.timing, setups.join(" or "));
    s += &format!("{}\n", r.machine.describe());
    if let Some(sbs) = &r.side_by_side {
        s += &format!(
            "p50/p99 of {} measured side by side ({} interleaved rounds)\n",
            sbs.models.join(", "),
            sbs.rounds
        );
    }
    s
}

/// Where the report files go for an output path: `OUT.report.json`/`.html`.
pub fn report_paths(output: &Path) -> (PathBuf, PathBuf) {
    let stem = output.with_extension("");
    (
        PathBuf::from(format!("{}.report.json", stem.display())),
        PathBuf::from(format!("{}.report.html", stem.display())),
    )
}
