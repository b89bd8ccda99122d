//! `hone import`: a Keras, scikit-learn, XGBoost, LightGBM, CatBoost or
//! PyTorch model to ONNX, checked against its own framework.

use std::path::PathBuf;
use std::process::ExitCode;

use hone_import::{Format, Group, ImportOptions};

#[derive(clap::Args)]
pub struct ImportArgs {
    /// The model: .keras/.h5, a SavedModel directory, .skops (or
    /// .joblib/.pkl with --trust-pickle), XGBoost .json/.ubj, a LightGBM
    /// text model, CatBoost .cbm, PyTorch .pt/.pt2 (with --python).
    #[arg(required_unless_present = "prepare")]
    model: Option<PathBuf>,
    /// Where the ONNX model goes; its card goes beside it (NAME.card.json).
    #[arg(short, long, required_unless_present = "prepare")]
    output: Option<PathBuf>,
    /// The source format, when the file's name and content do not tell it.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(Format::NAMES))]
    format: Option<String>,
    /// Rows both models run on: CSV or Parquet with the model's feature
    /// columns, or a .npy of its input [default: rows synthesized from the
    /// input signature and, for trees, their split points].
    #[arg(long)]
    sample: Option<PathBuf>,
    /// A column of the sample that is not a feature (repeatable); only
    /// needed when the model carries no feature names.
    #[arg(long = "target", value_name = "COLUMN")]
    targets: Vec<String>,
    /// How many rows are compared.
    #[arg(long, default_value_t = 512)]
    rows: usize,
    /// Relative tolerance on every float output.
    #[arg(long, default_value_t = 1e-4)]
    rtol: f64,
    /// Absolute tolerance on every float output (added to the relative one).
    #[arg(long, default_value_t = 1e-5)]
    atol: f64,
    /// Load a joblib/pickle file (or a skops file naming types beyond
    /// scikit-learn's, NumPy's and SciPy's): loading runs any code it holds.
    #[arg(long)]
    trust_pickle: bool,
    /// Run the converter in this Python (it needs numpy, onnx, onnxruntime
    /// and the model's framework) instead of hone's managed environment:
    /// for a pickle written by other library versions, and for PyTorch.
    #[arg(long)]
    python: Option<PathBuf>,
    /// ONNX default-domain opset to write (tree converters write at most 15).
    #[arg(long, default_value_t = 17)]
    opset: u32,
    /// Keep the converter's float32 tree thresholds as it wrote them,
    /// without hone's correction (to see the difference it makes).
    #[arg(long, hide = true)]
    keep_converter_thresholds: bool,
    /// Build the managed environment for these converters and print its
    /// interpreter: keras, sklearn, xgboost, lightgbm, catboost (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "GROUPS")]
    prepare: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: ImportArgs) -> ExitCode {
    let cache = match hone_runtime::cache_dir() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hone import: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !a.prepare.is_empty() {
        return prepare(&a.prepare, &cache);
    }
    let (Some(model), Some(out)) = (a.model, a.output) else {
        eprintln!("hone import: MODEL and -o OUT are required");
        return ExitCode::FAILURE;
    };
    let format = match a.format.as_deref().map(|f| (f, Format::named(f, &model))) {
        None => None,
        Some((_, Some(f))) => Some(f),
        Some((f, None)) => {
            eprintln!(
                "hone import: --format {f} is not one of {}",
                Format::NAMES.join(", ")
            );
            return ExitCode::FAILURE;
        }
    };
    let opts = ImportOptions {
        model,
        out,
        format,
        sample: a.sample,
        target: a.targets,
        rows: a.rows.max(1),
        rtol: a.rtol,
        atol: a.atol,
        trust_pickle: a.trust_pickle,
        python: a.python,
        cache,
        keep_converter_thresholds: a.keep_converter_thresholds,
        opset: a.opset,
    };
    match hone_import::import(&opts) {
        Ok(done) => {
            let r = &done.report;
            if a.json {
                let v = serde_json::json!({
                    "output": opts.out,
                    "card": done.card,
                    "format": done.format.name(),
                    "report": r,
                    "seconds": done.seconds,
                    "environment_seconds": done.env_seconds,
                });
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                println!(
                    "imported {} ({} {}) with {} {} → {} in {:.1} s",
                    opts.model.display(),
                    r.source.framework,
                    r.source.framework_version,
                    r.converter.name,
                    r.converter.version,
                    opts.out.display(),
                    done.seconds
                );
                for n in &r.notes {
                    println!("note: {n}");
                }
                print!("{}", r.table());
                println!("card: {}", done.card.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hone import: {e}");
            ExitCode::FAILURE
        }
    }
}

fn prepare(groups: &[String], cache: &std::path::Path) -> ExitCode {
    let mut python = None;
    for g in groups {
        let Some(group) = Group::parse(g.trim()) else {
            eprintln!(
                "hone import --prepare: `{g}` is not one of {}",
                Group::ALL.map(Group::name).join(", ")
            );
            return ExitCode::FAILURE;
        };
        match hone_import::managed(cache, group) {
            Ok(p) => python = Some(p.interpreter),
            Err(e) => {
                eprintln!("hone import --prepare: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(p) = python {
        println!("{}", p.display());
    }
    ExitCode::SUCCESS
}
