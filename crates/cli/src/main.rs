//! The `hone` binary: parses flags and calls the crates.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use hone_server::{HttpLimits, Keys, ModelControl, Server, ServerOptions, TlsFiles};

mod common;
mod import_cmd;
mod models_cmd;
mod models_status;
mod optimize_cmd;
mod package_cmd;
mod perf_cmds;
mod pipeline_cmds;
mod profile_cmd;
#[cfg(test)]
mod reference;
mod score_cmd;
mod signal;

use signal::shutdown_signal;

#[derive(Parser)]
#[command(
    name = "hone",
    version,
    about = "Take a trained model to a fast, verified production endpoint"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// `--model-control-mode`, as Triton spells it.
#[derive(Clone, Copy, ValueEnum)]
enum ControlMode {
    None,
    Explicit,
    Poll,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a Triton-style model repository over KServe V2 REST and gRPC.
    Serve(ServeArgs),
    /// Train the reference MLP on a CSV and export ONNX plus a model card.
    Train(pipeline_cmds::TrainArgs),
    /// Metrics of an ONNX model on labelled data.
    Eval(pipeline_cmds::EvalArgs),
    /// Predictions for every row of a CSV, Parquet or .npy file, streamed to
    /// CSV or Parquet (in process, or through a running server).
    Score(score_cmd::ScoreArgs),
    /// A Keras, scikit-learn, XGBoost, LightGBM, CatBoost or PyTorch model
    /// converted to ONNX and checked against its own framework.
    Import(import_cmd::ImportArgs),
    /// CSV → train → validate → package → serve → smoke test, every stage timed.
    Ship(pipeline_cmds::ShipArgs),
    /// `hone ship` on the embedded breast-cancer data, left serving.
    Demo(pipeline_cmds::DemoArgs),
    /// Compress a model (int8, pruning, graph optimization) within an accuracy budget.
    Optimize(optimize_cmd::OptimizeArgs),
    /// Load any KServe V2 server (hone, Triton, ...) and report throughput,
    /// latency and the server's own queue/compute/batch split.
    Bench(perf_cmds::BenchArgs),
    /// Search serving configurations (instances, threads, batching, queue
    /// delay, graph optimization) of one model against an objective.
    Tune(perf_cmds::TuneArgs),
    /// A container image of the repository (no Docker needed) and
    /// Kubernetes/KServe manifests.
    Package(package_cmd::PackageArgs),
    /// The reference profile (input and output histograms on some data)
    /// that `hone serve` measures live drift against.
    Profile(profile_cmd::ProfileArgs),
    /// A running server's models: list, status, load, unload, traffic,
    /// rollout, promote, rollback.
    Models(models_cmd::ModelsArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Directory laid out as <model>/<version>/model.onnx [+ <model>/config.pbtxt].
    #[arg(long)]
    model_repository: PathBuf,
    #[command(flatten)]
    net: pipeline_cmds::ServeFlags,
    /// Turn the gRPC endpoint off.
    #[arg(long)]
    no_grpc: bool,
    /// Turn the metrics endpoint off.
    #[arg(long)]
    no_metrics: bool,
    /// Largest accepted request body (HTTP) or message (gRPC), in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_request_bytes: usize,
    /// Request bytes being read, decoded or queued at once, server-wide;
    /// past it requests get 503 with Retry-After (gRPC UNAVAILABLE) at once.
    /// Default: a quarter of RAM or of the container's memory limit.
    #[arg(long)]
    max_inflight_bytes: Option<usize>,
    /// Tokio worker threads for the network front ends (default: one per core).
    #[arg(long)]
    io_threads: Option<usize>,
    /// How models change while serving: `explicit` takes the repository
    /// load/unload API (POST /v2/repository/models/NAME/load); `poll` does
    /// that and rescans the repository every --repository-poll-secs; `none`
    /// keeps what loaded at start. Every mode loads the whole repository first.
    #[arg(long, value_enum, default_value_t = ControlMode::Explicit)]
    model_control_mode: ControlMode,
    #[arg(long, default_value_t = 15)]
    repository_poll_secs: u64,
    /// Memory the loaded models may take together (bytes, or with a unit:
    /// 512MiB, 4GiB, 2GB). Models then load on their first request (those
    /// whose config sets the parameter `pinned: "true"` at start), and the
    /// least recently used idle model is unloaded to make room. Default:
    /// no budget, every model loads at start.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    model_memory_budget: Option<u64>,
    /// Serve KServe ModelMesh's model runtime API (mmesh.ModelRuntime) on
    /// this port, on 127.0.0.1 only: ModelMesh then loads and unloads
    /// models here, linked into --model-repository (a directory of hone's
    /// own, emptied when ModelMesh starts). `hone package --k8s
    /// --modelmesh` writes the ServingRuntime for it.
    #[arg(long, value_name = "PORT")]
    modelmesh_port: Option<u16>,
    /// A custom operator library (a shared object exporting
    /// RegisterCustomOps, such as onnxruntime-extensions') that every model
    /// session registers, so models using its operators load. Repeatable.
    /// It runs inside the server: give only libraries you trust.
    #[arg(long, value_name = "PATH")]
    custom_op_library: Vec<PathBuf>,
    /// File of inference keys, one per line: inference and read routes then
    /// need `Authorization: Bearer KEY` (gRPC: `authorization` metadata).
    /// Health routes stay open.
    #[arg(long, value_name = "FILE")]
    api_key_file: Option<PathBuf>,
    /// File of admin keys, one per line: repository load/unload need one
    /// (an inference key gets 403); an admin key also opens every other route.
    #[arg(long, value_name = "FILE")]
    admin_key_file: Option<PathBuf>,
    /// Triton's flag: with `true`, /v2/health/ready is 200 only once the
    /// repository holds a model and every model has a ready version; with
    /// `false`, as soon as the server is up, even with no model or one that
    /// failed to load.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    strict_readiness: bool,
    /// On SIGTERM or Ctrl-C, report not-ready but keep serving this long
    /// before closing the ports, so endpoints are removed first (in
    /// Kubernetes, match the pod's preStop sleep). 0 outside Kubernetes.
    #[arg(long, default_value_t = 0)]
    drain_secs: u64,
    /// After the drain, how long in-flight work may take to finish before
    /// the server exits anyway (Triton's flag).
    #[arg(long, default_value_t = 30)]
    exit_timeout_secs: u64,
    /// Seconds a client has to send a request's headers on the HTTP port;
    /// the same bound closes idle keep-alive connections (slow-loris defence).
    #[arg(long, default_value_t = 10)]
    http_header_timeout_secs: u64,
    /// Seconds a client has to send a request's body once its headers are
    /// in; past it the request gets 408.
    #[arg(long, default_value_t = 60)]
    http_body_timeout_secs: u64,
    /// PEM certificate chain: the HTTP and gRPC ports then speak TLS only.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    #[command(flatten)]
    observe: ObserveFlags,
    /// PEM CA certificates: clients must present a certificate that chains
    /// to one of them (mutual TLS).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Rows of recent predictions kept per model (models with a card) so
    /// ground-truth labels posted to /v2/models/NAME/feedback can join
    /// them; older ones go first. 0 turns feedback off.
    #[arg(long, default_value_t = hone_server::feedback::DEFAULT_RECORD_ROWS)]
    feedback_rows: usize,
    /// Labelled rows per model version the live accuracy covers (the newest).
    #[arg(long, default_value_t = hone_server::feedback::DEFAULT_WINDOW_ROWS, value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<usize>().ok().filter(|n| *n > 0).ok_or("a whole number above 0")))]
    feedback_window: usize,
}

/// Access log, tracing and payload sampling.
#[derive(clap::Args)]
struct ObserveFlags {
    /// One info line per inference request (target `hone::access`: model,
    /// version, status, bytes, queue/compute/total µs, request and trace
    /// id), failures included; with --log-format json, one JSON object each.
    #[arg(long)]
    access_log: bool,
    /// Export request spans (decode, queue, compute, encode) to this OTLP/HTTP
    /// receiver, e.g. http://otel-collector:4318. W3C `traceparent` from
    /// clients is continued and returned.
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// Share of requests without a `traceparent` that start a trace (a
    /// caller's sampled flag is always followed). Tracing every request
    /// costs about 40 % of mlp100's throughput on 2 cores
    /// (bench/observe_cost.sh), hence the low default, as Triton's.
    #[arg(long, default_value_t = 0.01, value_parser = parse_share)]
    trace_sample_ratio: f64,
    /// Write a sample of requests and responses as JSON lines to rotating
    /// files in DIR (payloads-*.jsonl), for audit and offline analysis.
    #[arg(long, value_name = "DIR")]
    payload_log: Option<PathBuf>,
    /// Share of requests --payload-log keeps.
    #[arg(long, default_value_t = 0.01, value_parser = parse_share, requires = "payload_log")]
    payload_log_ratio: f64,
    /// Most MiB the payload files may hold together; the oldest go first.
    #[arg(long, default_value_t = 256, requires = "payload_log")]
    payload_log_max_mb: u64,
}

fn parse_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a share between 0 and 1")),
    }
}

/// `default` when HONE_LOG is unset: `hone tune` and `hone package` serve
/// in-process, and their own lines say what happens, so the server's info
/// is noise.
fn init_logging(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HONE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour(std::io::stderr().is_terminal()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Colour codes only on a terminal, and never with `NO_COLOR` set to
/// anything (no-color.org): a log file or a pipe gets plain text.
fn colour(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn serve(args: ServeArgs) -> ExitCode {
    // Before any thread starts: one malloc arena per core keeps reloads
    // from fragmenting memory across dozens (see hone_runtime::memory).
    hone_runtime::memory::limit_arenas(hone_runtime::sizing::cores());
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.io_threads {
        rt.worker_threads(n.max(1));
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hone: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(lib) = args.custom_op_library.iter().find(|l| !l.is_file()) {
        eprintln!(
            "hone serve: --custom-op-library {}: no such file",
            lib.display()
        );
        return ExitCode::FAILURE;
    }
    let keys = match Keys::from_files(args.api_key_file.as_deref(), args.admin_key_file.as_deref())
    {
        Ok(k) => k,
        Err(e) => {
            eprintln!("hone serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let opts = ServerOptions {
            model_repository: args.model_repository,
            host: args.net.host,
            http_port: args.net.http_port,
            grpc_port: (!args.no_grpc).then_some(args.net.grpc_port),
            metrics_port: (!args.no_metrics).then_some(args.net.metrics_port),
            max_request_bytes: args.max_request_bytes,
            max_inflight_bytes: args.max_inflight_bytes,
            model_control: match args.model_control_mode {
                ControlMode::None => ModelControl::None,
                ControlMode::Poll => ModelControl::Poll(std::time::Duration::from_secs(
                    args.repository_poll_secs.max(1),
                )),
                ControlMode::Explicit => ModelControl::Explicit,
            },
            keys,
            strict_readiness: args.strict_readiness,
            observe: hone_server::observe::ObserveOptions {
                access_log: args.observe.access_log,
                otlp_endpoint: args.observe.otlp_endpoint,
                trace_sample_ratio: args.observe.trace_sample_ratio,
                payload_dir: args.observe.payload_log,
                payload_ratio: args.observe.payload_log_ratio,
                payload_max_bytes: args.observe.payload_log_max_mb << 20,
            },
            tls: match (args.tls_cert, args.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert,
                    key,
                    client_ca: args.tls_client_ca,
                }),
                _ => None,
            },
            http_limits: HttpLimits {
                header_read: std::time::Duration::from_secs(args.http_header_timeout_secs.max(1)),
                body_read: std::time::Duration::from_secs(args.http_body_timeout_secs.max(1)),
            },
            feedback_rows: args.feedback_rows,
            feedback_window: args.feedback_window,
            model_memory_budget: args.model_memory_budget,
            modelmesh_port: args.modelmesh_port,
            custom_op_libraries: args.custom_op_library.clone(),
        };
        let scheme = if opts.tls.is_some() { "https" } else { "http" };
        let keyed = !opts.keys.is_open();
        let server = match Server::start(opts).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("hone: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!("HTTP  (KServe V2 REST) on {scheme}://{}", server.http_addr);
        if let Some(a) = server.grpc_addr {
            tracing::info!("gRPC  (inference.GRPCInferenceService) on {a}");
        }
        if let Some(a) = server.modelmesh_addr {
            tracing::info!("ModelMesh runtime (mmesh.ModelRuntime) on {a}");
        }
        if let Some(a) = server.metrics_addr {
            tracing::info!("metrics on http://{a}/metrics");
        }
        if let Some(line) = try_line(&server, scheme, keyed) {
            println!("hone is serving. Try:\n  {line}");
        }
        println!("Dashboard: {}", common::dashboard_url(&server, scheme));
        for e in server.state.repo.models().index(false) {
            if e.state != "READY" {
                tracing::warn!(
                    "model {} {} is {}: {}",
                    e.name,
                    e.version,
                    e.state,
                    e.reason
                );
            }
        }
        shutdown_signal().await;
        server.drain();
        if args.drain_secs > 0 {
            tracing::info!(
                "draining: not ready, still serving for {} s",
                args.drain_secs
            );
            tokio::time::sleep(std::time::Duration::from_secs(args.drain_secs)).await;
        }
        tracing::info!("shutting down: finishing in-flight requests");
        let limit = std::time::Duration::from_secs(args.exit_timeout_secs);
        if server.shutdown_within(limit).await {
            tracing::info!("stopped");
        } else {
            tracing::warn!(
                "exit timeout: in-flight work did not finish within {} s; exiting anyway",
                args.exit_timeout_secs
            );
        }
        ExitCode::SUCCESS
    })
}

/// A curl command that runs the first ready model on a row of ones, so a
/// person can see the server answer without writing a request.
fn try_line(server: &Server, scheme: &str, keyed: bool) -> Option<String> {
    let model = server.state.repo.models().loaded().into_iter().next()?;
    let mut inputs = Vec::new();
    for spec in &model.input_specs {
        if spec.dtype == hone_core::DataType::Bytes || spec.dtype == hone_core::DataType::Bool {
            return None;
        }
        let shape: Vec<i64> = spec.dims.iter().map(|&d| d.max(1)).collect();
        let n: i64 = shape.iter().product();
        let ones = vec!["1"; usize::try_from(n).ok().filter(|&n| n <= 64)?].join(",");
        let shape = shape
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        inputs.push(format!(
            r#"{{"name":"{}","shape":[{shape}],"datatype":"{}","data":[{ones}]}}"#,
            spec.name, spec.dtype
        ));
    }
    // With TLS the user adds --cacert for their CA; with keys, their key.
    let auth = if keyed {
        " -H \"Authorization: Bearer $HONE_API_KEY\""
    } else {
        ""
    };
    Some(format!(
        "curl -s{auth} -X POST {scheme}://{}/v2/models/{}/infer -d '{{\"inputs\":[{}]}}'",
        server.http_addr,
        model.name,
        inputs.join(",")
    ))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.command {
        // Both serve in-process (tune per trial, package to measure
        // memory); their own lines say what happens.
        Command::Tune(_) | Command::Package(_) => "warn",
        _ => "info,ort=warn",
    };
    init_logging(cli.log_format, level);
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Train(args) => pipeline_cmds::train(args),
        Command::Eval(args) => pipeline_cmds::eval(args),
        Command::Score(args) => score_cmd::run(args),
        Command::Import(args) => import_cmd::run(args),
        Command::Ship(args) => pipeline_cmds::ship(args),
        Command::Demo(args) => pipeline_cmds::demo(args),
        Command::Optimize(args) => optimize_cmd::optimize(args),
        Command::Bench(args) => perf_cmds::bench(args),
        Command::Tune(args) => perf_cmds::tune(args),
        Command::Package(args) => package_cmd::package(args),
        Command::Profile(args) => profile_cmd::run(args),
        Command::Models(args) => models_cmd::run(args),
    }
}

/// A byte count, bare or with a unit (KiB, MiB, GiB, TiB; KB, MB, GB, TB;
/// K, M, G, T as the binary units).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        u => {
            return Err(format!(
                "unknown unit '{u}': use bytes, KiB, MiB, GiB or TiB"
            ));
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size: give bytes, or a number with a unit (4GiB)"))?;
    let bytes = n * scale;
    if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(format!("'{s}' is not a size above zero"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_are_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    #[test]
    fn sizes_take_units() {
        use super::parse_bytes;
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_bytes("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_bytes("4g"), Ok(4 << 30));
        for bad in ["", "0", "-1", "12 parsecs", "MiB", "1e400"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    /// `docs/cli.md` is what the flag definitions say.
    #[test]
    fn reference_page_is_current() {
        use clap::CommandFactory;
        let page = super::reference::markdown(&mut super::Cli::command());
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/cli.md");
        if std::env::var_os("HONE_BLESS").is_some() {
            std::fs::write(path, &page).unwrap();
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == page,
            "docs/cli.md is stale: run HONE_BLESS=1 cargo test -p hone reference"
        );
    }
}
