//! `hone bench` against a real `hone serve` on loopback: every protocol,
//! closed and open loop, CSV data, and a clear error for a model the server
//! does not have.

mod common;

use common::{ServeProcess, bench_json, hone, s, tmp, workspace};
use serde_json::Value;

/// A repository with the example mlp (30 features) and mlp100.
fn server(name: &str) -> ServeProcess {
    server_with(name, &[])
}

fn server_with(name: &str, extra: &[&str]) -> ServeProcess {
    let repo = tmp("bench", name);
    for m in ["mlp", "mlp100"] {
        common::example_model(&repo, m, "1");
    }
    ServeProcess::start_with(&repo, extra)
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

/// A step that ran cleanly: answers, no errors, ordered percentiles, and the
/// server's own split read from its statistics.
fn clean(step: &Value) {
    assert!(f(step, "ok") > 0.0, "{step}");
    assert_eq!(step["errors"], serde_json::json!({}), "{step}");
    let l = &step["latency_us"];
    assert!(f(l, "p50") <= f(l, "p90") && f(l, "p90") <= f(l, "p99") && f(l, "p99") <= f(l, "max"));
    assert!(f(l, "p50") > 0.0);
    let server = &step["server"];
    assert!(f(server, "mean_batch") >= 1.0, "{step}");
    assert!(f(server, "executions") > 0.0, "{step}");
    assert!(f(server, "compute_us") > 0.0, "{step}");
}

#[test]
fn closed_loop_over_every_protocol() {
    let srv = server("closed");
    let r = bench_json(&srv, &["--model", "mlp100", "--concurrency", "1,4"]);
    let steps = r["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["load"], "c=1");
    assert_eq!(steps[1]["concurrency"], 4);
    steps.iter().for_each(clean);
    assert_eq!(r["inputs"][0], "input FP32 [1, 100]");
    for protocol in ["http-binary", "grpc"] {
        let r = bench_json(
            &srv,
            &[
                "--model",
                "mlp100",
                "--protocol",
                protocol,
                "--batch",
                "4",
                "--concurrency",
                "2",
            ],
        );
        let step = &r["steps"][0];
        clean(step);
        assert_eq!(r["protocol"], protocol);
        let ratio = f(step, "inferences_per_sec") / f(step, "throughput");
        assert!((ratio - 4.0).abs() < 1e-9, "{step}");
    }
}

#[test]
fn open_loop_sends_at_the_rate_asked() {
    let srv = server("open");
    let r = bench_json(&srv, &["--model", "mlp100", "--request-rate", "200"]);
    let step = &r["steps"][0];
    clean(step);
    assert_eq!(step["request_rate"], 200.0);
    // 200 a second for one second: every one due is sent and answered.
    let n = f(step, "ok");
    assert!(
        (190.0..=201.0).contains(&n),
        "{n} requests at 200/s for 1 s"
    );
    assert_eq!(step["dropped"], 0);
}

#[test]
fn rows_from_a_csv_and_the_table() {
    let srv = server("csv");
    let csv = workspace().join("examples/data/breast_cancer.csv");
    let r = bench_json(&srv, &["--model", "mlp", "--data", s(&csv), "--batch", "8"]);
    clean(&r["steps"][0]);
    assert_eq!(r["inputs"][0], "input FP32 [8, 30]");
    // Without --json: the table.
    let out = hone(&[
        "bench",
        "--url",
        &srv.url,
        "--model",
        "mlp",
        "--duration",
        "300ms",
        "--warmup",
        "0s",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("p99 ms") && text.contains("c=1"), "{text}");
}

#[test]
fn what_cannot_run_is_a_clear_error() {
    let srv = server("errors");
    let out = hone(&[
        "bench",
        "--url",
        &srv.url,
        "--model",
        "nope",
        "--duration",
        "1s",
    ]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("404") && e.contains("nope"), "{e}");
    // A CSV whose columns do not fit the input.
    let csv = workspace().join("examples/data/breast_cancer.csv");
    let out = hone(&[
        "bench",
        "--url",
        &srv.url,
        "--model",
        "mlp100",
        "--data",
        s(&csv),
    ]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("30 feature columns") && e.contains("100"), "{e}");
    // Nothing listening.
    let out = hone(&["bench", "--url", "http://127.0.0.1:9", "--model", "m"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
}

#[test]
fn a_server_with_api_keys_is_driven_with_one() {
    let dir = tmp("bench", "keys-files");
    let key = dir.join("key");
    std::fs::write(&key, "# the inference key\nk-123\n").unwrap();
    let srv = server_with("keys", &["--api-key-file", s(&key)]);
    for protocol in ["http-json", "grpc"] {
        let r = bench_json(
            &srv,
            &[
                "--model",
                "mlp100",
                "--protocol",
                protocol,
                "--api-key-file",
                s(&key),
            ],
        );
        clean(&r["steps"][0]);
    }
    // Without the key: the first request's 401 is the error.
    let out = hone(&[
        "bench",
        "--url",
        &srv.url,
        "--model",
        "mlp100",
        "--duration",
        "1s",
    ]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("401"), "{e}");
}

#[test]
fn an_https_server_is_driven_with_its_ca() {
    let dir = tmp("bench", "tls-files");
    common::pki(&dir);
    let srv = server_with(
        "tls",
        &[
            "--tls-cert",
            s(&dir.join("server.pem")),
            "--tls-key",
            s(&dir.join("server.key")),
        ],
    );
    assert!(srv.url.starts_with("https://"), "{}", srv.url);
    let ca = dir.join("ca.pem");
    for protocol in ["http-binary", "grpc"] {
        let r = bench_json(
            &srv,
            &[
                "--model",
                "mlp100",
                "--protocol",
                protocol,
                "--cacert",
                s(&ca),
            ],
        );
        clean(&r["steps"][0]);
    }
    // Without the CA: a clear error, not a hang.
    let out = hone(&["bench", "--url", &srv.url, "--model", "mlp100"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cacert"));
}
