//! The converter's report: what was converted, and how closely the ONNX
//! model answers as the source does (the parity table hone judges).

use std::fmt::Write;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub source: Source,
    pub converter: Converter,
    /// `binary`, `multiclass`, `regression`, or None where the source does not say.
    pub task: Option<String>,
    /// The class labels as the source writes them, in output order.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Feature names, where the source has them (a pipeline's columns, a booster's names).
    #[serde(default)]
    pub features: Vec<String>,
    pub inputs: Vec<Port>,
    pub outputs: Vec<Port>,
    pub parity: Parity,
    /// Histograms of the sample per feature (drift's reference), when the
    /// rows came from the user and the model takes one numeric matrix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<serde_json::Value>,
    #[serde(default)]
    pub notes: Vec<String>,
    #[serde(default)]
    pub seconds: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    pub file: String,
    pub sha256: String,
    pub format: String,
    pub framework: String,
    pub framework_version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Converter {
    pub name: String,
    pub version: String,
    pub onnx: String,
    pub onnxruntime: String,
}

/// One input or output of the ONNX model (`shape`: None for a free dimension).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Port {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<Option<i64>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Parity {
    pub rows: u64,
    /// `sample` (the user's rows) or `synthesized`.
    pub from: String,
    pub rtol: f64,
    pub atol: f64,
    pub outputs: Vec<OutputParity>,
}

/// One output compared: values (`max_abs`, `max_rel`, `rows_outside`) or
/// labels (`agreement`, `mismatched`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputParity {
    pub name: String,
    pub kind: String,
    pub within: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_abs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rel: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_outside: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst_row: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mismatched: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Report {
    /// Whether every output is within tolerance and every label agrees.
    pub fn passes(&self) -> bool {
        !self.parity.outputs.is_empty() && self.parity.outputs.iter().all(|o| o.within)
    }

    /// The output live accuracy and `hone eval` read: a classifier's
    /// probabilities, else the first output of values.
    pub fn scored_output(&self) -> Option<&str> {
        self.parity
            .outputs
            .iter()
            .find(|o| o.kind == "values")
            .map(|o| o.name.as_str())
    }

    /// The parity table, one line per output.
    pub fn table(&self) -> String {
        let p = &self.parity;
        let mut s = format!(
            "parity on {} {} rows (values within {:e} + {:e}·|source|, labels identical):\n",
            p.rows, p.from, p.atol, p.rtol
        );
        let w = p
            .outputs
            .iter()
            .map(|o| o.name.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let _ = writeln!(
            s,
            "  {:w$}  {:>11}  {:>10}  {:>12}  {:>13}  verdict",
            "output", "max |diff|", "max rel", "rows outside", "labels agree"
        );
        for o in &p.outputs {
            let num = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |v| format!("{v:.3e}"));
            let agree = o
                .agreement
                .map_or_else(|| "-".to_string(), |a| format!("{:.2}%", a * 100.0));
            let outside = o
                .rows_outside
                .or(o.mismatched)
                .map_or_else(|| "-".to_string(), |n| n.to_string());
            let verdict = if o.within { "ok" } else { "DIFFERS" };
            let _ = write!(
                s,
                "  {:w$}  {:>11}  {:>10}  {:>12}  {:>13}  {verdict}",
                o.name,
                num(o.max_abs),
                num(o.max_rel),
                outside,
                agree
            );
            if let Some(n) = &o.note {
                let _ = write!(s, " ({n})");
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(outputs: serde_json::Value) -> Report {
        serde_json::from_value(serde_json::json!({
            "source": {"file": "m", "sha256": "00", "format": "lightgbm", "framework": "lightgbm", "framework_version": "4"},
            "converter": {"name": "onnxmltools", "version": "1", "onnx": "1", "onnxruntime": "1"},
            "task": "regression", "inputs": [], "outputs": [],
            "parity": {"rows": 512, "from": "synthesized", "rtol": 1e-4, "atol": 1e-5, "outputs": outputs}
        }))
        .unwrap()
    }

    #[test]
    fn a_differing_output_fails_and_is_named_in_the_table() {
        let r = report(serde_json::json!([
            {"name": "variable", "kind": "values", "within": false, "max_abs": 50.88, "max_rel": 0.34, "rows_outside": 210}
        ]));
        assert!(!r.passes());
        let t = r.table();
        assert!(
            t.contains("variable") && t.contains("DIFFERS") && t.contains("210"),
            "{t}"
        );
        let ok = report(serde_json::json!([
            {"name": "label", "kind": "labels", "within": true, "agreement": 1.0, "mismatched": 0},
            {"name": "probabilities", "kind": "values", "within": true, "max_abs": 1e-7}
        ]));
        assert!(ok.passes());
        assert_eq!(ok.scored_output(), Some("probabilities"));
        // Nothing compared is not a pass.
        assert!(!report(serde_json::json!([])).passes());
    }
}
