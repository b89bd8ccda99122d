//! Data for hone's pipeline: reading CSV tables and `.npy` tensors, turning a
//! table into features and a target (with the encoding recorded so serving
//! can reproduce it), reference statistics for drift monitoring, seeded
//! splits, and the evaluation metrics.
//!
//! Everything here is plain computation over memory, no engine and no I/O
//! frameworks, so training, evaluation and the optimizer share one definition
//! of each metric.

pub mod encode;
pub mod metrics;
pub mod npy;
pub mod rng;
pub mod split;
pub mod stats;
pub mod table;

pub use encode::{Encoding, Feature, FeatureKind, Prepared, Target, Task};
pub use table::Table;

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
