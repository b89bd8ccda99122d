//! The real server on loopback ports, spoken to over HTTP and gRPC.

// Tests may unwrap and index: a panic here is a failed test, not a crashed server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{ONES_OUTPUT, ones_request, start};
use hone_server::grpc::proto::{self, grpc_inference_service_client::GrpcInferenceServiceClient};
use serde_json::{Value, json};

async fn get(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

async fn post(url: &str, body: &Value) -> (u16, Value) {
    // No Content-Type, as tritonclient and perf_analyzer send it.
    let r = reqwest::Client::new()
        .post(url)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn health_metadata_config_and_index() {
    let t = start().await;
    assert_eq!(
        get(&format!("{}/v2/health/live", t.http)).await,
        (200, json!({"live": true}))
    );
    // Two models failed to load, so strict readiness says no.
    assert_eq!(
        get(&format!("{}/v2/health/ready", t.http)).await,
        (503, json!({"ready": false}))
    );
    let (code, meta) = get(&format!("{}/v2", t.http)).await;
    assert_eq!(code, 200);
    assert_eq!(meta["name"], "hone");
    assert!(
        meta["extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("binary_tensor_data"))
    );

    let (code, m) = get(&format!("{}/v2/models/mlp100", t.http)).await;
    assert_eq!(code, 200);
    assert_eq!(m["versions"], json!(["1", "2"]));
    assert_eq!(
        m["inputs"][0],
        json!({"name": "input", "datatype": "FP32", "shape": [-1, 100]})
    );
    assert_eq!(
        m["outputs"][0],
        json!({"name": "output", "datatype": "FP32", "shape": [-1, 1]})
    );
    assert_eq!(
        get(&format!("{}/v2/models/mlp100/versions/1/ready", t.http))
            .await
            .0,
        200
    );
    assert_eq!(
        get(&format!("{}/v2/models/mlp100/versions/3", t.http))
            .await
            .0,
        404
    );
    assert_eq!(get(&format!("{}/v2/models/nope", t.http)).await.0, 404);

    let (_, c) = get(&format!("{}/v2/models/mlp100/config", t.http)).await;
    assert_eq!(c["max_batch_size"], 32);
    assert_eq!(c["input"][0]["dims"], json!([100]));
    assert_eq!(c["dynamic_batching"]["max_queue_delay_microseconds"], 2000);
    assert_eq!(c["instance_group"][0]["count"], 2);
    let (_, c) = get(&format!("{}/v2/models/mlp/config", t.http)).await;
    assert_eq!(c["input"][0]["dims"], json!([30]));

    let (code, index) = post(&format!("{}/v2/repository/index", t.http), &json!({})).await;
    assert_eq!(code, 200);
    let by = |n: &str| {
        index
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["name"] == n)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(by("mlp100").len(), 2);
    let corrupt = &by("corrupt")[0];
    assert_eq!(corrupt["state"], "UNAVAILABLE");
    assert!(
        corrupt["reason"].as_str().unwrap().contains("cannot load"),
        "{corrupt}"
    );
    let mismatch = &by("mismatch")[0];
    assert!(
        mismatch["reason"]
            .as_str()
            .unwrap()
            .contains("TYPE_FP32 [99], the model has TYPE_FP32 [100]"),
        "{mismatch}"
    );
    let (code, body) = get(&format!("{}/v2/models/corrupt/ready", t.http)).await;
    assert_eq!((code, &body["ready"]), (503, &json!(false)));
    let (_, ready) = post(
        &format!("{}/v2/repository/index", t.http),
        &json!({"ready": true}),
    )
    .await;
    assert!(
        ready
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["state"] == "READY")
    );
    t.server.shutdown().await;
}

#[tokio::test]
async fn json_and_binary_inference() {
    let t = start().await;
    for path in ["mlp100", "mlp100/versions/1", "mlp100/versions/2"] {
        let (code, r) = post(
            &format!("{}/v2/models/{path}/infer", t.http),
            &ones_request(2),
        )
        .await;
        assert_eq!(code, 200, "{r}");
        assert_eq!(r["outputs"][0]["shape"], json!([2, 1]));
        let data: Vec<f32> = serde_json::from_value(r["outputs"][0]["data"].clone()).unwrap();
        assert_eq!(data, vec![ONES_OUTPUT, ONES_OUTPUT]);
    }
    // Binary in, binary out.
    let header = json!({
        "id": "abc",
        "inputs": [{"name": "input", "shape": [1, 100], "datatype": "FP32", "parameters": {"binary_data_size": 400}}],
        "outputs": [{"name": "output", "parameters": {"binary_data": true}}]
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    for _ in 0..100 {
        body.extend_from_slice(&1f32.to_le_bytes());
    }
    let r = reqwest::Client::new()
        .post(format!("{}/v2/models/mlp100/infer", t.http))
        .header("Inference-Header-Content-Length", header.len())
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let n: usize = r.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = r.bytes().await.unwrap();
    let head: Value = serde_json::from_slice(&bytes[..n]).unwrap();
    assert_eq!(head["id"], "abc");
    assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 4);
    assert_eq!(
        f32::from_le_bytes(bytes[n..n + 4].try_into().unwrap()),
        ONES_OUTPUT
    );
    t.server.shutdown().await;
}

#[tokio::test]
async fn grpc_inference_and_metadata() {
    let t = start().await;
    let mut c = GrpcInferenceServiceClient::connect(t.grpc.clone())
        .await
        .unwrap();
    assert!(
        c.server_live(proto::ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    let ready = |name: &str| proto::ModelReadyRequest {
        name: name.into(),
        version: String::new(),
    };
    assert!(
        c.model_ready(ready("mlp100"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        !c.model_ready(ready("corrupt"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let cfg = c
        .model_config(proto::ModelConfigRequest {
            name: "mlp".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert_eq!(
        (cfg.max_batch_size, cfg.input[0].dims.clone()),
        (64, vec![30])
    );
    assert_eq!(cfg.input[0].data_type, proto::DataType::TypeFp32 as i32);

    let input = |contents| proto::model_infer_request::InferInputTensor {
        name: "input".into(),
        datatype: "FP32".into(),
        shape: vec![1, 100],
        contents,
        ..Default::default()
    };
    let raw: Vec<u8> = (0..100).flat_map(|_| 1f32.to_le_bytes()).collect();
    let typed = proto::InferTensorContents {
        fp32_contents: vec![1.0; 100],
        ..Default::default()
    };
    for (inp, raw_in) in [
        (input(None), vec![bytes::Bytes::from(raw)]),
        (input(Some(typed)), vec![]),
    ] {
        let r = c
            .model_infer(proto::ModelInferRequest {
                model_name: "mlp100".into(),
                inputs: vec![inp],
                raw_input_contents: raw_in,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.outputs[0].shape, vec![1, 1]);
        assert_eq!(r.outputs[0].datatype, "FP32");
        assert_eq!(
            f32::from_le_bytes(r.raw_output_contents[0][..4].try_into().unwrap()),
            ONES_OUTPUT
        );
    }
    let bad = c
        .model_infer(proto::ModelInferRequest {
            model_name: "mlp100".into(),
            inputs: vec![proto::model_infer_request::InferInputTensor {
                shape: vec![1, 99],
                ..input(None)
            }],
            raw_input_contents: vec![bytes::Bytes::from(vec![0u8; 396])],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(
        bad.message()
            .contains("expected FP32 [-1, 100], received FP32 [1, 99]"),
        "{}",
        bad.message()
    );
    let unknown = c
        .model_infer(proto::ModelInferRequest {
            model_name: "nope".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(unknown.unwrap_err().code(), tonic::Code::NotFound);
    let index = c
        .repository_index(proto::RepositoryIndexRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        index.models.iter().filter(|m| m.state == "READY").count(),
        3
    );
    t.server.shutdown().await;
}

#[tokio::test]
async fn concurrent_requests_are_batched_and_split_correctly() {
    let t = start().await;
    // Row r is all r/40, so every request has its own answer to check.
    let url = format!("{}/v2/models/mlp100/versions/1/infer", t.http);
    let single = |v: f32, rows: usize| json!({"inputs": [{"name": "input", "shape": [rows, 100], "datatype": "FP32", "data": vec![v; rows * 100]}]});
    let mut expected = Vec::new();
    for r in 0..40 {
        let (_, out) = post(&url, &single(r as f32 / 40.0, 1)).await;
        expected.push(out["outputs"][0]["data"][0].clone());
    }
    let before: Value = get(&format!("{}/v2/models/mlp100/versions/1/stats", t.http))
        .await
        .1;
    let tasks: Vec<_> = (0..40)
        .map(|r| {
            let url = url.clone();
            let body = single(r as f32 / 40.0, 1 + r % 3);
            tokio::spawn(async move { (r, post(&url, &body).await) })
        })
        .collect();
    for task in tasks {
        let (r, (code, out)) = task.await.unwrap();
        assert_eq!(code, 200);
        let data = out["outputs"][0]["data"].as_array().unwrap().clone();
        assert_eq!(data.len(), 1 + r % 3);
        assert!(
            data.iter().all(|d| *d == expected[r]),
            "request {r}: {data:?} != {}",
            expected[r]
        );
    }
    let after: Value = get(&format!("{}/v2/models/mlp100/versions/1/stats", t.http))
        .await
        .1;
    let delta = |k: &str| {
        after["model_stats"][0][k].as_u64().unwrap() - before["model_stats"][0][k].as_u64().unwrap()
    };
    let rows: u64 = (0..40).map(|r| 1 + r % 3).sum();
    assert_eq!(delta("inference_count"), rows);
    assert!(
        delta("execution_count") < 40,
        "no batching happened: {} executions",
        delta("execution_count")
    );

    let metrics = reqwest::get(&t.metrics)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    common::promtool_clean(&metrics);
    let line = format!(
        "hone_inference_count_total{{model=\"mlp100\",version=\"1\"}} {}",
        rows + 40
    );
    assert!(metrics.contains(&line), "{line} not in metrics");
    assert!(metrics.contains("hone_model_ready{model=\"corrupt\",version=\"1\"} 0"));
    assert!(metrics.contains("hone_queue_duration_seconds_count{model=\"mlp100\",version=\"1\"}"));
    t.server.shutdown().await;
}
