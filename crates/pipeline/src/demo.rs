//! `hone demo`: `hone ship` on the embedded default data, with the settings
//! the demo always uses.

/// The embedded default data set: Breast Cancer Wisconsin (Diagnostic), all
/// 569 rows of the shared train/val/test splits.
pub const DATA: &[u8] = include_bytes!("../../../examples/data/breast_cancer.csv");
/// How the data is named in the report.
pub const DATA_NAME: &str = "embedded:breast_cancer.csv";
/// The column the demo predicts.
pub const TARGET: &str = "label";
/// The model name in the repository.
pub const NAME: &str = "breast_cancer";
/// The held-out accuracy below which the demo fails.
pub const MIN_ACCURACY: f64 = 0.9;
/// Fraction of rows held out.
pub const HOLDOUT: f64 = 0.2;
/// The line printed before the stage table.
pub const BANNER: &str = "hone demo: shipping the reference MLP on the embedded Breast Cancer Wisconsin data (569 rows, 30 features)";
