//! Data for hone's pipeline: reading CSV tables and `.npy` tensors, turning a
//! table into features and a target (with the encoding recorded so serving
//! can reproduce it), reference statistics for drift monitoring, seeded
//! splits, and the evaluation metrics.
//!
//! Everything here is plain computation over memory, no engine and no I/O
//! frameworks, so training, evaluation and the optimizer share one definition
//! of each metric.

pub mod encode;
pub mod encoded;
mod error;
pub mod metrics;
pub mod npy;
pub mod rng;
pub mod split;
pub mod stats;
pub mod stream;
pub mod table;

pub use encode::{Encoding, Feature, FeatureKind, Prepared, Target, Task};
pub(crate) use error::err;
pub use error::{DataError, Result};
pub use table::Table;
