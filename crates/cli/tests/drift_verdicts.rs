#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Drift verdicts that hold up on real data: a model shipped on the shared
//! breast-cancer train and validation rows, served, then sent the test rows
//! it never saw (same distribution: at most one of 30 features flagged),
//! then 200 rows with one feature moved by two standard deviations (that
//! feature flagged major), and a window too small to judge. An ensemble in
//! front of the model, with the model's card in its version directory,
//! watches its own inputs the same way.

mod common;

use common::{ServeProcess, hone, s};
use serde_json::{Value, json};

/// The rows of a CSV with a header, label column dropped.
fn rows(path: &std::path::Path) -> (Vec<String>, Vec<Vec<f64>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let head: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let label = head.iter().position(|h| h == "label").unwrap();
    let rows = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.split(',')
                .enumerate()
                .filter(|(i, _)| *i != label)
                .map(|(_, v)| v.parse().unwrap())
                .collect()
        })
        .collect();
    let names = head.into_iter().filter(|h| h != "label").collect();
    (names, rows)
}

/// In requests of up to 50 rows (ship's config batches up to 64).
fn send(server: &ServeProcess, rows: &[Vec<f64>]) {
    send_to(server, "bc", rows);
}

fn send_to(server: &ServeProcess, model: &str, rows: &[Vec<f64>]) {
    for chunk in rows.chunks(50) {
        let data: Vec<f64> = chunk.iter().flatten().copied().collect();
        let body = json!({"inputs": [{"name": "input", "datatype": "FP32",
                           "shape": [chunk.len(), chunk[0].len()], "data": data}]});
        let (code, text) = server.post(&format!("/v2/models/{model}/infer"), &body.to_string());
        assert_eq!(code, 200, "{text}");
    }
}

fn drift(server: &ServeProcess, rows: u64) -> Value {
    drift_of(server, "bc", rows)
}

fn drift_of(server: &ServeProcess, model: &str, rows: u64) -> Value {
    for _ in 0..100 {
        let (code, text) = server.get(&format!("/v2/models/{model}/drift"));
        assert_eq!(code, 200, "{text}");
        let d: Value = serde_json::from_str(&text).unwrap();
        if d["rows"].as_u64() == Some(rows) {
            return d;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the window never reached {rows} rows");
}

fn flagged(d: &Value) -> Vec<String> {
    d["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["verdict"] == "moderate" || f["verdict"] == "major")
        .map(|f| {
            format!(
                "{} {} psi {} expected {}",
                f["name"], f["verdict"], f["psi"], f["expected_psi"]
            )
        })
        .collect()
}

#[test]
fn held_out_rows_stay_stable_and_a_two_sigma_shift_is_major() {
    let Some(shared) = common::shared("held_out_rows_stay_stable_and_a_two_sigma_shift_is_major")
    else {
        return;
    };
    let bc = shared.join("tabular/breast_cancer");
    let d = common::tmp("drift", "verdicts");
    // Train and validation rows together: what a user ships.
    let train = std::fs::read_to_string(bc.join("train.csv")).unwrap();
    let val = std::fs::read_to_string(bc.join("val.csv")).unwrap();
    let csv = d.join("bc.csv");
    std::fs::write(&csv, format!("{train}{}", val.split_once('\n').unwrap().1)).unwrap();
    let repo = d.join("repo");
    let out = hone(&[
        "ship",
        s(&csv),
        "--model-repository",
        s(&repo),
        "--name",
        "bc",
        "--json",
    ]);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["ok"], true, "{r}");

    let (names, test) = rows(&bc.join("test.csv"));
    assert_eq!(test.len(), 114);

    // Too few rows to judge: no band at all.
    let server = ServeProcess::start(&repo);
    send(&server, &test[..33]);
    let small = drift(&server, 33);
    for f in small["features"].as_array().unwrap() {
        assert_eq!(f["verdict"], "not_enough_data", "{f}");
    }
    drop(server);

    // The held-out rows: same distribution, at most one feature flagged.
    let server = ServeProcess::start(&repo);
    send(&server, &test);
    let held = drift(&server, 114);
    let f = flagged(&held);
    assert!(f.len() <= 1, "in-distribution rows flagged: {f:#?}");
    assert!(
        held["outputs"].as_array().unwrap().len() == 1,
        "the card carries the output reference"
    );
    assert!(held["features"][0]["expected_psi"].as_f64().unwrap() > 0.0);
    drop(server);

    // 200 rows (test rows, then validation rows) with mean_area moved by
    // two standard deviations.
    let (_, val_rows) = rows(&bc.join("val.csv"));
    let mut shifted: Vec<Vec<f64>> = test.iter().chain(&val_rows).take(200).cloned().collect();
    let j = names.iter().position(|n| n == "mean_area").unwrap();
    let col: Vec<f64> = shifted.iter().map(|r| r[j]).collect();
    let mean = col.iter().sum::<f64>() / col.len() as f64;
    let sd = (col.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / col.len() as f64).sqrt();
    for r in &mut shifted {
        r[j] += 2.0 * sd;
    }
    let server = ServeProcess::start(&repo);
    send(&server, &shifted);
    let moved = drift(&server, 200);
    let feature = &moved["features"][j];
    assert_eq!(feature["name"], "mean_area");
    assert_eq!(feature["verdict"], "major", "{feature}");
    drop(server);

    // An ensemble in front of bc, bc's card beside its own (empty) model
    // slot: it watches its inputs as bc does.
    let ens = repo.join("bc_ens");
    std::fs::create_dir_all(ens.join("1")).unwrap();
    std::fs::copy(
        repo.join("bc/1/model.card.json"),
        ens.join("1/model.card.json"),
    )
    .unwrap();
    std::fs::write(
        ens.join("config.pbtxt"),
        r#"platform: "ensemble"
max_batch_size: 64
input { name: "input" data_type: TYPE_FP32 dims: [30] }
output { name: "output" data_type: TYPE_FP32 dims: [1] }
ensemble_scheduling { step { model_name: "bc" input_map { key: "input" value: "input" } output_map { key: "output" value: "output" } } }
"#,
    )
    .unwrap();
    let server = ServeProcess::start(&repo);
    send_to(&server, "bc_ens", &shifted);
    let moved = drift_of(&server, "bc_ens", 200);
    assert_eq!(moved["features"][j]["verdict"], "major", "{moved}");
    // The step model saw the same rows.
    assert_eq!(drift(&server, 200)["features"][j]["verdict"], "major");
}
