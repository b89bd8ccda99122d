//! Training is reproducible, and the exported ONNX graph computes what the
//! Rust model computes, checked by running it in ONNX Runtime.

use std::path::PathBuf;

use hone_core::{Backend, Tensor};
use hone_data::{Encoding, Table, Task, npy};
use hone_runtime::{OrtBackend, SessionConfig};
use hone_train::{Mlp, TrainConfig, train};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn breast_cancer() -> Table {
    Table::read_csv(&workspace().join("examples/data/breast_cancer.csv")).unwrap()
}

fn quick(epochs: usize, seed: u64) -> TrainConfig {
    TrainConfig {
        epochs,
        seed,
        early_stopping: None,
        ..Default::default()
    }
}

fn fit(t: &Table, target: &str, task: Option<Task>, cat: &[&str], cfg: &TrainConfig) -> Mlp {
    let cat: Vec<String> = cat.iter().map(|s| s.to_string()).collect();
    let enc = Encoding::fit(t, target, task, &cat).unwrap();
    let data = enc.apply(t, true).unwrap();
    train(&enc, &data, Some(&data), cfg, |_| {}).unwrap()
}

/// Runs the exported model in ORT on the table's rows and compares with
/// the Rust model's predictions.
fn assert_export_matches(model: &Mlp, t: &Table) {
    let data = model.encoding.apply(t, false).unwrap();
    let rust = model.predict(&data.x, data.rows).unwrap();
    let bytes = hone_onnx::encode(&model.to_onnx(&[]));
    let mut ort = OrtBackend::from_bytes(&bytes, &SessionConfig::default()).unwrap();
    let input = Tensor::from_f32(vec![data.rows as i64, data.cols as i64], &data.x).unwrap();
    let out = ort.infer(&[&[input]]).unwrap();
    let served = npy::to_f32(&out[0]).unwrap();
    assert_eq!(
        out[0].shape,
        vec![data.rows as i64, model.encoding.output_width() as i64]
    );
    assert_eq!(rust.len(), served.len());
    let worst = rust
        .iter()
        .zip(&served)
        .map(|(a, b)| (a - b).abs() / a.abs().max(1.0))
        .fold(0f32, f32::max);
    assert!(worst <= 1e-5, "ORT and Rust differ by {worst}");
}

#[test]
fn same_seed_same_weights() {
    let t = breast_cancer();
    let a = fit(&t, "label", None, &[], &quick(3, 7));
    let b = fit(&t, "label", None, &[], &quick(3, 7));
    let c = fit(&t, "label", None, &[], &quick(3, 8));
    assert_eq!(a.layers, b.layers);
    assert_ne!(a.layers, c.layers);
    assert_eq!(
        hone_onnx::encode(&a.to_onnx(&[])),
        hone_onnx::encode(&b.to_onnx(&[]))
    );
}

#[test]
fn binary_export_matches_ort() {
    let t = breast_cancer();
    let m = fit(&t, "label", None, &[], &quick(5, 0));
    assert_eq!(m.encoding.target.task, Task::Binary);
    assert_export_matches(&m, &t);
    // Trained briefly it is already far better than chance.
    let data = m.encoding.apply(&t, true).unwrap();
    assert!(m.evaluate(&data).unwrap().accuracy.unwrap() > 0.85);
}

/// A synthetic table with a text target, a categorical column and numeric ones.
fn synthetic(rows: usize, regression: bool) -> Table {
    let mut csv = String::from("x1,color,x2,y\n");
    let colors = ["red", "green", "blue"];
    let mut r = hone_data::rng::Rng::new(1);
    for i in 0..rows {
        let x1 = r.uniform(-2.0, 2.0);
        let x2 = r.uniform(0.0, 100.0);
        let c = i % 3;
        let score = x1 + (c as f32) - 1.0 + (x2 - 50.0) / 50.0;
        let y = if regression {
            format!("{}", score * 10.0 + 5.0)
        } else if score < -0.7 {
            "low".into()
        } else if score < 0.7 {
            "mid".into()
        } else {
            "high".into()
        };
        csv += &format!("{x1},{},{x2},{y}\n", colors[c]);
    }
    Table::parse_csv(csv.as_bytes(), "synthetic.csv").unwrap()
}

#[test]
fn multiclass_with_categorical_export_matches_ort() {
    let t = synthetic(300, false);
    let m = fit(&t, "y", None, &["color"], &quick(20, 0));
    assert_eq!(m.encoding.target.task, Task::Multiclass);
    assert_eq!(m.encoding.target.classes, vec!["high", "low", "mid"]);
    assert_eq!(m.encoding.expanded_width(), 5);
    assert_export_matches(&m, &t);
    // A category never seen in training is all zeros in the one-hot block; still runs.
    let unseen = Table::parse_csv(b"x1,color,x2,y\n0.5,purple,10,low\n", "u.csv").unwrap();
    assert_export_matches(&m, &unseen);
    let data = m.encoding.apply(&t, true).unwrap();
    assert!(m.evaluate(&data).unwrap().accuracy.unwrap() > 0.8);
}

#[test]
fn regression_export_matches_ort() {
    let t = synthetic(300, true);
    let m = fit(&t, "y", None, &["color"], &quick(30, 0));
    assert_eq!(m.encoding.target.task, Task::Regression);
    assert_export_matches(&m, &t);
    let data = m.encoding.apply(&t, true).unwrap();
    assert!(m.evaluate(&data).unwrap().r2.unwrap() > 0.8);
}

#[test]
fn early_stopping_keeps_the_best_epoch() {
    let t = breast_cancer();
    let enc = Encoding::fit(&t, "label", None, &[]).unwrap();
    let data = enc.apply(&t, true).unwrap();
    let (tr, va) = hone_data::split::split(data.rows, 0.2, Some(&data.y), 0);
    let (tr, va) = (data.select(&tr), data.select(&va));
    let cfg = TrainConfig {
        epochs: 400,
        early_stopping: Some(5),
        ..Default::default()
    };
    let m = train(&enc, &tr, Some(&va), &cfg, |_| {}).unwrap();
    assert!(m.history.len() < 400, "never stopped");
    assert_eq!(m.history.len(), m.best_epoch + 5);
    let best = m
        .history
        .iter()
        .map(|h| h.val_loss.unwrap())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(m.history[m.best_epoch - 1].val_loss.unwrap(), best);
}

#[test]
fn weight_averaging_is_what_gets_exported() {
    let t = breast_cancer();
    let plain = fit(&t, "label", None, &[], &quick(4, 0));
    let cfg = TrainConfig {
        ema: Some(0.9),
        ..quick(4, 0)
    };
    let averaged = fit(&t, "label", None, &[], &cfg);
    assert_ne!(plain.layers, averaged.layers);
    assert_eq!(averaged.layers, fit(&t, "label", None, &[], &cfg).layers);
    assert_export_matches(&averaged, &t);
}

#[test]
fn fine_tuning_starts_from_the_exported_weights() {
    for (t, target, cat) in [
        (breast_cancer(), "label", vec![]),
        (synthetic(200, true), "y", vec!["color"]),
    ] {
        let m = fit(&t, target, None, &cat, &quick(5, 0));
        let init = hone_train::Init::from_onnx(&m.to_onnx(&[])).unwrap();
        // One epoch at a negligible learning rate: the model must come back as it went in.
        let cfg = TrainConfig {
            init: Some(init),
            lr: Some(1e-12),
            weight_decay: Some(0.0),
            ..quick(1, 0)
        };
        let again = fit(&t, target, None, &cat, &cfg);
        let data = m.encoding.apply(&t, false).unwrap();
        let a = m.predict(&data.x, data.rows).unwrap();
        let b = again.predict(&data.x, data.rows).unwrap();
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs() / x.abs().max(1.0))
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "{target}: {worst}");
    }
}

#[test]
fn distillation_fits_the_teacher_not_the_labels() {
    // A teacher that disagrees with every label: a student that fitted the
    // labels would score high against them, one that fitted the teacher low.
    for (t, target, cat) in [
        (breast_cancer(), "label", vec![]),
        (synthetic(300, false), "y", vec!["color".to_string()]),
    ] {
        let enc = Encoding::fit(&t, target, None, &cat).unwrap();
        let data = enc.apply(&t, true).unwrap();
        let k = enc.output_width();
        let (teacher, flipped): (Vec<f32>, Vec<f32>) = match enc.target.task {
            Task::Binary => (
                data.y.iter().map(|y| 1.0 - y).collect(),
                data.y.iter().map(|y| 1.0 - y).collect(),
            ),
            _ => {
                // Class c's rows are taught to be class c+1.
                let shifted: Vec<f32> = data
                    .y
                    .iter()
                    .map(|&y| ((y as usize + 1) % k) as f32)
                    .collect();
                let probs = shifted
                    .iter()
                    .flat_map(|&c| (0..k).map(move |j| (j == c as usize) as u8 as f32))
                    .collect();
                (probs, shifted)
            }
        };
        let cfg = TrainConfig {
            teacher: Some(teacher),
            ..quick(40, 0)
        };
        let m = train(&enc, &data, None, &cfg, |_| {}).unwrap();
        let p = m.predict(&data.x, data.rows).unwrap();
        let vs_labels = hone_data::metrics::for_task(enc.target.task, k, &p, &data.y);
        let vs_teacher = hone_data::metrics::for_task(enc.target.task, k, &p, &flipped);
        assert!(
            vs_teacher.accuracy.unwrap() > 0.9,
            "{target}: {vs_teacher:?}"
        );
        assert!(vs_labels.accuracy.unwrap() < 0.1, "{target}: {vs_labels:?}");
    }
    // Outputs that do not fit the rows are refused, not silently misread.
    let t = breast_cancer();
    let enc = Encoding::fit(&t, "label", None, &[]).unwrap();
    let data = enc.apply(&t, true).unwrap();
    let cfg = TrainConfig {
        teacher: Some(vec![0.5; data.rows - 1]),
        ..quick(1, 0)
    };
    let err = train(&enc, &data, None, &cfg, |_| {}).unwrap_err();
    assert!(err.to_string().contains("teacher"), "{err}");
}
