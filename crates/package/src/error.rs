//! The crate's error: what failed, and why, with its cause.

use std::fmt::Display;

type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// What was asked cannot be packaged (a base image without a linux/amd64
    /// manifest, a model directory that is not a repository), worded for the
    /// user.
    #[error("{0}")]
    Invalid(String),
    /// Reading, writing or encoding failed; the context says what.
    #[error("{context}: {source}")]
    Failed {
        context: String,
        #[source]
        source: Cause,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// `map_err` for a failure while doing what `context` says.
pub(crate) fn at<E: Into<Cause>>(context: impl Display) -> impl FnOnce(E) -> Error {
    let context = context.to_string();
    move |e| Error::Failed {
        context,
        source: e.into(),
    }
}
