//! hone import: a model from another framework becomes an ONNX file and a
//! card, converted once by the field's own converter in a Python that hone
//! manages, and accepted only when it answers as the source does.

mod env;
mod error;
mod format;
mod report;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

pub use env::{Python, managed, managed_dir, user};
pub use error::ImportError;
pub use format::{Format, Group};
pub use report::{Converter, OutputParity, Parity, Port, Report, Source};

/// What `hone import` was asked.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub model: PathBuf,
    pub out: PathBuf,
    /// None: told from the file.
    pub format: Option<Format>,
    /// Rows both models run on (CSV, Parquet, .npy); None: synthesized.
    pub sample: Option<PathBuf>,
    /// Columns of the sample that are not features (the label).
    pub target: Vec<String>,
    pub rows: usize,
    pub rtol: f64,
    pub atol: f64,
    pub trust_pickle: bool,
    /// The user's interpreter instead of the managed environment.
    pub python: Option<PathBuf>,
    /// hone's cache root (the managed environment lives under it).
    pub cache: PathBuf,
    /// Keep the converter's float32 tree thresholds as written (to see
    /// what hone's correction prevents).
    pub keep_converter_thresholds: bool,
    pub opset: u32,
}

/// A model imported: the converter's report, the card written and time taken.
#[derive(Debug)]
pub struct Imported {
    pub format: Format,
    pub report: Report,
    pub card: PathBuf,
    /// Seconds spent getting the environment ready (0 when cached).
    pub env_seconds: f64,
    pub seconds: f64,
}

/// The card beside a model: `m.onnx` → `m.card.json`.
pub fn card_path(model: &Path) -> PathBuf {
    model.with_extension("card.json")
}

/// The environment a format needs: the user's `--python`, or the managed one.
pub fn python_for(format: Format, opts: &ImportOptions) -> Result<Python, ImportError> {
    if let Some(p) = &opts.python {
        return env::user(p, &opts.cache);
    }
    match format.group() {
        Some(g) => env::managed(&opts.cache, g),
        None => Err(ImportError::Environment {
            what: format!("{} models", format.name()),
            why: "hone does not fetch PyPI's torch wheels (gigabytes with their CUDA libraries): pass --python with an interpreter that has torch, numpy, onnx and onnxruntime".into(),
        }),
    }
}

/// Converts, checks and writes `opts.out` and its card; on any failure,
/// including a parity beyond tolerance, nothing is written.
pub fn import(opts: &ImportOptions) -> Result<Imported, ImportError> {
    let start = Instant::now();
    let format = match opts.format {
        Some(f) => f,
        None => Format::detect(&opts.model)?,
    };
    if format == (Format::Sklearn { pickle: true }) && !opts.trust_pickle {
        return Err(ImportError::Pickle(opts.model.clone()));
    }
    if let Some(s) = &opts.sample
        && !s.is_file()
    {
        return Err(ImportError::Io {
            what: "read --sample",
            path: s.clone(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let python = python_for(format, opts)?;
    let env_seconds = start.elapsed().as_secs_f64();
    let dir = match opts.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(ImportError::io("create", &dir))?;
    let stem = opts
        .out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model.onnx".into());
    let tmp = |what: &str| dir.join(format!(".{stem}.{what}.{}", std::process::id()));
    let (tmp_onnx, tmp_report, tmp_card) = (tmp("onnx"), tmp("report"), tmp("card"));
    let cleanup = || {
        for p in [&tmp_onnx, &tmp_report, &tmp_card] {
            let _ = std::fs::remove_file(p);
        }
        // A converter that crashed can leave its own scratch file beside
        // ours (`<tmp onnx>.catboost.onnx`, `.savedmodel.onnx`, ...).
        for suffix in ["catboost", "savedmodel", "torch"] {
            let mut p = tmp_onnx.clone().into_os_string();
            p.push(format!(".{suffix}.onnx"));
            let _ = std::fs::remove_file(p);
        }
    };
    let result = convert(format, opts, &python, &tmp_onnx, &tmp_report).and_then(|report| {
        if !report.passes() {
            return Err(ImportError::Parity {
                table: report.table(),
            });
        }
        let card = card_json(&report, &opts.out);
        let bytes = serde_json::to_vec_pretty(&card).map_err(|source| ImportError::Report {
            path: tmp_card.clone(),
            source,
        })?;
        std::fs::write(&tmp_card, bytes).map_err(ImportError::io("write", &tmp_card))?;
        let card_dst = card_path(&opts.out);
        std::fs::rename(&tmp_onnx, &opts.out).map_err(ImportError::io("write", &opts.out))?;
        std::fs::rename(&tmp_card, &card_dst).map_err(ImportError::io("write", &card_dst))?;
        Ok((report, card_dst))
    });
    cleanup();
    let (report, card) = result?;
    Ok(Imported {
        format,
        report,
        card,
        env_seconds,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn convert(
    format: Format,
    opts: &ImportOptions,
    python: &Python,
    onnx: &Path,
    report: &Path,
) -> Result<Report, ImportError> {
    let mut cmd = Command::new(&python.interpreter);
    cmd.arg(&python.script)
        .args(["--format", format.name(), "--model"])
        .arg(&opts.model)
        .arg("--out")
        .arg(onnx)
        .arg("--report")
        .arg(report)
        .args(["--rows", &opts.rows.to_string()])
        .args(["--rtol", &opts.rtol.to_string()])
        .args(["--atol", &opts.atol.to_string()])
        .args(["--opset", &opts.opset.to_string()])
        // TensorFlow's start-up chatter would bury the converter's words.
        .env("TF_CPP_MIN_LOG_LEVEL", "3")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    if python.managed {
        cmd.env("PYTHONNOUSERSITE", "1");
    }
    if let Some(s) = &opts.sample {
        cmd.arg("--sample").arg(s);
    }
    for t in &opts.target {
        cmd.args(["--target", t]);
    }
    if opts.trust_pickle {
        cmd.arg("--trust-pickle");
    }
    if opts.keep_converter_thresholds {
        cmd.arg("--keep-converter-thresholds");
    }
    let out = cmd.output().map_err(|e| ImportError::Environment {
        what: python.interpreter.display().to_string(),
        why: format!("cannot start it: {e}"),
    })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(2)
        && let Some(why) = stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("refused: "))
    {
        return Err(ImportError::Refused(why.to_string()));
    }
    if !out.status.success() {
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(25)..].join("\n");
        return Err(ImportError::Converter {
            format: format.name(),
            code: out
                .status
                .code()
                .map_or_else(|| "by signal".into(), |c| c.to_string()),
            tail,
        });
    }
    let bytes = std::fs::read(report).map_err(ImportError::io("read", report))?;
    serde_json::from_slice(&bytes).map_err(|source| ImportError::Report {
        path: report.to_path_buf(),
        source,
    })
}

/// The card written beside an imported model. Its `task`, `labels` and
/// `output` are what live accuracy (`/feedback`) and `hone eval` read.
fn card_json(r: &Report, out: &Path) -> serde_json::Value {
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut card = serde_json::json!({
        "format": "hone.import-card/1",
        "hone_version": env!("CARGO_PKG_VERSION"),
        "created_unix": created,
        "model": out.file_name().map(|n| n.to_string_lossy().into_owned()),
        "task": r.task,
        "labels": r.labels,
        "features": r.features,
        "output": {"name": r.scored_output()},
        "source": r.source,
        "converter": r.converter,
        "inputs": r.inputs,
        "outputs": r.outputs,
        "parity": r.parity,
        "notes": r.notes,
    });
    if let Some(reference) = &r.reference {
        card["reference"] = reference.clone();
    }
    card
}
