#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Traffic between versions on a real server (fake engines: version 1
//! answers y = x, version 2 y = 2x, so each answer says who served it):
//! the config's 80/20 split, stickiness on a header, labels in URLs, the
//! admin route changing the split at run time (REST and what gRPC gets),
//! and both versions in the model's stats.

mod common;

use common::fake::{fake_server, grpc_request_x, write_model};
use hone_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use serde_json::{Value, json};

const SPLIT: &str = r#"version_policy: { all: {} }
parameters { key: "traffic" value: { string_value: "1:80,2:20" } }
parameters { key: "labels" value: { string_value: "stable:1,canary:2" } }
parameters { key: "sticky_header" value: { string_value: "x-user" } }
"#;

/// Which version answered: y / x of the first element.
async fn served(c: &reqwest::Client, url: &str, user: Option<&str>) -> u32 {
    let body =
        json!({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]});
    let mut r = c.post(url).json(&body);
    if let Some(u) = user {
        r = r.header("x-user", u);
    }
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let y = v["outputs"][0]["data"][0].as_f64().unwrap() as u32;
    assert_eq!(v["model_version"], y.to_string());
    y
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_share_traffic_by_weight_label_and_admin_route() {
    let (s, _, dir) = fake_server("traffic", "scale=1", SPLIT, |dir, o| {
        write_model(
            dir,
            "m",
            2,
            "scale=2",
            &format!("{}{SPLIT}", common::fake::ONE_INSTANCE),
        );
        o
    })
    .await;
    let c = reqwest::Client::new();
    let base = format!("http://{}/v2/models/m", s.http_addr);
    let infer = format!("{base}/infer");
    let mut twos = 0;
    for _ in 0..1000 {
        if served(&c, &infer, None).await == 2 {
            twos += 1;
        }
    }
    assert!(
        (140..=260).contains(&twos),
        "version 2 took {twos} of 1000 at weight 20 %"
    );
    // Sticky: one user, one version, whatever the split draws.
    for user in ["ann", "bob", "cy", "dee"] {
        let first = served(&c, &infer, Some(user)).await;
        for _ in 0..30 {
            assert_eq!(served(&c, &infer, Some(user)).await, first, "{user}");
        }
    }
    // Labels.
    assert_eq!(
        served(&c, &format!("{base}/labels/canary/infer"), None).await,
        2
    );
    assert_eq!(
        served(&c, &format!("{base}/labels/stable/infer"), None).await,
        1
    );
    let r = c.get(format!("{base}/labels/canary")).send().await.unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["versions"],
        json!(["1", "2"])
    );
    let r = c
        .post(format!("{base}/labels/nope/infer"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("no label 'nope'"));

    // The split as the admin route shows it.
    let t: Value = c
        .get(format!("{base}/traffic"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(t["source"], "config");
    assert_eq!(t["versions"][1]["share"], 0.2);
    assert_eq!(t["split"]["labels"]["canary"], "2");
    // All to version 2 at run time: REST and gRPC follow.
    let r = c
        .put(format!("{base}/traffic"))
        .json(&json!({"weights": {"1": 0, "2": 100}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    for _ in 0..50 {
        assert_eq!(served(&c, &infer, None).await, 2);
    }
    let mut g = GrpcInferenceServiceClient::connect(format!("http://{}", s.grpc_addr.unwrap()))
        .await
        .unwrap();
    let out = g.model_infer(grpc_request_x()).await.unwrap().into_inner();
    assert_eq!(out.model_version, "2");
    // A version that is not there, and a malformed body, are refused.
    let r = c
        .put(format!("{base}/traffic"))
        .json(&json!({"weights": {"9": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("no ready version 9"));
    let r = c
        .put(format!("{base}/traffic"))
        .body("{\"weights\": [1]}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .put(format!("{base}/traffic"))
        .json(&json!({"weights": {"2": 100}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["source"], "api");
    // Back to the config.
    let t: Value = c
        .delete(format!("{base}/traffic"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(t["source"], "config");
    // The same through gRPC's admin service.
    use hone_server::grpc::proto::admin::{ModelRef, SetTrafficRequest, admin_client::AdminClient};
    let mut admin = AdminClient::connect(format!("http://{}", s.grpc_addr.unwrap()))
        .await
        .unwrap();
    let t = admin
        .set_traffic(SetTrafficRequest {
            model: "m".into(),
            weights: [("1".to_string(), 100)].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((t.source.as_str(), t.versions[0].share), ("api", 1.0));
    for _ in 0..20 {
        assert_eq!(served(&c, &infer, None).await, 1);
    }
    let bad = admin
        .set_traffic(SetTrafficRequest {
            model: "m".into(),
            weights: [("9".to_string(), 1)].into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let t = admin
        .clear_traffic(ModelRef { model: "m".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.source, "config");
    assert_eq!(t.weights["2"], 20);
    assert_eq!(
        admin
            .get_rollout(ModelRef { model: "m".into() })
            .await
            .unwrap_err()
            .code(),
        tonic::Code::NotFound
    );
    let stats: Value = c
        .get(format!("{base}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let versions: Vec<&str> = stats["model_stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_str().unwrap())
        .collect();
    assert_eq!(
        versions,
        ["1", "2"],
        "both versions in the model's stats: {stats}"
    );
    drop(s);
    let _ = std::fs::remove_dir_all(dir);
}
