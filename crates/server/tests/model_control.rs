//! Models loaded, reloaded and unloaded while the server runs: Triton's
//! repository API over HTTP and gRPC, and repository polling.

// Tests may unwrap and index: a panic here is a failed test, not a crashed server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::{ONES_OUTPUT, add_version, start, start_with};
use hone_server::ModelControl;
use hone_server::grpc::proto::{self, grpc_inference_service_client::GrpcInferenceServiceClient};
use serde_json::{Value, json};

async fn send(method: reqwest::Method, url: &str, body: Option<&Value>) -> (u16, Value) {
    let mut r = reqwest::Client::new().request(method, url);
    if let Some(b) = body {
        r = r.body(b.to_string());
    }
    let r = r.send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

async fn get(url: &str) -> (u16, Value) {
    send(reqwest::Method::GET, url, None).await
}

async fn post(url: &str, body: Option<&Value>) -> (u16, Value) {
    send(reqwest::Method::POST, url, body).await
}

/// First output value of an all-ones request, or the status on failure.
async fn infer_ones(base: &str, model: &str, width: usize) -> Result<f32, (u16, Value)> {
    let body = json!({"inputs": [{"name": "input", "shape": [1, width], "datatype": "FP32", "data": vec![1.0f32; width]}]});
    let (code, v) = post(&format!("{base}/v2/models/{model}/infer"), Some(&body)).await;
    if code != 200 {
        return Err((code, v));
    }
    Ok(v["outputs"][0]["data"][0].as_f64().unwrap() as f32)
}

fn index_state(index: &Value, model: &str, version: &str) -> Option<(String, String)> {
    index.as_array()?.iter().find_map(|e| {
        (e["name"] == model && e.get("version").and_then(Value::as_str).unwrap_or("") == version)
            .then(|| {
                (
                    e["state"].as_str().unwrap_or("").to_string(),
                    e.get("reason")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                )
            })
    })
}

#[tokio::test]
async fn http_load_reload_and_unload() {
    let t = start().await;
    let base = t.http.clone();
    let repo = t.dir.path().to_path_buf();

    // A model directory that appears after start is unknown until loaded.
    add_version(&repo, "mlp100", "fresh", 1);
    assert_eq!(get(&format!("{base}/v2/models/fresh")).await.0, 404);
    let (code, body) = post(&format!("{base}/v2/repository/models/fresh/load"), None).await;
    assert_eq!((code, body), (200, json!({})));
    let got = infer_ones(&base, "fresh", 100).await.unwrap();
    assert!((got - ONES_OUTPUT).abs() < 1e-6, "{got}");

    // Reloading with a new version: requests sent throughout all succeed,
    // and afterwards the new version is the one served (policy: latest 1).
    assert!(infer_ones(&base, "mlp", 30).await.is_ok());
    add_version(&repo, "mlp", "mlp", 2);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let base = base.clone();
        tokio::spawn(async move {
            let mut sent = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                infer_ones(&base, "mlp", 30).await?;
                sent += 1;
            }
            Ok::<_, (u16, Value)>(sent)
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (code, body) = post(&format!("{base}/v2/repository/models/mlp/load"), None).await;
    assert_eq!(code, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = load
        .await
        .unwrap()
        .expect("no request fails during a reload");
    assert!(sent > 0);
    let (_, meta) = get(&format!("{base}/v2/models/mlp")).await;
    assert_eq!(meta["versions"], json!(["2"]));
    assert_eq!(
        get(&format!("{base}/v2/models/mlp/versions/1")).await.0,
        404
    );

    // Unchanged versions are kept as they are, statistics included.
    assert!(infer_ones(&base, "mlp100", 100).await.is_ok());
    let count = |v: Value| v["model_stats"][0]["inference_count"].as_u64().unwrap();
    let before = count(
        get(&format!("{base}/v2/models/mlp100/versions/2/stats"))
            .await
            .1,
    );
    assert!(before >= 1);
    // A corrupt new version fails the load and says why; 1 and 2 keep serving.
    std::fs::create_dir_all(repo.join("mlp100/3")).unwrap();
    std::fs::write(repo.join("mlp100/3/model.onnx"), b"not a model").unwrap();
    let (code, body) = post(&format!("{base}/v2/repository/models/mlp100/load"), None).await;
    assert_eq!(code, 400, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains("mlp100") && msg.contains("version 3"), "{msg}");
    let after = count(
        get(&format!("{base}/v2/models/mlp100/versions/2/stats"))
            .await
            .1,
    );
    assert_eq!(after, before, "version 2 was reused, not reloaded");
    let got = infer_ones(&base, "mlp100", 100).await.unwrap();
    assert!((got - ONES_OUTPUT).abs() < 1e-6);
    let (_, index) = post(&format!("{base}/v2/repository/index"), None).await;
    assert_eq!(index_state(&index, "mlp100", "3").unwrap().0, "UNAVAILABLE");
    assert_eq!(index_state(&index, "mlp100", "2").unwrap().0, "READY");

    // Under `latest 1` a corrupt newest version would leave nothing to
    // serve: the version that was serving keeps serving instead.
    std::fs::create_dir_all(repo.join("mlp/3")).unwrap();
    std::fs::write(repo.join("mlp/3/model.onnx"), b"truncated").unwrap();
    let (code, body) = post(&format!("{base}/v2/repository/models/mlp/load"), None).await;
    assert_eq!(code, 400, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("version 3") && msg.contains("2 keep serving"),
        "{msg}"
    );
    assert!(infer_ones(&base, "mlp", 30).await.is_ok());
    let (_, meta) = get(&format!("{base}/v2/models/mlp")).await;
    assert_eq!(meta["versions"], json!(["2"]));
    std::fs::remove_dir_all(repo.join("mlp/3")).unwrap();
    // A config that no longer parses: the load fails, the model still serves.
    let cfg = std::fs::read_to_string(repo.join("mlp100/config.pbtxt")).unwrap();
    std::fs::write(repo.join("mlp100/config.pbtxt"), "max_batch_size: [oops").unwrap();
    let (code, body) = post(&format!("{base}/v2/repository/models/mlp100/load"), None).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("keep serving"),
        "{body}"
    );
    assert!(infer_ones(&base, "mlp100", 100).await.is_ok());
    std::fs::write(repo.join("mlp100/config.pbtxt"), cfg).unwrap();

    // Unload: new requests get 503, the index says why, others still serve.
    let (code, _) = post(
        &format!("{base}/v2/repository/models/fresh/unload"),
        Some(&json!({"parameters": {"unload_dependents": false}})),
    )
    .await;
    assert_eq!(code, 200);
    let (code, body) = infer_ones(&base, "fresh", 100).await.unwrap_err();
    assert_eq!(code, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("unloaded"));
    let (_, index) = post(&format!("{base}/v2/repository/index"), None).await;
    assert_eq!(
        index_state(&index, "fresh", "").unwrap(),
        ("UNAVAILABLE".into(), "unloaded".into())
    );
    // ... and loading it again brings it back.
    assert_eq!(
        post(&format!("{base}/v2/repository/models/fresh/load"), None)
            .await
            .0,
        200
    );
    assert!(infer_ones(&base, "fresh", 100).await.is_ok());

    // Bad requests to the API.
    for (path, body, want, needle) in [
        ("nothere/load", None, 404, "no model directory"),
        ("nothere/unload", None, 404, "unknown model"),
        ("..%2Fetc/load", None, 400, "invalid model name"),
        (".hidden/load", None, 400, "invalid model name"),
        (
            "mlp/load",
            Some(json!({"parameters": {"config": "{}"}})),
            400,
            "not supported",
        ),
        ("mlp/load", Some(json!("x")), 200, ""),
    ] {
        let url = format!("{base}/v2/repository/models/{path}");
        let (code, v) = match &body {
            Some(Value::String(s)) if s == "x" => {
                // Truncated JSON in the body.
                let r = reqwest::Client::new()
                    .post(&url)
                    .body("{\"parameters\":")
                    .send()
                    .await
                    .unwrap();
                let c = r.status().as_u16();
                (c, r.json().await.unwrap_or(Value::Null))
            }
            b => post(&url, b.as_ref()).await,
        };
        if needle.is_empty() {
            assert_eq!(code, 400, "{path}: {v}");
            assert!(v["error"].as_str().unwrap().contains("malformed JSON"));
            continue;
        }
        assert_eq!(code, want, "{path}: {v}");
        assert!(v["error"].as_str().unwrap().contains(needle), "{path}: {v}");
    }
    assert_eq!(get(&format!("{base}/v2/health/live")).await.0, 200);
    assert!(infer_ones(&base, "mlp", 30).await.is_ok());
    t.server.shutdown().await;
}

#[tokio::test]
async fn grpc_load_and_unload() {
    let t = start().await;
    let mut c = GrpcInferenceServiceClient::connect(t.grpc.clone())
        .await
        .unwrap();
    add_version(t.dir.path(), "mlp100", "fresh", 1);
    c.repository_model_load(proto::RepositoryModelLoadRequest {
        repository_name: String::new(),
        model_name: "fresh".into(),
        parameters: Default::default(),
    })
    .await
    .unwrap();
    let ready = |name: &str| proto::ModelReadyRequest {
        name: name.into(),
        version: String::new(),
    };
    assert!(
        c.model_ready(ready("fresh"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    c.repository_model_unload(proto::RepositoryModelUnloadRequest {
        repository_name: String::new(),
        model_name: "fresh".into(),
        parameters: Default::default(),
    })
    .await
    .unwrap();
    assert!(
        !c.model_ready(ready("fresh"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let err = c
        .repository_model_load(proto::RepositoryModelLoadRequest {
            repository_name: String::new(),
            model_name: "missing".into(),
            parameters: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    t.server.shutdown().await;
}

#[tokio::test]
async fn polling_picks_up_new_changed_and_removed_models() {
    let t = start_with(|o| o.model_control = ModelControl::Poll(Duration::from_millis(100))).await;
    let base = t.http.clone();
    let repo = t.dir.path().to_path_buf();
    let wait_for = |what: &'static str, cond: fn(&(u16, Value)) -> bool, url: String| async move {
        for _ in 0..100 {
            let r = get(&url).await;
            if cond(&r) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the poller never {what}");
    };

    // The staging-then-rename a publisher does: the poller sees it complete.
    add_version(&repo, "mlp100", ".staging", 1);
    std::fs::rename(repo.join(".staging"), repo.join("fresh")).unwrap();
    wait_for(
        "loaded the new model",
        |r| r.0 == 200,
        format!("{base}/v2/models/fresh/ready"),
    )
    .await;
    assert!(infer_ones(&base, "fresh", 100).await.is_ok());

    add_version(&repo, "mlp", "mlp", 2);
    wait_for(
        "loaded the new version",
        |r| r.1["versions"] == json!(["2"]),
        format!("{base}/v2/models/mlp"),
    )
    .await;

    std::fs::remove_dir_all(repo.join("fresh")).unwrap();
    wait_for(
        "unloaded the removed model",
        |r| r.0 == 404,
        format!("{base}/v2/models/fresh"),
    )
    .await;
    assert!(infer_ones(&base, "mlp", 30).await.is_ok());
    t.server.shutdown().await;
}

#[tokio::test]
async fn model_control_none_refuses_changes() {
    let t = start_with(|o| o.model_control = ModelControl::None).await;
    let (code, v) = post(&format!("{}/v2/repository/models/mlp/load", t.http), None).await;
    assert_eq!(code, 503);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("--model-control-mode none")
    );
    assert!(infer_ones(&t.http, "mlp", 30).await.is_ok());
    t.server.shutdown().await;
}

/// A pod whose repository is empty must not take traffic: not ready until a
/// model is loaded (or with strict readiness off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_repository_is_not_ready_until_a_model_loads() {
    let dir = common::TempDir::new();
    let s = hone_server::Server::start(hone_server::ServerOptions::ephemeral(dir.path()))
        .await
        .expect("server starts");
    let c = reqwest::Client::new();
    let base = format!("http://{}", s.http_addr);
    let ready = || async {
        c.get(format!("{base}/v2/health/ready"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(ready().await, 503);
    common::add_version(dir.path(), "mlp100", "late", 1);
    let r = c
        .post(format!("{base}/v2/repository/models/late/load"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(ready().await, 200);

    let empty = common::TempDir::new();
    let mut o = hone_server::ServerOptions::ephemeral(empty.path());
    o.strict_readiness = false;
    let lax = hone_server::Server::start(o).await.expect("server starts");
    let r = c
        .get(format!("http://{}/v2/health/ready", lax.http_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
