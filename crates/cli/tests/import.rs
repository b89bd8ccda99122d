//! `hone import` end to end: models trained here in their own frameworks
//! (Keras, scikit-learn, XGBoost, LightGBM, CatBoost) are imported through
//! hone's managed Python environment, checked, served, and answer over V2
//! and TF Serving REST with the framework's own predictions.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{ServeProcess, hone, s, tmp};
use serde_json::{Value, json};

/// The managed environment with every converter, and the models trained in
/// it: (python, model directory). None (after one SKIPPED line) when the
/// environment cannot be built here (no PyPI); CI makes that a failure.
fn models() -> Option<&'static (PathBuf, PathBuf)> {
    static MODELS: OnceLock<Option<(PathBuf, PathBuf)>> = OnceLock::new();
    MODELS
        .get_or_init(|| {
            let out = hone(&[
                "import",
                "--prepare",
                "sklearn,xgboost,lightgbm,catboost,keras",
            ]);
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(
                    std::env::var_os("HONE_REQUIRE_TOOLS").is_none(),
                    "HONE_REQUIRE_TOOLS is set but the import environment cannot be built: {err}"
                );
                eprintln!(
                    "SKIPPED: the import environment cannot be built (no PyPI?): {}",
                    err.lines().last().unwrap_or("")
                );
                return None;
            }
            let python = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            let dir = tmp("import", "models");
            let script = common::workspace().join("crates/cli/tests/import/make_models.py");
            let st = Command::new(&python)
                .arg(&script)
                .arg(&dir)
                .args(["keras", "sklearn", "xgboost", "lightgbm", "catboost"])
                .env("TF_CPP_MIN_LOG_LEVEL", "3")
                .status()
                .expect("run make_models.py");
            assert!(st.success(), "make_models.py failed");
            Some((python, dir))
        })
        .as_ref()
}

/// `hone import ARGS --json`: the report, or panics with hone's words.
fn import(args: &[&str]) -> Value {
    let mut all = vec!["import"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = hone(&all);
    assert!(
        out.status.success(),
        "hone {all:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn expected(dir: &Path, name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.expected.json"))).unwrap())
        .unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<f64>) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Number(n) => out.push(n.as_f64().unwrap()),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

fn close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 + 1e-4 * w.abs(),
            "{what}[{i}]: served {g}, framework {w}"
        );
    }
}

/// The first 64 rows of a CSV as the model's one FP32 input, without the
/// label column `target`.
fn csv_rows(path: &Path, target: &str) -> (usize, usize, Vec<f64>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let skip = header.iter().position(|h| *h == target).unwrap();
    let mut data = Vec::new();
    let mut rows = 0;
    for l in lines.take(64) {
        for (j, c) in l.split(',').enumerate() {
            if j != skip {
                data.push(c.parse::<f64>().unwrap());
            }
        }
        rows += 1;
    }
    (rows, header.len() - 1, data)
}

#[test]
fn every_format_imports_serves_and_answers_as_its_framework() {
    let Some((_, m)) = models() else { return };
    let out = tmp("import", "serve");
    let repo = out.join("repo");
    // (name, source, extra flags, the sample for serving, its label column)
    let cases: [(&str, &str, &[&str], &str, &str); 8] = [
        ("xgb_cancer", "xgb_cancer.json", &[], "cancer.csv", "label"),
        (
            "xgb_diabetes",
            "xgb_diabetes.json",
            &[],
            "diabetes.csv",
            "progression",
        ),
        ("lgb_wine", "lgb_wine.txt", &[], "wine.csv", "label"),
        (
            "lgb_diabetes",
            "lgb_diabetes.txt",
            &[],
            "diabetes.csv",
            "progression",
        ),
        ("cb_cancer", "cb_cancer.cbm", &[], "cancer.csv", "label"),
        ("seed", "seed.h5", &[], "", ""),
        // A numeric pipeline without a sample: one matrix input, rows
        // synthesized around its scaler's statistics.
        ("cancer_lr", "cancer_lr.skops", &[], "cancer.csv", "label"),
        ("churn", "churn.skops", &["--sample"], "churn.csv", "churn"),
    ];
    for (name, src, flags, sample, _) in cases {
        let dst = repo.join(name).join("1/model.onnx");
        let mut args = vec![
            s(&m.join(src)).to_string(),
            "-o".into(),
            s(&dst).to_string(),
        ];
        for f in flags {
            args.push(f.to_string());
            if *f == "--sample" {
                args.push(s(&m.join(sample)).to_string());
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = import(&args);
        for o in r["report"]["parity"]["outputs"].as_array().unwrap() {
            assert_eq!(o["within"], true, "{name}: {o}");
        }
        let card: Value =
            serde_json::from_slice(&std::fs::read(dst.with_extension("card.json")).unwrap())
                .unwrap();
        assert_eq!(card["format"], "hone.import-card/1");
        assert_eq!(
            card["source"]["sha256"].as_str().unwrap().len(),
            64,
            "{card}"
        );
        assert!(card["converter"]["version"].is_string(), "{card}");
    }
    // The LightGBM note says how many thresholds hone corrected.
    let card: Value = serde_json::from_slice(
        &std::fs::read(repo.join("lgb_diabetes/1/model.card.json")).unwrap(),
    )
    .unwrap();
    assert!(
        card["notes"][0].as_str().unwrap().contains("float32 below"),
        "{card}"
    );
    assert_eq!(card["features"][2], "bmi");

    // `hone eval` reads an imported model beside its card.
    let o = hone(&[
        "eval",
        s(&repo.join("xgb_cancer/1/model.onnx")),
        "--data",
        s(&m.join("cancer.csv")),
        "--target",
        "label",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(e["report"]["accuracy"].as_f64().unwrap() > 0.95, "{e}");

    let server = ServeProcess::start(&repo);
    for (name, _, _, sample, target) in cases {
        let want = expected(m, name);
        if name == "churn" {
            continue;
        }
        let (rows, cols, data) = if sample.is_empty() {
            let x = std::fs::read(m.join("seed_sample.npy")).unwrap();
            // float32 [64, 30] after a 128-byte header.
            let data: Vec<f64> = x[128..]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
                .collect();
            (64, 30, data)
        } else {
            csv_rows(&m.join(sample), target)
        };
        let meta: Value =
            serde_json::from_str(&server.get(&format!("/v2/models/{name}")).1).unwrap();
        let input = meta["inputs"][0]["name"].as_str().unwrap();
        let body = json!({"inputs": [{"name": input, "shape": [rows, cols], "datatype": "FP32", "data": data}]});
        let (code, text) = server.post(&format!("/v2/models/{name}/infer"), &body.to_string());
        assert_eq!(code, 200, "{name}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        for (out, values) in want.as_object().unwrap() {
            let served = v["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["name"] == *out)
                .unwrap_or_else(|| panic!("{name}: no output {out} in {text}"));
            close(
                &floats(&served["data"]),
                &floats(values),
                &format!("{name}.{out}"),
            );
        }
    }

    // A booster with feature names takes them by name too, as TF Serving
    // records: the same answer as the positional matrix.
    let (_, _, data) = csv_rows(&m.join("cancer.csv"), "label");
    let text = std::fs::read_to_string(m.join("cancer.csv")).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let record: serde_json::Map<String, Value> = header
        .iter()
        .filter(|h| **h != "label")
        .zip(&data)
        .map(|(h, x)| (h.to_string(), json!(x)))
        .collect();
    let (code, text) = server.post(
        "/v1/models/xgb_cancer:predict",
        &json!({"instances": [record]}).to_string(),
    );
    assert_eq!(code, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let want = expected(m, "xgb_cancer");
    close(
        &floats(&v["predictions"][0]["probabilities"]),
        &floats(&want["probabilities"][0]),
        "xgb_cancer by name",
    );

    // The scikit-learn pipeline takes its columns by name, text as text,
    // over V2 and TF Serving REST, and answers with its own class names.
    let want = expected(m, "churn");
    let text = std::fs::read_to_string(m.join("churn.csv")).unwrap();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .take(64)
        .map(|l| l.split(',').collect())
        .collect();
    let col = |j: usize| rows.iter().map(|r| r[j]).collect::<Vec<_>>();
    let num = |j: usize| {
        col(j)
            .iter()
            .map(|x| x.parse::<f64>().unwrap())
            .collect::<Vec<_>>()
    };
    let n = rows.len();
    let body = json!({"inputs": [
        {"name": "age", "shape": [n, 1], "datatype": "FP32", "data": num(0)},
        {"name": "income", "shape": [n, 1], "datatype": "FP32", "data": num(1)},
        {"name": "region", "shape": [n, 1], "datatype": "BYTES", "data": col(2)},
        {"name": "plan", "shape": [n, 1], "datatype": "BYTES", "data": col(3)},
    ]});
    let (code, text) = server.post("/v2/models/churn/infer", &body.to_string());
    assert_eq!(code, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["outputs"][0]["data"], want["label"], "{text}");
    close(
        &floats(&v["outputs"][1]["data"]),
        &floats(&want["probabilities"]),
        "churn.probabilities",
    );
    let instances: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"age": [r[0].parse::<f64>().unwrap()], "income": [r[1].parse::<f64>().unwrap()],
                   "region": [r[2]], "plan": [r[3]]})
        })
        .collect();
    let (code, text) = server.post(
        "/v1/models/churn:predict",
        &json!({"instances": instances}).to_string(),
    );
    assert_eq!(code, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let labels: Vec<&Value> = v["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["label"])
        .collect();
    let want_labels: Vec<&Value> = want["label"].as_array().unwrap().iter().collect();
    assert_eq!(labels, want_labels);
}

#[test]
fn keras_and_savedmodel_forms_import_within_tolerance() {
    let Some((_, m)) = models() else { return };
    let out = tmp("import", "keras");
    for (src, sample) in [("seed.keras", true), ("seed_savedmodel", false)] {
        let dst = out.join(format!("{src}.onnx"));
        let mut args = vec![
            s(&m.join(src)).to_string(),
            "-o".into(),
            s(&dst).to_string(),
        ];
        if sample {
            args.push("--sample".into());
            args.push(s(&m.join("seed_sample.npy")).to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = import(&args);
        assert_eq!(r["format"], if sample { "keras" } else { "savedmodel" });
        let p = &r["report"]["parity"];
        assert_eq!(p["from"], if sample { "sample" } else { "synthesized" });
        assert!(p["outputs"][0]["max_abs"].as_f64().unwrap() < 1e-4, "{r}");
        assert!(dst.is_file());
    }
}

#[test]
fn a_conversion_that_changes_answers_is_refused_with_its_table() {
    let Some((_, m)) = models() else { return };
    let out = tmp("import", "refused");
    let dst = out.join("lgb.onnx");
    // The converter's own float32 rounding of LightGBM's thresholds flips
    // splits: without hone's correction the answer moves.
    let o = hone(&[
        "import",
        s(&m.join("lgb_diabetes.txt")),
        "-o",
        s(&dst),
        "--keep-converter-thresholds",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("does not answer as the source does") && err.contains("DIFFERS"),
        "{err}"
    );
    assert!(err.contains("variable"), "{err}");
    assert!(!dst.exists() && !dst.with_extension("card.json").exists());
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "temporary files left behind"
    );

    // A tolerance tighter than float32 arithmetic refuses too.
    let o = hone(&[
        "import",
        s(&m.join("lgb_diabetes.txt")),
        "-o",
        s(&dst),
        "--rtol",
        "0",
        "--atol",
        "0",
    ]);
    assert!(!o.status.success());
    assert!(!dst.exists());

    // A pickle needs the user's word; skops does not.
    let o = hone(&["import", s(&m.join("churn.joblib")), "-o", s(&dst)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--trust-pickle"),
        "{err}"
    );
    let r = import(&[
        s(&m.join("churn.joblib")),
        "-o",
        s(&dst),
        "--trust-pickle",
        "--sample",
        s(&m.join("churn.csv")),
    ]);
    assert_eq!(r["report"]["notes"][0], "loaded from pickle");

    // A text column without rows to read it from is named.
    let o = hone(&[
        "import",
        s(&m.join("churn.skops")),
        "-o",
        s(&out.join("c.onnx")),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("region") && err.contains("--sample"),
        "{err}"
    );

    // An empty sample is named, not a converter crash.
    let empty = out.join("empty.csv");
    std::fs::write(&empty, "a,b\n").unwrap();
    let o = hone(&[
        "import",
        s(&m.join("xgb_cancer.json")),
        "-o",
        s(&out.join("x.onnx")),
        "--sample",
        s(&empty),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("has no rows"), "{err}");

    // A sample without the model's features is named.
    let o = hone(&[
        "import",
        s(&m.join("xgb_cancer.json")),
        "-o",
        s(&out.join("x.onnx")),
        "--sample",
        s(&m.join("wine.csv")),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("mean_radius"), "{err}");
}

#[test]
fn unknown_files_and_pytorch_without_its_python_get_clear_errors() {
    let out = tmp("import", "errors");
    let junk = out.join("model.json");
    std::fs::write(&junk, br#"{"a": 1}"#).unwrap();
    let o = hone(&["import", s(&junk), "-o", s(&out.join("m.onnx"))]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--format"), "{err}");
    let pt = out.join("model.pt");
    std::fs::write(&pt, b"PK").unwrap();
    let o = hone(&["import", s(&pt), "-o", s(&out.join("m.onnx"))]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--python") && err.contains("torch"),
        "{err}"
    );

    // A repository holding a Keras file where model.onnx should be.
    let repo = out.join("repo");
    std::fs::create_dir_all(repo.join("k/1")).unwrap();
    std::fs::write(repo.join("k/1/model.h5"), b"\x89HDF").unwrap();
    common::example_model(&repo, "mlp", "1");
    let server = ServeProcess::start(&repo);
    let (_, index) = server.post("/v2/repository/index", "{}");
    assert!(
        index.contains("k/1/model.h5 is a Keras model") && index.contains("hone import"),
        "{index}"
    );
}

/// `hone ship --model MODEL --data DATA --target TARGET` into `repo` on
/// OS-chosen ports, with `extra` flags: (success, the JSON report).
fn ship(model: &Path, data: &Path, target: &str, repo: &Path, extra: &[&str]) -> (bool, Value) {
    let mut args = vec![
        "ship",
        "--model",
        s(model),
        "--data",
        s(data),
        "--target",
        target,
        "--model-repository",
        s(repo),
        "--json",
    ];
    args.extend_from_slice(&common::EPHEMERAL_PORTS);
    args.extend_from_slice(extra);
    let o = hone(&args);
    let r: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| {
        panic!(
            "{}: {}",
            model.display(),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.success(), r)
}

#[test]
fn ship_takes_a_model_trained_elsewhere_through_every_stage() {
    let Some((_, m)) = models() else { return };
    let out = tmp("import", "ship");
    let repo = out.join("repo");
    let (model, data) = (m.join("churn.skops"), m.join("churn.csv"));
    let churn = |extra: &[&str]| ship(&model, &data, "churn", &repo, extra);
    // A gate the model misses: nothing reaches the repository.
    let (ok, r) = churn(&["--min-metric", "0.99"]);
    assert!(!ok, "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("misses --min-metric 0.99"),
        "{r}"
    );
    assert!(!repo.join("churn").exists());

    let (ok, r) = churn(&["--min-metric", "0.8"]);
    assert!(ok, "{r}");
    let stages: Vec<&str> = r["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        [
            "import",
            "load data",
            "validate",
            "optimize",
            "package",
            "serve",
            "smoke test"
        ],
        "{r}"
    );
    let detail = |name: &str| {
        r["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"] == name)
            .unwrap()["detail"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        detail("import").contains("skl2onnx") && detail("import").contains("labels agree 100%"),
        "{r}"
    );
    assert!(detail("smoke test").contains("served == offline"), "{r}");
    assert!(r["value"].as_f64().unwrap() >= 0.8, "{r}");
    let card: Value =
        serde_json::from_slice(&std::fs::read(repo.join("churn/1/model.card.json")).unwrap())
            .unwrap();
    assert_eq!(card["format"], "hone.import-card/1");
    assert!(
        card["metrics"]["validation"]["accuracy"].is_number(),
        "{card}"
    );
    assert_eq!(card["labels"], json!(["churn", "stay"]));

    // A plain ONNX file ships too, named after its file.
    let onnx = out.join("xgb.onnx");
    import(&[s(&m.join("xgb_cancer.json")), "-o", s(&onnx)]);
    std::fs::remove_file(onnx.with_extension("card.json")).unwrap();
    let (ok, r) = ship(&onnx, &m.join("cancer.csv"), "label", &repo, &[]);
    assert!(ok, "{r}");
    assert_eq!(r["name"], "xgb");
    assert!(r["value"].as_f64().unwrap() > 0.95, "{r}");

    // Every other format ships too: imported on the data's rows, validated,
    // served, and its live answers equal ONNX Runtime's offline ones.
    for (src, data, target, metric) in [
        ("xgb_cancer.json", "cancer.csv", "label", "accuracy"),
        ("xgb_diabetes.json", "diabetes.csv", "progression", "r2"),
        ("lgb_wine.txt", "wine.csv", "label", "accuracy"),
        ("cb_cancer.cbm", "cancer.csv", "label", "accuracy"),
        ("seed.h5", "seed.csv", "label", "accuracy"),
        ("seed_savedmodel", "seed.csv", "label", "accuracy"),
    ] {
        let (ok, r) = ship(&m.join(src), &m.join(data), target, &repo, &[]);
        assert!(ok, "{src}: {r}");
        assert_eq!(r["metric"], metric, "{src}: {r}");
        let last = r["stages"].as_array().unwrap().last().unwrap();
        assert_eq!(last["stage"], "smoke test", "{src}: {r}");
        assert!(
            last["detail"]
                .as_str()
                .unwrap()
                .contains("served == offline"),
            "{src}: {r}"
        );
    }

    // --optimize searches the imported model on the same rows.
    let (ok, r) = ship(
        &m.join("lgb_diabetes.txt"),
        &m.join("diabetes.csv"),
        "progression",
        &repo,
        &["--optimize", "--max-drop", "0.05"],
    );
    assert!(ok, "{r}");
    let opt = r["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "optimize")
        .unwrap();
    assert_eq!(opt["status"], "ok", "{r}");
    assert!(
        opt["detail"].as_str().unwrap().contains("candidates"),
        "{r}"
    );
    assert_eq!(r["metric"], "r2");
}
