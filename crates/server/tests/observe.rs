#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Request tracing and payload sampling on a real server (fake engine:
//! y = 3x): a `traceparent` from the client, over REST and gRPC, yields an
//! exported server span in that trace with decode/queue/compute/encode
//! children (an in-process OTLP/HTTP collector stub receives them); an
//! unsampled trace exports nothing; responses carry `traceparent`,
//! `Server-Timing` and the request id; payload samples land in rotating
//! JSON-lines files that stay under their cap.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::fake::{fake_server, grpc_request_x};
use hone_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use serde_json::{Value, json};

/// An OTLP/HTTP receiver: every POSTed body, parsed.
fn collector() -> (String, Arc<Mutex<Vec<Value>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let mut c = c.unwrap();
            let mut r = BufReader::new(c.try_clone().unwrap());
            let (mut len, mut line, mut path) = (0usize, String::new(), String::new());
            r.read_line(&mut path).unwrap();
            loop {
                line.clear();
                r.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            assert!(path.starts_with("POST /v1/traces "), "{path}");
            g.lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                .unwrap();
        }
    });
    (url, got)
}

/// The exported spans of `trace`, waiting up to 10 s for `n` of them.
fn spans_of(got: &Mutex<Vec<Value>>, trace: &str, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let spans: Vec<Value> = got
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| {
                b["resourceSpans"][0]["scopeSpans"][0]["spans"]
                    .as_array()
                    .unwrap()
                    .clone()
            })
            .filter(|s| s["traceId"] == trace)
            .collect();
        if spans.len() >= n {
            return spans;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no {n} spans of trace {trace} arrived");
}

/// The server span (parent `parent`) and its four children, well nested.
fn check_trace(spans: &[Value], parent: &str, model: &str) {
    let root: Vec<&Value> = spans
        .iter()
        .filter(|s| s["parentSpanId"] == parent)
        .collect();
    assert_eq!(root.len(), 1, "{spans:#?}");
    let root = root[0];
    assert_eq!(root["kind"], 2);
    assert_eq!(root["name"], format!("infer {model}"));
    let ns = |s: &Value, k: &str| s[k].as_str().unwrap().parse::<u64>().unwrap();
    let names: Vec<&str> = spans
        .iter()
        .filter(|s| s["parentSpanId"] == root["spanId"])
        .map(|s| {
            assert!(ns(s, "startTimeUnixNano") >= ns(root, "startTimeUnixNano"));
            assert!(ns(s, "endTimeUnixNano") <= ns(root, "endTimeUnixNano"));
            assert!(ns(s, "startTimeUnixNano") <= ns(s, "endTimeUnixNano"));
            s["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(names, ["decode", "queue", "compute", "encode"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_over_rest_and_grpc_reaches_the_collector() {
    let (url, got) = collector();
    let (s, _, dir) = fake_server("observe-trace", "scale=3", "", |_, mut o| {
        o.observe.otlp_endpoint = Some(url);
        // Only callers' sampled traces: requests without one start none.
        o.observe.trace_sample_ratio = 0.0;
        o
    })
    .await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", s.http_addr);
    let body =
        json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]});
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = http
        .post(format!("{base}/v2/models/m/infer"))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .header("x-request-id", "req-42")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tp = r.headers()["traceparent"].to_str().unwrap().to_string();
    assert!(
        tp.starts_with(&format!("00-{trace}-")) && tp.ends_with("-01"),
        "{tp}"
    );
    assert_ne!(
        &tp[36..52],
        "00f067aa0ba902b7",
        "the server's own span is the parent downstream"
    );
    let timing = r.headers()["server-timing"].to_str().unwrap().to_string();
    assert!(
        timing.starts_with("queue;dur=") && timing.contains(", compute;dur="),
        "{timing}"
    );
    assert_eq!(r.headers()["x-request-id"], "req-42");
    assert_eq!(
        r.json::<Value>().await.unwrap()["outputs"][0]["data"],
        json!([3.0, 6.0])
    );
    let spans = spans_of(&got, trace, 5);
    check_trace(&spans, "00f067aa0ba902b7", "m");
    let root = spans.iter().find(|s| s["kind"] == 2).unwrap();
    let attr = |k: &str| {
        root["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == k)
            .unwrap()["value"]
            .clone()
    };
    assert_eq!(attr("hone.request_id"), json!({"stringValue": "req-42"}));
    assert_eq!(attr("hone.model_version"), json!({"stringValue": "1"}));
    assert_eq!(&tp[36..52], root["spanId"].as_str().unwrap());

    // gRPC: the same from metadata, and the timing in response metadata.
    let gtrace = "0af7651916cd43dd8448eb211c80319c";
    let mut g = GrpcInferenceServiceClient::connect(format!("http://{}", s.grpc_addr.unwrap()))
        .await
        .unwrap();
    let mut req = tonic::Request::new(grpc_request_x());
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{gtrace}-b7ad6b7169203331-01").parse().unwrap(),
    );
    let resp = g.model_infer(req).await.unwrap();
    let md = resp.metadata();
    assert!(
        md.get("traceparent")
            .unwrap()
            .to_str()
            .unwrap()
            .contains(gtrace)
    );
    assert!(
        md.get("server-timing")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("compute;dur=")
    );
    assert!(!md.get("x-request-id").unwrap().is_empty());
    check_trace(&spans_of(&got, gtrace, 5), "b7ad6b7169203331", "m");

    // A failed request is a span too, with an error status and no phases.
    let ftrace = "11111111111111111111111111111111";
    let r = http
        .post(format!("{base}/v2/models/m/infer"))
        .header("traceparent", format!("00-{ftrace}-2222222222222222-01"))
        .json(&json!({"inputs": [{"name": "nope", "shape": [1], "datatype": "FP32", "data": [1]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let f = spans_of(&got, ftrace, 1);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["status"]["code"], 2);
    assert!(
        f[0]["status"]["message"].as_str().unwrap().contains("nope"),
        "{f:?}"
    );

    // Not sampled by the caller, and no traceparent at all (ratio 0): nothing.
    let quiet = "33333333333333333333333333333333";
    http.post(format!("{base}/v2/models/m/infer"))
        .header("traceparent", format!("00-{quiet}-4444444444444444-00"))
        .json(&body)
        .send()
        .await
        .unwrap();
    http.post(format!("{base}/v2/models/m/infer"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let metrics = format!("http://{}/metrics", s.metrics_addr.unwrap());
    // Flushes happen at most a second apart: wait for two.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let all: usize = got
        .lock()
        .unwrap()
        .iter()
        .map(|b| {
            b["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(all, 11, "5 + 5 + 1 spans, none for the unsampled requests");
    let text = http
        .get(metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    common::promtool_clean(&text);
    assert!(
        text.contains("hone_trace_spans_exported_total 11"),
        "{text}"
    );
    drop(s);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_samples_rotate_under_their_cap() {
    let logs = std::env::temp_dir().join(format!("hone-payloads-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&logs);
    let cap = 16 << 10;
    let l = logs.clone();
    let (s, _, dir) = fake_server("observe-payload", "scale=3", "", move |_, mut o| {
        o.observe.payload_dir = Some(l);
        o.observe.payload_ratio = 1.0;
        o.observe.payload_max_bytes = cap;
        o
    })
    .await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", s.http_addr);
    let n = 300;
    for i in 0..n {
        let r = http
            .post(format!("{base}/v2/models/m/infer"))
            .header("x-request-id", format!("r{i}"))
            .json(&json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [i + 100, 0.5]}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let metrics = format!("http://{}/metrics", s.metrics_addr.unwrap());
    let mut written = 0;
    for _ in 0..100 {
        let text = http
            .get(&metrics)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        written = text
            .lines()
            .find_map(|l| l.strip_prefix("hone_payload_samples_written_total "))
            .map_or(0, |v| v.parse().unwrap());
        if written == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        written, n,
        "every sample written (none dropped at this pace)"
    );
    let mut files: Vec<_> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let total: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
    assert!(files.len() >= 2, "rotated: {files:?}");
    assert!(total <= cap, "{total} bytes kept, cap {cap}");
    // The newest line is the last request, both sides, as JSON.
    let last = std::fs::read_to_string(files.last().unwrap()).unwrap();
    let line: Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
    assert_eq!(line["request_id"], format!("r{}", n - 1));
    assert_eq!(line["model_name"], "m");
    // (Inputs from 100: the fake engine crashes on 13 by design.)
    assert_eq!(line["inputs"][0]["data"], json!([(n + 99) as f64, 0.5]));
    assert_eq!(
        line["outputs"][0]["data"],
        json!([3.0 * (n + 99) as f64, 1.5])
    );
    // The oldest were removed to stay under the cap.
    let first = std::fs::read_to_string(&files[0]).unwrap();
    let first: Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    assert_ne!(first["request_id"], "r0");
    drop(s);
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(logs);
}
