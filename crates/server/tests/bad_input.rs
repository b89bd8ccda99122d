//! Malformed requests get a 4xx with a useful message, and the server keeps
//! serving afterwards.

// Tests may unwrap and index: a panic here is a failed test, not a crashed server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{ONES_OUTPUT, ones_request, start};
use serde_json::{Value, json};

struct Case {
    what: &'static str,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    needle: &'static str,
}

fn case(
    what: &'static str,
    path: &'static str,
    body: impl Into<Vec<u8>>,
    status: u16,
    needle: &'static str,
) -> Case {
    Case {
        what,
        method: "POST",
        path,
        headers: vec![],
        body: body.into(),
        status,
        needle,
    }
}

fn json_case(what: &'static str, body: Value, status: u16, needle: &'static str) -> Case {
    case(
        what,
        "/v2/models/mlp100/infer",
        body.to_string(),
        status,
        needle,
    )
}

fn input(shape: Value, datatype: &str, data: Value) -> Value {
    json!({"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}]})
}

fn binary_case(
    what: &'static str,
    declared: usize,
    payload: usize,
    header_len: Option<String>,
    needle: &'static str,
) -> Case {
    let header = json!({"inputs": [{"name": "input", "shape": [1, 100], "datatype": "FP32", "parameters": {"binary_data_size": declared}}]}).to_string();
    let len = header_len.unwrap_or_else(|| header.len().to_string());
    let mut body = header.into_bytes();
    body.extend(std::iter::repeat_n(0u8, payload));
    Case {
        what,
        method: "POST",
        path: "/v2/models/mlp100/infer",
        headers: vec![("Inference-Header-Content-Length", len)],
        body,
        status: 400,
        needle,
    }
}

fn cases() -> Vec<Case> {
    let ones = |n: usize| json!(vec![1.0; n]);
    vec![
        json_case(
            "truncated JSON",
            json!("x"),
            400,
            "malformed inference request JSON",
        ),
        case(
            "not JSON at all",
            "/v2/models/mlp100/infer",
            "hello",
            400,
            "malformed inference request JSON",
        ),
        case(
            "JSON cut off",
            "/v2/models/mlp100/infer",
            r#"{"inputs":[{"name":"input","#,
            400,
            "malformed",
        ),
        case(
            "empty body",
            "/v2/models/mlp100/infer",
            "",
            400,
            "empty request body",
        ),
        json_case(
            "inputs missing",
            json!({"id": "1"}),
            400,
            "missing field `inputs`",
        ),
        json_case(
            "inputs not a list",
            json!({"inputs": {"name": "input"}}),
            400,
            "malformed",
        ),
        json_case(
            "unknown datatype",
            input(json!([1, 100]), "FLOAT32", ones(100)),
            400,
            "unknown datatype 'FLOAT32'",
        ),
        json_case(
            "wrong datatype",
            input(json!([1, 100]), "FP64", ones(100)),
            400,
            "expected FP32 [-1, 100], received FP64 [1, 100]",
        ),
        json_case(
            "wrong shape",
            input(json!([1, 99]), "FP32", ones(99)),
            400,
            "expected FP32 [-1, 100], received FP32 [1, 99]",
        ),
        json_case(
            "wrong rank",
            input(json!([100]), "FP32", ones(100)),
            400,
            "received FP32 [100]",
        ),
        json_case(
            "data shorter than shape",
            input(json!([1, 100]), "FP32", ones(99)),
            400,
            "needs 100 elements, 'data' has 99",
        ),
        json_case(
            "data longer than shape",
            input(json!([1, 100]), "FP32", ones(101)),
            400,
            "more elements than the shape holds",
        ),
        json_case(
            "negative dims",
            input(json!([-1, 100]), "FP32", ones(100)),
            400,
            "negative dimension",
        ),
        json_case(
            "huge declared shape",
            input(json!([1_000_000_000, 100]), "FP32", ones(100)),
            400,
            "needs 100000000000 elements",
        ),
        json_case(
            "overflowing shape",
            input(json!([i64::MAX, i64::MAX]), "FP32", ones(1)),
            400,
            "too many elements",
        ),
        json_case(
            "shape not integers",
            input(json!([1.5, 100]), "FP32", ones(100)),
            400,
            "malformed",
        ),
        json_case(
            "string in FP32 data",
            input(json!([1, 2]), "FP32", json!([1, "a"])),
            400,
            "string is not a valid FP32",
        ),
        json_case(
            "null in data",
            input(json!([1, 1]), "FP32", json!([null])),
            400,
            "input 'input'",
        ),
        json_case(
            "object in data",
            input(json!([1, 1]), "FP32", json!([{"a": 1}])),
            400,
            "input 'input'",
        ),
        json_case(
            "missing data",
            json!({"inputs": [{"name": "input", "shape": [1, 100], "datatype": "FP32"}]}),
            400,
            "neither 'data' nor binary_data_size",
        ),
        json_case(
            "unknown input name",
            json!({"inputs": [{"name": "x", "shape": [1, 100], "datatype": "FP32", "data": ones(100)}]}),
            400,
            "unexpected input 'x'",
        ),
        json_case(
            "missing input",
            json!({"inputs": []}),
            400,
            "missing input 'input'",
        ),
        json_case(
            "extra input",
            json!({"inputs": [
                {"name": "input", "shape": [1, 100], "datatype": "FP32", "data": ones(100)},
                {"name": "extra", "shape": [1], "datatype": "FP32", "data": [1]}]}),
            400,
            "unexpected input 'extra'",
        ),
        json_case(
            "duplicate input",
            json!({"inputs": [
                {"name": "input", "shape": [1, 100], "datatype": "FP32", "data": ones(100)},
                {"name": "input", "shape": [1, 100], "datatype": "FP32", "data": ones(100)}]}),
            400,
            "given more than once",
        ),
        json_case(
            "batch over max_batch_size",
            input(json!([33, 100]), "FP32", ones(3300)),
            400,
            "batch size 33 is outside 1..=32",
        ),
        json_case(
            "zero batch",
            input(json!([0, 100]), "FP32", json!([])),
            400,
            "batch size 0",
        ),
        json_case(
            "unknown output requested",
            json!({"inputs": input(json!([1, 100]), "FP32", ones(100))["inputs"], "outputs": [{"name": "nope"}]}),
            400,
            "unknown output 'nope'",
        ),
        json_case(
            "classification extension",
            json!({"inputs": input(json!([1, 100]), "FP32", ones(100))["inputs"], "parameters": {"classification": 2}}),
            400,
            "classification",
        ),
        case(
            "unknown model",
            "/v2/models/nope/infer",
            ones_request(1).to_string(),
            404,
            "unknown model 'nope'",
        ),
        case(
            "unknown version",
            "/v2/models/mlp100/versions/9/infer",
            ones_request(1).to_string(),
            404,
            "has no version '9'",
        ),
        case(
            "non-numeric version",
            "/v2/models/mlp100/versions/latest/infer",
            ones_request(1).to_string(),
            404,
            "has no version 'latest'",
        ),
        case(
            "model that failed to load",
            "/v2/models/corrupt/infer",
            ones_request(1).to_string(),
            503,
            "not available: cannot load",
        ),
        case(
            "unknown route",
            "/v2/nothing/here",
            "{}",
            404,
            "no such endpoint",
        ),
        binary_case(
            "binary size larger than body",
            400,
            399,
            None,
            "runs past the end of the body",
        ),
        binary_case(
            "binary bytes left over",
            400,
            404,
            None,
            "4 bytes of binary data follow the JSON header but the inputs claim 400",
        ),
        binary_case(
            "binary size not matching shape",
            396,
            396,
            None,
            "needs 400 bytes, got 396",
        ),
        binary_case(
            "header length past body",
            400,
            400,
            Some("100000".into()),
            "Inference-Header-Content-Length is 100000",
        ),
        binary_case(
            "header length not a number",
            400,
            400,
            Some("abc".into()),
            "must be a non-negative integer",
        ),
        binary_case(
            "header length cuts JSON",
            400,
            400,
            Some("10".into()),
            "malformed inference request JSON",
        ),
        Case {
            what: "body over the size limit",
            method: "POST",
            path: "/v2/models/mlp100/infer",
            headers: vec![],
            body: vec![b' '; (64 << 20) + 1],
            status: 413,
            needle: "exceeds the 67108864 byte limit",
        },
        Case {
            what: "repository index body over the size limit",
            method: "POST",
            path: "/v2/repository/index",
            headers: vec![],
            body: vec![b' '; (64 << 20) + 1],
            status: 413,
            needle: "exceeds the 67108864 byte limit",
        },
        Case {
            what: "empty version segment",
            method: "POST",
            path: "/v2/models/mlp100/versions//infer",
            headers: vec![],
            body: br#"{"inputs":[{"name":"input","shape":[1,100],"datatype":"FP32","data":[0]}]}"#
                .to_vec(),
            status: 400,
            needle: "empty version",
        },
        Case {
            what: "POST on a health route",
            method: "POST",
            path: "/v2/health/live",
            headers: vec![],
            body: vec![],
            status: 405,
            needle: "method not allowed",
        },
        Case {
            what: "repository index with bad JSON",
            method: "POST",
            path: "/v2/repository/index",
            headers: vec![],
            body: b"{ready".to_vec(),
            status: 400,
            needle: "malformed JSON",
        },
        Case {
            what: "GET on infer",
            method: "GET",
            path: "/v2/models/mlp100/infer",
            headers: vec![],
            body: vec![],
            status: 405,
            needle: "method not allowed",
        },
    ]
}

#[tokio::test]
async fn malformed_requests_get_clear_errors_and_server_keeps_serving() {
    let t = start().await;
    let client = reqwest::Client::new();
    let cases = cases();
    assert!(cases.len() >= 30);
    for c in cases {
        let mut req = client
            .request(c.method.parse().unwrap(), format!("{}{}", t.http, c.path))
            .body(c.body);
        for (k, v) in &c.headers {
            req = req.header(*k, v);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", c.what));
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, c.status, "{}: {text}", c.what);
        if !c.needle.is_empty() {
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{}: not JSON: {text}", c.what));
            let msg = v["error"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: no error field: {text}", c.what));
            assert!(
                msg.contains(c.needle),
                "{}: {msg:?} lacks {:?}",
                c.what,
                c.needle
            );
        }
        // Still alive and still answering correctly.
        let live = client
            .get(format!("{}/v2/health/live", t.http))
            .send()
            .await
            .unwrap();
        assert_eq!(live.status(), 200, "after {}", c.what);
        let ok: Value = client
            .post(format!("{}/v2/models/mlp100/infer", t.http))
            .body(ones_request(1).to_string())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            ok["outputs"][0]["data"][0].as_f64().map(|v| v as f32),
            Some(ONES_OUTPUT),
            "after {}",
            c.what
        );
    }
    let stats = common::get_json(
        &client,
        &format!("{}/v2/models/mlp100/versions/2/stats", t.http),
    )
    .await;
    assert!(
        stats["model_stats"][0]["inference_stats"]["fail"]["count"]
            .as_u64()
            .unwrap()
            >= 20
    );
    t.server.shutdown().await;
}
