//! The data crate's error: a message a user can act on, with its cause.

use std::fmt::Display;

type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Errors a user can fix: each names the file, row or column at fault.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The data itself is at fault (a missing column, a value that is not a
    /// number, too few rows).
    #[error("{0}")]
    Invalid(String),
    /// A file could not be read or written, or is not in its format; the
    /// context names it (and the line or row).
    #[error("{context}: {source}")]
    File {
        context: String,
        #[source]
        source: Cause,
    },
}

pub type Result<T> = std::result::Result<T, DataError>;

pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(DataError::Invalid(msg.into()))
}

/// `map_err` for a failure in the file (or line) `context` names.
pub(crate) fn at<E: Into<Cause>>(context: impl Display) -> impl FnOnce(E) -> DataError {
    let context = context.to_string();
    move |e| DataError::File {
        context,
        source: e.into(),
    }
}
