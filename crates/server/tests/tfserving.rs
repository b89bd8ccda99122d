#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! TF Serving's REST API, following its documentation's examples, on a
//! real server (fake engine: y = 3x over x [batch, 2]): status, metadata,
//! :predict in the row and columnar formats, NaN/Infinity tokens,
//! signature names, labels, and TF Serving's error answers.

mod common;

use common::fake::fake_server;
use serde_json::{Value, json};

async fn post(c: &reqwest::Client, url: &str, body: &str) -> (u16, String) {
    let r = c.post(url).body(body.to_string()).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tf_serving_rest_api() {
    let labels = "parameters { key: \"labels\" value: { string_value: \"stable:1\" } }\n";
    let (s, _, dir) = fake_server("tfserving", "scale=3", labels, |_, o| o).await;
    let c = reqwest::Client::new();
    let base = format!("http://{}/v1/models", s.http_addr);

    let st: Value = c
        .get(format!("{base}/m"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        st,
        json!({"model_version_status": [{"version": "1", "state": "AVAILABLE",
               "status": {"error_code": "OK", "error_message": ""}}]})
    );
    let st: Value = c
        .get(format!("{base}/m/versions/1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["model_version_status"][0]["state"], "AVAILABLE");
    let r = c.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("nope")
    );

    let md: Value = c
        .get(format!("{base}/m/metadata"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        md["model_spec"],
        json!({"name": "m", "signature_name": "", "version": "1"})
    );
    let sig = &md["metadata"]["signature_def"]["signature_def"]["serving_default"];
    assert_eq!(sig["method_name"], "tensorflow/serving/predict");
    assert_eq!(sig["inputs"]["x"]["dtype"], "DT_FLOAT");
    assert_eq!(
        sig["inputs"]["x"]["tensor_shape"]["dim"],
        json!([{"size": "-1", "name": ""}, {"size": "2", "name": ""}])
    );
    assert_eq!(sig["outputs"]["y"]["dtype"], "DT_FLOAT");

    // Row format: a list per instance, or an object naming the input.
    let (code, text) = post(
        &c,
        &format!("{base}/m:predict"),
        r#"{"instances": [[1.0, 2.0], [3.0, 4.0]]}"#,
    )
    .await;
    assert_eq!(
        (code, serde_json::from_str::<Value>(&text).unwrap()),
        (200, json!({"predictions": [[3.0, 6.0], [9.0, 12.0]]}))
    );
    let (code, text) = post(
        &c,
        &format!("{base}/m/versions/1:predict"),
        r#"{"signature_name": "serving_default", "instances": [{"x": [1, 2]}]}"#,
    )
    .await;
    assert_eq!(
        (code, text.as_str()),
        (200, r#"{"predictions":[[3.0,6.0]]}"#)
    );
    // Columnar: the whole tensor, by name or alone.
    let (code, text) = post(
        &c,
        &format!("{base}/m:predict"),
        r#"{"inputs": {"x": [[1, 2], [0.5, 0]]}}"#,
    )
    .await;
    assert_eq!(
        (code, text.as_str()),
        (200, r#"{"outputs":[[3.0,6.0],[1.5,0.0]]}"#)
    );
    let (code, text) = post(
        &c,
        &format!("{base}/m/labels/stable:predict"),
        r#"{"inputs": [[1, 2]]}"#,
    )
    .await;
    assert_eq!((code, text.as_str()), (200, r#"{"outputs":[[3.0,6.0]]}"#));
    // NaN and Infinity travel as TF Serving's bare tokens.
    let (code, text) = post(
        &c,
        &format!("{base}/m:predict"),
        r#"{"instances": [[NaN, -Infinity]]}"#,
    )
    .await;
    assert_eq!(
        (code, text.as_str()),
        (200, r#"{"predictions":[[NaN,-Infinity]]}"#)
    );

    // Errors: TF Serving's {"error": ...} with its status codes.
    for (path, body, want, says) in [
        (
            "m:predict",
            r#"{"instances": [[1, 2], [3]]}"#,
            400,
            "must match",
        ),
        (
            "m:predict",
            r#"{"instances": [[1, 2]], "inputs": [[1, 2]]}"#,
            400,
            "not both",
        ),
        (
            "m:predict",
            r#"{"foo": 1}"#,
            400,
            "Missing 'inputs' or 'instances'",
        ),
        (
            "m:predict",
            r#"{"signature_name": "other", "instances": [[1, 2]]}"#,
            400,
            "not found in signature def",
        ),
        (
            "m:predict",
            r#"{"instances": [["a", 2]]}"#,
            400,
            "cannot read",
        ),
        ("m:predict", "{not json", 400, "JSON Parse error"),
        (
            "m:predict",
            r#"{"inputs": {"z": [[1, 2]]}}"#,
            400,
            "unknown input 'z'",
        ),
        (
            "m/versions/7:predict",
            r#"{"instances": [[1, 2]]}"#,
            404,
            "no version",
        ),
        (
            "m/labels/canary:predict",
            r#"{"instances": [[1, 2]]}"#,
            404,
            "no label",
        ),
        ("nope:predict", r#"{"instances": [[1, 2]]}"#, 404, "nope"),
        ("m:classify", r#"{"examples": []}"#, 501, "use :predict"),
        ("m:regress", r#"{"examples": []}"#, 501, "use :predict"),
        ("m:explode", "{}", 404, "no such endpoint"),
    ] {
        let (code, text) = post(&c, &format!("{base}/{path}"), body).await;
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: {text}"));
        assert_eq!(code, want, "{path} {body}: {text}");
        assert!(
            v["error"].as_str().unwrap().contains(says),
            "{path} {body}: {text}"
        );
    }
    // Still serving after all that.
    let (code, _) = post(
        &c,
        &format!("{base}/m:predict"),
        r#"{"instances": [[1, 1]]}"#,
    )
    .await;
    assert_eq!(code, 200);
    drop(s);
    let _ = std::fs::remove_dir_all(dir);
}
