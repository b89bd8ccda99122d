//! `hone optimize`: flags to the search over compression techniques.

use std::path::PathBuf;
use std::process::ExitCode;

use hone_pipeline::search as opt;

pub(crate) fn parse_drop(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("{s:?}: give a finite number, e.g. 0.01")),
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: give a duration like 90s, 10m or 1h"))?;
    let secs = match unit {
        "" | "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (s, m or h)")),
    };
    if !(secs > 0.0 && secs <= 1e9) {
        return Err(format!("{s:?}: must be positive and below 30 years"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[derive(clap::Args)]
pub struct OptimizeArgs {
    /// The fp32 ONNX model to compress.
    model: PathBuf,
    /// EVAL: a CSV/Parquet with labels, a directory of <input>.npy (+ labels.npy),
    /// or data without labels (judged by fidelity to the fp32 outputs).
    #[arg(long)]
    data: PathBuf,
    /// The label column of a CSV [default: the target in the model's
    /// card (MODEL.card.json), else label].
    #[arg(long)]
    target: Option<String>,
    /// accuracy, auc, f1, logloss, mse, mae, r2 (with labels), cosine or maxabs (fidelity).
    #[arg(long)]
    metric: Option<String>,
    /// Largest allowed drop of the metric (absolute unless --relative).
    #[arg(long, default_value_t = 0.01, value_parser = parse_drop)]
    max_drop: f64,
    /// Read --max-drop as a fraction of the fp32 metric.
    #[arg(long)]
    relative: bool,
    /// Calibration inputs for static int8 (default: the first rows of EVAL).
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Rows of calibration data used to find activation ranges.
    #[arg(long, default_value_t = 128)]
    calibration_rows: usize,
    /// What the chosen candidate is best at among those within budget.
    #[arg(long, default_value = "latency", value_parser = ["latency", "throughput", "size"])]
    objective: String,
    /// Stop trying new candidates after this long (e.g. 90s, 10m).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    time_budget: std::time::Duration,
    /// Comma-separated: graph, fp16, dynamic, static, prune, fallback (default: all that apply).
    #[arg(long, value_delimiter = ',')]
    techniques: Vec<String>,
    /// Where to write the chosen model; OUT.report.json and OUT.report.html go beside it.
    #[arg(short, long)]
    output: PathBuf,
    /// Also publish the chosen model as the next version in this repository.
    #[arg(long)]
    model_repository: Option<PathBuf>,
    /// The model's name in --model-repository (default: the input file's stem).
    #[arg(long)]
    name: Option<String>,
    /// The model output to judge (default: the first floating-point one).
    #[arg(long = "output-name")]
    output_name: Option<String>,
    /// Intra-op threads for every measurement, one session (0: as hone serve
    /// runs each file by default: cores / default instances, all instances
    /// counted in throughput).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Seconds of speed measurement per candidate.
    #[arg(long, default_value_t = 2.0)]
    measure_seconds: f64,
    /// Training data for fine-tuning pruned hone models (default: the card's data file).
    #[arg(long)]
    train_data: Option<PathBuf>,
    /// Fraction of units/weights pruning removes.
    #[arg(long, default_value_t = 0.5)]
    prune_ratio: f64,
    /// Time batch-1 latency on the first row of this data (default: EVAL's first row).
    #[arg(long)]
    latency_data: Option<PathBuf>,
    /// Also write every candidate that built to DIR/<name>.onnx (the report
    /// says which was chosen and why the others were not).
    #[arg(long, value_name = "DIR")]
    keep_candidates: Option<PathBuf>,
    /// Write the chosen model's weights to OUTPUT.data beside it (ONNX
    /// external data), as exporters do for big models. Always on when the
    /// model would pass protobuf's 2 GB limit.
    #[arg(long)]
    external_data: bool,
    /// Print the report as JSON instead of the table (no progress bar).
    #[arg(long)]
    json: bool,
    /// No progress bar and no table; the report files are still written.
    #[arg(long)]
    quiet: bool,
}

pub fn optimize(args: OptimizeArgs) -> ExitCode {
    let mut techniques = Vec::new();
    for t in &args.techniques {
        match opt::Technique::parse(t) {
            Some(t) => techniques.push(t),
            None => {
                eprintln!(
                    "hone optimize: unknown technique {t:?}: graph, fp16, dynamic, static, prune or fallback"
                );
                return ExitCode::FAILURE;
            }
        }
    }
    if techniques.is_empty() {
        techniques = opt::Technique::ALL.to_vec();
    }
    if !(0.0..1.0).contains(&args.prune_ratio) {
        eprintln!("hone optimize: --prune-ratio must be in [0, 1)");
        return ExitCode::FAILURE;
    }
    let opts = opt::OptimizeOptions {
        in_memory: None,
        target: crate::common::target_or_card(args.target, &args.model),
        model: args.model,
        data: args.data,
        metric: args.metric,
        max_drop: args.max_drop,
        relative: args.relative,
        calibration: args.calibration,
        calibration_rows: args.calibration_rows,
        objective: match args.objective.as_str() {
            "throughput" => opt::Objective::Throughput,
            "size" => opt::Objective::Size,
            _ => opt::Objective::Latency,
        },
        time_budget: args.time_budget,
        techniques,
        output: args.output,
        repository: args.model_repository,
        name: args.name,
        output_name: args.output_name,
        threads: args.threads,
        measure_seconds: args.measure_seconds,
        train_data: args.train_data,
        prune_ratio: args.prune_ratio,
        latency_data: args.latency_data,
        keep_candidates: args.keep_candidates,
        external_data: args.external_data,
    };
    let bar = if args.quiet || args.json {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(1);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    };
    let result = opt::run(&opts, &mut |i, n, what| {
        bar.set_length(n as u64);
        bar.set_position(i as u64);
        bar.set_message(what.to_string());
    });
    bar.finish_and_clear();
    match result {
        Ok(r) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else if !args.quiet {
                print!("{}", opt::render(&r));
                for w in &r.written {
                    println!("wrote {w}");
                }
            }
            if r.chosen.is_some() {
                ExitCode::SUCCESS
            } else {
                eprintln!("hone optimize: {}", r.reason);
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("hone optimize: {e}");
            ExitCode::FAILURE
        }
    }
}
