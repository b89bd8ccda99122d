//! The pipeline commands end to end, through the real `hone` binary: train,
//! eval, ship (with a live server and the served-vs-offline check) and the
//! errors a user sees for bad data.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{EPHEMERAL_PORTS, ServeProcess, assert_same_bytes, hone, s, workspace};

fn tmp_dir(name: &str) -> PathBuf {
    common::tmp("pipeline", name)
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "hone failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).expect("JSON output")
}

/// The first `rows` data rows of the embedded breast-cancer CSV.
fn small_csv(dir: &Path, rows: usize) -> PathBuf {
    let text =
        std::fs::read_to_string(workspace().join("examples/data/breast_cancer.csv")).unwrap();
    let p = dir.join("small.csv");
    std::fs::write(
        &p,
        text.lines().take(rows + 1).collect::<Vec<_>>().join("\n") + "\n",
    )
    .unwrap();
    p
}

/// `hone eval MODEL --data DATA --json EXTRA...`, parsed.
fn eval_json(model: &Path, data: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["eval", s(model), "--data", s(data), "--json"];
    args.extend_from_slice(extra);
    json(&hone(&args))
}

/// `hone train TRAIN --target label --val VAL -o OUT --quiet`.
fn train_quiet(train: &Path, val: &Path, out: &Path) {
    ok(&hone(&[
        "train",
        s(train),
        "--target",
        "label",
        "--val",
        s(val),
        "-o",
        s(out),
        "--quiet",
    ]));
}

/// The issue's quality bars, with default settings: trained on the shared
/// train split (val for early stopping), scored on the test split.
#[test]
fn default_training_meets_the_quality_bars() {
    let Some(shared) = common::shared("default_training_meets_the_quality_bars") else {
        return;
    };
    let d = tmp_dir("quality");
    for (data, metric, bar) in [
        ("breast_cancer", "accuracy", 0.95),
        ("wine", "accuracy", 0.93),
        ("diabetes", "r2", 0.40),
    ] {
        let dir = shared.join("tabular").join(data);
        let model = d.join(format!("{data}.onnx"));
        train_quiet(&dir.join("train.csv"), &dir.join("val.csv"), &model);
        let e = eval_json(&model, &dir.join("test.csv"), &["--metric", metric]);
        let v = e["value"].as_f64().unwrap();
        assert!(v >= bar, "{data}: test {metric} {v} is below {bar}");
    }
}

#[test]
fn train_writes_model_and_card_and_eval_scores_it() {
    let Some(shared) = common::shared("train_writes_model_and_card_and_eval_scores_it") else {
        return;
    };
    let d = tmp_dir("train");
    let bc = shared.join("tabular/breast_cancer");
    let model = d.join("bc.onnx");
    let out = json(&hone(&[
        "train",
        s(&bc.join("train.csv")),
        "--target",
        "label",
        "--val",
        s(&bc.join("val.csv")),
        "-o",
        s(&model),
        "--json",
    ]));
    assert_eq!(out["task"], "binary");
    assert!(out["export_max_diff"].as_f64().unwrap() <= 1e-5);
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("bc.card.json")).unwrap()).unwrap();
    assert_eq!(card["input"]["features"].as_array().unwrap().len(), 30);
    assert_eq!(card["input"]["features"][0]["name"], "mean_radius");
    assert_eq!(card["labels"], serde_json::json!(["0", "1"]));
    assert_eq!(card["data"]["sha256"].as_str().unwrap().len(), 64);
    // The reference covers every training and validation row, in decile
    // bins that all hold data; the outputs have one too.
    let r0 = &card["reference"][0];
    assert_eq!(r0["count"], 341 + 114);
    let counts = r0["histogram"]["counts"].as_array().unwrap();
    assert_eq!(counts.len(), 10);
    assert!(counts.iter().all(|c| c.as_u64().unwrap() >= 30), "{r0}");
    assert_eq!(card["outputs"][0]["name"], "output");
    assert_eq!(card["outputs"][0]["count"], 341 + 114);
    assert!(card["metrics"]["validation"]["accuracy"].as_f64().unwrap() > 0.9);

    // Same seed, same bytes.
    let again = d.join("again.onnx");
    train_quiet(&bc.join("train.csv"), &bc.join("val.csv"), &again);
    assert_same_bytes(&model, &again);

    let e = eval_json(&model, &bc.join("test.csv"), &[]);
    assert_eq!(e["report"]["rows"], 114);
    assert!(e["report"]["accuracy"].as_f64().unwrap() >= 0.95, "{e}");
    assert_eq!(e["report"]["confusion"].as_array().unwrap().len(), 2);
    let table = ok(&hone(&[
        "eval",
        s(&model),
        "--data",
        s(&bc.join("test.csv")),
        "--metric",
        "auc",
    ]));
    assert!(table.contains("confusion matrix"), "{table}");
    assert!(table.contains("auc"), "{table}");

    // Without --target, eval reads the column the card names.
    let test = std::fs::read_to_string(bc.join("test.csv")).unwrap();
    let (head, rows) = test.split_once('\n').unwrap();
    let renamed = d.join("renamed.csv");
    std::fs::write(
        &renamed,
        format!("{}\n{rows}", head.replace("label", "diagnosis")),
    )
    .unwrap();
    let mut card = card;
    card["target"] = serde_json::json!("diagnosis");
    std::fs::write(d.join("bc.card.json"), card.to_string()).unwrap();
    let e = eval_json(&model, &renamed, &[]);
    assert_eq!(e["report"]["rows"], 114, "{e}");
}

#[test]
fn eval_matches_the_shared_manifest() {
    let Some(shared) = common::shared("eval_matches_the_shared_manifest") else {
        return;
    };
    let m = shared.clone();
    // The reference MLP, a tree ensemble (probabilities output) and a CNN fed
    // from 64 pixel columns reshaped to [1, 8, 8].
    let cases = [
        ("mlp/mlp.onnx", "tabular/breast_cancer/test.csv", 0.973684),
        ("trees/rf.onnx", "tabular/breast_cancer/test.csv", 0.956140),
        ("digits_cnn/digits_cnn.onnx", "digits_cnn/test.csv", 0.975),
    ];
    for (model, data, acc) in cases {
        let e = eval_json(&m.join(model), &m.join(data), &[]);
        let got = e["report"]["accuracy"].as_f64().unwrap();
        assert!(
            (got - acc).abs() < 1e-5,
            "{model}: accuracy {got}, manifest {acc}"
        );
    }
    let e = eval_json(
        &m.join("mlp/mlp_diabetes.onnx"),
        &m.join("tabular/diabetes/test.csv"),
        &["--metric", "r2"],
    );
    assert!((e["value"].as_f64().unwrap() - 0.360).abs() < 1e-3, "{e}");
}

#[test]
fn eval_reads_a_directory_of_npy_files() {
    let Some(shared) = common::shared("eval_reads_a_directory_of_npy_files") else {
        return;
    };
    let d = tmp_dir("npy");
    // The digits CNN's 8 reference rows, labelled with its own predictions
    // except one row flipped, so accuracy is exactly 7/8.
    let reference = shared.join("digits_cnn/ref/digits_cnn");
    std::fs::copy(reference.join("input_input.npy"), d.join("input.npy")).unwrap();
    let out = std::fs::read(reference.join("output_logits.npy")).unwrap();
    let header_len = u16::from_le_bytes([out[8], out[9]]) as usize;
    let logits: Vec<f32> = out[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let mut labels: Vec<i64> = logits
        .chunks(10)
        .map(|r| (0..10).fold(0, |b, i| if r[i] > r[b] { i } else { b }) as i64)
        .collect();
    labels[0] = (labels[0] + 1) % 10;
    let bytes: Vec<u8> = labels.iter().flat_map(|v| v.to_le_bytes()).collect();
    common::write_npy(&d.join("labels.npy"), "<i8", &[8], &bytes);
    let e = eval_json(&shared.join("digits_cnn/digits_cnn.onnx"), &d, &[]);
    assert_eq!(e["report"]["accuracy"].as_f64().unwrap(), 7.0 / 8.0);
    assert_eq!(e["softmax_applied"], true);
}

#[test]
fn bad_training_data_gets_one_clear_error() {
    let d = tmp_dir("bad");
    let cases: &[(&str, &str, &[&str], &str)] = &[
        ("empty", "", &[], "empty"),
        ("header_only", "a,b,label\n", &[], "no data rows"),
        (
            "missing",
            "a,b,label\n1,2,0\n3,,1\n4,5,0\n",
            &[],
            "line 3, column \"b\": missing value",
        ),
        ("text", "a,b,label\n1,x,0\n3,y,1\n", &[], "--categorical b"),
        (
            "constant",
            "a,b,label\n1,7,0\n3,7,1\n4,7,0\n",
            &[],
            "column \"b\" is constant",
        ),
        (
            "one_class",
            "a,b,label\n1,2,1\n3,4,1\n",
            &[],
            "only one class",
        ),
        (
            "no_target",
            "a,b,y\n1,2,0\n3,4,1\n",
            &[],
            "no column named \"label\" to predict (the columns are a, b, y; --target",
        ),
        ("ragged", "a,b,label\n1,2,0\n3,4\n", &[], "line 3"),
        (
            "unknown_categorical",
            "a,b,label\n1,2,0\n3,4,1\n",
            &["--categorical", "c"],
            "no such column",
        ),
        (
            "bad_hidden",
            "a,b,label\n1,2,0\n3,4,1\n",
            &["--hidden", "64,0"],
            "must be positive",
        ),
    ];
    for (name, csv, extra, want) in cases {
        let p = d.join(format!("{name}.csv"));
        std::fs::write(&p, csv).unwrap();
        let out_model = d.join(format!("{name}.onnx"));
        // No --target: it defaults to label, as in eval and profile.
        let mut args = vec!["train", s(&p), "-o", s(&out_model), "--quiet"];
        args.extend_from_slice(extra);
        let out = hone(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: succeeded");
        assert!(
            err.contains(want),
            "{name}: {err:?} does not mention {want:?}"
        );
        assert!(!out_model.exists(), "{name}: wrote a model anyway");
    }
    let out = hone(&[
        "train",
        s(&d.join("absent.parquet")),
        "--target",
        "label",
        "-o",
        "x.onnx",
    ]);
    assert!(!out.status.success());
    let p = d.join("not.parquet");
    std::fs::write(&p, b"PAR1 this is not parquet").unwrap();
    let out = hone(&["train", s(&p), "--target", "label", "-o", "x.onnx"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not.parquet"));
}

/// The breast-cancer rows of `csv` as a Parquet file: DOUBLE features, INT64 label.
fn csv_to_parquet(csv: &Path, out: &Path) {
    use parquet::data_type::{DoubleType, Int64Type};
    use parquet::file::writer::SerializedFileWriter;
    let text = std::fs::read_to_string(csv).unwrap();
    let mut lines = text.lines();
    let names: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    let mut schema = String::from("message m {");
    for n in &names[..names.len() - 1] {
        schema += &format!(" REQUIRED DOUBLE {n};");
    }
    schema += " REQUIRED INT64 label; }";
    let schema = std::sync::Arc::new(parquet::schema::parser::parse_message_type(&schema).unwrap());
    let file = std::fs::File::create(out).unwrap();
    let mut w = SerializedFileWriter::new(file, schema, Default::default()).unwrap();
    let mut rg = w.next_row_group().unwrap();
    for c in 0..names.len() {
        let mut col = rg.next_column().unwrap().unwrap();
        if c + 1 < names.len() {
            let v: Vec<f64> = rows.iter().map(|r| r[c]).collect();
            col.typed::<DoubleType>()
                .write_batch(&v, None, None)
                .unwrap();
        } else {
            let v: Vec<i64> = rows.iter().map(|r| r[c] as i64).collect();
            col.typed::<Int64Type>()
                .write_batch(&v, None, None)
                .unwrap();
        }
        col.close().unwrap();
    }
    rg.close().unwrap();
    w.close().unwrap();
}

#[test]
fn parquet_trains_the_same_model_as_csv() {
    let Some(shared) = common::shared("parquet_trains_the_same_model_as_csv") else {
        return;
    };
    let d = tmp_dir("parquet");
    let bc = shared.join("tabular/breast_cancer");
    csv_to_parquet(&bc.join("train.csv"), &d.join("train.parquet"));
    csv_to_parquet(&bc.join("val.csv"), &d.join("val.parquet"));
    let from_pq = d.join("pq.onnx");
    let from_csv = d.join("csv.onnx");
    train_quiet(&d.join("train.parquet"), &d.join("val.parquet"), &from_pq);
    train_quiet(&bc.join("train.csv"), &bc.join("val.csv"), &from_csv);
    assert_same_bytes(&from_pq, &from_csv);
    let e = eval_json(&from_pq, &d.join("val.parquet"), &[]);
    assert_eq!(e["report"]["rows"], 114);
}

#[test]
fn ship_serves_and_verifies_then_gates() {
    let d = tmp_dir("ship");
    let csv = small_csv(&d, 200);
    let repo = d.join("repo");
    let ship = |extra: &[&str]| {
        let mut args = EPHEMERAL_PORTS.to_vec();
        args.extend_from_slice(extra);
        ship_bc(&csv, &repo, &args)
    };
    let r = json(&ship(&["--min-metric", "0.8"]));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["version"], 1);
    let stages: Vec<(&str, &str)> = r["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["stage"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        stages,
        vec![
            ("load data", "ok"),
            ("train", "ok"),
            ("validate", "ok"),
            ("optimize", "skipped"),
            ("package", "ok"),
            ("serve", "ok"),
            ("smoke test", "ok")
        ]
    );
    assert!(
        r["stages"][6]["detail"]
            .as_str()
            .unwrap()
            .contains("served == offline")
    );
    for f in [
        "config.pbtxt",
        "1/model.onnx",
        "1/model.card.json",
        "1/ship.json",
    ] {
        assert!(repo.join("bc").join(f).is_file(), "{f} missing");
    }
    // The packaged version is a valid repository entry for `hone serve`'s loader.
    let cfg = std::fs::read_to_string(repo.join("bc/config.pbtxt")).unwrap();
    assert!(cfg.contains("dims: [30]"), "{cfg}");

    // A second ship adds version 2.
    let r = json(&ship(&[]));
    assert_eq!(r["version"], 2);

    // With --optimize the optimizer runs on the held-out rows; whatever it
    // picks is what gets served and checked against offline.
    let r = json(&ship(&["--optimize", "--max-drop", "0.02"]));
    assert_eq!(r["version"], 3);
    assert_eq!(r["stages"][3]["stage"], "optimize");
    assert_eq!(r["stages"][3]["status"], "ok", "{r}");
    assert_eq!(r["stages"][6]["status"], "ok", "{r}");

    // A gate that cannot be met: non-zero exit, repository untouched.
    let before = listing(&repo);
    let out = ship(&["--min-metric", "1.01"]);
    assert!(!out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["ok"], false);
    assert!(r["error"].as_str().unwrap().contains("--min-metric"), "{r}");
    assert_eq!(listing(&repo), before);
}

#[test]
fn ship_hot_loads_into_a_running_server_and_rolls_back_on_failure() {
    let d = tmp_dir("ship-into");
    let csv = small_csv(&d, 200);
    let repo = d.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let server = ServeProcess::start(&repo);
    let ship = |url: &str| ship_bc(&csv, &repo, &["--into", url]);
    for version in [1, 2] {
        let r = json(&ship(&server.url));
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["version"], version);
        let serve = &r["stages"][5];
        assert_eq!(serve["stage"], "serve");
        assert!(
            serve["detail"].as_str().unwrap().contains("hot-loaded"),
            "{serve}"
        );
        assert_eq!(r["stages"][6]["status"], "ok", "{r}");
        // The running server now serves exactly the new version.
        let (code, body) = server.get("/v2/models/bc");
        assert_eq!(code, 200, "{body}");
        let meta: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(meta["versions"], serde_json::json!([version.to_string()]));
    }

    // A server that cannot be reached: the ship fails after packaging and
    // takes version 3 back out; the running server keeps serving version 2.
    let before = listing(&repo);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let out = ship(&dead);
    assert!(!out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let err = r["error"].as_str().unwrap();
    assert!(
        err.contains("cannot connect to") && err.contains("refused"),
        "{err}"
    );
    assert!(err.contains("version 3 was removed"), "{err}");
    assert_eq!(listing(&repo), before);
    assert_eq!(server.get("/v2/models/bc/versions/2/ready").0, 200);
}

/// `--access-log --log-format json`: one JSON line per inference request,
/// failures included, with the model, status, sizes, times and request id.
#[test]
fn serve_writes_one_json_access_line_per_request() {
    let d = tmp_dir("access-log");
    let csv = small_csv(&d, 200);
    let repo = d.join("repo");
    let r = json(&ship_bc(&csv, &repo, &[]));
    assert_eq!(r["ok"], true, "{r}");
    let server = ServeProcess::start_with(&repo, &["--access-log", "--log-format", "json"]);
    let row = vec!["0.5"; 30].join(",");
    let body = format!(
        r#"{{"id":"a1","inputs":[{{"name":"input","shape":[1,30],"datatype":"FP32","data":[{row}]}}]}}"#
    );
    let (code, text) = server.post("/v2/models/bc/infer", &body);
    assert_eq!(code, 200, "{text}");
    let (code, _) = server.post("/v2/models/bc/infer", r#"{"inputs":[]}"#);
    assert_eq!(code, 400);
    let (code, _) = server.post("/v2/models/nope/infer", &body);
    assert_eq!(code, 404);
    let mut lines = Vec::new();
    for _ in 0..50 {
        lines = server
            .log()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "hone::access")
            .collect::<Vec<_>>();
        if lines.len() == 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let f = |i: usize| lines[i]["fields"].clone();
    assert_eq!(f(0)["model"], "bc");
    assert_eq!(f(0)["version"], "1");
    assert_eq!(f(0)["status"], 200);
    assert_eq!(f(0)["protocol"], "http");
    assert_eq!(f(0)["bytes_in"], body.len());
    assert!(f(0)["bytes_out"].as_u64().unwrap() > 20);
    assert!(f(0)["compute_us"].as_u64().is_some() && f(0)["total_us"].as_u64().is_some());
    assert_eq!(f(0)["request_id"].as_str().unwrap().len(), 16);
    assert_eq!(f(1)["status"], 400);
    assert!(
        f(1)["error"].as_str().unwrap().contains("input"),
        "{}",
        f(1)
    );
    assert_eq!(f(2)["status"], 404);
    assert_eq!(f(2)["model"], "nope");
    drop(server);

    // Text logs into a pipe carry no colour codes.
    let text = ServeProcess::start_with(&repo, &["--access-log"]);
    let (code, _) = text.post("/v2/models/bc/infer", &body);
    assert_eq!(code, 200);
    let mut log = String::new();
    for _ in 0..50 {
        log = text.log().join("\n");
        if log.contains("hone::access") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(log.contains("hone::access"), "{log}");
    assert!(!log.contains('\x1b'), "{log:?}");
}

/// `hone ship CSV --target label --model-repository REPO --name bc --json EXTRA...`
/// `--into https://…` on a server with keys: with its CA, admin key and
/// an inference key the new version loads and is smoke-tested there;
/// without the admin key the server's refusal is the error and the version
/// is taken back out.
#[test]
fn ship_into_an_https_server_with_keys() {
    let d = tmp_dir("ship-into-tls");
    let csv = small_csv(&d, 200);
    let repo = d.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    common::pki(&d);
    let admin = d.join("admin.key");
    std::fs::write(&admin, "# the admin key\nadmin-4f1c2a9e7b3d5f60a8c2\n").unwrap();
    let api = d.join("api.key");
    std::fs::write(&api, "api-9d8e7f6a5b4c3d2e1f00 rate=1000\n").unwrap();
    let server = ServeProcess::start_with(
        &repo,
        &[
            "--tls-cert",
            s(&d.join("server.pem")),
            "--tls-key",
            s(&d.join("server.key")),
            "--admin-key-file",
            s(&admin),
            "--api-key-file",
            s(&api),
        ],
    );
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let ca = d.join("ca.pem");
    let r = json(&ship_bc(
        &csv,
        &repo,
        &[
            "--into",
            &server.url,
            "--admin-key-file",
            s(&admin),
            "--api-key-file",
            s(&api),
            "--cacert",
            s(&ca),
        ],
    ));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["version"], 1);
    assert_eq!(r["stages"][6]["stage"], "smoke test", "{r}");
    assert_eq!(r["stages"][6]["status"], "ok", "{r}");

    let before = listing(&repo);
    let out = ship_bc(
        &csv,
        &repo,
        &[
            "--into",
            &server.url,
            "--api-key-file",
            s(&api),
            "--cacert",
            s(&ca),
        ],
    );
    assert!(!out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let err = r["error"].as_str().unwrap();
    assert!(err.contains("403"), "{err}");
    assert!(err.contains("version 2 was removed"), "{err}");
    assert_eq!(listing(&repo), before);
}

fn ship_bc(csv: &Path, repo: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "ship",
        s(csv),
        "--target",
        "label",
        "--model-repository",
        s(repo),
        "--name",
        "bc",
        "--json",
    ];
    args.extend_from_slice(extra);
    hone(&args)
}

fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn demo_ships_the_embedded_data() {
    let d = tmp_dir("demo");
    let repo = d.join("repo");
    let mut args = vec![
        "demo",
        "--model-repository",
        s(&repo),
        "--no-serve",
        "--json",
    ];
    args.extend_from_slice(&EPHEMERAL_PORTS);
    let r = json(&hone(&args));
    assert_eq!(r["ok"], true, "{r}");
    assert!(r["value"].as_f64().unwrap() >= 0.95, "{r}");
    assert!(repo.join("breast_cancer/1/model.onnx").is_file());
}

/// `hone demo` serving: it says where the dashboard is (which answers),
/// that Ctrl-C stops it, and when it has stopped.
#[test]
fn demo_says_where_the_dashboard_is_and_when_it_stops() {
    use std::io::BufRead;
    let d = tmp_dir("demo-serve");
    let repo = d.join("repo");
    let mut args = vec!["demo", "--model-repository", s(&repo)];
    args.extend_from_slice(&EPHEMERAL_PORTS);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hone"))
        .args(&args)
        .env("HONE_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut dashboard = None;
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(url) = line.strip_prefix("Dashboard: ") {
            dashboard = Some(url.to_string());
        }
        let done = line == "Ctrl-C stops it.";
        seen.push(line);
        if done {
            break;
        }
    }
    let url = dashboard.unwrap_or_else(|| panic!("no dashboard line in {seen:#?}"));
    let page = common::http_get(&url);
    assert!(
        page.contains("<html") || page.contains("<!doctype"),
        "{url}: {page}"
    );
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().unwrap().success());
    assert!(
        rest.iter()
            .any(|l| l == "Stopped; breast_cancer is no longer served."),
        "{rest:#?}"
    );
}

/// `hone models` against a running server: list, traffic, status, a
/// rollout under load waited to promotion, rollback refused once it ended,
/// unload and load.
#[test]
fn hone_models_drives_traffic_and_rollouts() {
    let d = tmp_dir("models-cli");
    let repo = d.join("repo");
    for v in ["1", "2"] {
        common::example_model(&repo, "mlp", v);
    }
    let cfg =
        std::fs::read_to_string(workspace().join("examples/repository/mlp/config.pbtxt")).unwrap();
    std::fs::write(
        repo.join("mlp/config.pbtxt"),
        format!("{cfg}version_policy: {{ all: {{}} }}\n"),
    )
    .unwrap();
    let server = std::sync::Arc::new(ServeProcess::start(&repo));
    let models = |args: &[&str]| {
        let mut a = vec!["models"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--url", &server.url]);
        hone(&a)
    };
    let out = models(&["list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let out = models(&[
        "traffic",
        "mlp",
        "--weights",
        "1=70,2=30",
        "--labels",
        "stable=1,canary=2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("split from api") && text.contains("30 %") && text.contains("canary=2"),
        "{text}"
    );
    let out = models(&["status", "mlp", "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        st["traffic"]["split"]["weights"],
        serde_json::json!({"1": 70, "2": 30})
    );
    // Traffic while the rollout runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let body = format!(
        r#"{{"inputs":[{{"name":"input","shape":[1,30],"datatype":"FP32","data":[{}]}}]}}"#,
        vec!["0.5"; 30].join(",")
    );
    let load = {
        let (server, stop) = (server.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut failed = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if server.post("/v2/models/mlp/infer", &body).0 != 200 {
                    failed += 1;
                }
            }
            failed
        })
    };
    let out = models(&[
        "rollout",
        "mlp",
        "--to",
        "2",
        "--from",
        "1",
        "--steps",
        "50,100",
        "--step-requests",
        "50",
        "--shadow-share",
        "0.5",
        "--wait",
    ]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(load.join().unwrap(), 0, "no request failed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("step  50 %") && text.contains("promoted at 100 %"),
        "{text}"
    );
    let out = models(&["rollback", "mlp"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already ended"));
    let out = models(&["unload", "mlp"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = models(&["list"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("UNAVAILABLE"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(models(&["load", "mlp"]).status.success());
}

/// `hone ship --into URL --canary 20`: the new version loads with no
/// traffic, then the server's rollout gives it 20 %. With the config ship
/// wrote (one version kept) ship widens it before loading, so the serving
/// version never leaves; a user's own config that would drop it is refused
/// before anything loads, and the version taken back out.
#[test]
fn ship_canary_hands_the_new_version_to_a_rollout() {
    let d = tmp_dir("ship-canary");
    let csv = small_csv(&d, 200);
    let repo = d.join("repo");
    let r = json(&ship_bc(&csv, &repo, &[]));
    assert_eq!(r["ok"], true, "{r}");
    let cfg = repo.join("bc/config.pbtxt");
    assert!(
        !std::fs::read_to_string(&cfg)
            .unwrap()
            .contains("num_versions: 2")
    );
    let server = ServeProcess::start(&repo);

    let r = json(&ship_bc(
        &csv,
        &repo,
        &["--into", &server.url, "--canary", "20"],
    ));
    assert_eq!(r["ok"], true, "{r}");
    let detail = r["stages"][5]["detail"].as_str().unwrap();
    assert!(
        detail.contains("keeps the latest 2 versions loaded")
            && detail.contains("canary: rollout 1 → 2 over 20 → 50 → 100 %"),
        "{detail}"
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        text.starts_with("# Written by hone ship.") && text.contains("num_versions: 2"),
        "{text}"
    );
    assert_eq!(server.get("/v2/models/bc/versions/1/ready").0, 200);
    let (code, body) = server.get("/v2/models/bc/rollout");
    assert_eq!(code, 200, "{body}");
    let st: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (st["state"].as_str(), st["percent"].as_u64()),
        (Some("running"), Some(20))
    );
    // The step's progress and deadline, as `hone models status` shows them.
    assert_eq!(st["current"]["percent"], 20, "{st}");
    assert_eq!(st["current"]["next_percent"], 50, "{st}");
    assert!(
        st["current"]["deadline_unix"].as_f64().unwrap()
            > st["current"]["started_unix"].as_f64().unwrap()
    );
    let out = hone(&[
        "models",
        "status",
        "bc",
        "--url",
        &server.url,
        "--window",
        "0.1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("step 20 %: ") && text.contains("next: 50 %"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, body) = server.get("/v2/models/bc/traffic");
    let t: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(t["split"]["weights"], serde_json::json!({"1": 80, "2": 20}));
    let out = hone(&["models", "rollback", "bc", "--url", &server.url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, body) = server.get("/v2/models/bc/traffic");
    let t: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(t["split"]["weights"], serde_json::json!({"1": 100, "2": 0}));

    // A user's own config that serves versions 1 and 2 only: a canary of
    // version 3 is refused before the load.
    let own: String = std::fs::read_to_string(&cfg)
        .unwrap()
        .lines()
        .filter(|l| {
            !l.starts_with('#') && !l.contains("version_policy") && !l.contains("num_versions")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        &cfg,
        format!("{own}version_policy: {{ specific: {{ versions: [1, 2] }} }}\n"),
    )
    .unwrap();
    assert_eq!(server.post("/v2/repository/models/bc/load", "").0, 200);
    let out = ship_bc(&csv, &repo, &["--into", &server.url, "--canary", "20"]);
    assert!(!out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let err = r["error"].as_str().unwrap();
    assert!(
        err.contains("nothing was published or loaded") && err.contains("num_versions: 2"),
        "{err}"
    );
    assert!(!repo.join("bc/3").exists());
    // The refusal left the split as it was.
    let (_, body) = server.get("/v2/models/bc/traffic");
    let t: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(t["split"]["weights"], serde_json::json!({"1": 100, "2": 0}));
    assert_eq!(server.get("/v2/models/bc/versions/1/ready").0, 200);
    assert_ne!(server.get("/v2/models/bc/versions/3/ready").0, 200);
}
