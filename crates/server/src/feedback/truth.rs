//! What a model version's card says about its answers, for joining ground
//! truth: the task, the class labels as written in the training data, the
//! output that carries the prediction and the validation figures live ones
//! are compared with.

use std::path::Path;

use hone_core::{Error, ModelMetadata};
use hone_data::Task;
use serde_json::Value;

use crate::error::SetupError;

#[derive(Debug)]
pub(crate) struct Truth {
    pub task: Task,
    /// Class index → label (empty for regression).
    pub labels: Vec<String>,
    /// The output whose values are recorded: its index among the model's.
    pub output: usize,
    /// The card's validation figures (`accuracy`, `auc`, `mae`, ...).
    pub card: Vec<(String, f64)>,
}

impl Truth {
    /// The card beside `model` (`model.onnx` → `model.card.json`), or None
    /// when there is none or it names no task or an output the model lacks.
    pub(crate) fn load(model: &Path, meta: &ModelMetadata) -> Result<Option<Truth>, SetupError> {
        let p = model.with_extension("card.json");
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SetupError::io(p.display())(e)),
        };
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| SetupError::Invalid(format!("{}: not JSON: {e}", p.display())))?;
        Ok(Self::from_card(&v, meta))
    }

    fn from_card(v: &Value, meta: &ModelMetadata) -> Option<Truth> {
        let task = match v.get("task")?.as_str()? {
            "binary" => Task::Binary,
            "multiclass" => Task::Multiclass,
            "regression" => Task::Regression,
            _ => return None,
        };
        let labels: Vec<String> = match v.get("labels").and_then(Value::as_array) {
            Some(a) => a
                .iter()
                .map(|l| l.as_str().map_or_else(|| l.to_string(), str::to_string))
                .collect(),
            None => Vec::new(),
        };
        if task != Task::Regression && labels.len() < 2 {
            return None;
        }
        let out_name = v.pointer("/output/name").and_then(Value::as_str);
        let output = match out_name {
            Some(n) => meta.outputs.iter().position(|o| o.name == n)?,
            None => 0,
        };
        meta.outputs.get(output)?;
        let card = v
            .pointer("/metrics/validation")
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .filter_map(|(k, x)| Some((k.clone(), x.as_f64()?)))
                    .filter(|(k, _)| k != "rows")
                    .collect()
            })
            .unwrap_or_default();
        Some(Truth {
            task,
            labels,
            output,
            card,
        })
    }

    /// One label as the model's target: a class index for classifiers
    /// (matched by its text, or by its number when both are numbers), the
    /// value for regression. `at` names the label in errors.
    pub(crate) fn target(&self, label: &Value, at: usize) -> Result<f32, Error> {
        let bad = |why: String| Error::invalid(format!("labels[{at}]: {why}"));
        if self.task == Task::Regression {
            let x = match label {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            return x
                .filter(|x| x.is_finite())
                .map(|x| x as f32)
                .ok_or_else(|| bad(format!("{label} is not a finite number")));
        }
        let text = match label {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => label.to_string(),
            _ => return Err(bad(format!("{label} is not a class label"))),
        };
        if let Some(i) = self.labels.iter().position(|l| *l == text) {
            return Ok(i as f32);
        }
        let num = text.trim().parse::<f64>().ok();
        if let Some(x) = num
            && let Some(i) = self
                .labels
                .iter()
                .position(|l| l.trim().parse::<f64>().ok() == Some(x))
        {
            return Ok(i as f32);
        }
        let shown: Vec<&str> = self.labels.iter().take(20).map(String::as_str).collect();
        Err(bad(format!(
            "{label} is not one of the model's classes ({})",
            shown.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hone_core::{DataType, TensorSpec};
    use serde_json::json;

    fn meta() -> ModelMetadata {
        ModelMetadata {
            inputs: vec![],
            outputs: vec![TensorSpec {
                name: "output".into(),
                dtype: DataType::F32,
                dims: vec![-1, 1],
            }],
        }
    }

    #[test]
    fn labels_match_by_text_or_number() {
        let card = json!({"task": "binary", "labels": ["0", "1"], "output": {"name": "output"},
            "metrics": {"validation": {"accuracy": 0.9, "rows": 91}}});
        let t = Truth::from_card(&card, &meta()).unwrap();
        assert_eq!(t.card, vec![("accuracy".to_string(), 0.9)]);
        assert_eq!(t.target(&json!("1"), 0).unwrap(), 1.0);
        assert_eq!(t.target(&json!(0), 0).unwrap(), 0.0);
        assert_eq!(t.target(&json!(1.0), 0).unwrap(), 1.0);
        let e = t.target(&json!("yes"), 3).unwrap_err().to_string();
        assert!(e.contains("labels[3]") && e.contains("0, 1"), "{e}");
        assert!(t.target(&json!(null), 0).is_err());
    }

    #[test]
    fn regression_takes_numbers_and_a_missing_output_means_no_truth() {
        let card = json!({"task": "regression", "labels": [], "output": {"name": "output"}});
        let t = Truth::from_card(&card, &meta()).unwrap();
        assert_eq!(t.target(&json!("2.5"), 0).unwrap(), 2.5);
        assert!(t.target(&json!("x"), 0).is_err());
        let other = json!({"task": "regression", "output": {"name": "nope"}});
        assert!(Truth::from_card(&other, &meta()).is_none());
    }
}
