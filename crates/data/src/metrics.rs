//! Evaluation metrics. Predictions are what the model outputs: P(class 1) for
//! binary models, one probability per class (row-major) for multiclass, the
//! value for regression.

use serde::Serialize;

use crate::DataError;

/// Which metric a user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Accuracy,
    Auc,
    F1,
    Logloss,
    Mse,
    Mae,
    R2,
}

impl Metric {
    pub fn parse(s: &str) -> Option<Metric> {
        Some(match s {
            "accuracy" | "acc" => Metric::Accuracy,
            "auc" => Metric::Auc,
            "f1" => Metric::F1,
            "logloss" | "log-loss" => Metric::Logloss,
            "mse" => Metric::Mse,
            "mae" => Metric::Mae,
            "r2" => Metric::R2,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Auc => "auc",
            Metric::F1 => "f1",
            Metric::Logloss => "logloss",
            Metric::Mse => "mse",
            Metric::Mae => "mae",
            Metric::R2 => "r2",
        }
    }

    /// True when larger values are better.
    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            Metric::Accuracy | Metric::Auc | Metric::F1 | Metric::R2
        )
    }

    pub fn is_regression(self) -> bool {
        matches!(self, Metric::Mse | Metric::Mae | Metric::R2)
    }
}

/// Every metric that applies to a task, plus the confusion matrix for classification.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Report {
    pub rows: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auc: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub f1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logloss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mse: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rmse: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mae: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r2: Option<f64>,
    /// `confusion[true][predicted]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub confusion: Vec<Vec<usize>>,
}

impl Report {
    pub fn get(&self, m: Metric) -> Option<f64> {
        match m {
            Metric::Accuracy => self.accuracy,
            Metric::Auc => self.auc,
            Metric::F1 => self.f1,
            Metric::Logloss => self.logloss,
            Metric::Mse => self.mse,
            Metric::Mae => self.mae,
            Metric::R2 => self.r2,
        }
    }

    /// The metrics that are present, in display order.
    pub fn entries(&self) -> Vec<(&'static str, f64)> {
        [
            ("accuracy", self.accuracy),
            ("auc", self.auc),
            ("f1", self.f1),
            ("logloss", self.logloss),
            ("mse", self.mse),
            ("rmse", self.rmse),
            ("mae", self.mae),
            ("r2", self.r2),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
}

const EPS: f64 = 1e-15;

/// The report for a task: binary from P(class 1), multiclass from `k`
/// probabilities per row, regression from values.
pub fn for_task(task: crate::Task, k: usize, p: &[f32], y: &[f32]) -> Report {
    match task {
        crate::Task::Binary => binary(p, y),
        crate::Task::Multiclass => multiclass(p, k, y),
        crate::Task::Regression => regression(p, y),
    }
}

/// Scores predictions against labels: the task it judged by (the hint,
/// a regression `metric`, else the output's shape), the report, and
/// whether softmax was applied because rows did not sum to one.
pub fn score(
    task_hint: Option<crate::Task>,
    metric: Option<Metric>,
    mut values: Vec<f32>,
    width: usize,
    labels: &[f32],
) -> crate::Result<(crate::Task, Report, bool)> {
    let in_01 = values.iter().all(|&p| (0.0..=1.0).contains(&p));
    let labels_01 = labels.iter().all(|&y| y == 0.0 || y == 1.0);
    let task = match (task_hint, metric) {
        (Some(t), _) => t,
        (None, Some(m)) if m.is_regression() => crate::Task::Regression,
        _ if width > 1 => crate::Task::Multiclass,
        _ if in_01 && labels_01 => crate::Task::Binary,
        _ => crate::Task::Regression,
    };
    let mut softmax_applied = false;
    let report = match task {
        crate::Task::Regression => {
            if width != 1 {
                return Err(DataError::Invalid(format!(
                    "regression metrics need one output column; the output has {width}"
                )));
            }
            regression(&values, labels)
        }
        crate::Task::Binary if width == 1 => binary(&values, labels),
        _ => {
            if width < 2 {
                return Err(DataError::Invalid(format!(
                    "classification over several classes needs one output column per class; the output has {width}"
                )));
            }
            if let Some(bad) = labels
                .iter()
                .find(|&&y| y < 0.0 || y as usize >= width || y.fract() != 0.0)
            {
                return Err(DataError::Invalid(format!(
                    "label {bad} is not a class index below {width} (the output's width)"
                )));
            }
            softmax_applied = to_probabilities(&mut values, width);
            if width == 2 {
                let p1: Vec<f32> = values.chunks(2).map(|r| r[1]).collect();
                binary(&p1, labels)
            } else {
                multiclass(&values, width, labels)
            }
        }
    };
    if let Some(m) = metric
        && report.get(m).is_none()
    {
        return Err(DataError::Invalid(format!(
            "metric {} does not apply to a {} model",
            m.name(),
            task.name()
        )));
    }
    Ok((task, report, softmax_applied))
}

/// Rows of `width` class scores as probabilities: softmax unless every row
/// already sums to one with no negative score. True when softmax ran.
pub fn to_probabilities(values: &mut [f32], width: usize) -> bool {
    let sums_to_one = values
        .chunks(width.max(1))
        .all(|r| r.iter().all(|&p| p >= 0.0) && (r.iter().sum::<f32>() - 1.0).abs() < 1e-3);
    if !sums_to_one {
        softmax(values, width.max(1));
    }
    !sums_to_one
}

fn softmax(v: &mut [f32], k: usize) {
    for row in v.chunks_mut(k) {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut s = 0.0;
        for x in row.iter_mut() {
            *x = (*x - m).exp();
            s += *x;
        }
        for x in row.iter_mut() {
            *x /= s;
        }
    }
}

/// Binary classification: `p[i]` = P(class 1), `y[i]` ∈ {0, 1}.
pub fn binary(p: &[f32], y: &[f32]) -> Report {
    let n = y.len();
    let mut confusion = vec![vec![0usize; 2]; 2];
    let mut ll = 0.0;
    for (&pi, &yi) in p.iter().zip(y) {
        let t = (yi > 0.5) as usize;
        let pred = (pi >= 0.5) as usize;
        confusion[t][pred] += 1;
        let q = (pi as f64).clamp(EPS, 1.0 - EPS);
        ll -= if t == 1 { q.ln() } else { (1.0 - q).ln() };
    }
    let correct = confusion[0][0] + confusion[1][1];
    Report {
        rows: n,
        accuracy: Some(correct as f64 / n.max(1) as f64),
        auc: auc(p, y),
        f1: Some(f1_of(&confusion, 1)),
        logloss: Some(ll / n.max(1) as f64),
        confusion,
        ..Default::default()
    }
}

/// Multiclass: `p` is row-major `[n, k]` class probabilities, `y[i]` the class index.
pub fn multiclass(p: &[f32], k: usize, y: &[f32]) -> Report {
    let n = y.len();
    let mut confusion = vec![vec![0usize; k]; k];
    let mut ll = 0.0;
    for (i, &yi) in y.iter().enumerate() {
        let row = &p[i * k..(i + 1) * k];
        let pred = argmax(row);
        let t = (yi as usize).min(k - 1);
        confusion[t][pred] += 1;
        ll -= (row[t] as f64).clamp(EPS, 1.0).ln();
    }
    let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
    let macro_f1 = (0..k).map(|c| f1_of(&confusion, c)).sum::<f64>() / k as f64;
    // AUC: for two columns, that of column 1; otherwise macro one-vs-rest.
    let auc = if k == 2 {
        let p1: Vec<f32> = (0..n).map(|i| p[i * 2 + 1]).collect();
        auc(&p1, y)
    } else {
        let mut sum = 0.0;
        let mut m = 0;
        for c in 0..k {
            let pc: Vec<f32> = (0..n).map(|i| p[i * k + c]).collect();
            let yc: Vec<f32> = y.iter().map(|&t| (t as usize == c) as u8 as f32).collect();
            if let Some(a) = auc(&pc, &yc) {
                sum += a;
                m += 1;
            }
        }
        (m > 0).then(|| sum / m as f64)
    };
    Report {
        rows: n,
        accuracy: Some(correct as f64 / n.max(1) as f64),
        auc,
        f1: Some(macro_f1),
        logloss: Some(ll / n.max(1) as f64),
        confusion,
        ..Default::default()
    }
}

pub fn regression(pred: &[f32], y: &[f32]) -> Report {
    let n = y.len().max(1) as f64;
    let mean = y.iter().map(|&v| v as f64).sum::<f64>() / n;
    let (mut se, mut ae, mut tot) = (0.0, 0.0, 0.0);
    for (&p, &t) in pred.iter().zip(y) {
        let d = p as f64 - t as f64;
        se += d * d;
        ae += d.abs();
        tot += (t as f64 - mean).powi(2);
    }
    Report {
        rows: y.len(),
        mse: Some(se / n),
        rmse: Some((se / n).sqrt()),
        mae: Some(ae / n),
        r2: (tot > 0.0).then(|| 1.0 - se / tot),
        ..Default::default()
    }
}

pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

fn f1_of(confusion: &[Vec<usize>], c: usize) -> f64 {
    let tp = confusion[c][c] as f64;
    let fp: f64 = (0..confusion.len())
        .filter(|&t| t != c)
        .map(|t| confusion[t][c] as f64)
        .sum();
    let fneg: f64 = (0..confusion.len())
        .filter(|&p| p != c)
        .map(|p| confusion[c][p] as f64)
        .sum();
    if tp == 0.0 {
        0.0
    } else {
        2.0 * tp / (2.0 * tp + fp + fneg)
    }
}

/// Area under the ROC curve by the rank statistic, ties counted half.
/// `None` when only one class is present.
pub fn auc(score: &[f32], y: &[f32]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..y.len()).collect();
    idx.sort_by(|&a, &b| score[a].total_cmp(&score[b]));
    let pos = y.iter().filter(|&&v| v > 0.5).count() as f64;
    let neg = y.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    // Average ranks over ties.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && score[idx[j + 1]] == score[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if y[k] > 0.5 {
                rank_sum_pos += avg_rank;
            }
        }
        i = j + 1;
    }
    Some((rank_sum_pos - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_metrics() {
        let r = binary(&[0.9, 0.2, 0.6, 0.4], &[1.0, 0.0, 0.0, 1.0]);
        assert_eq!(r.accuracy, Some(0.5));
        assert_eq!(r.confusion, vec![vec![1, 1], vec![1, 1]]);
        // Positives scored 0.9, 0.4; negatives 0.2, 0.6: 3 of 4 pairs ordered.
        assert_eq!(r.auc, Some(0.75));
        assert_eq!(r.f1, Some(0.5));
        let ll = -((0.9f64).ln() + (0.8f64).ln() + (0.4f64).ln() + (0.4f64).ln()) / 4.0;
        assert!((r.logloss.unwrap() - ll).abs() < 1e-6);
        assert_eq!(auc(&[0.5, 0.5], &[0.0, 1.0]), Some(0.5));
        assert_eq!(auc(&[0.1, 0.2], &[1.0, 1.0]), None);
    }

    #[test]
    fn multiclass_and_regression() {
        let p = [0.7, 0.2, 0.1, 0.1, 0.8, 0.1, 0.3, 0.3, 0.4];
        let r = multiclass(&p, 3, &[0.0, 1.0, 1.0]);
        assert!((r.accuracy.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.confusion[1][2], 1);
        let r = regression(&[1.0, 2.0, 3.0], &[1.0, 2.0, 5.0]);
        assert!((r.mse.unwrap() - 4.0 / 3.0).abs() < 1e-12);
        assert!((r.mae.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        // y mean 8/3; total = (5/3)^2 + (2/3)^2 + (7/3)^2 = 78/9
        assert!((r.r2.unwrap() - (1.0 - 4.0 / (78.0 / 9.0))).abs() < 1e-12);
    }
}
