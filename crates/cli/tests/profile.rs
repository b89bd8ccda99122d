//! `hone profile` on models hone did not train (the shared digits CNN and
//! wine MLP), and `hone serve` measuring drift against those profiles and
//! against a hone model's card: the reference data itself is stable, one
//! shifted feature is flagged and only that one.

use std::path::Path;

mod common;
use common::{ServeProcess, hone, s};

/// The rows of a CSV without its `label` column, as numbers.
fn rows(csv: &Path) -> (Vec<String>, Vec<Vec<f64>>) {
    let text = std::fs::read_to_string(csv).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    let label = header.iter().position(|h| h == "label");
    let rows = lines
        .map(|l| {
            l.split(',')
                .enumerate()
                .filter(|(i, _)| Some(*i) != label)
                .map(|(_, v)| v.parse().unwrap())
                .collect()
        })
        .collect();
    let names = header.into_iter().filter(|h| h != "label").collect();
    (names, rows)
}

fn send(server: &ServeProcess, model: &str, shape_tail: &[usize], rows: &[Vec<f64>]) {
    for chunk in rows.chunks(50) {
        let mut shape = vec![chunk.len()];
        shape.extend_from_slice(shape_tail);
        let data: Vec<f64> = chunk.iter().flatten().copied().collect();
        let body = serde_json::json!({"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": data}]});
        let (status, text) = server.post(&format!("/v2/models/{model}/infer"), &body.to_string());
        assert_eq!(status, 200, "{text}");
    }
}

/// The drift JSON once the worker has binned `n` rows.
fn drift(server: &ServeProcess, model: &str, n: usize) -> serde_json::Value {
    for _ in 0..300 {
        let (status, text) = server.get(&format!("/v2/models/{model}/drift"));
        assert_eq!(status, 200, "{text}");
        let d: serde_json::Value = serde_json::from_str(&text).unwrap();
        if d["rows"].as_u64() == Some(n as u64) && d["output_rows"].as_u64() == Some(n as u64) {
            return d;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{model}: the window never reached {n} rows");
}

fn psis(d: &serde_json::Value, side: &str) -> Vec<(String, f64)> {
    d[side]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["psi"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn profiles_of_other_models_drive_live_drift() {
    let Some(m) = common::shared("profiles_of_other_models_drive_live_drift") else {
        return;
    };
    let d = common::tmp("profile", "serve");
    let repo = d.join("repo");
    // Every request sampled (the default budget is 1000 rows a second):
    // the test counts rows exactly.
    let all = "parameters { key: \"drift_max_rows_per_second\" value: { string_value: \"1000000000\" } }\n";
    let place = |name: &str, file: &Path| {
        std::fs::create_dir_all(repo.join(name).join("1")).unwrap();
        std::fs::write(repo.join(name).join("config.pbtxt"), all).unwrap();
        std::fs::copy(file, repo.join(name).join("1/model.onnx")).unwrap();
        repo.join(name).join("1/model.onnx")
    };
    let wine_csv = m.join("tabular/wine/train.csv");
    let digits_csv = m.join("digits_cnn/train.csv");
    for (name, file, csv) in [
        ("wine", m.join("mlp/mlp_wine.onnx"), &wine_csv),
        ("wine_shifted", m.join("mlp/mlp_wine.onnx"), &wine_csv),
        ("digits", m.join("digits_cnn/digits_cnn.onnx"), &digits_csv),
    ] {
        let model = place(name, &file);
        let out = hone(&["profile", s(csv), "--model", s(&model), "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(repo.join(name).join("1/model.profile.json").is_file());
        let want = if name == "digits" { (64, 10) } else { (13, 3) };
        assert_eq!(
            (
                p["inputs"].as_array().unwrap().len(),
                p["outputs"].as_array().unwrap().len()
            ),
            want
        );
    }
    // A hone-trained model: the card's reference, no profile needed.
    let bc = m.join("tabular/breast_cancer");
    std::fs::create_dir_all(repo.join("bc/1")).unwrap();
    let out = hone(&[
        "train",
        s(&bc.join("train.csv")),
        "--target",
        "label",
        "-o",
        s(&repo.join("bc/1/model.onnx")),
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let server = ServeProcess::start(&repo);
    let (names, wine) = rows(&wine_csv);
    send(&server, "wine", &[13], &wine);
    let dw = drift(&server, "wine", wine.len());
    assert_eq!(dw["source"], "model.profile.json");
    assert_eq!(psis(&dw, "features")[0].0, "alcohol", "{dw}");
    for (n, v) in psis(&dw, "features")
        .into_iter()
        .chain(psis(&dw, "outputs"))
    {
        assert!(v < 0.1, "{n}: {v} on the reference data itself");
    }
    // Alcohol moved by two standard deviations.
    let alcohol: Vec<f64> = wine.iter().map(|r| r[0]).collect();
    let mean = alcohol.iter().sum::<f64>() / alcohol.len() as f64;
    let sd =
        (alcohol.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / alcohol.len() as f64).sqrt();
    let shifted: Vec<Vec<f64>> = wine
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r[0] += 2.0 * sd;
            r
        })
        .collect();
    send(&server, "wine_shifted", &[13], &shifted);
    let ds = drift(&server, "wine_shifted", shifted.len());
    for (n, v) in psis(&ds, "features") {
        if n == names[0] {
            assert!(v > 0.25, "{n} shifted: {v}");
        } else {
            assert!(v < 0.1, "{n} untouched: {v}");
        }
    }
    // The digits CNN: 64 pixel columns fed as [1, 8, 8] images.
    let (_, digits) = rows(&digits_csv);
    send(&server, "digits", &[1, 8, 8], &digits);
    let dd = drift(&server, "digits", digits.len());
    assert_eq!(psis(&dd, "features").len(), 64);
    assert!(psis(&dd, "features").iter().all(|(_, v)| *v < 0.1), "{dd}");
    assert_eq!(psis(&dd, "outputs").len(), 10);
    // The hone model's card.
    let (status, text) = server.get("/v2/models/bc/drift");
    assert_eq!(status, 200, "{text}");
    let db: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(db["source"], "model.card.json");
    assert_eq!(db["features"].as_array().unwrap().len(), 30);
}

#[test]
fn profile_refuses_bad_input_clearly() {
    let d = common::tmp("profile", "bad");
    let out = hone(&[
        "profile",
        "/nonexistent.csv",
        "--model",
        "/nonexistent.onnx",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent.onnx"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let model = d.join("m.onnx");
    std::fs::write(&model, b"not onnx").unwrap();
    let out = hone(&["profile", "/nonexistent.csv", "--model", s(&model)]);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

/// Categorical features carry category frequencies: from `hone train
/// --categorical` (labels from the data) and `hone profile --categorical`
/// (the codes in the data).
#[test]
fn categorical_columns_are_profiled_as_categories() {
    let d = common::tmp("profile", "categorical");
    let csv = d.join("shop.csv");
    let colours = ["red", "green", "blue"];
    let mut text = String::from("amount,colour,label\n");
    for i in 0..300 {
        let c = colours[[0, 0, 0, 1, 1, 2][i % 6]];
        text += &format!("{},{c},{}\n", (i % 17) as f64 * 1.5, i % 2);
    }
    std::fs::write(&csv, text).unwrap();
    let model = d.join("m/1/model.onnx");
    let out = hone(&[
        "train",
        s(&csv),
        "--target",
        "label",
        "--categorical",
        "colour",
        "-o",
        s(&model),
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.with_extension("card.json")).unwrap()).unwrap();
    let colour = card["reference"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "colour")
        .unwrap()
        .clone();
    let cats: Vec<(String, u64)> = colour["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["label"].as_str().unwrap().to_string(),
                c["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let total: u64 = cats.iter().map(|c| c.1).sum();
    let share = |l: &str| cats.iter().find(|c| c.0 == l).unwrap().1 as f64 / total as f64;
    assert!((share("red") - 0.5).abs() < 0.05, "{cats:?}");
    assert!((share("blue") - 1.0 / 6.0).abs() < 0.05, "{cats:?}");
    let amount = card["reference"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "amount")
        .unwrap();
    assert!(amount.get("categories").is_none());

    // `hone profile --categorical`: the codes the model sees (the card
    // encodes the text column), as `hone serve` will bin them.
    let codes = csv;
    let p = d.join("p.json");
    let out = hone(&[
        "profile",
        s(&codes),
        "--model",
        s(&model),
        "--categorical",
        "colour",
        "-o",
        s(&p),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prof: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    let c = &prof["inputs"][1]["categories"];
    assert_eq!(c.as_array().unwrap().len(), 3, "{prof}");
    let mut counts: Vec<u64> = c
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_u64().unwrap())
        .collect();
    counts.sort();
    assert_eq!(counts, [50, 100, 150], "{prof}");
    // The same data without --categorical: the card says colour is a
    // category, and its labels are the text of the data.
    let out = hone(&["profile", s(&codes), "--model", s(&model), "-o", s(&p)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prof: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    let mut labels: Vec<&str> = prof["inputs"][1]["categories"]
        .as_array()
        .unwrap_or_else(|| panic!("{prof}"))
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    labels.sort();
    assert_eq!(labels, ["blue", "green", "red"], "{prof}");
    let out = hone(&[
        "profile",
        s(&codes),
        "--model",
        s(&model),
        "--categorical",
        "nope",
        "-o",
        s(&p),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--categorical \"nope\""));
}
