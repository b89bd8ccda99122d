//! Per-feature reference statistics, stored in the model card so a monitor
//! can compare live traffic against what the model was trained on.

use serde::{Deserialize, Serialize};

pub const BINS: usize = 10;
pub const QUANTILES: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureStats {
    pub name: String,
    pub count: usize,
    pub mean: f64,
    /// Population standard deviation (ddof 0).
    pub std: f64,
    pub min: f64,
    pub max: f64,
    /// `(q, value)` pairs for the quantiles in [`QUANTILES`], linear interpolation.
    pub quantiles: Vec<(f64, f64)>,
    /// Up to `BINS` bins at the data's deciles over [min, max], so each
    /// holds about a tenth of the rows (fewer bins where values tie): the
    /// edges ascend, a value belongs to the last edge at or below it.
    pub histogram: Histogram,
    /// Categorical features: each category's code (the value the model
    /// sees), its label and its count. A live value that is none of these
    /// codes is an unseen category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<Category>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Category {
    pub label: String,
    pub value: f64,
    pub count: usize,
}

/// Most distinct values `--categorical` takes on a column: past it the
/// column is not categorical in any useful sense.
pub const MAX_CATEGORIES: usize = 256;

/// Statistics of a categorical feature: the numeric ones of its codes and
/// the frequency of each category. `labels[i]` names code `i` (hone's
/// encoding); without labels, the distinct values seen are the categories.
pub fn categorical_stats(
    name: &str,
    values: &[f64],
    labels: Option<&[String]>,
) -> crate::Result<FeatureStats> {
    let codes: Vec<(String, f64)> = match labels {
        Some(l) => l
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as f64))
            .collect(),
        None => {
            let mut d: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
            d.sort_by(f64::total_cmp);
            d.dedup();
            if d.len() > MAX_CATEGORIES {
                return crate::error::err(format!(
                    "column {name:?} has over {MAX_CATEGORIES} distinct values; is it really categorical?"
                ));
            }
            d.into_iter().map(|v| (format!("{v}"), v)).collect()
        }
    };
    let categories = codes
        .into_iter()
        .map(|(label, value)| Category {
            count: values.iter().filter(|&&v| v == value).count(),
            label,
            value,
        })
        .collect();
    Ok(FeatureStats {
        categories: Some(categories),
        ..feature_stats(name, values)
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub edges: Vec<f64>,
    pub counts: Vec<usize>,
}

pub fn feature_stats(name: &str, values: &[f64]) -> FeatureStats {
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n.max(1) as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n.max(1) as f64;
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let min = sorted.first().copied().unwrap_or(0.0);
    let max = sorted.last().copied().unwrap_or(0.0);
    let quantile = |q: f64| {
        if sorted.is_empty() {
            return 0.0;
        }
        let pos = q * (n - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = pos.ceil() as usize;
        sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
    };
    // Decile edges, ties collapsed: with equal-width bins a skewed
    // feature puts most rows in two bins and leaves the tail ones with 0-2
    // rows, which no sample can compare against.
    let mut edges: Vec<f64> = (0..=BINS)
        .map(|i| quantile(i as f64 / BINS as f64))
        .collect();
    edges.dedup();
    if edges.len() < 2 {
        edges = vec![min, max];
    }
    let bins = edges.len() - 1;
    let mut counts = vec![0usize; bins];
    for &v in values {
        let b = edges
            .partition_point(|e| *e <= v)
            .saturating_sub(1)
            .min(bins - 1);
        counts[b] += 1;
    }
    FeatureStats {
        name: name.to_string(),
        count: n,
        mean,
        std: var.sqrt(),
        min,
        max,
        quantiles: QUANTILES.iter().map(|&q| (q, quantile(q))).collect(),
        histogram: Histogram { edges, counts },
        categories: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_one_to_ten() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        let s = feature_stats("x", &v);
        assert_eq!(s.count, 10);
        assert_eq!(s.mean, 5.5);
        assert!((s.std - 8.25f64.sqrt()).abs() < 1e-12);
        assert_eq!((s.min, s.max), (1.0, 10.0));
        assert_eq!(s.quantiles[3], (0.5, 5.5));
        assert_eq!(s.histogram.counts.iter().sum::<usize>(), 10);
        assert_eq!(s.histogram.counts[BINS - 1], 1);
        assert!(s.categories.is_none());
    }

    #[test]
    fn skewed_features_get_bins_that_all_hold_data() {
        // Mostly small values, a long tail: equal-width bins would leave
        // the top ones nearly empty.
        let v: Vec<f64> = (0..1000).map(|i| (f64::from(i) / 100.0).exp()).collect();
        let s = feature_stats("area", &v);
        assert_eq!(s.histogram.counts.len(), BINS);
        assert!(
            s.histogram.counts.iter().all(|&c| (90..=110).contains(&c)),
            "{:?}",
            s.histogram.counts
        );
        // Ties collapse bins instead of leaving empty ones.
        let ties: Vec<f64> = (0..100)
            .map(|i| if i < 80 { 0.0 } else { f64::from(i) })
            .collect();
        let s = feature_stats("t", &ties);
        assert!(
            s.histogram.counts.iter().all(|&c| c > 0),
            "{:?}",
            s.histogram
        );
        assert_eq!(s.histogram.counts.iter().sum::<usize>(), 100);
    }

    #[test]
    fn category_frequencies() {
        let labels = ["red".to_string(), "blue".into(), "green".into()];
        let s = categorical_stats("c", &[0.0, 1.0, 1.0, 2.0, 1.0], Some(&labels)).unwrap();
        let c = s.categories.unwrap();
        assert_eq!(c.iter().map(|c| c.count).collect::<Vec<_>>(), [1, 3, 1]);
        assert_eq!(c[1].label, "blue");
        let s = categorical_stats("k", &[7.0, 3.0, 7.0], None).unwrap();
        let c = s.categories.unwrap();
        assert_eq!((c[0].value, c[0].count, c[1].label.as_str()), (3.0, 1, "7"));
        let many: Vec<f64> = (0..300).map(f64::from).collect();
        assert!(
            categorical_stats("k", &many, None)
                .unwrap_err()
                .to_string()
                .contains("256")
        );
    }
}
