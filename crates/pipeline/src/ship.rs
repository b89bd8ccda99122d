//! `hone ship`: CSV → trained model → validated on held-out rows → packaged
//! as the next version in a model repository → served → smoke-tested over
//! the real protocol, with every stage timed.
//!
//! Nothing touches the repository until the package stage, which builds the
//! version in a hidden directory beside the models and renames it into
//! place, so a failed or interrupted ship leaves the repository as it was.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use hone_data::metrics::{Metric, Report};
use hone_data::{Encoding, Prepared, Table, Task, split};
use hone_server::{Server, ServerOptions};
use hone_train::{CardInput, Mlp, TrainConfig};
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
    /// Base URL of a running server on `repository`: instead of starting
    /// one, ship has it load the new version (the repository API) and smoke
    /// tests it there.
    pub hot_load: Option<String>,
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

struct Run {
    report: ShipReport,
    start: Instant,
    progress: bool,
    cancel: Arc<AtomicBool>,
}

impl Run {
    /// Times one stage and records its outcome.
    fn stage<T>(
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
                    detail: e.0.clone(),
                });
                Err(e)
            }
        }
    }

    fn skipped(&mut self, name: &'static str, why: &str) {
        self.report.stages.push(Stage {
            stage: name,
            seconds: 0.0,
            status: Status::Skipped,
            detail: why.to_string(),
        });
    }

    fn check_cancel(&self) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(PipelineError(
                "interrupted; the repository was not changed".into(),
            ));
        }
        Ok(())
    }
}

/// Runs the whole path. The report is complete whether or not it succeeded.
pub async fn ship(opts: ShipOptions, keep_serving: bool) -> Shipped {
    let mut run = Run {
        report: ShipReport {
            name: opts.name.clone(),
            ..Default::default()
        },
        start: Instant::now(),
        progress: opts.progress,
        cancel: opts.cancel.clone(),
    };
    let result = run_stages(&opts, &mut run, keep_serving).await;
    run.report.total_seconds = run.start.elapsed().as_secs_f64();
    match result {
        Ok(server) => {
            run.report.ok = true;
            Shipped {
                report: run.report,
                server,
            }
        }
        Err(e) => {
            run.report.error = Some(e.0);
            Shipped {
                report: run.report,
                server: None,
            }
        }
    }
}

struct Data {
    encoding: Encoding,
    train: Prepared,
    val: Prepared,
    holdout: Prepared,
    /// The held-out rows as read, for the optimizer's evaluation.
    holdout_table: Table,
}

async fn run_stages(
    opts: &ShipOptions,
    run: &mut Run,
    keep_serving: bool,
) -> Result<Option<Server>> {
    validate_name(&opts.name)?;
    if !(0.0..1.0).contains(&opts.holdout) || opts.holdout == 0.0 {
        return Err(PipelineError("--holdout must be between 0 and 1".into()));
    }
    let seed = opts.train.seed;
    let data = run.stage("load data", || {
        let table = match &opts.data_path {
            Some(p)
                if matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("parquet" | "pq")
                ) =>
            {
                Table::read(p)?
            }
            _ => Table::parse_csv(&opts.data, &opts.data_name)?,
        };
        let encoding = Encoding::fit(&table, &opts.target, opts.task, &opts.categorical)?;
        let all = encoding.apply(&table, true)?;
        let strat = (encoding.target.task != Task::Regression).then_some(&all.y[..]);
        let (rest, held) = split::split(all.rows, opts.holdout, strat, seed);
        let rest = all.select(&rest);
        let strat = (encoding.target.task != Task::Regression).then_some(&rest.y[..]);
        let (tr, va) = split::split(rest.rows, 0.2, strat, seed.wrapping_add(1));
        let d = Data {
            train: rest.select(&tr),
            val: rest.select(&va),
            holdout: all.select(&held),
            holdout_table: table.select(&held),
            encoding,
        };
        let detail = format!(
            "{} rows, {} features, {} task; {} train / {} early-stopping / {} held out",
            all.rows,
            d.encoding.features.len(),
            d.encoding.target.task.name(),
            d.train.rows,
            d.val.rows,
            d.holdout.rows
        );
        Ok((d, detail))
    })?;

    let train_start = Instant::now();
    let model = run.stage("train", || {
        let m = hone_train::train(
            &data.encoding,
            &data.train,
            Some(&data.val),
            &opts.train,
            |_| {},
        )?;
        let detail = format!(
            "MLP {:?}, {} epochs (best {}), candle",
            opts.train.hidden,
            m.history.len(),
            m.best_epoch
        );
        Ok((m, detail))
    })?;
    let train_seconds = train_start.elapsed().as_secs_f64();

    let task = data.encoding.target.task;
    let metric = opts.metric.unwrap_or(if task == Task::Regression {
        Metric::R2
    } else {
        Metric::Accuracy
    });
    let (onnx_bytes, report) = run.stage("validate", || {
        let bytes = hone_onnx::encode(&model.to_onnx(&[("hone.task", task.name().to_string())]));
        let (served, diff) = crate::check_export(&model, &bytes, &data.holdout)?;
        let report = hone_data::metrics::for_task(
            task,
            data.encoding.output_width(),
            &served,
            &data.holdout.y,
        );
        let value = report.get(metric).ok_or_else(|| {
            PipelineError(format!(
                "metric {} does not apply to a {} model",
                metric.name(),
                task.name()
            ))
        })?;
        let mut detail = format!(
            "held-out {} = {value:.4} on {} rows; ONNX vs Rust max |diff| {diff:.1e}",
            metric.name(),
            data.holdout.rows
        );
        if let Some(min) = opts.min_metric {
            let ok = if metric.higher_is_better() {
                value >= min
            } else {
                value <= min
            };
            if !ok {
                return Err(PipelineError(format!(
                    "held-out {} = {value:.4} misses --min-metric {min}",
                    metric.name()
                )));
            }
            detail += &format!(" (gate {min}: pass)");
        }
        Ok(((bytes, report), detail))
    })?;
    run.report.metric = Some(metric.name().to_string());
    run.report.value = report.get(metric);
    run.report.validation = Some(report.clone());

    let card = hone_train::card_for(CardInput {
        model: &model,
        cfg: &opts.train,
        train: &data.train,
        val: Some(&data.holdout),
        train_report: &model.evaluate(&data.train)?,
        val_report: Some(&report),
        data_file: &opts.data_name,
        val_file: None,
        data_bytes: &opts.data,
        seconds: train_seconds,
    });
    let card = serde_json::to_vec_pretty(&card)?;
    let onnx_bytes = match opts.optimize {
        None => {
            run.skipped(
                "optimize",
                "not asked for (--optimize): the validated fp32 model ships",
            );
            onnx_bytes
        }
        Some(max_drop) => run.stage("optimize", || {
            optimize_stage(opts, &data, &onnx_bytes, &card, metric, max_drop)
        })?,
    };

    let cancel = run.cancel.clone();
    let new_model = !opts.repository.join(&opts.name).exists();
    let (version, dir) = run.stage("package", || {
        let config = config_pbtxt(&opts.name, &model);
        let (v, dir) = publish(
            &opts.repository,
            &opts.name,
            &onnx_bytes,
            &card,
            &config,
            &cancel,
        )?;
        let detail = format!(
            "{} ({} bytes of ONNX, card, config)",
            dir.display(),
            onnx_bytes.len()
        );
        Ok(((v, dir), detail))
    })?;
    run.report.version = Some(version);
    run.report.path = Some(dir.display().to_string());

    // From here the version is in the repository: a failure takes it out again.
    match go_live(opts, run, version, &dir, &onnx_bytes, &data, keep_serving).await {
        Ok(server) => Ok(server),
        Err(e) => {
            let undone = roll_back(opts, version, &dir, new_model).await;
            Err(PipelineError(format!("{}; {undone}", e.0)))
        }
    }
}

/// The serve and smoke-test stages: start a server on the repository (or
/// have a running one load the new version), then check live answers against
/// offline ones.
async fn go_live(
    opts: &ShipOptions,
    run: &mut Run,
    version: u64,
    dir: &Path,
    onnx_bytes: &[u8],
    data: &Data,
    keep_serving: bool,
) -> Result<Option<Server>> {
    fn failed(run: &mut Run, stage: &'static str, t: Instant, msg: String) -> PipelineError {
        run.report.stages.push(Stage {
            stage,
            seconds: t.elapsed().as_secs_f64(),
            status: Status::Failed,
            detail: msg.clone(),
        });
        PipelineError(msg)
    }
    run.check_cancel()?;
    if run.progress {
        eprintln!("hone ship: serve ...");
    }
    let t = Instant::now();
    let client = reqwest::Client::new();
    let (base, server) = match &opts.hot_load {
        Some(url) => {
            let base = url.trim_end_matches('/').to_string();
            if let Err(e) = repository_call(&client, &base, &opts.name, "load").await {
                return Err(failed(run, "serve", t, e.0));
            }
            (base, None)
        }
        None => {
            let mut server_opts = opts.server.clone();
            server_opts.model_repository = opts.repository.clone();
            match Server::start(server_opts).await {
                Ok(s) => (format!("http://{}", s.http_addr), Some(s)),
                Err(e) => {
                    return Err(failed(
                        run,
                        "serve",
                        t,
                        format!("cannot start the server: {e}"),
                    ));
                }
            }
        }
    };
    let stop = |server: Option<Server>| async move {
        if let Some(s) = server {
            s.shutdown().await;
        }
    };
    let endpoint = format!("{base}/v2/models/{}/versions/{version}/infer", opts.name);
    let ready_url = format!("{base}/v2/models/{}/versions/{version}/ready", opts.name);
    let ready = client
        .get(&ready_url)
        .send()
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false);
    if !ready {
        let mut msg = format!(
            "version {version} of {} is not ready at {ready_url}",
            opts.name
        );
        if opts.hot_load.is_some() {
            msg.push_str(&format!(
                " (is that server serving --model-repository {}?)",
                opts.repository.display()
            ));
        }
        stop(server).await;
        return Err(failed(run, "serve", t, msg));
    }
    let detail = match &server {
        Some(s) => format!(
            "{base} (gRPC {}), version {version} ready",
            s.grpc_addr.map_or("off".into(), |a| a.to_string())
        ),
        None => format!("hot-loaded into the running server at {base}: version {version} ready"),
    };
    run.report.stages.push(Stage {
        stage: "serve",
        seconds: t.elapsed().as_secs_f64(),
        status: Status::Ok,
        detail,
    });
    run.report.endpoint = Some(endpoint.clone());

    if run.progress {
        eprintln!("hone ship: smoke test ...");
    }
    let t = Instant::now();
    if let Some(row) = (data.holdout.rows > 0).then(|| data.holdout.row(0)) {
        run.report.example_request = Some(
            serde_json::json!({"inputs": [{"name": hone_train::export::INPUT, "shape": [1, row.len()], "datatype": "FP32", "data": row}]})
                .to_string(),
        );
    }
    match smoke_test(
        &client,
        &endpoint,
        onnx_bytes,
        &data.holdout,
        opts.smoke_rows,
    )
    .await
    {
        Ok(detail) => run.report.stages.push(Stage {
            stage: "smoke test",
            seconds: t.elapsed().as_secs_f64(),
            status: Status::Ok,
            detail,
        }),
        Err(e) => {
            stop(server).await;
            return Err(failed(run, "smoke test", t, e.0));
        }
    }
    let json = serde_json::to_vec_pretty(&run.report)?;
    // The report beside the model it describes; the version is already live, so this is best effort.
    if let Err(e) = std::fs::write(dir.join("ship.json"), json) {
        tracing::warn!("cannot write {}: {e}", dir.join("ship.json").display());
    }
    if keep_serving {
        Ok(server)
    } else {
        stop(server).await;
        Ok(None)
    }
}

/// Asks a running hone (or Triton) server to `load` (or reload) or `unload`
/// a model of its repository; a refusal comes back with the server's reason.
async fn repository_call(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    action: &str,
) -> Result<()> {
    let url = format!("{base}/v2/repository/models/{name}/{action}");
    let resp = client
        .post(&url)
        .send()
        .await
        .map_err(|e| PipelineError(format!("cannot reach the server: POST {url}: {e}")))?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(PipelineError(format!("POST {url}: {status}: {text}")));
    }
    Ok(())
}

/// Takes a published version back out of the repository after a failed
/// serve or smoke test, and has a running server follow. Says what it did.
async fn roll_back(opts: &ShipOptions, version: u64, dir: &Path, new_model: bool) -> String {
    let target = if new_model {
        opts.repository.join(&opts.name)
    } else {
        dir.to_path_buf()
    };
    if let Err(e) = std::fs::remove_dir_all(&target) {
        return format!(
            "version {version} could not be removed from the repository ({}: {e})",
            target.display()
        );
    }
    let mut said = format!("version {version} was removed from the repository");
    if let Some(url) = &opts.hot_load {
        let base = url.trim_end_matches('/');
        let client = reqwest::Client::new();
        // A model that did not exist before goes away; otherwise the server
        // reloads the directory as it now is.
        let action = if new_model { "unload" } else { "load" };
        let back = repository_call(&client, base, &opts.name, action).await;
        match back {
            Ok(()) => said.push_str(" and the running server reloaded what it served before"),
            Err(e) => said.push_str(&format!(
                ", but the running server could not be told: {}",
                e.0
            )),
        }
    }
    said
}

/// The optimize stage: the validated model, its card and the held-out rows
/// go to a scratch directory, `hone optimize` searches graph / int8 dynamic /
/// int8 static candidates within `max_drop` of the held-out metric, and its
/// choice replaces the fp32 model only when it is faster.
fn optimize_stage(
    opts: &ShipOptions,
    data: &Data,
    onnx: &[u8],
    card: &[u8],
    metric: Metric,
    max_drop: f64,
) -> Result<(Vec<u8>, String)> {
    use crate::search as opt;
    let dir = std::env::temp_dir().join(format!("hone-ship-optimize-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = (|| {
        let model = dir.join("model.onnx");
        std::fs::write(&model, onnx)?;
        std::fs::write(crate::card_path(&model), card)?;
        let held = dir.join("holdout.csv");
        data.holdout_table.write_csv(&held)?;
        let o = opt::OptimizeOptions {
            model,
            data: held,
            target: opts.target.clone(),
            metric: Some(metric.name().to_string()),
            max_drop,
            relative: false,
            calibration: None,
            calibration_rows: 128,
            objective: opt::Objective::Latency,
            time_budget: std::time::Duration::from_secs(60),
            techniques: vec![
                opt::Technique::Graph,
                opt::Technique::Dynamic,
                opt::Technique::Static,
            ],
            output: dir.join("chosen.onnx"),
            repository: None,
            name: None,
            output_name: None,
            threads: 0,
            measure_seconds: 0.3,
            train_data: None,
            prune_ratio: 0.5,
            latency_data: None,
        };
        let r = opt::run(&o, &mut |_, _, _| {})?;
        let base = r.baseline.p50_ms.unwrap_or(f64::MAX);
        let chosen = r
            .chosen
            .as_ref()
            .and_then(|c| r.candidates.iter().find(|x| &x.name == c));
        Ok(match chosen {
            Some(c) if c.p50_ms.unwrap_or(f64::MAX) < base => (
                std::fs::read(dir.join("chosen.onnx"))?,
                format!(
                    "{}: p50 {:.3} ms vs fp32 {base:.3} ms, held-out {} drop {:.4} (≤ {max_drop}); {} candidates",
                    c.name,
                    c.p50_ms.unwrap_or(0.0),
                    metric.name(),
                    c.drop.unwrap_or(0.0),
                    r.candidates.len()
                ),
            ),
            _ => (
                onnx.to_vec(),
                format!(
                    "kept fp32: no candidate within {max_drop} was faster (p50 {base:.3} ms); {} candidates",
                    r.candidates.len()
                ),
            ),
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(PipelineError(format!(
            "model name {name:?}: use letters, digits, '-', '_' and '.' (not leading)"
        )))
    }
}

/// The Triton config hone writes for a model it trained.
pub fn config_pbtxt(name: &str, model: &Mlp) -> String {
    let e = &model.encoding;
    format!(
        "# Written by hone ship.\nname: \"{name}\"\nplatform: \"onnxruntime_onnx\"\nmax_batch_size: 64\n\
         input [\n  {{ name: \"{}\" data_type: TYPE_FP32 dims: [ {} ] }}\n]\n\
         output [\n  {{ name: \"{}\" data_type: TYPE_FP32 dims: [ {} ] }}\n]\n\
         dynamic_batching {{ max_queue_delay_microseconds: 0 }}\n\
         instance_group [ {{ count: 1 kind: KIND_CPU }} ]\n",
        hone_train::export::INPUT,
        e.input_width(),
        hone_train::export::OUTPUT,
        e.output_width()
    )
}

/// Writes model, card and config into a hidden staging directory inside the
/// repository (same file system, so the final rename is atomic) and renames
/// the version (or, for a new model, the whole model directory) into place.
fn publish(
    repo: &Path,
    name: &str,
    onnx: &[u8],
    card: &[u8],
    config: &str,
    cancel: &AtomicBool,
) -> Result<(u64, PathBuf)> {
    crate::publish::publish_files(
        repo,
        name,
        &[("model.onnx", onnx), ("model.card.json", card)],
        Some(config),
        cancel,
    )
}

/// Sends held-out rows to the live endpoint over V2 JSON and checks the
/// answers equal what ONNX Runtime computes offline on the same rows.
async fn smoke_test(
    client: &reqwest::Client,
    endpoint: &str,
    onnx: &[u8],
    holdout: &Prepared,
    rows: usize,
) -> Result<String> {
    let n = rows.clamp(1, holdout.rows.max(1)).min(holdout.rows);
    if n == 0 {
        return Err(PipelineError("no held-out rows to send".into()));
    }
    let sample = holdout.select(&(0..n).collect::<Vec<_>>());
    let offline = crate::ort_predict(onnx, &sample)?;
    let body = serde_json::json!({
        "id": "hone-ship-smoke",
        "inputs": [{
            "name": hone_train::export::INPUT,
            "shape": [n, sample.cols],
            "datatype": "FP32",
            "data": sample.x,
        }]
    });
    let resp = client
        .post(endpoint)
        .json(&body)
        .send()
        .await
        .map_err(|e| PipelineError(format!("POST {endpoint}: {e}")))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| PipelineError(format!("reading the answer: {e}")))?;
    if !status.is_success() {
        return Err(PipelineError(format!("POST {endpoint}: {status}: {text}")));
    }
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let data = v["outputs"][0]["data"]
        .as_array()
        .ok_or_else(|| PipelineError(format!("the answer has no outputs[0].data: {text}")))?;
    let served: Vec<f32> = data
        .iter()
        .filter_map(|x| x.as_f64().map(|f| f as f32))
        .collect();
    if served.len() != offline.len() {
        return Err(PipelineError(format!(
            "served {} values for {n} rows, offline {}",
            served.len(),
            offline.len()
        )));
    }
    let diff = crate::max_rel_diff(&served, &offline);
    if diff > 1e-6 {
        return Err(PipelineError(format!(
            "served predictions differ from offline ones by up to {diff:e}"
        )));
    }
    Ok(format!(
        "{n} held-out rows over V2 JSON: served == offline (max |diff| {diff:.1e})"
    ))
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
