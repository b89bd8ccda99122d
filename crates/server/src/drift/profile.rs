//! A model version's reference profile: per input feature (and per output
//! column) the histogram of the data it was trained or profiled on. Read
//! from `MODEL.profile.json` (`hone profile`: `inputs` and `outputs`) or
//! from `MODEL.card.json` (hone-trained models: `reference`).

use std::path::Path;

use serde_json::Value;

use crate::error::SetupError;

/// One feature's reference: bins between ascending `edges` (deciles of the
/// reference data in cards and profiles hone writes; any ascending edges
/// are read, equal-width ones included).
#[derive(Debug, Clone)]
pub struct Reference {
    pub name: String,
    pub edges: Vec<f64>,
    pub counts: Vec<f64>,
    /// A categorical feature: per bin, the category's label and code. A
    /// value that is no code is unseen (counted where "below" is).
    pub categories: Option<Vec<(String, f64)>>,
}

impl Reference {
    fn from_json(v: &Value) -> Option<Reference> {
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        if let Some(c) = v.get("categories").filter(|c| !c.is_null()) {
            let mut cats = Vec::new();
            let mut counts = Vec::new();
            for e in c.as_array()? {
                let value = e.get("value")?.as_f64()?;
                let count = e.get("count")?.as_f64()?;
                if !(value.is_finite() && count.is_finite() && count >= 0.0) {
                    return None;
                }
                let label = e.get("label").and_then(Value::as_str).unwrap_or_default();
                cats.push((label.to_string(), value));
                counts.push(count);
            }
            if cats.is_empty() {
                return None;
            }
            return Some(Reference {
                name,
                edges: (0..=cats.len()).map(|i| i as f64).collect(),
                counts,
                categories: Some(cats),
            });
        }
        let h = v.get("histogram")?;
        let edges: Vec<f64> = h["edges"]
            .as_array()?
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        let counts: Vec<f64> = h["counts"]
            .as_array()?
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        let ok = !counts.is_empty()
            && edges.len() == counts.len() + 1
            && edges.iter().all(|e| e.is_finite())
            && counts.iter().all(|c| c.is_finite() && *c >= 0.0)
            && edges.windows(2).all(|w| matches!(w, [a, b] if a <= b));
        ok.then_some(Reference {
            name,
            edges,
            counts,
            categories: None,
        })
    }

    pub fn bins(&self) -> usize {
        self.counts.len()
    }

    /// The bin of `x`: `Ok(i)` inside, `Err(0)` below (for a categorical
    /// feature: an unseen category), `Err(1)` above, `Err(2)` not finite.
    pub fn bin(&self, x: f64) -> Result<usize, usize> {
        if !x.is_finite() {
            return Err(2);
        }
        if let Some(c) = &self.categories {
            // Codes are few (≤ 256): a scan beats a map at this size.
            return c.iter().position(|(_, v)| *v == x).ok_or(0);
        }
        let (Some(&lo), Some(&hi)) = (self.edges.first(), self.edges.last()) else {
            return Err(2);
        };
        if x < lo {
            return Err(0);
        }
        if x > hi {
            return Err(1);
        }
        // The last edge at or below x; the top edge closes the last bin.
        let i = self.edges.partition_point(|e| *e <= x).saturating_sub(1);
        let i = i.min(self.bins().saturating_sub(1));
        // Repeated edges (a constant feature in an older equal-width
        // profile: every edge the same, every count in the first bin): the
        // first bin that starts at this edge.
        let edge = self.edges.get(i).copied().unwrap_or(lo);
        Ok(self.edges.partition_point(|e| *e < edge))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub inputs: Vec<Reference>,
    pub outputs: Vec<Reference>,
    /// Which file it came from.
    pub source: String,
}

fn list(v: &Value) -> Option<Vec<Reference>> {
    v.as_array()?.iter().map(Reference::from_json).collect()
}

/// The profile beside `model` (`model.onnx` → `model.profile.json`, else
/// `model.card.json`), or None. A present but unreadable file is an error
/// the caller logs.
pub fn load(model: &Path) -> Result<Option<Profile>, SetupError> {
    for (ext, inputs_key) in [("profile.json", "inputs"), ("card.json", "reference")] {
        let p = model.with_extension(ext);
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(SetupError::io(p.display())(e)),
        };
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| SetupError::Invalid(format!("{}: not JSON: {e}", p.display())))?;
        // An imported model's card has a reference only when the import
        // was given sample rows: without one, drift is simply off.
        if ext == "card.json" && v.get(inputs_key).is_none() {
            continue;
        }
        let inputs = v.get(inputs_key).and_then(list).ok_or_else(|| {
            SetupError::Invalid(format!(
                "{}: `{inputs_key}` is not a list of histograms",
                p.display()
            ))
        })?;
        let outputs = match v.get("outputs") {
            None | Some(Value::Null) => Vec::new(),
            Some(o) => list(o).ok_or_else(|| {
                SetupError::Invalid(format!(
                    "{}: `outputs` is not a list of histograms",
                    p.display()
                ))
            })?,
        };
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        return Ok(Some(Profile {
            inputs,
            outputs,
            source: name.unwrap_or_default(),
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_fall_in_their_bins() {
        let r = Reference::from_json(&serde_json::json!({
            "name": "x", "histogram": {"edges": [0.0, 1.0, 2.0], "counts": [3, 5]}
        }))
        .unwrap();
        assert_eq!(r.bin(0.0), Ok(0));
        assert_eq!(r.bin(1.5), Ok(1));
        assert_eq!(r.bin(2.0), Ok(1));
        assert_eq!(r.bin(-0.1), Err(0));
        assert_eq!(r.bin(2.1), Err(1));
        assert_eq!(r.bin(f64::NAN), Err(2));
        // Unequal (decile) edges.
        let q = Reference::from_json(&serde_json::json!({
            "name": "q", "histogram": {"edges": [0.0, 0.1, 5.0, 100.0], "counts": [3, 3, 3]}
        }))
        .unwrap();
        assert_eq!(q.bin(0.05), Ok(0));
        assert_eq!(q.bin(0.1), Ok(1));
        assert_eq!(q.bin(50.0), Ok(2));
        assert_eq!(q.bin(100.0), Ok(2));
        // A constant feature as older profiles wrote it.
        let c = Reference::from_json(&serde_json::json!({
            "name": "c", "histogram": {"edges": [5.0, 5.0, 5.0, 5.0], "counts": [9, 0, 0]}
        }))
        .unwrap();
        assert_eq!(c.bin(5.0), Ok(0));
        assert_eq!(c.bin(5.1), Err(1));
        assert!(
            Reference::from_json(
                &serde_json::json!({"histogram": {"edges": [1.0], "counts": [1]}})
            )
            .is_none()
        );
    }

    #[test]
    fn categories_bin_by_code() {
        let r = Reference::from_json(&serde_json::json!({
            "name": "colour", "histogram": {"edges": [0.0, 1.0], "counts": [5]},
            "categories": [{"label": "red", "value": 0.0, "count": 3}, {"label": "blue", "value": 1.0, "count": 2}]
        }))
        .unwrap();
        assert_eq!(r.bins(), 2);
        assert_eq!(r.counts, [3.0, 2.0]);
        assert_eq!(r.bin(1.0), Ok(1));
        assert_eq!(r.bin(-1.0), Err(0));
        assert_eq!(r.bin(0.5), Err(0));
        assert_eq!(r.bin(f64::NAN), Err(2));
    }
}
