//! From a table of text cells to model inputs and targets.
//!
//! The model hone trains takes one float32 row per example with one value per
//! feature column of the CSV, in CSV order. A numeric column is its value; a
//! categorical column is the index of its category in the list stored here
//! (and in the model card), or -1 for a category never seen in training. The
//! exported graph turns those indices into one-hot vectors itself.

use serde::{Deserialize, Serialize};

use crate::table::Table;
use crate::{DataError, Result, err};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Binary,
    Multiclass,
    Regression,
}

impl Task {
    pub fn parse(s: &str) -> Option<Option<Task>> {
        match s {
            "auto" => Some(None),
            "binary" => Some(Some(Task::Binary)),
            "multiclass" => Some(Some(Task::Multiclass)),
            "regression" => Some(Some(Task::Regression)),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Task::Binary => "binary",
            Task::Multiclass => "multiclass",
            Task::Regression => "regression",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum FeatureKind {
    Numeric,
    Categorical { categories: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    pub name: String,
    #[serde(flatten)]
    pub kind: FeatureKind,
}

impl Feature {
    /// Width of this feature once one-hot encoded.
    pub fn width(&self) -> usize {
        match &self.kind {
            FeatureKind::Numeric => 1,
            FeatureKind::Categorical { categories } => categories.len(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    pub task: Task,
    /// Class labels as written in the data, in class-index order; empty for regression.
    pub classes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encoding {
    pub features: Vec<Feature>,
    pub target: Target,
}

/// Encoded rows: `x` is row-major `[rows, features.len()]`; `y` holds the class
/// index (as a float) or the regression value.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    pub x: Vec<f32>,
    pub y: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

impl Prepared {
    pub fn row(&self, r: usize) -> &[f32] {
        &self.x[r * self.cols..(r + 1) * self.cols]
    }

    /// The given rows, in order.
    pub fn select(&self, rows: &[usize]) -> Prepared {
        let mut x = Vec::with_capacity(rows.len() * self.cols);
        let mut y = Vec::with_capacity(rows.len());
        for &r in rows {
            x.extend_from_slice(self.row(r));
            if !self.y.is_empty() {
                y.push(self.y[r]);
            }
        }
        Prepared {
            x,
            y,
            rows: rows.len(),
            cols: self.cols,
        }
    }
}

const MISSING: [&str; 8] = ["", "na", "nan", "n/a", "null", "none", "?", "-"];

pub(crate) fn is_missing(s: &str) -> bool {
    MISSING.iter().any(|m| m.eq_ignore_ascii_case(s))
}

/// A numeric cell as a finite number, or the error naming where it is
/// (`line` counts the header as line 1; `hint` follows "not a number").
pub(crate) fn parse_number(
    s: &str,
    source: &str,
    line: usize,
    name: &str,
    hint: &str,
) -> Result<f64> {
    if is_missing(s) {
        return err(format!(
            "{source}: line {line}, column {name:?}: missing value ({s:?}); fill or drop the row first"
        ));
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => err(format!(
            "{source}: line {line}, column {name:?}: {s:?} is not a finite number"
        )),
        Err(_) => err(format!(
            "{source}: line {line}, column {name:?}: {s:?} is not a number{hint}"
        )),
    }
}

/// Parses one numeric cell; `hint` follows "not a number" in its error.
fn number(t: &Table, col: usize, row: usize, hint: &str) -> Result<f64> {
    parse_number(
        &t.columns[col][row],
        &t.source,
        row + 2,
        &t.names[col],
        hint,
    )
}

pub(crate) fn categorical_hint(name: &str) -> String {
    format!(" (pass --categorical {name} to one-hot encode a text column)")
}

impl Encoding {
    /// Learns the encoding from training data: which columns are features,
    /// the categories of categorical columns, the task and the class labels.
    pub fn fit(
        t: &Table,
        target: &str,
        task: Option<Task>,
        categorical: &[String],
    ) -> Result<Encoding> {
        let target_col = t.column(target).ok_or_else(|| {
            DataError::Invalid(format!(
                "{}: no column named {target:?} to predict (the columns are {}; --target names the one to predict)",
                t.source,
                t.names.join(", ")
            ))
        })?;
        for c in categorical {
            if t.column(c).is_none() {
                return err(format!("{}: --categorical {c:?}: no such column", t.source));
            }
            if c == target {
                return err(format!(
                    "--categorical {c:?} names the target; string targets are handled without it"
                ));
            }
        }
        if t.names.len() < 2 {
            return err(format!(
                "{}: no feature columns besides the target",
                t.source
            ));
        }
        let mut features = Vec::new();
        for (c, name) in t.names.iter().enumerate() {
            if c == target_col {
                continue;
            }
            if categorical.contains(name) {
                let mut cats: Vec<String> = Vec::new();
                for (r, s) in t.columns[c].iter().enumerate() {
                    if is_missing(s) {
                        return err(format!(
                            "{}: line {}, column {name:?}: missing value ({s:?}); fill or drop the row first",
                            t.source,
                            r + 2
                        ));
                    }
                    if !cats.contains(s) {
                        cats.push(s.clone());
                    }
                }
                cats.sort();
                if cats.len() < 2 {
                    return err(format!(
                        "{}: column {name:?} is constant (every row is {:?}); drop it",
                        t.source, cats[0]
                    ));
                }
                features.push(Feature {
                    name: name.clone(),
                    kind: FeatureKind::Categorical { categories: cats },
                });
            } else {
                let hint = categorical_hint(name);
                let mut lo = f64::INFINITY;
                let mut hi = f64::NEG_INFINITY;
                for r in 0..t.rows() {
                    let v = number(t, c, r, &hint)?;
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
                if lo == hi {
                    return err(format!(
                        "{}: column {name:?} is constant (every row is {lo}); it carries no information, drop it",
                        t.source
                    ));
                }
                features.push(Feature {
                    name: name.clone(),
                    kind: FeatureKind::Numeric,
                });
            }
        }
        let target = fit_target(t, target_col, task)?;
        Ok(Encoding { features, target })
    }

    pub fn input_width(&self) -> usize {
        self.features.len()
    }

    /// Width after one-hot expansion: what the first dense layer sees.
    pub fn expanded_width(&self) -> usize {
        self.features.iter().map(Feature::width).sum()
    }

    /// Number of model outputs: classes for multiclass, else one.
    pub fn output_width(&self) -> usize {
        match self.target.task {
            Task::Multiclass => self.target.classes.len(),
            _ => 1,
        }
    }

    /// Encodes a table that has the same feature columns (by name; order may
    /// differ) and, when `with_target`, the target column.
    pub fn apply(&self, t: &Table, with_target: bool) -> Result<Prepared> {
        let mut cols = Vec::with_capacity(self.features.len());
        for f in &self.features {
            cols.push(t.column(&f.name).ok_or_else(|| {
                DataError::Invalid(format!(
                    "{}: the model needs column {:?}, which is missing",
                    t.source, f.name
                ))
            })?);
        }
        let rows = t.rows();
        let width = self.features.len();
        let mut x = vec![0f32; rows * width];
        for (j, (f, &c)) in self.features.iter().zip(&cols).enumerate() {
            match &f.kind {
                FeatureKind::Numeric => {
                    let hint = categorical_hint(&f.name);
                    for r in 0..rows {
                        x[r * width + j] = number(t, c, r, &hint)? as f32;
                    }
                }
                FeatureKind::Categorical { categories } => {
                    for r in 0..rows {
                        let s = &t.columns[c][r];
                        x[r * width + j] = categories
                            .iter()
                            .position(|k| k == s)
                            .map_or(-1.0, |i| i as f32);
                    }
                }
            }
        }
        let mut y = Vec::new();
        if with_target {
            let c = t.column(&self.target.name).ok_or_else(|| {
                DataError::Invalid(format!(
                    "{}: no target column {:?}",
                    t.source, self.target.name
                ))
            })?;
            y.reserve(rows);
            for r in 0..rows {
                y.push(self.target_value(t, c, r)?);
            }
        }
        Ok(Prepared {
            x,
            y,
            rows,
            cols: width,
        })
    }

    fn target_value(&self, t: &Table, c: usize, r: usize) -> Result<f32> {
        let s = &t.columns[c][r];
        if self.target.task == Task::Regression {
            return Ok(number(t, c, r, "")? as f32);
        }
        if is_missing(s) {
            return err(format!(
                "{}: line {}, target column {:?}: missing label",
                t.source,
                r + 2,
                t.names[c]
            ));
        }
        if let Some(i) = self.target.classes.iter().position(|k| k == s) {
            return Ok(i as f32);
        }
        // Numeric labels may be written differently ("1" vs "1.0").
        if let Ok(v) = s.parse::<f64>()
            && let Some(i) = self
                .target
                .classes
                .iter()
                .position(|k| k.parse::<f64>().ok() == Some(v))
        {
            return Ok(i as f32);
        }
        err(format!(
            "{}: line {}, target column {:?}: label {s:?} was not seen in training (classes: {})",
            t.source,
            r + 2,
            t.names[c],
            self.target.classes.join(", ")
        ))
    }
}

fn fit_target(t: &Table, c: usize, task: Option<Task>) -> Result<Target> {
    let name = t.names[c].clone();
    let cells = &t.columns[c];
    for (r, s) in cells.iter().enumerate() {
        if is_missing(s) {
            return err(format!(
                "{}: line {}, target column {name:?}: missing label",
                t.source,
                r + 2
            ));
        }
    }
    let numeric: Option<Vec<f64>> = cells.iter().map(|s| s.parse::<f64>().ok()).collect();
    let mut distinct: Vec<String> = Vec::new();
    for s in cells {
        if !distinct.contains(s) {
            distinct.push(s.clone());
        }
        if distinct.len() > 1000 {
            break;
        }
    }
    let task = match task {
        Some(Task::Regression) => {
            if numeric.is_none() {
                return err(format!(
                    "{}: target column {name:?} has text labels; --task regression needs numbers",
                    t.source
                ));
            }
            Task::Regression
        }
        Some(k) => k,
        None => match &numeric {
            None => {
                if distinct.len() <= 2 {
                    Task::Binary
                } else {
                    Task::Multiclass
                }
            }
            Some(v) => {
                let integral = v.iter().all(|x| x.fract() == 0.0);
                if integral && distinct.len() <= 2 {
                    Task::Binary
                } else if integral && distinct.len() <= 20 {
                    Task::Multiclass
                } else {
                    Task::Regression
                }
            }
        },
    };
    if task == Task::Regression {
        let v = numeric.unwrap_or_default();
        if v.iter().all(|x| *x == v[0]) {
            return err(format!(
                "{}: target column {name:?} is constant; there is nothing to learn",
                t.source
            ));
        }
        return Ok(Target {
            name,
            task,
            classes: Vec::new(),
        });
    }
    // Classes in a stable order: numeric labels by value, text labels alphabetically.
    let mut classes = distinct;
    match &numeric {
        Some(_) => {
            classes.sort_by(|a, b| {
                let (x, y) = (
                    a.parse::<f64>().unwrap_or(0.0),
                    b.parse::<f64>().unwrap_or(0.0),
                );
                x.total_cmp(&y)
            });
            classes.dedup_by(|a, b| a.parse::<f64>().ok() == b.parse::<f64>().ok());
        }
        None => classes.sort(),
    }
    if classes.len() < 2 {
        return err(format!(
            "{}: target column {name:?} has only one class ({:?}); a classifier needs at least two",
            t.source, classes[0]
        ));
    }
    if task == Task::Binary && classes.len() != 2 {
        return err(format!(
            "{}: --task binary, but target column {name:?} has {} classes; use --task multiclass",
            t.source,
            classes.len()
        ));
    }
    if classes.len() > 1000 {
        return err(format!(
            "{}: target column {name:?} has over 1000 distinct values; is it a regression target? (--task regression)",
            t.source
        ));
    }
    Ok(Target {
        name,
        task,
        classes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(csv: &str) -> Table {
        Table::parse_csv(csv.as_bytes(), "t.csv").unwrap()
    }

    #[test]
    fn binary_with_text_labels_and_categorical() {
        let t = table("a,color,y\n1,red,yes\n2,blue,no\n3,red,yes\n");
        let e = Encoding::fit(&t, "y", None, &["color".into()]).unwrap();
        assert_eq!(e.target.task, Task::Binary);
        assert_eq!(e.target.classes, vec!["no", "yes"]);
        assert_eq!(e.expanded_width(), 3);
        let p = e.apply(&t, true).unwrap();
        assert_eq!(p.x, vec![1.0, 1.0, 2.0, 0.0, 3.0, 1.0]);
        assert_eq!(p.y, vec![1.0, 0.0, 1.0]);
        let unseen = table("a,color,y\n1,green,yes\n");
        assert_eq!(e.apply(&unseen, true).unwrap().x, vec![1.0, -1.0]);
    }

    #[test]
    fn task_detection() {
        let t = table("a,y\n1,0\n2,1\n3,2\n4,1\n");
        let e = Encoding::fit(&t, "y", None, &[]).unwrap();
        assert_eq!(e.target.task, Task::Multiclass);
        assert_eq!(e.output_width(), 3);
        let t = table("a,y\n1,0.5\n2,1.25\n3,2\n");
        assert_eq!(
            Encoding::fit(&t, "y", None, &[]).unwrap().target.task,
            Task::Regression
        );
    }

    #[test]
    fn errors_name_row_and_column() {
        let bad = |csv: &str, cat: &[&str], want: &str| {
            let t = table(csv);
            let cat: Vec<String> = cat.iter().map(|s| s.to_string()).collect();
            let e = Encoding::fit(&t, "y", None, &cat).unwrap_err();
            assert!(e.to_string().contains(want), "{e} does not contain {want}");
        };
        bad("a,y\n1,0\n,1\n", &[], "line 3, column \"a\": missing value");
        bad("a,y\n1,0\nNA,1\n", &[], "missing value");
        bad("a,y\n1,0\nabc,1\n", &[], "--categorical a");
        bad("a,b,y\n1,5,0\n2,5,1\n", &[], "column \"b\" is constant");
        bad("a,y\n1,1\n2,1\n", &[], "only one class");
        bad("a,y\n1,0\n2,1\n", &["c"], "no such column");
        bad("a,c,y\n1,x,0\n2,x,1\n", &["c"], "constant");
        let t = table("a,y\n1,0\n2,1\n");
        assert!(Encoding::fit(&t, "label", None, &[]).is_err());
    }
}
