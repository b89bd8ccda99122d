#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! The three inference front ends (V2 REST, V2 gRPC, TF Serving REST) share
//! one core: the same bad request moves the same counters whichever
//! protocol carries it, and TF Serving's `:predict` is payload-sampled,
//! charged to the byte budget and compressed like V2 (fake engine: y = 3x
//! over x [batch, 2]).

mod common;

use std::io::Read;
use std::time::Duration;

use common::fake::{fake_server, grpc_request_x};
use hone_server::grpc::proto::{self, grpc_inference_service_client::GrpcInferenceServiceClient};
use serde_json::{Value, json};

/// The model's failure count and `hone_request_failure_total` by reason.
async fn failures(c: &reqwest::Client, http: &str, metrics: &str) -> (u64, String) {
    let st: Value = c
        .get(format!("{http}/v2/models/m/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let count = st["model_stats"][0]["inference_stats"]["fail"]["count"]
        .as_u64()
        .unwrap();
    let text = c.get(metrics).send().await.unwrap().text().await.unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("hone_request_failure_total{"))
        .collect();
    (count, lines.join("\n"))
}

async fn written(c: &reqwest::Client, metrics: &str, want: u64) -> u64 {
    let mut n = 0;
    for _ in 0..100 {
        let text = c.get(metrics).send().await.unwrap().text().await.unwrap();
        n = text
            .lines()
            .find_map(|l| l.strip_prefix("hone_payload_samples_written_total "))
            .map_or(0, |v| v.parse().unwrap());
        if n >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_core_behind_every_protocol() {
    let logs = std::env::temp_dir().join(format!("hone-one-core-logs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&logs);
    let l = logs.clone();
    let (s, _, dir) = fake_server("one-core", "scale=3", "", move |_, mut o| {
        o.observe.payload_dir = Some(l);
        o.observe.payload_ratio = 1.0;
        o.observe.access_log = true;
        // Room for a body of ~3 KB, not for it and its decoded tensors.
        o.max_inflight_bytes = Some(4096);
        o
    })
    .await;
    let c = reqwest::Client::new();
    let http = format!("http://{}", s.http_addr);
    let metrics = format!("http://{}/metrics", s.metrics_addr.unwrap());
    let mut grpc = GrpcInferenceServiceClient::connect(format!("http://{}", s.grpc_addr.unwrap()))
        .await
        .unwrap();

    // The same undecodable request on each protocol: one more failure
    // each, counted as the same reason.
    let (before, _) = failures(&c, &http, &metrics).await;
    let r = c
        .post(format!("{http}/v2/models/m/infer"))
        .body(
            r#"{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": ["a", 2]}]}"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (after_v2, by_reason_v2) = failures(&c, &http, &metrics).await;
    assert_eq!(after_v2, before + 1, "V2 REST counts a decode failure");

    let mut bad = grpc_request_x();
    bad.inputs[0].datatype = "FP33".into();
    let e = grpc.model_infer(bad).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("FP33"), "{}", e.message());
    let (after_grpc, _) = failures(&c, &http, &metrics).await;
    assert_eq!(after_grpc, after_v2 + 1, "gRPC counts a decode failure");

    let r = c
        .post(format!("{http}/v1/models/m:predict"))
        .body(r#"{"instances": [["a", 2]]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (after_tfs, by_reason) = failures(&c, &http, &metrics).await;
    assert_eq!(
        after_tfs,
        after_grpc + 1,
        "TF Serving counts a decode failure"
    );
    assert_ne!(by_reason, by_reason_v2, "the per-reason counter moved too");

    // The same request for an output the model lacks, on V2 REST and gRPC.
    let r = c
        .post(format!("{http}/v2/models/m/infer"))
        .json(
            &json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}],
                      "outputs": [{"name": "nope"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let mut bad = grpc_request_x();
    bad.outputs = vec![proto::model_infer_request::InferRequestedOutputTensor {
        name: "nope".into(),
        ..Default::default()
    }];
    let e = grpc.model_infer(bad).await.unwrap_err();
    assert!(
        e.message().contains("unknown output 'nope'"),
        "{}",
        e.message()
    );
    let (after_out, _) = failures(&c, &http, &metrics).await;
    assert_eq!(after_out, after_tfs + 2);

    // TF Serving :predict: payload-sampled and gzip-compressed like V2.
    let samples = written(&c, &metrics, 0).await;
    let r = c
        .post(format!("{http}/v1/models/m:predict"))
        .header("accept-encoding", "gzip")
        .header("x-request-id", "tfs-1")
        .body(r#"{"instances": [[1, 2]]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.headers()["x-request-id"], "tfs-1");
    assert!(r.headers().contains_key("server-timing"));
    let gz = r.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"predictions": [[3.0, 6.0]]})
    );
    assert_eq!(written(&c, &metrics, samples + 1).await, samples + 1);
    let line = std::fs::read_dir(&logs)
        .unwrap()
        .flat_map(|e| {
            std::fs::read_to_string(e.unwrap().path())
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .find(|l| l.contains("tfs-1"))
        .expect("the TF Serving request's sample");
    let line: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(line["outputs"][0]["data"], json!([3.0, 6.0]));

    // The decoded tensors count against --max-inflight-bytes: a body that
    // fits alone is refused with its decoded copy, 503 with Retry-After.
    let rows: Vec<String> = (0..300).map(|_| "[1,2]".to_string()).collect();
    let body = format!(r#"{{"instances": [{}]}}"#, rows.join(","));
    assert!(body.len() < 4096 && body.len() + 300 * 8 > 4096);
    let r = c
        .post(format!("{http}/v1/models/m:predict"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"].as_str().unwrap().contains("max-inflight-bytes"),
        "{e}"
    );

    // And the server still answers on every protocol.
    assert_eq!(
        grpc.model_infer(grpc_request_x())
            .await
            .unwrap()
            .into_inner()
            .outputs
            .len(),
        1
    );
    drop(s);
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(logs);
}
