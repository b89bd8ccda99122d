//! What a user asks `hone optimize` for: the objective, the techniques to
//! try and every other option of one search.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    Latency,
    Throughput,
    Size,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Technique {
    Graph,
    Fp16,
    Dynamic,
    Static,
    Prune,
    Fallback,
}

impl Technique {
    pub const ALL: [Technique; 6] = [
        Technique::Graph,
        Technique::Fp16,
        Technique::Dynamic,
        Technique::Static,
        Technique::Prune,
        Technique::Fallback,
    ];

    pub fn parse(s: &str) -> Option<Technique> {
        Some(match s {
            "graph" => Technique::Graph,
            "fp16" => Technique::Fp16,
            "dynamic" | "int8-dynamic" => Technique::Dynamic,
            "static" | "int8-static" | "qdq" => Technique::Static,
            "prune" | "pruning" => Technique::Prune,
            "fallback" => Technique::Fallback,
            _ => return None,
        })
    }

    /// The name the report's `technique` column shows.
    pub fn label(self) -> &'static str {
        match self {
            Technique::Graph => "graph",
            Technique::Fp16 => "fp16",
            Technique::Dynamic => "int8 dynamic",
            Technique::Static => "int8 static",
            Technique::Prune => "pruning",
            Technique::Fallback => "fallback",
        }
    }
}

#[derive(Debug, Clone)]
pub struct OptimizeOptions {
    pub model: PathBuf,
    pub data: PathBuf,
    pub target: String,
    /// A metric name, `cosine` or `maxabs`; default: the task's metric with
    /// labels, cosine without.
    pub metric: Option<String>,
    pub max_drop: f64,
    pub relative: bool,
    pub calibration: Option<PathBuf>,
    pub calibration_rows: usize,
    pub objective: Objective,
    pub time_budget: Duration,
    pub techniques: Vec<Technique>,
    pub output: PathBuf,
    pub repository: Option<PathBuf>,
    pub name: Option<String>,
    /// The output judged (default: the first floating-point one).
    pub output_name: Option<String>,
    pub threads: usize,
    /// Seconds of measurement per candidate (half latency, half throughput).
    pub measure_seconds: f64,
    /// Training data for fine-tuning pruned hone models (default: the
    /// card's data file when it exists).
    pub train_data: Option<PathBuf>,
    pub prune_ratio: f64,
    /// Where the batch-1 latency input comes from (its first row); default
    /// EVAL's first row. Lets padded EVAL sets be timed at a real length.
    pub latency_data: Option<PathBuf>,
    /// Also write every candidate that built to DIR/<name>.onnx, for
    /// inspecting the ones that were not chosen.
    pub keep_candidates: Option<PathBuf>,
    /// Write the chosen model's tensors to `OUTPUT.data` beside it (always
    /// when the model would pass protobuf's 2 GB limit).
    pub external_data: bool,
    /// The model, its card and EVAL already in memory (`hone ship`): read
    /// from here instead of `model`/`data` (which then only name them in
    /// the report), and nothing is written; the candidates' bytes are in
    /// the report.
    pub in_memory: Option<InMemory>,
}

#[derive(Clone)]
pub struct InMemory {
    pub model: Vec<u8>,
    pub card: Option<hone_train::ModelCard>,
    /// An imported model's card: features by name, one input per column.
    pub imported: Option<crate::imported::ImportCard>,
    pub data: hone_data::Table,
}

impl std::fmt::Debug for InMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "InMemory {{ model: {} bytes, card: {}, data: {} rows }}",
            self.model.len(),
            self.card.is_some(),
            self.data.rows()
        )
    }
}

impl OptimizeOptions {
    pub fn has(&self, t: Technique) -> bool {
        self.techniques.contains(&t)
    }
}
