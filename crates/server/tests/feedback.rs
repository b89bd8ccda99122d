#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Ground truth after deployment on a real server (fake engines: y = K·x
//! over x [batch, 2], read as two class scores of a binary model whose
//! card names the classes "no" and "yes"): answers over V2 REST, gRPC and
//! TF Serving are kept under their id (the client's or one hone made up and
//! answered with), labels join them, the live figures show in JSON,
//! metrics and the dashboard, bad labels get a 400 naming the label, and a
//! rollout gated on live accuracy rolls a wrong version back and promotes
//! a right one.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::fake::{ONE_INSTANCE, fake_server, grpc_request_x, write_model};
use hone_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use serde_json::{Value, json};

const ALL: &str = "version_policy: { all: {} }\n";

fn card(dir: &std::path::Path, v: u32) {
    let card = json!({"format": "hone.model-card/1", "task": "binary", "labels": ["no", "yes"],
        "target": "label", "output": {"name": "y"},
        "metrics": {"validation": {"accuracy": 0.95, "rows": 100}}});
    std::fs::write(dir.join(format!("m/{v}/model.card.json")), card.to_string()).unwrap();
}

/// A server holding m versions 1 (y = x), 2 (y = -x: every class wrong)
/// and 3 (y = x), each with a card.
async fn server(tag: &str) -> hone_server::Server {
    let (s, _, _) = fake_server(tag, "scale=1", ALL, |dir, o| {
        let cfg = format!("{ONE_INSTANCE}{ALL}");
        write_model(dir, "m", 2, "scale=-1", &cfg);
        write_model(dir, "m", 3, "scale=1", &cfg);
        for v in 1..=3 {
            card(dir, v);
        }
        o
    })
    .await;
    s
}

async fn post(c: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let r = c.post(url).json(body).send().await.unwrap();
    let code = r.status().as_u16();
    let text = r.text().await.unwrap();
    (code, serde_json::from_str(&text).unwrap_or(json!(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_join_answers_of_every_protocol_and_give_live_figures() {
    let s = server("feedback").await;
    let c = reqwest::Client::new();
    let base = format!("http://{}/v2/models/m", s.http_addr);
    let fb = format!("{base}/feedback");

    // The client's own id; two rows, both right.
    let (code, r) = post(
        &c,
        &format!("{base}/versions/1/infer"),
        &json!({"id": "req-a", "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [0.2, 0.8, 0.9, 0.1]}]}),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["id"], "req-a");
    let (code, r) = post(&c, &fb, &json!({"id": "req-a", "labels": ["yes", "no"]})).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(
        r,
        json!({"id": "req-a", "outcome": "matched", "rows": 2, "version": "1"})
    );

    // No id: hone answers with one, in the body and as x-request-id.
    let r = c
        .post(format!("{base}/versions/1/infer"))
        .json(&json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [0.3, 0.7]}]}))
        .send()
        .await
        .unwrap();
    let header = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], header.as_str());
    // A number matches the class whose label is that number's text; here
    // the classes are words, so the label is the word.
    let (code, r) = post(&c, &fb, &json!({"id": header, "labels": ["yes"]})).await;
    assert_eq!((code, &r["outcome"]), (200, &json!("matched")), "{r}");

    // An empty id is none: hone makes one up, as gRPC does.
    let (code, r) = post(
        &c,
        &format!("{base}/versions/1/infer"),
        &json!({"id": "", "inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [0.3, 0.7]}]}),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    assert!(r["id"].as_str().is_some_and(|id| !id.is_empty()), "{r}");

    // gRPC without an id: the response carries the one hone kept.
    let mut g = GrpcInferenceServiceClient::connect(format!("http://{}", s.grpc_addr.unwrap()))
        .await
        .unwrap();
    let mut req = grpc_request_x();
    req.model_version = "1".into();
    let resp = g.model_infer(req).await.unwrap().into_inner();
    assert!(!resp.id.is_empty());
    let (code, r) = post(&c, &fb, &json!({"id": resp.id, "labels": ["yes"]})).await;
    assert_eq!((code, &r["outcome"]), (200, &json!("matched")), "{r}");

    // TF Serving: the id comes back as x-request-id.
    let r = c
        .post(format!(
            "http://{}/v1/models/m/versions/1:predict",
            s.http_addr
        ))
        .json(&json!({"instances": [[0.6, 0.4]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let (code, r) = post(&c, &fb, &json!([{"id": id, "labels": ["no"]}])).await;
    assert_eq!((code, &r[0]["outcome"]), (200, &json!("matched")), "{r}");

    // Twice, never seen, and labels that do not fit.
    let (_, r) = post(&c, &fb, &json!({"id": "req-a", "labels": ["yes", "no"]})).await;
    assert_eq!(r["outcome"], "duplicate");
    let (_, r) = post(&c, &fb, &json!({"id": "nope", "labels": ["yes"]})).await;
    assert_eq!(r["outcome"], "unmatched");
    post(
        &c,
        &format!("{base}/versions/1/infer"),
        &json!({"id": "req-b", "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [0.2, 0.8, 0.9, 0.1]}]}),
    )
    .await;
    for (body, says) in [
        (json!({"id": "req-b", "labels": ["yes"]}), "labels: 1 given"),
        (
            json!({"id": "req-b", "labels": ["yes", "maybe"]}),
            "labels[1]",
        ),
        (json!({"id": "req-b", "labels": "yes"}), "labels: a list"),
        (json!({"labels": ["yes", "no"]}), "id: a string"),
        (
            json!([{"id": "req-b", "labels": ["yes", "no"]}, {"id": 3}]),
            "[1].id",
        ),
    ] {
        let (code, r) = post(&c, &fb, &body).await;
        assert_eq!(code, 400, "{body}: {r}");
        assert!(r["error"].as_str().unwrap().contains(says), "{body}: {r}");
    }
    let r = c.post(&fb).body("{").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = c.get(format!("{fb}?window=-1")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .post(format!("http://{}/v2/models/nope/feedback", s.http_addr))
        .json(&json!({"id": "x", "labels": [1]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // 5 labelled rows, all right; the card's figure beside them.
    let v: Value = c.get(&fb).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["labels"]["matched"], 4, "{v}");
    assert_eq!(v["labels"]["duplicate"], 1, "{v}");
    assert_eq!(v["labels"]["unmatched"], 1, "{v}");
    let v1 = &v["versions"][0];
    assert_eq!(v1["version"], "1");
    assert_eq!(v1["labels"], 5, "{v}");
    assert_eq!(v1["live"]["accuracy"], 1.0, "{v}");
    assert_eq!(v1["card"]["accuracy"], 0.95, "{v}");
    let windowed: Value = c
        .get(format!("{fb}?window=3600"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(windowed["versions"][0]["labels"], 5, "{windowed}");

    let m = c
        .get(format!("http://{}/metrics", s.metrics_addr.unwrap()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "hone_live_metric{model=\"m\",version=\"1\",metric=\"accuracy\"} 1",
        "hone_live_labels{model=\"m\",version=\"1\"} 5",
        "hone_card_metric{model=\"m\",version=\"1\",metric=\"accuracy\"} 0.95",
        "hone_feedback_total{model=\"m\",outcome=\"duplicate\"} 1",
    ] {
        assert!(m.lines().any(|l| l == line), "{line} missing:\n{m}");
    }
    common::promtool_clean(&m);
    let d: Value = c
        .get(format!("http://{}/dashboard.json", s.http_addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let v1 = d["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == "1")
        .unwrap();
    assert_eq!(v1["live"]["live"]["accuracy"], 1.0, "{d}");
}

#[tokio::test]
async fn a_small_record_answers_late_for_what_it_dropped() {
    let (s, _, _) = fake_server("feedback-late", "scale=1", "", |dir, mut o| {
        card(dir, 1);
        o.feedback_rows = 3;
        o
    })
    .await;
    let c = reqwest::Client::new();
    let base = format!("http://{}/v2/models/m", s.http_addr);
    for id in ["a", "b"] {
        let (code, r) = post(
            &c,
            &format!("{base}/infer"),
            &json!({"id": id, "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
        )
        .await;
        assert_eq!(code, 200, "{r}");
    }
    let (_, r) = post(
        &c,
        &format!("{base}/feedback"),
        &json!({"id": "a", "labels": ["yes", "yes"]}),
    )
    .await;
    assert_eq!(r["outcome"], "late", "{r}");
    let (_, r) = post(
        &c,
        &format!("{base}/feedback"),
        &json!({"id": "b", "labels": ["yes", "no"]}),
    )
    .await;
    assert_eq!(r["outcome"], "matched", "{r}");
    let v: Value = c
        .get(format!("{base}/feedback"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["versions"][0]["live"]["accuracy"], 0.5, "{v}");
    assert_eq!(v["record"]["capacity_rows"], 3, "{v}");
}

/// Clients that send one right-labelled row (x = [0.2, 0.8]: "yes") with
/// no version named, then post its label, until `stop`.
fn labelling_clients(base: String, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..2)
        .map(|_| {
            let (base, stop) = (base.clone(), stop.clone());
            tokio::spawn(async move {
                let c = reqwest::Client::new();
                let body = json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [0.2, 0.8]}]});
                while !stop.load(Ordering::Relaxed) {
                    let (code, r) = post(&c, &format!("{base}/infer"), &body).await;
                    assert_eq!(code, 200, "{r}");
                    let (code, f) =
                        post(&c, &format!("{base}/feedback"), &json!({"id": r["id"], "labels": ["yes"]})).await;
                    assert_eq!(code, 200, "{f}");
                }
            })
        })
        .collect()
}

async fn rollout(c: &reqwest::Client, base: &str, to: u32, from: u32) -> Value {
    let policy = json!({"to": to, "from": from, "steps": [50, 100], "step_requests": 40,
        "shadow_share": 0.0, "p99_slack_ms": 1000.0, "min_live_accuracy": 0.9, "min_labels": 20});
    let r = c
        .post(format!("{base}/rollout"))
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let t = Instant::now();
    loop {
        let s: Value = c
            .get(format!("{base}/rollout"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["state"] != "running" {
            return s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "rollout still running: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_gated_on_live_accuracy_rolls_back_a_wrong_version() {
    let s = server("feedback-gate").await;
    let c = reqwest::Client::new();
    let base = format!("http://{}/v2/models/m", s.http_addr);
    let r = c
        .put(format!("{base}/traffic"))
        .json(&json!({"weights": {"1": 100}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = labelling_clients(base.clone(), stop.clone());

    // Gates that could never be judged are refused up front.
    for (policy, says) in [
        (
            json!({"to": 2, "from": 1, "steps": [50, 100], "max_live_mae": 0.1}),
            "max_live_mae gates a regression",
        ),
        (
            json!({"to": 2, "from": 1, "steps": [50, 100], "min_live_accuracy": 0.9, "min_labels": 1_000_000}),
            "--feedback-window",
        ),
    ] {
        let (code, r) = post(&c, &format!("{base}/rollout"), &policy).await;
        assert_eq!(code, 400, "{policy}: {r}");
        assert!(r["error"].as_str().unwrap().contains(says), "{policy}: {r}");
    }

    // Version 2 answers every row wrong: its live accuracy is 0.
    let st = rollout(&c, &base, 2, 1).await;
    assert_eq!(st["state"], "rolled_back", "{st}");
    let reason = st["reason"].as_str().unwrap();
    assert!(reason.contains("live accuracy 0.0000"), "{st}");
    let step = st["steps"].as_array().unwrap().last().unwrap();
    assert!(step["live_labels"].as_u64().unwrap() >= 20, "{st}");

    // Version 3 answers right: promoted once its labels are in.
    let st = rollout(&c, &base, 3, 1).await;
    assert_eq!(st["state"], "promoted", "{st}");
    let last = st["steps"].as_array().unwrap().last().unwrap();
    assert_eq!(last["live_accuracy"], 1.0, "{st}");
    assert!(last["live_labels"].as_u64().unwrap() >= 20, "{st}");
    stop.store(true, Ordering::Relaxed);
    for h in clients {
        h.await.unwrap();
    }
}
