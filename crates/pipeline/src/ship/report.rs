//! What a ship is asked to do and what it reports: the options, the timed
//! stage table (and its text rendering), and the run that fills it in.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use hone_data::metrics::{Metric, Report};
use hone_data::{Encoding, Prepared, Table, Task};
use hone_server::{Server, ServerOptions};
use hone_train::TrainConfig;
use serde::Serialize;

use crate::{PipelineError, Result};

#[derive(Debug, Clone)]
pub struct ShipOptions {
    /// Name of the data for messages and the card (a path, or "embedded:...").
    pub data_name: String,
    /// The data file's bytes (hashed into the card; parsed as CSV unless
    /// `data_path` names a Parquet file).
    pub data: Vec<u8>,
    pub data_path: Option<PathBuf>,
    pub target: String,
    pub task: Option<Task>,
    pub categorical: Vec<String>,
    pub name: String,
    pub repository: PathBuf,
    /// Fail the ship when the held-out metric is worse than this.
    pub min_metric: Option<f64>,
    /// The gate's metric; accuracy for classification and R² for regression by default.
    pub metric: Option<Metric>,
    /// Fraction of rows held out for validation; never trained on.
    pub holdout: f64,
    pub train: TrainConfig,
    /// Where to serve; its repository path is replaced by `repository`.
    pub server: ServerOptions,
    /// Where the new version goes live.
    pub live: Live,
    /// With `Live::Into`: the new version starts at this percent of traffic
    /// under the server's rollout policy instead of taking all of it.
    pub canary: Option<u32>,
    /// Held-out rows sent to the live endpoint.
    pub smoke_rows: usize,
    /// Set from a Ctrl-C handler: checked between stages.
    pub cancel: Arc<AtomicBool>,
    /// Print each stage as it starts, to stderr.
    pub progress: bool,
    /// Run `hone optimize` (graph, int8 dynamic and static) on the validated
    /// model with this largest metric drop, and ship its choice when it is
    /// faster; `None` skips the stage.
    pub optimize: Option<f64>,
    /// Build a container image of the repository (with the new version)
    /// after packaging; `None` skips the stage.
    pub image: Option<ImageStage>,
    /// Ship this model instead of training one: an ONNX file, or any model
    /// `hone import` takes (imported into the staging directory; the
    /// options' `out` is ignored). The data is then all held out.
    pub model: Option<hone_import::ImportOptions>,
}

/// What happens once the new version is in the repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Live {
    /// Start a server, smoke-test, stop.
    #[default]
    Check,
    /// Start a server, smoke-test, keep serving.
    Serve,
    /// Have the running server at this address (with these keys and CA)
    /// load it, and smoke-test it there.
    Into(hone_client::Options),
}

/// What the image stage needs: where to write, and the hone binary and
/// ONNX Runtime library that go in.
#[derive(Debug, Clone)]
pub struct ImageStage {
    pub output: PathBuf,
    pub hone: PathBuf,
    pub onnxruntime: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Skipped,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub stage: &'static str,
    pub seconds: f64,
    pub status: Status,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ShipReport {
    pub name: String,
    pub version: Option<u64>,
    pub path: Option<String>,
    pub endpoint: Option<String>,
    pub metric: Option<String>,
    pub value: Option<f64>,
    pub validation: Option<Report>,
    pub stages: Vec<Stage>,
    pub total_seconds: f64,
    pub ok: bool,
    pub error: Option<String>,
    /// A V2 JSON request body with one held-out row, for a curl example.
    pub example_request: Option<String>,
}

pub struct Shipped {
    pub report: ShipReport,
    /// The live server, when the ship got that far and serving was kept.
    pub server: Option<Server>,
}

pub(super) struct Run {
    pub(super) report: ShipReport,
    pub(super) start: Instant,
    pub(super) progress: bool,
    pub(super) cancel: Arc<AtomicBool>,
}

/// The rows a ship works on, encoded, split three ways.
pub(super) struct Data {
    pub(super) encoding: Encoding,
    pub(super) train: Prepared,
    pub(super) val: Prepared,
    pub(super) holdout: Prepared,
    /// The held-out rows as read, for the optimizer's evaluation.
    pub(super) holdout_table: Table,
}

impl Run {
    /// Times one stage and records its outcome.
    pub(super) fn stage<T>(
        &mut self,
        name: &'static str,
        f: impl FnOnce() -> Result<(T, String)>,
    ) -> Result<T> {
        self.check_cancel()?;
        if self.progress {
            eprintln!("hone ship: {name} ...");
        }
        let t = Instant::now();
        let r = f();
        let seconds = t.elapsed().as_secs_f64();
        match r {
            Ok((v, detail)) => {
                self.report.stages.push(Stage {
                    stage: name,
                    seconds,
                    status: Status::Ok,
                    detail,
                });
                Ok(v)
            }
            Err(e) => {
                self.report.stages.push(Stage {
                    stage: name,
                    seconds,
                    status: Status::Failed,
                    detail: e.to_string(),
                });
                Err(e)
            }
        }
    }

    pub(super) fn skipped(&mut self, name: &'static str, why: &str) {
        self.report.stages.push(Stage {
            stage: name,
            seconds: 0.0,
            status: Status::Skipped,
            detail: why.to_string(),
        });
    }

    pub(super) fn check_cancel(&self) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(PipelineError::Message(
                "interrupted; the repository was not changed".into(),
            ));
        }
        Ok(())
    }
}

/// The stage table a person reads.
pub fn render(r: &ShipReport) -> String {
    let mut s = String::from("stage        time       result\n");
    for st in &r.stages {
        let status = match st.status {
            Status::Ok => "ok",
            Status::Skipped => "skipped",
            Status::Failed => "FAILED",
        };
        s += &format!(
            "{:<12} {:>7.0} ms  {status}: {}\n",
            st.stage,
            st.seconds * 1e3,
            st.detail
        );
    }
    s += &format!(
        "{:<12} {:>7.0} ms  {}\n",
        "total",
        r.total_seconds * 1e3,
        if r.ok { "shipped" } else { "not shipped" }
    );
    s
}

/// The figure a ship is judged on, and the `--min-metric` gate on it:
/// (the value, the note a passing stage's detail ends with). `prefix` says
/// how it was measured in a failure ("held-out ").
pub(super) fn judge(
    report: &Report,
    metric: Metric,
    task: Task,
    min: Option<f64>,
    prefix: &str,
) -> Result<(f64, String)> {
    let value = report.get(metric).ok_or_else(|| {
        PipelineError::Message(format!(
            "metric {} does not apply to a {} model",
            metric.name(),
            task.name()
        ))
    })?;
    let Some(min) = min else {
        return Ok((value, String::new()));
    };
    let ok = if metric.higher_is_better() {
        value >= min
    } else {
        value <= min
    };
    if ok {
        Ok((value, format!(" (gate {min}: pass)")))
    } else {
        Err(PipelineError::Message(format!(
            "{prefix}{} = {value:.4} misses --min-metric {min}",
            metric.name()
        )))
    }
}
