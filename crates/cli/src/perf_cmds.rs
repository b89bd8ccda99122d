//! `hone bench` and `hone tune`: flags in, `hone_loadgen` and `hone_pipeline::tune` out, a table or JSON printed.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use hone_loadgen::{Data, Load, Plan, Progress, Protocol};
use hone_pipeline::tune::{Objective, TuneOptions};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The server's HTTP endpoint; metadata and statistics are read from it.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    url: String,
    /// The gRPC endpoint for --protocol grpc (default: --url's host, port 8001).
    #[arg(long)]
    grpc_url: Option<String>,
    /// The model to load.
    #[arg(long)]
    model: String,
    /// A version (default: the server's choice).
    #[arg(long)]
    model_version: Option<String>,
    /// http-json, http-binary (the binary tensor extension) or grpc.
    #[arg(long, default_value = "http-json")]
    protocol: String,
    /// Closed loop: this many clients, one request in flight each; a step
    /// per value (e.g. 1,4,16,64). Default 1.
    #[arg(long, value_delimiter = ',', conflicts_with = "request_rate")]
    concurrency: Vec<usize>,
    /// Open loop: requests sent at this many a second whatever the answers
    /// (a slow server cannot slow the sender); a step per value.
    #[arg(long, value_delimiter = ',')]
    request_rate: Vec<f64>,
    /// How long each step is measured (e.g. 10s, 500ms, 2m).
    #[arg(long, default_value = "10s", value_parser = duration)]
    duration: Duration,
    /// Load before each step that is not counted.
    #[arg(long, default_value = "2s", value_parser = duration)]
    warmup: Duration,
    /// Request data: a CSV (records by feature name when the model lists
    /// its features and the header names them all, else all columns but
    /// `label` feed the one input), a .txt file (each line one element of
    /// a BYTES input: sentences), a directory of <input>.npy files, or a
    /// directory of other files (each file's bytes one element: pictures;
    /// binary protocols only). Default: seeded random values.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Rows per request, for models that batch.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// NAME:D1,D2 sets an input's dynamic dimensions (batch dimension left
    /// out), as perf_analyzer's --shape does. Default 16 for each.
    #[arg(long)]
    shape: Vec<String>,
    /// The CA (PEM) an https:// server's certificate is checked against.
    #[arg(long, value_name = "PEM")]
    cacert: Option<PathBuf>,
    /// A file whose first line is an API key, sent as `Authorization:
    /// Bearer KEY` over HTTP and gRPC (for servers run with --api-key-file).
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// `10s`, `500ms`, `2m`, or plain seconds.
fn duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (10s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("'{s}': units are ms, s or m")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("'{s}': {e}"))
}

fn shape(s: &str) -> Result<(String, Vec<i64>), String> {
    let (name, dims) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("--shape {s}: expected NAME:D1,D2"))?;
    let dims = dims
        .split(',')
        .map(|d| d.trim().parse::<i64>().ok().filter(|&d| d > 0))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("--shape {s}: dimensions must be positive integers"))?;
    Ok((name.to_string(), dims))
}

/// `http://HOST:8001` for `http://HOST:PORT` (https for https).
fn default_grpc(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let rest = rest.trim_end_matches('/');
    let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
    format!("{scheme}://{host}:8001")
}

pub fn bench(args: BenchArgs) -> ExitCode {
    let plan = match plan(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("hone bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = plan.1;
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hone bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A live line on a terminal; nothing when stderr is a log or a pipe.
    let live = std::io::stderr().is_terminal();
    let show = move |p: &Progress| {
        if !live {
            return;
        }
        let phase = if p.warming { "warm-up" } else { "measuring" };
        let secs = p.elapsed.as_secs_f64().max(1e-9);
        let mut e = std::io::stderr();
        let _ = write!(
            e,
            "\r{:<10} {phase:<9} {:>4.0}/{:.0} s  {:>9} requests  {:>8.0} req/s  {} errors   ",
            p.load.to_string(),
            p.elapsed.as_secs_f64(),
            p.total.as_secs_f64(),
            p.done,
            p.done as f64 / secs,
            p.errors
        );
        let _ = e.flush();
    };
    let report = rt.block_on(hone_loadgen::run(&plan.0, &show));
    if live {
        eprintln!();
    }
    match report {
        Ok(r) if json => match serde_json::to_string_pretty(&r) {
            Ok(j) => {
                println!("{j}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("hone bench: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(r) => {
            print!("{}", r.table());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hone bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Whether a directory holds `.npy` files (one per input).
fn has_npy(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|d| {
        d.filter_map(|e| e.ok())
            .any(|e| e.path().extension().is_some_and(|x| x == "npy"))
    })
}

fn plan(a: BenchArgs) -> Result<(Plan, bool), String> {
    let loads: Vec<Load> = if !a.request_rate.is_empty() {
        a.request_rate.iter().map(|&r| Load::Rate(r)).collect()
    } else if a.concurrency.is_empty() {
        vec![Load::Concurrency(1)]
    } else {
        a.concurrency
            .iter()
            .map(|&c| Load::Concurrency(c))
            .collect()
    };
    let data = match &a.data {
        None => Data::Random,
        Some(p) if p.is_dir() && has_npy(p) => Data::NpyDir(p.clone()),
        Some(p) if p.is_dir() => {
            if matches!(Protocol::parse(&a.protocol), Ok(Protocol::HttpJson)) {
                return Err(format!(
                    "--data {}: files are sent as raw bytes, which V2 JSON cannot carry; use --protocol http-binary or grpc",
                    p.display()
                ));
            }
            Data::Files(p.clone())
        }
        Some(p) if p.extension().is_some_and(|e| e == "txt") => Data::Lines(p.clone()),
        Some(p) => Data::Csv(p.clone()),
    };
    let shapes = a
        .shape
        .iter()
        .map(|s| shape(s))
        .collect::<Result<Vec<_>, _>>()?;
    let protocol = Protocol::parse(&a.protocol).map_err(|e| e.message)?;
    Ok((
        Plan {
            grpc_url: a.grpc_url.unwrap_or_else(|| default_grpc(&a.url)),
            server: hone_client::Options {
                url: a.url.trim_end_matches('/').to_string(),
                api_key_file: a.api_key_file,
                cacert: a.cacert,
                admin_key_file: None,
            },
            model: a.model,
            version: a.model_version,
            protocol,
            loads,
            duration: a.duration,
            warmup: a.warmup,
            batch: a.batch,
            data,
            shapes,
        },
        a.json,
    ))
}

#[derive(clap::Args)]
pub struct TuneArgs {
    /// The model repository (the winner's config.pbtxt goes here with --write).
    #[arg(long)]
    model_repository: PathBuf,
    /// The model to tune (its newest version is served).
    #[arg(long)]
    model: String,
    /// throughput (most req/s, within --max-p99 when given) or latency (lowest p99).
    #[arg(long, default_value = "throughput")]
    objective: String,
    /// A p99 bound for --objective throughput (e.g. 5ms).
    #[arg(long, value_parser = duration)]
    max_p99: Option<Duration>,
    /// Closed-loop clients each configuration is measured with.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// The whole search, the final side-by-side comparison included.
    #[arg(long, default_value = "5m", value_parser = duration)]
    time_budget: Duration,
    /// Measured time per configuration (default: a twentieth of the budget,
    /// 0.5 to 15 s).
    #[arg(long, value_parser = duration)]
    trial: Option<Duration>,
    /// How the clients talk: http-json, http-binary or grpc.
    #[arg(long, default_value = "http-binary")]
    protocol: String,
    /// Write the winner's config.pbtxt into the repository (atomically; the
    /// previous one is kept as config.pbtxt.before-tune).
    #[arg(long)]
    write: bool,
    /// Also try the model's older versions (those `hone optimize` published
    /// beside the original); a winning older version is pinned with
    /// version_policy specific.
    #[arg(long)]
    include_optimized: bool,
    /// Also write tune.json and tune.html (the plot) into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn tune(a: TuneArgs) -> ExitCode {
    let fail = |m: String| {
        eprintln!("hone tune: {m}");
        ExitCode::FAILURE
    };
    let objective = match a.objective.as_str() {
        "throughput" => Objective::Throughput,
        "latency" => Objective::Latency,
        o => return fail(format!("--objective {o}: expected throughput or latency")),
    };
    let protocol = match Protocol::parse(&a.protocol) {
        Ok(p) => p,
        Err(e) => return fail(e.message),
    };
    let opts = TuneOptions {
        repository: a.model_repository,
        model: a.model,
        objective,
        max_p99: a.max_p99,
        concurrency: a.concurrency,
        budget: a.time_budget,
        trial: a.trial,
        protocol,
        write: a.write,
        include_optimized: a.include_optimized,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    let quiet = a.json;
    let progress = move |line: &str| {
        if !quiet {
            eprintln!("  {line}");
        }
    };
    let report = match rt.block_on(hone_pipeline::tune::run(&opts, &progress)) {
        Ok(r) => r,
        Err(e) => return fail(e.message),
    };
    if let Some(dir) = &a.report {
        let json = serde_json::to_string_pretty(&report).unwrap_or_default();
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(dir.join("tune.json"), json))
            .and_then(|()| std::fs::write(dir.join("tune.html"), report.html()));
        if let Err(e) = written {
            return fail(format!("{}: {e}", dir.display()));
        }
    }
    if a.json {
        match serde_json::to_string_pretty(&report) {
            Ok(j) => println!("{j}"),
            Err(e) => return fail(e.to_string()),
        }
    } else {
        print!("{}", report.table());
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_shapes_and_the_grpc_default() {
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("3"), Ok(Duration::from_secs(3)));
        assert!(duration("fast").is_err());
        assert!(duration("5h").is_err());
        assert_eq!(
            shape("input_ids:1,128"),
            Ok(("input_ids".into(), vec![1, 128]))
        );
        assert!(shape("x:0").is_err());
        assert!(shape("x").is_err());
        assert_eq!(
            default_grpc("http://10.0.0.5:8000/"),
            "http://10.0.0.5:8001"
        );
    }
}
