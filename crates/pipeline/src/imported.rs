//! Models from `hone import`: their card (feature names, task, labels, the
//! scored output) and labelled rows fed the way the model takes them, one
//! matrix by feature name or one input per column (text as BYTES).

use std::path::Path;

use bytes::Bytes;
use hone_core::{DataType, ModelMetadata, Tensor, TensorData};
use hone_data::{Encoding, Feature, FeatureKind, Table, Target, Task};
use serde::Deserialize;

use crate::dataset::Dataset;
use crate::{PipelineError, Result};

/// What evaluation reads from an import card (`hone.import-card/1`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImportCard {
    #[serde(default)]
    pub task: Option<String>,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default)]
    pub output: Option<OutputName>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OutputName {
    pub name: Option<String>,
}

impl ImportCard {
    pub fn task(&self) -> Option<Task> {
        match self.task.as_deref()? {
            "binary" => Some(Task::Binary),
            "multiclass" => Some(Task::Multiclass),
            "regression" => Some(Task::Regression),
            _ => None,
        }
    }

    /// The output metrics are computed on (a classifier's probabilities).
    pub fn output(&self) -> Option<&str> {
        self.output.as_ref()?.name.as_deref()
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<ImportCard> {
        crate::is_import_card(bytes).then(|| serde_json::from_slice(bytes).ok())?
    }
}

/// The card beside a model: a hone-trained model's, or else an imported
/// model's (`hone import`), or neither.
pub fn read_cards(model: &Path) -> Result<(Option<hone_train::ModelCard>, Option<ImportCard>)> {
    let card = crate::read_card(model)?;
    let imported = card.is_none().then(|| read(model)).flatten();
    Ok((card, imported))
}

/// The import card beside `model`, or None when there is none (or the card
/// there is a hone-trained model's).
pub fn read(model: &Path) -> Option<ImportCard> {
    ImportCard::from_bytes(&std::fs::read(crate::card_path(model)).ok()?)
}

/// `table`'s rows as the model's inputs, with labels from `target` when the
/// table has that column. A model with one input takes the card's features
/// (by name; else every column but the target, in file order) as one FP32
/// matrix; a model with several inputs takes each from the column of its
/// name.
pub fn dataset(
    table: &Table,
    target: &str,
    meta: &ModelMetadata,
    card: &ImportCard,
) -> Result<Dataset> {
    let rows = table.rows();
    let column = |name: &str| {
        table.column(name).ok_or_else(|| {
            PipelineError::Message(format!(
                "{}: no column `{name}`, which the model takes",
                table.source
            ))
        })
    };
    let number = |col: usize, row: usize| -> Result<f32> {
        let cell = table.columns[col][row].trim();
        cell.parse::<f32>().map_err(|_| {
            PipelineError::Message(format!(
                "{} line {}: column `{}` holds {cell:?}, not a number",
                table.source,
                row + 2,
                table.names[col]
            ))
        })
    };
    let (inputs, features) = if let [spec] = meta.inputs.as_slice() {
        let names: Vec<String> = if card.features.is_empty() {
            table
                .names
                .iter()
                .filter(|n| *n != target)
                .cloned()
                .collect()
        } else {
            card.features.clone()
        };
        if let Some(&width) = spec.dims.get(1)
            && width > 0
            && width as usize != names.len()
        {
            return Err(PipelineError::Message(format!(
                "{}: {} feature columns ({}) for input {:?}, which takes {width}; the model names no features, so every column but the target feeds it",
                table.source,
                names.len(),
                names.join(", "),
                spec.name
            )));
        }
        let cols = names
            .iter()
            .map(|n| column(n))
            .collect::<Result<Vec<_>>>()?;
        if spec.dtype != DataType::F32 {
            return Err(PipelineError::Message(format!(
                "input {:?} is {}; table rows are fed as FP32",
                spec.name,
                spec.dtype.as_v2()
            )));
        }
        let mut x = Vec::with_capacity(rows * cols.len());
        for r in 0..rows {
            for &c in &cols {
                x.push(number(c, r)?);
            }
        }
        let t = Tensor::from_f32(vec![rows as i64, cols.len() as i64], &x)?;
        (vec![t], names)
    } else {
        let mut inputs = Vec::with_capacity(meta.inputs.len());
        for spec in &meta.inputs {
            let c = column(&spec.name)?;
            let shape = vec![rows as i64, 1];
            let t = match spec.dtype {
                DataType::Bytes => Tensor::new(
                    DataType::Bytes,
                    shape,
                    TensorData::Strings(
                        table.columns[c]
                            .iter()
                            .map(|s| Bytes::from(s.clone()))
                            .collect(),
                    ),
                )?,
                DataType::F32 => {
                    let x = (0..rows)
                        .map(|r| number(c, r))
                        .collect::<Result<Vec<_>>>()?;
                    Tensor::from_f32(shape, &x)?
                }
                other => {
                    return Err(PipelineError::Message(format!(
                        "input {:?} is {}; table columns feed FP32 and BYTES inputs",
                        spec.name,
                        other.as_v2()
                    )));
                }
            };
            inputs.push(t);
        }
        (inputs, meta.inputs.iter().map(|s| s.name.clone()).collect())
    };
    let task = card.task();
    let labels = match table.column(target) {
        None => None,
        Some(c) => Some(
            (0..rows)
                .map(|r| label(table, c, r, task, &card.labels))
                .collect::<Result<Vec<f32>>>()?,
        ),
    };
    let encoding = task.map(|task| Encoding {
        features: features
            .iter()
            .map(|n| Feature {
                name: n.clone(),
                kind: FeatureKind::Numeric,
            })
            .collect(),
        target: Target {
            name: target.to_string(),
            task,
            classes: card.labels.clone(),
        },
    });
    Ok(Dataset {
        inputs,
        labels,
        rows,
        encoding,
        columns: features,
        whole: Vec::new(),
    })
}

/// One label as the model's target: a class index (by its text, or by its
/// number when both are numbers: `1.0` is class `1`), or the value.
fn label(
    table: &Table,
    col: usize,
    row: usize,
    task: Option<Task>,
    classes: &[String],
) -> Result<f32> {
    let cell = table.columns[col][row].trim();
    let bad = |why: String| {
        PipelineError::Message(format!(
            "{} line {}: target `{}` {why}",
            table.source,
            row + 2,
            table.names[col]
        ))
    };
    if task == Some(Task::Regression) || classes.is_empty() {
        return cell
            .parse::<f32>()
            .map_err(|_| bad(format!("holds {cell:?}, not a number")));
    }
    if let Some(i) = classes.iter().position(|c| c == cell) {
        return Ok(i as f32);
    }
    let num = cell.parse::<f64>().ok();
    classes
        .iter()
        .position(|c| num.is_some() && c.parse::<f64>().ok() == num)
        .map(|i| i as f32)
        .ok_or_else(|| {
            bad(format!(
                "holds {cell:?}, which is none of the model's classes ({})",
                classes.join(", ")
            ))
        })
}
