//! The model card written next to every model hone trains: what the model
//! takes and returns, how well it did, and reference statistics of the
//! training data for drift monitoring.

use hone_data::{Feature, Prepared, Task, metrics::Report, stats};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Mlp;

/// hone's version, written into exported models and cards.
pub const HONE_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelCard {
    pub format: String,
    pub hone_version: String,
    pub created_unix: u64,
    pub task: Task,
    pub input: InputSchema,
    pub output: OutputSchema,
    pub target: String,
    /// Class index → label as written in the data; empty for regression.
    pub labels: Vec<String>,
    pub metrics: CardMetrics,
    pub reference: Vec<stats::FeatureStats>,
    /// The model's outputs on the same rows, per output column: the
    /// reference live predictions are compared with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<stats::FeatureStats>,
    pub data: DataInfo,
    pub training: TrainingInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputSchema {
    pub name: String,
    pub dtype: String,
    /// One entry per input column, in order. Categorical features are sent
    /// as the index of their category in `categories` (-1 if unknown).
    pub features: Vec<Feature>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputSchema {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<i64>,
    pub meaning: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CardMetrics {
    pub train: serde_json::Value,
    pub validation: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataInfo {
    pub file: String,
    /// The separate validation file, when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_file: Option<String>,
    pub sha256: String,
    pub train_rows: usize,
    pub validation_rows: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingInfo {
    pub engine: String,
    pub hidden: Vec<usize>,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub seed: u64,
    pub seconds: f64,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Everything needed to describe a training run.
pub struct CardInput<'a> {
    pub model: &'a Mlp,
    pub cfg: &'a crate::TrainConfig,
    pub train: &'a Prepared,
    pub val: Option<&'a Prepared>,
    pub train_report: &'a Report,
    pub val_report: Option<&'a Report>,
    pub data_file: &'a str,
    pub val_file: Option<&'a str>,
    pub data_bytes: &'a [u8],
    pub seconds: f64,
}

pub fn card_for(c: CardInput<'_>) -> ModelCard {
    let enc = &c.model.encoding;
    // Every row the model was trained and validated on: the reference a
    // live window is judged against should be as large as the data allows.
    let sets: Vec<&Prepared> = std::iter::once(c.train).chain(c.val).collect();
    let reference = enc
        .features
        .iter()
        .enumerate()
        .map(|(j, f)| {
            let v: Vec<f64> = sets
                .iter()
                .flat_map(|s| (0..s.rows).map(move |r| s.row(r)[j] as f64))
                .collect();
            match &f.kind {
                hone_data::encode::FeatureKind::Categorical { categories } => {
                    stats::categorical_stats(&f.name, &v, Some(categories))
                        .unwrap_or_else(|_| stats::feature_stats(&f.name, &v))
                }
                hone_data::encode::FeatureKind::Numeric => stats::feature_stats(&f.name, &v),
            }
        })
        .collect();
    let outputs = output_reference(c.model, &sets);
    let meaning = match enc.target.task {
        Task::Binary => format!(
            "P({} = {:?}); predict {:?} when >= 0.5",
            enc.target.name,
            enc.target.classes.get(1).cloned().unwrap_or_default(),
            enc.target.classes.get(1).cloned().unwrap_or_default()
        ),
        Task::Multiclass => format!(
            "probability of each class of {}, in the order of `labels`",
            enc.target.name
        ),
        Task::Regression => format!("predicted {}", enc.target.name),
    };
    let to_json = |r: &Report| serde_json::to_value(r).unwrap_or(serde_json::Value::Null);
    ModelCard {
        format: "hone.model-card/1".into(),
        hone_version: HONE_VERSION.into(),
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        task: enc.target.task,
        input: InputSchema {
            name: crate::export::INPUT.into(),
            dtype: "float32".into(),
            features: enc.features.clone(),
        },
        output: OutputSchema {
            name: crate::export::OUTPUT.into(),
            dtype: "float32".into(),
            shape: vec![-1, enc.output_width() as i64],
            meaning,
        },
        target: enc.target.name.clone(),
        labels: enc.target.classes.clone(),
        metrics: CardMetrics {
            train: to_json(c.train_report),
            validation: c.val_report.map(to_json),
        },
        reference,
        outputs,
        data: DataInfo {
            file: c.data_file.to_string(),
            validation_file: c.val_file.map(str::to_string),
            sha256: sha256_hex(c.data_bytes),
            train_rows: c.train.rows,
            validation_rows: c.val.map_or(0, |v| v.rows),
        },
        training: TrainingInfo {
            engine: "candle".into(),
            hidden: c.cfg.hidden.clone(),
            epochs_run: c.model.history.len(),
            best_epoch: c.model.best_epoch,
            batch_size: c.cfg.batch_size,
            learning_rate: c.cfg.lr_for(enc.target.task),
            weight_decay: c.cfg.weight_decay_for(enc.target.task),
            seed: c.cfg.seed,
            seconds: c.seconds,
        },
    }
}

/// Statistics of each output column over `sets`, named as the server's
/// drift names them (`output`, or `output[j]` for several columns). Empty
/// when the model cannot run (the card is still written).
fn output_reference(model: &Mlp, sets: &[&Prepared]) -> Vec<stats::FeatureStats> {
    let width = model.encoding.output_width();
    let mut columns: Vec<Vec<f64>> = vec![Vec::new(); width];
    for s in sets {
        let Ok(out) = model.predict(&s.x, s.rows) else {
            return Vec::new();
        };
        for row in out.chunks(width.max(1)) {
            for (col, v) in columns.iter_mut().zip(row) {
                col.push(f64::from(*v));
            }
        }
    }
    columns
        .iter()
        .enumerate()
        .map(|(j, v)| {
            let name = if width == 1 {
                crate::export::OUTPUT.to_string()
            } else {
                format!("{}[{j}]", crate::export::OUTPUT)
            };
            stats::feature_stats(&name, v)
        })
        .collect()
}
