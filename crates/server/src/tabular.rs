//! A hone-trained model's features by name: a request that names its
//! features (one input per feature, categories as their text) is encoded
//! into the model's one input, in the card's column order, before
//! validation, and is answered with the label as written in the training
//! data beside the model's own outputs. The positional input keeps working
//! beside it.

use std::path::Path;

use bytes::Bytes;
use hone_core::{
    DataType, Error, ModelMetadata, NamedTensor, Result, Tensor, TensorData, TensorSpec,
};
use serde::Deserialize;

use crate::error::SetupError;

/// One feature as the card describes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Numeric,
    /// Sent as text; encoded as its index among these.
    Categorical(Vec<String>),
}

#[derive(Debug)]
pub(crate) struct Tabular {
    /// The model's one input the features encode into.
    input: String,
    features: Vec<(String, Kind)>,
    /// One spec per feature (FP32, or BYTES for a category), rows first:
    /// how TF Serving's decoder reads named instances.
    specs: Vec<TensorSpec>,
    /// Config parameter `unseen_category: "ignore"`: a category the model
    /// never saw encodes as none (an all-zero one-hot) and the row is
    /// flagged, instead of a 400.
    unseen_ok: bool,
}

/// The outputs a labelled answer adds: the class as written in the training
/// data, and its probability.
pub(crate) const LABEL: &str = "label";
pub(crate) const PROBABILITY: &str = "probability";
/// The flag of rows whose category was unseen (with `unseen_category: ignore`).
pub(crate) const UNSEEN: &str = "unseen_category";

#[derive(Deserialize)]
struct Card {
    format: Option<String>,
    /// A hone-trained model's input and its features.
    input: Option<CardInput>,
    /// An imported model's feature names (all numbers).
    #[serde(default)]
    features: Vec<String>,
}

#[derive(Deserialize)]
struct CardInput {
    name: String,
    features: Vec<CardFeature>,
}

#[derive(Deserialize)]
struct CardFeature {
    name: String,
    kind: String,
    #[serde(default)]
    categories: Vec<String>,
}

impl Tabular {
    /// The features of the card beside `model` (`model.card.json`: from
    /// `hone train`/`ship`, or `hone import` with feature names), when the
    /// model takes them as its one FP32 matrix; None otherwise.
    pub(crate) fn load(
        model: &Path,
        meta: &ModelMetadata,
    ) -> std::result::Result<Option<Tabular>, SetupError> {
        let p = model.with_extension("card.json");
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SetupError::io(p.display())(e)),
        };
        let Ok(card) = serde_json::from_slice::<Card>(&bytes) else {
            return Ok(None);
        };
        let [spec] = meta.inputs.as_slice() else {
            return Ok(None);
        };
        let format = card.format.unwrap_or_default();
        let input = match card.input {
            Some(input) if format.starts_with("hone.model-card/") => input,
            // `hone import` names a booster's or a pipeline's features.
            _ if format.starts_with("hone.import-card/") && !card.features.is_empty() => {
                CardInput {
                    name: spec.name.clone(),
                    features: card
                        .features
                        .into_iter()
                        .map(|name| CardFeature {
                            name,
                            kind: "numeric".into(),
                            categories: Vec::new(),
                        })
                        .collect(),
                }
            }
            _ => return Ok(None),
        };
        let fits = spec.name == input.name
            && spec.dtype == DataType::F32
            && spec.dims.len() == 2
            && spec.dims.get(1) == Some(&(input.features.len() as i64));
        if !fits || input.features.iter().any(|f| f.name == input.name) {
            return Ok(None);
        }
        let features: Vec<(String, Kind)> = input
            .features
            .into_iter()
            .map(|f| {
                let kind = if f.kind == "categorical" {
                    Kind::Categorical(f.categories)
                } else {
                    Kind::Numeric
                };
                (f.name, kind)
            })
            .collect();
        let specs = features
            .iter()
            .map(|(name, kind)| TensorSpec {
                name: name.clone(),
                dtype: match kind {
                    Kind::Numeric => DataType::F32,
                    Kind::Categorical(_) => DataType::Bytes,
                },
                dims: vec![-1],
            })
            .collect();
        Ok(Some(Tabular {
            input: input.name,
            features,
            specs,
            unseen_ok: false,
        }))
    }

    /// Applies the config parameter `unseen_category` (`error`, the
    /// default, or `ignore`).
    pub(crate) fn unseen(mut self, parameter: Option<&str>) -> Result<Self> {
        self.unseen_ok = match parameter {
            None | Some("error") => false,
            Some("ignore") => true,
            Some(v) => {
                return Err(Error::invalid(format!(
                    "config parameter unseen_category is '{v}': give \"error\" or \"ignore\""
                )));
            }
        };
        Ok(self)
    }

    /// Whether answers carry the unseen-category flag.
    pub(crate) fn flags_unseen(&self) -> bool {
        self.unseen_ok
    }

    /// The features for metadata: name, datatype, and a category's values.
    pub(crate) fn describe(&self) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .features
            .iter()
            .map(|(name, kind)| match kind {
                Kind::Numeric => serde_json::json!({"name": name, "datatype": "FP32"}),
                Kind::Categorical(c) => {
                    serde_json::json!({"name": name, "datatype": "BYTES", "categories": c})
                }
            })
            .collect();
        serde_json::Value::Array(rows)
    }

    /// The features as inputs: what TF Serving's decoder reads named rows by.
    pub(crate) fn specs(&self) -> &[TensorSpec] {
        &self.specs
    }

    /// Whether a request names features rather than the model's input.
    pub(crate) fn named(&self, inputs: &[NamedTensor]) -> bool {
        !inputs.iter().any(|(n, _)| *n == self.input)
            && inputs
                .iter()
                .any(|(n, _)| self.features.iter().any(|(f, _)| f == n))
    }

    /// Named features → the model's one input, `[rows, features]`, and
    /// per row whether a category was unseen (only with `unseen_category:
    /// ignore`; otherwise that is an error).
    pub(crate) fn encode(&self, inputs: Vec<NamedTensor>) -> Result<(Vec<NamedTensor>, Vec<bool>)> {
        let names = || {
            self.features
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut slots: Vec<Option<Tensor>> = vec![None; self.features.len()];
        for (name, t) in inputs {
            let slot = self
                .features
                .iter()
                .zip(slots.iter_mut())
                .find_map(|((f, _), slot)| (*f == name).then_some(slot));
            let Some(slot) = slot else {
                return Err(Error::invalid(format!(
                    "unexpected input '{name}': this model takes its features by name ({}) or one input '{}'",
                    names(),
                    self.input
                )));
            };
            if slot.replace(t).is_some() {
                return Err(Error::invalid(format!(
                    "feature '{name}' given more than once"
                )));
            }
        }
        let mut rows: Option<(usize, &str)> = None;
        let mut columns = Vec::with_capacity(self.features.len());
        for ((name, kind), slot) in self.features.iter().zip(&slots) {
            let t = slot.as_ref().ok_or_else(|| {
                Error::invalid(format!("missing feature '{name}' (features: {})", names()))
            })?;
            // One value per row: [rows] or [rows, 1].
            let n = t.shape.first().copied().unwrap_or(1).max(0) as usize;
            if t.shape.len() > 2 || t.shape.get(1).is_some_and(|&d| d != 1) || t.shape.is_empty() {
                return Err(Error::invalid(format!(
                    "feature '{name}': shape {:?}; a feature takes one value per row ([rows] or [rows, 1])",
                    t.shape
                )));
            }
            match rows {
                None => rows = Some((n, name)),
                Some((m, first)) if m != n => {
                    return Err(Error::invalid(format!(
                        "feature '{name}' has {n} rows and '{first}' has {m}"
                    )));
                }
                Some(_) => {}
            }
            columns.push(column(name, kind, t, self.unseen_ok)?);
        }
        let n = rows.map_or(0, |r| r.0);
        // A category column's -1 is an unseen category (numbers may be
        // negative, so only categories count).
        let unseen: Vec<bool> = (0..n)
            .map(|r| {
                self.unseen_ok
                    && self.features.iter().zip(&columns).any(|((_, kind), c)| {
                        matches!(kind, Kind::Categorical(_)) && c.get(r).is_some_and(|v| *v < 0.0)
                    })
            })
            .collect();
        let width = self.features.len();
        let mut x = Vec::with_capacity(n * width);
        for r in 0..n {
            x.extend(columns.iter().map(|col| col.get(r).copied().unwrap_or(0.0)));
        }
        let encoded = vec![(
            self.input.clone(),
            Tensor::from_f32(vec![n as i64, width as i64], &x)?,
        )];
        Ok((encoded, unseen))
    }
}

/// The label and its probability per row, from the output the card scores
/// (a probability per class, or one probability of the second class);
/// None for regression or an output of another shape.
pub(crate) fn labelled(
    truth: &crate::feedback::Truth,
    outputs: &[Tensor],
) -> Option<[(&'static str, Tensor); 2]> {
    if truth.task == hone_data::Task::Regression {
        return None;
    }
    let t = outputs.get(truth.output)?;
    let v = t.to_f64s()?;
    let rows = t.batch();
    let width = v.len().checked_div(rows).unwrap_or(1);
    if width == 0 || width * rows != v.len() || (width > 1 && width != truth.labels.len()) {
        return None;
    }
    let mut labels = Vec::with_capacity(rows);
    let mut probs = Vec::with_capacity(rows);
    for row in v.chunks(width) {
        let (class, p) = match row {
            [p] if *p >= 0.5 => (1, *p),
            [p] => (0, 1.0 - *p),
            _ => row
                .iter()
                .copied()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |best, (i, p)| {
                    if p > best.1 { (i, p) } else { best }
                }),
        };
        labels.push(Bytes::from(truth.labels.get(class)?.clone()));
        probs.push(p as f32);
    }
    let n = vec![rows as i64];
    Some([
        (
            LABEL,
            Tensor::new(DataType::Bytes, n.clone(), TensorData::Strings(labels)).ok()?,
        ),
        (PROBABILITY, Tensor::from_f32(n, &probs).ok()?),
    ])
}

/// Per-row flags as a BOOL tensor.
pub(crate) fn flags(rows: &[bool]) -> Result<Tensor> {
    let bytes: Vec<u8> = rows.iter().map(|&b| u8::from(b)).collect();
    Tensor::new(
        DataType::Bool,
        vec![rows.len() as i64],
        TensorData::Raw(Bytes::from(bytes)),
    )
}

/// One feature's values as the model's numbers: a number as itself, a
/// category as its index, matched by its text.
fn column(name: &str, kind: &Kind, t: &Tensor, unseen_ok: bool) -> Result<Vec<f32>> {
    match (kind, &t.data) {
        (Kind::Categorical(cats), TensorData::Strings(values)) => values
            .iter()
            .map(|v| match category(name, cats, v) {
                // The model's one-hot of -1 is all zeros: no category.
                Err(_) if unseen_ok => Ok(-1.0),
                r => r,
            })
            .collect(),
        (Kind::Categorical(cats), TensorData::Raw(_)) => Err(Error::invalid(format!(
            "feature '{name}' is a category ({}): send it as text (BYTES), not {}",
            cats.join(", "),
            t.dtype
        ))),
        (Kind::Numeric, TensorData::Raw(_)) => {
            let v = t.to_f64s().ok_or_else(|| {
                Error::invalid(format!(
                    "feature '{name}': {} is not a number type",
                    t.dtype
                ))
            })?;
            if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
                return Err(Error::invalid(format!(
                    "feature '{name}': {bad} is not a finite number"
                )));
            }
            Ok(v.into_iter().map(|x| x as f32).collect())
        }
        (Kind::Numeric, TensorData::Strings(_)) => Err(Error::invalid(format!(
            "feature '{name}' is a number: send it as FP32 (or any number type), not text"
        ))),
    }
}

fn category(name: &str, cats: &[String], v: &Bytes) -> Result<f32> {
    cats.iter()
        .position(|c| c.as_bytes() == v.as_ref())
        .map(|i| i as f32)
        .ok_or_else(|| {
            Error::invalid(format!(
                "feature '{name}': unknown category '{}' (categories: {})",
                String::from_utf8_lossy(v),
                cats.join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tab() -> Tabular {
        let features = vec![
            ("age".to_string(), Kind::Numeric),
            (
                "region".to_string(),
                Kind::Categorical(vec!["north".into(), "west".into()]),
            ),
        ];
        Tabular {
            input: "input".into(),
            specs: Vec::new(),
            features,
            unseen_ok: false,
        }
    }

    fn text(v: &[&str]) -> Tensor {
        Tensor::new(
            DataType::Bytes,
            vec![v.len() as i64],
            TensorData::Strings(v.iter().map(|s| Bytes::from(s.to_string())).collect()),
        )
        .unwrap()
    }

    #[test]
    fn named_features_encode_in_card_order_and_bad_ones_are_named() {
        let t = tab();
        let inputs = vec![
            ("region".to_string(), text(&["west", "north"])),
            (
                "age".to_string(),
                Tensor::from_f32(vec![2, 1], &[26.0, 70.0]).unwrap(),
            ),
        ];
        assert!(t.named(&inputs));
        let (out, unseen) = t.encode(inputs).unwrap();
        assert_eq!(unseen, [false, false]);
        assert_eq!(out[0].0, "input");
        assert_eq!(out[0].1.shape, vec![2, 2]);
        assert_eq!(out[0].1.to_f64s().unwrap(), vec![26.0, 1.0, 70.0, 0.0]);

        let err = |inputs: Vec<NamedTensor>| t.encode(inputs).unwrap_err().message;
        let age = || {
            (
                "age".to_string(),
                Tensor::from_f32(vec![1], &[1.0]).unwrap(),
            )
        };
        let e = err(vec![age(), ("region".into(), text(&["south"]))]);
        assert!(
            e.contains("'region'") && e.contains("unknown category 'south'"),
            "{e}"
        );
        let e = err(vec![age()]);
        assert!(e.contains("missing feature 'region'"), "{e}");
        let e = err(vec![
            age(),
            ("region".into(), Tensor::from_f32(vec![1], &[1.0]).unwrap()),
        ]);
        assert!(e.contains("send it as text"), "{e}");
        let e = err(vec![
            ("age".into(), text(&["26"])),
            ("region".into(), text(&["west"])),
        ]);
        assert!(e.contains("'age' is a number"), "{e}");
        let e = err(vec![age(), ("region".into(), text(&["west", "north"]))]);
        assert!(e.contains("rows"), "{e}");
        let e = err(vec![
            age(),
            ("region".into(), text(&["west"])),
            ("zip".into(), text(&["1"])),
        ]);
        assert!(e.contains("unexpected input 'zip'"), "{e}");
        let nan = (
            "age".to_string(),
            Tensor::from_f32(vec![1], &[f32::NAN]).unwrap(),
        );
        let e = err(vec![nan, ("region".into(), text(&["west"]))]);
        assert!(e.contains("finite"), "{e}");
        // With unseen_category: ignore, an unseen category is none, flagged.
        let lax = tab().unseen(Some("ignore")).unwrap();
        let (out, unseen) = lax
            .encode(vec![
                (
                    "age".into(),
                    Tensor::from_f32(vec![2], &[1.0, -2.0]).unwrap(),
                ),
                ("region".into(), text(&["south", "west"])),
            ])
            .unwrap();
        assert_eq!(out[0].1.to_f64s().unwrap(), vec![1.0, -1.0, -2.0, 1.0]);
        // A negative number is not an unseen category.
        assert_eq!(unseen, [true, false]);
        assert!(tab().unseen(Some("zero")).is_err());
        // The positional input is not a named request.
        assert!(!t.named(&[(
            "input".to_string(),
            Tensor::from_f32(vec![1, 2], &[1.0, 0.0]).unwrap()
        )]));
    }
}
