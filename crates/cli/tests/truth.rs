#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::needless_range_loop
)]
//! Truth after deployment on the shared breast-cancer data. A model shipped
//! on the train and validation rows answers the held-out test rows: their
//! labels, posted as feedback, give the live accuracy, AUC and log-loss
//! `hone eval` gives on the same rows; `hone score` writes the same
//! predictions in process, through the server and split in shards; and a
//! Parquet file larger than the scoring process's memory scores with
//! bounded memory.

mod common;

use std::path::{Path, PathBuf};

use common::{ServeProcess, hone, s};
use serde_json::{Value, json};

/// Header, feature rows (label dropped) and labels (as written) of a CSV.
fn rows(path: &Path) -> (Vec<String>, Vec<Vec<f64>>, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let head: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let li = head.iter().position(|h| h == "label").unwrap();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for l in lines.filter(|l| !l.is_empty()) {
        let cells: Vec<&str> = l.split(',').collect();
        y.push(cells[li].to_string());
        x.push(
            cells
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != li)
                .map(|(_, v)| v.parse().unwrap())
                .collect(),
        );
    }
    let names = head.into_iter().filter(|h| h != "label").collect();
    (names, x, y)
}

/// Ships the breast-cancer model on the train and validation rows.
fn ship(d: &Path, bc: &Path) -> PathBuf {
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
    repo
}

/// A CSV's columns by name.
fn csv_columns(path: &Path) -> std::collections::BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let head: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let mut cols: std::collections::BTreeMap<String, Vec<String>> =
        head.iter().map(|h| (h.clone(), Vec::new())).collect();
    for l in lines.filter(|l| !l.is_empty()) {
        for (h, v) in head.iter().zip(l.split(',')) {
            cols.get_mut(h).unwrap().push(v.to_string());
        }
    }
    cols
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn feedback_and_score_agree_with_eval_on_the_held_out_rows() {
    let Some(shared) = common::shared("feedback_and_score_agree_with_eval_on_the_held_out_rows")
    else {
        return;
    };
    let bc = shared.join("tabular/breast_cancer");
    let d = common::tmp("truth", "agree");
    let repo = ship(&d, &bc);
    let test_csv = bc.join("test.csv");
    let model = repo.join("bc/1/model.onnx");
    let out = hone(&["eval", s(&model), "--data", s(&test_csv), "--json"]);
    let eval: Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = &eval["report"];

    // Served, with the client's ids; the labels come back as feedback.
    let (_, x, y) = rows(&test_csv);
    let server = ServeProcess::start(&repo);
    let mut served: Vec<f64> = Vec::new();
    let mut items = Vec::new();
    for (k, (chunk, labels)) in x.chunks(50).zip(y.chunks(50)).enumerate() {
        let id = format!("batch-{k}");
        let data: Vec<f64> = chunk.iter().flatten().copied().collect();
        let body = json!({"id": id, "inputs": [{"name": "input", "datatype": "FP32",
                          "shape": [chunk.len(), chunk[0].len()], "data": data}]});
        let (code, text) = server.post("/v2/models/bc/infer", &body.to_string());
        assert_eq!(code, 200, "{text}");
        let a: Value = serde_json::from_str(&text).unwrap();
        served.extend(
            a["outputs"][0]["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap()),
        );
        items.push(json!({"id": id, "labels": labels}));
    }
    let (code, text) = server.post("/v2/models/bc/feedback", &Value::Array(items).to_string());
    assert_eq!(code, 200, "{text}");
    let (_, text) = server.get("/v2/models/bc/feedback");
    let f: Value = serde_json::from_str(&text).unwrap();
    let v = &f["versions"][0];
    assert_eq!(v["labels"], 114, "{f}");
    let live = &v["live"];
    assert_eq!(
        live["accuracy"], report["accuracy"],
        "live {live} eval {report}"
    );
    assert_eq!(
        live["confusion"], report["confusion"],
        "live {live} eval {report}"
    );
    for m in ["auc", "logloss"] {
        assert!(
            close(live[m].as_f64().unwrap(), report[m].as_f64().unwrap(), 1e-6),
            "{m}: live {live} eval {report}"
        );
    }
    assert!(v["card"]["accuracy"].as_f64().is_some(), "{f}");

    // Scored in process: the labels give eval's accuracy, the probabilities
    // are the served ones.
    let scored = d.join("scored.csv");
    let out = hone(&[
        "score",
        s(&repo.join("bc")),
        "--data",
        s(&test_csv),
        "-o",
        s(&scored),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["rows"], 114, "{r}");
    assert_eq!(r["columns"], json!(["label", "p_0", "p_1"]), "{r}");
    let cols = csv_columns(&scored);
    let right = cols["label"].iter().zip(&y).filter(|(a, b)| a == b).count();
    let acc = right as f64 / y.len() as f64;
    assert!(
        close(acc, report["accuracy"].as_f64().unwrap(), 1e-12),
        "{acc} {report}"
    );
    for (p, q) in cols["p_1"].iter().zip(&served) {
        assert!(close(p.parse().unwrap(), *q, 1e-6), "{p} {q}");
    }

    // Through the server, and split in three shards of 20-row chunks.
    let remote = d.join("remote.csv");
    let out = hone(&[
        "score",
        s(&repo.join("bc")),
        "--data",
        s(&test_csv),
        "-o",
        s(&remote),
        "--url",
        &server.url,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rcols = csv_columns(&remote);
    assert_eq!(rcols["label"], cols["label"]);
    for (p, q) in rcols["p_1"].iter().zip(&cols["p_1"]) {
        assert!(
            close(p.parse().unwrap(), q.parse().unwrap(), 1e-6),
            "{p} {q}"
        );
    }
    let mut labels_by_shard = Vec::new();
    for i in 0..3 {
        let part = d.join("part-{shard}.csv");
        let out = hone(&[
            "score",
            s(&repo.join("bc")),
            "--data",
            s(&test_csv),
            "-o",
            s(&part),
            "--chunk-rows",
            "20",
            "--shards",
            "3",
            "--shard-index",
            &i.to_string(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        labels_by_shard.push(csv_columns(&d.join(format!("part-{i}.csv")))["label"].clone());
    }
    // Chunk k went to shard k % 3: put back in order, the same labels.
    let mut merged = Vec::new();
    for k in 0..6 {
        let part = &labels_by_shard[k % 3];
        let at = (k / 3) * 20;
        merged.extend(part[at..(at + 20).min(part.len())].iter().cloned());
    }
    assert_eq!(merged, cols["label"]);
    let out = hone(&[
        "score",
        s(&repo.join("bc")),
        "--data",
        s(&test_csv),
        "-o",
        s(&scored),
        "--shards",
        "2",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("put {shard} in the name"));
    let out = hone(&[
        "score",
        s(&repo.join("bc")),
        "--data",
        s(&test_csv),
        "-o",
        s(&scored),
        "--key",
        "nope",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--key \"nope\""));
}

/// The highest VmHWM (peak resident set) a running process reported.
fn peak_rss_kib(child: &mut std::process::Child) -> u64 {
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        if child.try_wait().unwrap().is_some() {
            return peak;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_parquet_file_larger_than_the_process_memory_scores_in_chunks() {
    use hone_data::stream::{Column, Sink};
    let Some(shared) =
        common::shared("a_parquet_file_larger_than_the_process_memory_scores_in_chunks")
    else {
        return;
    };
    let bc = shared.join("tabular/breast_cancer");
    let d = common::tmp("truth", "big");
    let model = d.join("bc.onnx");
    let out = hone(&[
        "train",
        s(&bc.join("train.csv")),
        "--target",
        "label",
        "--val",
        s(&bc.join("val.csv")),
        "-o",
        s(&model),
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Test rows with noise, as doubles that do not compress, plus an id.
    let (names, x, _) = rows(&bc.join("test.csv"));
    let per = 10_000;
    let write = |path: &std::path::Path, groups: usize| {
        let mut cols = vec!["id".to_string()];
        cols.extend(names.iter().cloned());
        let mut sink = Sink::create(path, cols).unwrap();
        let mut state = 1u64;
        for g in 0..groups {
            let ids: Vec<String> = (0..per).map(|i| format!("row-{}", g * per + i)).collect();
            let mut columns = vec![Column::Text(ids)];
            for j in 0..names.len() {
                columns.push(Column::Number(
                    (0..per)
                        .map(|i| {
                            state = state
                                .wrapping_mul(6364136223846793005)
                                .wrapping_add(1442695040888963407);
                            let noise = (state >> 11) as f64 / (1u64 << 53) as f64;
                            x[(g * per + i) % x.len()][j] * (0.95 + 0.1 * noise)
                        })
                        .collect(),
                ));
            }
            sink.write(&columns).unwrap();
        }
        sink.finish().unwrap();
    };
    // The peak RSS of `hone score` on a file of `groups` row groups.
    let score = |name: &str, groups: usize| {
        let data = d.join(format!("{name}.parquet"));
        write(&data, groups);
        let scored = d.join(format!("{name}-scored.parquet"));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hone"))
            .args([
                "score",
                s(&model),
                "--data",
                s(&data),
                "-o",
                s(&scored),
                "--json",
            ])
            // Chunks of 2048 rows: a few MiB in flight beside the engine.
            .args(["--chunk-rows", "2048"])
            // glibc's per-thread arenas keep freed chunks, more of them the
            // busier the cores (22 MB seen in CI): one arena measures the
            // streaming, not the allocator.
            .env("MALLOC_ARENA_MAX", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let peak = peak_rss_kib(&mut child);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["rows"], groups * per, "{r}");
        assert_eq!(r["columns"][0], "id", "the id is a key column: {r}");
        let kib = std::fs::metadata(&data).unwrap().len() / 1024;
        (peak, kib, scored)
    };
    let (small_peak, _, _) = score("small", 1);
    let (peak, file_kib, scored) = score("big", 60);
    // Sixty times the rows may not grow the process by a third of the
    // file: it streams. Holding every row would take more (the features
    // alone are 72 MB as the model's float32 input), while streaming grew
    // it by 3 MB on idle cores and under 23 MB on busy ones. The process's own
    // floor (ONNX Runtime's pages, the binary) differs by machine.
    let growth = peak.saturating_sub(small_peak);
    println!(
        "score: {file_kib} KiB Parquet file, peak RSS {peak} KiB, {small_peak} KiB on one row group"
    );
    assert!(
        growth < file_kib / 3,
        "peak RSS grew by {growth} KiB from one row group to sixty ({file_kib} KiB file)"
    );
    let mut back = hone_data::stream::Chunks::open(&scored, 1_000_000).unwrap();
    let t = back.next_chunk().unwrap().unwrap();
    assert_eq!(t.rows(), 60 * per);
    assert_eq!(t.columns[0][per + 1], format!("row-{}", per + 1));
}
