//! `ImportError`: every way `hone import` can stop, with its cause.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is not a model hone can recognise or take.
    #[error("{path}: {why}")]
    Unrecognised { path: PathBuf, why: String },
    /// A pickle was given without `--trust-pickle`.
    #[error(
        "{0}: a pickle runs any code it holds when loaded; pass --trust-pickle if you trust its author, or save the model with skops (skops.io.dump) and import that"
    )]
    Pickle(PathBuf),
    /// The converter refused the model or its sample, with its reason.
    #[error("{0}")]
    Refused(String),
    /// The converted model answers differently from the source.
    #[error("the ONNX model does not answer as the source does; nothing was written:\n{table}")]
    Parity { table: String },
    /// No Python to run the converter with, or building its environment failed.
    #[error("{what}: {why}")]
    Environment { what: String, why: String },
    /// The converter crashed.
    #[error("the {format} converter failed (exit {code}):\n{tail}")]
    Converter {
        format: &'static str,
        code: String,
        tail: String,
    },
    /// The converter's report could not be read.
    #[error("the converter's report {path}: {source}")]
    Report {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ImportError {
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| ImportError::Io { what, path, source }
    }
}
