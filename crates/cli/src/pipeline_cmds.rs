//! Flags and output of `hone train`, `eval`, `ship` and `demo`; the work is
//! in the pipeline crate.

use std::net::IpAddr;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use hone_data::Task;
use hone_data::metrics::Metric;
use hone_pipeline::ship::{self as sh, Live};
use hone_pipeline::{demo, eval as ev, fit};

use crate::optimize_cmd::parse_drop;
use hone_server::ServerOptions;
use hone_train::TrainConfig;

fn parse_metric(s: &str) -> Result<Metric, String> {
    Metric::parse(s)
        .ok_or_else(|| format!("unknown metric {s:?}: accuracy, auc, f1, logloss, mse, mae or r2"))
}

#[derive(clap::Args, Clone)]
pub struct ModelFlags {
    /// The column to predict.
    #[arg(long, default_value = "label")]
    target: String,
    /// auto picks binary/multiclass for text or small-integer targets, else regression.
    #[arg(long, default_value = "auto", value_parser = ["auto", "binary", "multiclass", "regression"])]
    task: String,
    /// One-hot encode this text column (repeatable).
    #[arg(long)]
    categorical: Vec<String>,
    /// Hidden layer sizes.
    #[arg(long, default_value = "64,64", value_delimiter = ',')]
    hidden: Vec<usize>,
    /// Most passes over the training rows (early stopping may end sooner).
    #[arg(long, default_value_t = 200)]
    epochs: usize,
    /// Rows per gradient step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Learning rate [default: 1e-3; 3e-4 for regression].
    #[arg(long)]
    lr: Option<f64>,
    /// AdamW decoupled weight decay [default: 1e-4; 10 for regression].
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Seed for weight initialisation, shuffling and data splits: same seed and data, same model.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop after this many epochs without a better validation loss (0: never).
    #[arg(long, default_value_t = 30)]
    early_stopping: usize,
    /// Keep an exponential moving average of the weights with this decay
    /// (e.g. 0.99) and validate/export the average.
    #[arg(long)]
    ema: Option<f64>,
}

impl ModelFlags {
    fn task(&self) -> Option<Task> {
        Task::parse(&self.task).flatten()
    }

    fn config(&self) -> TrainConfig {
        TrainConfig {
            hidden: self.hidden.clone(),
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            weight_decay: self.weight_decay,
            seed: self.seed,
            early_stopping: (self.early_stopping > 0).then_some(self.early_stopping),
            ema: self.ema.filter(|d| (0.0..1.0).contains(d)),
            init: None,
            teacher: None,
        }
    }
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Training data: CSV with a header row, or Parquet (.parquet).
    data: PathBuf,
    #[command(flatten)]
    model: ModelFlags,
    /// Validation CSV (otherwise --val-fraction of DATA is held out).
    #[arg(long)]
    val: Option<PathBuf>,
    #[arg(long, default_value_t = 0.2)]
    val_fraction: f64,
    /// Where to write the model; the card goes beside it as NAME.card.json.
    #[arg(short, long)]
    output: PathBuf,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

pub fn train(args: TrainArgs) -> ExitCode {
    let opts = fit::TrainOptions {
        data: args.data,
        target: args.model.target.clone(),
        task: args.model.task(),
        categorical: args.model.categorical.clone(),
        val: args.val,
        val_fraction: args.val_fraction,
        train: args.model.config(),
        output: args.output,
    };
    let bar = if args.quiet || args.json {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(opts.train.epochs as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} epoch {pos}/{len}  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    };
    let result = fit::fit(&opts, |log| {
        bar.set_position(log.epoch as u64);
        let mut msg = format!("loss {:.4}", log.train_loss);
        if let Some(v) = log.val_loss {
            msg += &format!("  val loss {v:.4}");
        }
        if let Some(m) = log.val_metric {
            msg += &format!("  val metric {m:.4}");
        }
        bar.set_message(msg);
    });
    bar.finish_and_clear();
    match result {
        Ok((outcome, _, _)) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&outcome).unwrap_or_default()
                );
            } else if !args.quiet {
                println!(
                    "trained a {} MLP in {:.2} s: {} epochs (best {}), {} training rows, {} validation rows",
                    outcome.task.name(),
                    outcome.seconds,
                    outcome.epochs_run,
                    outcome.best_epoch,
                    outcome.train_rows,
                    outcome.val_rows
                );
                let row = |name: &str, r: &hone_data::metrics::Report| {
                    let parts: Vec<String> = r
                        .entries()
                        .iter()
                        .map(|(k, v)| format!("{k} {v:.4}"))
                        .collect();
                    println!("  {name:<10} {}", parts.join("  "));
                };
                row("train", &outcome.train_metrics);
                if let Some(v) = &outcome.val_metrics {
                    row("validation", v);
                }
                println!(
                    "wrote {} (ONNX Runtime matches the Rust model within {:.1e}) and {}",
                    outcome.model, outcome.export_max_diff, outcome.card
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hone train: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// The ONNX model to score.
    model: PathBuf,
    /// A CSV, or a directory of <input>.npy files plus labels.npy.
    #[arg(long)]
    data: PathBuf,
    /// The label column of a CSV [default: the target in the model's
    /// card (MODEL.card.json), else label].
    #[arg(long)]
    target: Option<String>,
    /// The headline metric, marked in the table and given in --json: accuracy, auc, f1,
    /// logloss, mse, mae or r2 (default: accuracy, or r2 for regression). All that fit are printed.
    #[arg(long, value_parser = parse_metric)]
    metric: Option<Metric>,
    /// The output to judge (default: the first floating-point output).
    #[arg(long)]
    output: Option<String>,
    /// Rows per inference call.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Print the metrics as JSON.
    #[arg(long)]
    json: bool,
}

pub fn eval(args: EvalArgs) -> ExitCode {
    let opts = ev::EvalOptions {
        target: crate::common::target_or_card(args.target, &args.model),
        model: args.model,
        data: args.data,
        metric: args.metric,
        output: args.output,
        batch_size: args.batch_size,
    };
    match ev::evaluate(&opts) {
        Ok(r) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                print!("{}", ev::render(&r));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hone eval: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(clap::Args, Clone)]
pub struct ServeFlags {
    /// Address the server listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// KServe V2 REST port.
    #[arg(long, default_value_t = 8000)]
    pub http_port: u16,
    /// KServe V2 gRPC port.
    #[arg(long, default_value_t = 8001)]
    pub grpc_port: u16,
    /// Prometheus /metrics port.
    #[arg(long, default_value_t = 8002)]
    pub metrics_port: u16,
}

#[derive(clap::Args)]
pub struct ShipArgs {
    /// Training data: CSV with a header row, or Parquet (.parquet). With
    /// --model: the labelled rows it is validated on (all of them).
    #[arg(required_unless_present = "data_flag")]
    data: Option<PathBuf>,
    /// The data, as a flag (the same as the positional DATA).
    #[arg(long = "data", value_name = "DATA", conflicts_with = "data")]
    data_flag: Option<PathBuf>,
    /// Ship this model instead of training one: an ONNX file, or a Keras,
    /// scikit-learn, XGBoost, LightGBM, CatBoost or PyTorch model, which is
    /// imported first (`hone import`, checked on DATA's rows).
    #[arg(long = "model", value_name = "FILE")]
    given: Option<PathBuf>,
    /// With --model: load a joblib/pickle file (loading runs its code).
    #[arg(long, requires = "given")]
    trust_pickle: bool,
    /// With --model: run the import's converter in this Python instead of
    /// hone's managed environment.
    #[arg(long, requires = "given")]
    python: Option<PathBuf>,
    #[command(flatten)]
    model: ModelFlags,
    /// The Triton-style model repository the model is published to as its next version.
    #[arg(long)]
    model_repository: PathBuf,
    /// Model name in the repository (default: the data file's name).
    #[arg(long)]
    name: Option<String>,
    /// Fail (exit 1, repository untouched) when the held-out metric is worse.
    #[arg(long)]
    min_metric: Option<f64>,
    /// The gate's metric (default: accuracy, or r2 for regression).
    #[arg(long, value_parser = parse_metric)]
    metric: Option<Metric>,
    /// Fraction of rows held out for validation and the smoke test.
    #[arg(long, default_value_t = 0.2)]
    holdout: f64,
    /// Keep serving after the smoke test, until Ctrl-C.
    #[arg(long)]
    serve: bool,
    /// Search for a faster model (graph, int8 dynamic, int8 static) whose
    /// held-out metric drops by at most --max-drop, and ship it.
    #[arg(long)]
    optimize: bool,
    /// Largest allowed drop of the gate's metric for --optimize (absolute).
    #[arg(long, default_value_t = 0.01, value_parser = parse_drop)]
    max_drop: f64,
    #[command(flatten)]
    server: ServeFlags,
    /// Hot-load into the `hone serve` running at this URL (or host:port, e.g.
    /// http://127.0.0.1:8000; it must serve --model-repository) instead of
    /// starting a server: the new version goes live there and is smoke-tested.
    #[arg(long, value_name = "URL", conflicts_with = "serve")]
    into: Option<String>,
    /// With --into: the new version starts at PERCENT of the traffic and
    /// the server's rollout moves it to 100 % while it holds up against the
    /// version serving now (rolled back otherwise; `hone models status`).
    /// The serving version must stay loaded beside the new one: a config
    /// ship wrote is widened to keep it; with your own config that would
    /// drop it, the canary is refused before anything loads.
    #[arg(long, value_name = "PERCENT", requires = "into", value_parser = clap::value_parser!(u32).range(0..100))]
    canary: Option<u32>,
    /// With --into: the server's admin key (first non-comment line of the
    /// file), for loading the new version and starting a canary.
    #[arg(long, value_name = "FILE", requires = "into")]
    admin_key_file: Option<PathBuf>,
    /// With --into: an inference key, for the readiness check and the smoke
    /// test (the admin key is used when this is not given).
    #[arg(long, value_name = "FILE", requires = "into")]
    api_key_file: Option<PathBuf>,
    /// With --into https://…: PEM CA certificate(s) to trust.
    #[arg(long, value_name = "PEM", requires = "into")]
    cacert: Option<PathBuf>,
    /// Also build a container image of the repository (hone package) after
    /// packaging the new version.
    #[arg(long, value_name = "IMAGE.tar")]
    image: Option<PathBuf>,
    /// Print the report as JSON instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn ship(args: ShipArgs) -> ExitCode {
    let Some(data_path) = args.data.clone().or(args.data_flag.clone()) else {
        eprintln!("hone ship: DATA (or --data) is required");
        return ExitCode::FAILURE;
    };
    let data = match std::fs::read(&data_path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("hone ship: cannot read {}: {e}", data_path.display());
            return ExitCode::FAILURE;
        }
    };
    let given = match &args.given {
        None => None,
        Some(model) => match hone_runtime::cache_dir() {
            Ok(cache) => Some(hone_import::ImportOptions {
                model: model.clone(),
                out: PathBuf::new(),
                format: None,
                sample: None,
                target: Vec::new(),
                rows: 512,
                rtol: 1e-4,
                atol: 1e-5,
                trust_pickle: args.trust_pickle,
                python: args.python.clone(),
                cache,
                keep_converter_thresholds: false,
                opset: 17,
            }),
            Err(e) => {
                eprintln!("hone ship: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let name = args.name.clone().unwrap_or_else(|| {
        args.given
            .as_ref()
            .unwrap_or(&data_path)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model")
            .to_string()
    });
    run_ship(
        data_path.display().to_string(),
        data,
        Some(data_path.clone()),
        &args.model,
        name,
        args.model_repository,
        args.min_metric,
        args.metric,
        args.holdout,
        &args.server,
        match (args.into, args.serve) {
            (Some(url), _) => Live::Into(hone_client::Options {
                url,
                admin_key_file: args.admin_key_file,
                api_key_file: args.api_key_file,
                cacert: args.cacert,
            }),
            (None, true) => Live::Serve,
            (None, false) => Live::Check,
        },
        args.json,
        args.optimize.then_some(args.max_drop),
        args.image,
        args.canary,
        given,
    )
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Where the demo's model repository is written.
    #[arg(long, default_value = "hone-repository")]
    model_repository: PathBuf,
    /// Exit after the stage table instead of serving.
    #[arg(long)]
    no_serve: bool,
    #[command(flatten)]
    server: ServeFlags,
    /// Print the report as JSON instead of the table.
    #[arg(long)]
    json: bool,
}

/// Only there to give the demo ModelFlags' own defaults.
#[derive(clap::Parser)]
struct DemoModel {
    #[command(flatten)]
    model: ModelFlags,
}

pub fn demo(args: DemoArgs) -> ExitCode {
    // The training flags exactly as `hone ship --target label` would take them.
    let model = match DemoModel::try_parse_from(["demo", "--target", demo::TARGET]) {
        Ok(d) => d.model,
        Err(e) => {
            eprintln!("hone demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !args.json {
        println!("{}", demo::BANNER);
    }
    run_ship(
        demo::DATA_NAME.into(),
        demo::DATA.to_vec(),
        None,
        &model,
        demo::NAME.into(),
        args.model_repository,
        Some(demo::MIN_ACCURACY),
        None,
        demo::HOLDOUT,
        &args.server,
        if args.no_serve {
            Live::Check
        } else {
            Live::Serve
        },
        args.json,
        None,
        None,
        None,
        None,
    )
}

#[allow(clippy::too_many_arguments)]
fn run_ship(
    data_name: String,
    data: Vec<u8>,
    data_path: Option<PathBuf>,
    model: &ModelFlags,
    name: String,
    repository: PathBuf,
    min_metric: Option<f64>,
    metric: Option<Metric>,
    holdout: f64,
    server: &ServeFlags,
    live: Live,
    json: bool,
    optimize: Option<f64>,
    image: Option<PathBuf>,
    canary: Option<u32>,
    given: Option<hone_import::ImportOptions>,
) -> ExitCode {
    let image = match image.map(image_stage).transpose() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("hone ship: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hone: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let opts = sh::ShipOptions {
        data_name,
        data,
        data_path,
        target: model.target.clone(),
        task: model.task(),
        categorical: model.categorical.clone(),
        name,
        repository,
        min_metric,
        metric,
        holdout,
        train: model.config(),
        server: ServerOptions {
            host: server.host,
            http_port: server.http_port,
            grpc_port: Some(server.grpc_port),
            metrics_port: Some(server.metrics_port),
            ..ServerOptions::new(".")
        },
        live,
        canary,
        smoke_rows: 32,
        cancel: cancel.clone(),
        progress: !json,
        optimize,
        image,
        model: given,
    };
    rt.block_on(async move {
        let shipped = sh::ship_interruptible(opts).await;
        let r = &shipped.report;
        if json {
            println!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
        } else {
            print!("{}", sh::render(r));
        }
        if let Some(e) = &r.error {
            eprintln!("hone ship: {e}");
            return ExitCode::FAILURE;
        }
        if let Some(server) = shipped.server {
            if let (Some(endpoint), Some(body)) = (&r.endpoint, &r.example_request) {
                println!(
                    "\nhone is serving {} version {}. Try:",
                    r.name,
                    r.version.unwrap_or(0)
                );
                println!("  curl -s -X POST {endpoint} -d '{body}'");
            }
            println!(
                "Dashboard: {}",
                crate::common::dashboard_url(&server, "http")
            );
            println!("Ctrl-C stops it.");
            crate::signal::shutdown_signal().await;
            println!("Stopping: finishing in-flight requests ...");
            server.shutdown().await;
            println!("Stopped; {} is no longer served.", r.name);
        }
        ExitCode::SUCCESS
    })
}

/// A metric budget: any finite number (negative asks for an improvement).
/// The running binary and the library it loads go into the image.
fn image_stage(output: PathBuf) -> Result<sh::ImageStage, String> {
    let hone = std::env::current_exe().map_err(|e| format!("cannot find the hone binary: {e}"))?;
    let onnxruntime = hone_runtime::init().map_err(|e| e.message.clone())?;
    Ok(sh::ImageStage {
        output,
        hone,
        onnxruntime: onnxruntime.to_path_buf(),
    })
}
