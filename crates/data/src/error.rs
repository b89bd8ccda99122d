//! The data crate's error: a message a user can act on.

/// Errors a user can fix: each names the file, row or column at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError(pub String);

impl std::fmt::Display for DataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DataError {}

pub type Result<T> = std::result::Result<T, DataError>;

pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(DataError(msg.into()))
}
