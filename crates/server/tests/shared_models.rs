//! Every model of the shared set served at once and sent what clients get
//! wrong: every mismatched datatype, zero rows, non-finite and extreme
//! values, out-of-vocabulary ids, sequences past the model's table. Each is
//! a 4xx naming the cause (never a 500, which is kept for server faults),
//! and every model still answers a good request afterwards.

// Tests may unwrap and index: a panic here is a failed test, not a crashed server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use hone_server::{Server, ServerOptions};
use serde_json::{Value, json};

const MODELS: &[(&str, &str)] = &[
    ("mlp", "mlp/mlp.onnx"),
    ("mlp_wine", "mlp/mlp_wine.onnx"),
    ("mlp_diabetes", "mlp/mlp_diabetes.onnx"),
    ("mlp100", "mlp/mlp100.onnx"),
    ("digits_cnn", "digits_cnn/digits_cnn.onnx"),
    ("resnet18", "resnet18/resnet18.onnx"),
    ("minilm", "minilm/minilm.onnx"),
    ("rf", "trees/rf.onnx"),
    ("gb", "trees/gb.onnx"),
];

const DTYPES: &[&str] = &[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16",
    "BF16", "FP32", "FP64", "BYTES",
];

/// A JSON value list of `n` elements valid for `dtype`.
fn data(dtype: &str, n: usize, v: f64) -> Value {
    match dtype {
        "BOOL" => json!(vec![true; n]),
        "BYTES" => json!(vec!["x"; n]),
        d if d.starts_with("FP") || d == "BF16" => json!(vec![v; n]),
        _ => json!(vec![v as i64; n]),
    }
}

/// The model's inputs with every dynamic dim given (batch 1, sequence 8).
fn shapes(meta: &Value) -> Vec<(String, String, Vec<i64>)> {
    meta["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let dims: Vec<i64> = i["shape"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(k, d)| match (k, d.as_i64().unwrap()) {
                    (0, -1) => 1,
                    (_, -1) => 8,
                    (_, d) => d,
                })
                .collect();
            (
                i["name"].as_str().unwrap().to_string(),
                i["datatype"].as_str().unwrap().to_string(),
                dims,
            )
        })
        .collect()
}

fn request(inputs: &[(String, String, Vec<i64>)], v: f64) -> Value {
    let list: Vec<Value> = inputs
        .iter()
        .map(|(name, dtype, dims)| {
            let n = dims.iter().product::<i64>() as usize;
            json!({"name": name, "datatype": dtype, "shape": dims, "data": data(dtype, n, v)})
        })
        .collect();
    json!({"inputs": list})
}

/// A binary-extension request of one FP32 input filled with `v`.
fn binary_f32(name: &str, dims: &[i64], v: f32) -> (Vec<u8>, usize) {
    let n = dims.iter().product::<i64>() as usize;
    let header = json!({"inputs": [{"name": name, "datatype": "FP32", "shape": dims,
        "parameters": {"binary_data_size": n * 4}}]})
    .to_string();
    let mut body = header.clone().into_bytes();
    for _ in 0..n {
        body.extend(v.to_le_bytes());
    }
    (body, header.len())
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn infer(&self, model: &str, body: &Value) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}/v2/models/{model}/infer", self.base))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn infer_binary(&self, model: &str, (body, header): (Vec<u8>, usize)) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}/v2/models/{model}/infer", self.base))
            .header("Inference-Header-Content-Length", header)
            .body(body)
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        let text = String::from_utf8_lossy(&r.bytes().await.unwrap()).into_owned();
        (code, text)
    }
}

/// A 4xx with a JSON error naming `needle` (case-insensitive).
fn refused(what: &str, (code, mut text): (u16, String), needle: &str) {
    text.truncate(600);
    assert!((400..500).contains(&code), "{what}: {code} {text}");
    let e: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: {text}"));
    let msg = e["error"].as_str().unwrap().to_lowercase();
    assert!(msg.contains(&needle.to_lowercase()), "{what}: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_mistakes_are_4xx_on_every_shared_model() {
    let Some(shared) = common::shared("client_mistakes_are_4xx_on_every_shared_model") else {
        return;
    };
    let dir = common::TempDir::new();
    for (name, file) in MODELS {
        std::fs::create_dir_all(dir.path().join(name).join("1")).unwrap();
        std::fs::copy(
            shared.join(file),
            dir.path().join(name).join("1/model.onnx"),
        )
        .unwrap();
        // One instance each: nine models on two cores.
        std::fs::write(
            dir.path().join(name).join("config.pbtxt"),
            "instance_group [{ count: 1, kind: KIND_CPU }]\ndynamic_batching { max_queue_delay_microseconds: 20000 }\n",
        )
        .unwrap();
    }
    let server = Server::start(ServerOptions::ephemeral(dir.path()))
        .await
        .unwrap();
    let c = Client {
        http: reqwest::Client::new(),
        base: format!("http://{}", server.http_addr),
    };
    for (name, _) in MODELS {
        let meta = common::get_json(&c.http, &format!("{}/v2/models/{name}", c.base)).await;
        let inputs = shapes(&meta);
        let good = request(&inputs, 1.0);
        let (code, text) = c.infer(name, &good).await;
        assert_eq!(code, 200, "{name}: {text}");
        let what = |w: &str| format!("{name}: {w}");

        // Every datatype the model does not take.
        for wrong in DTYPES.iter().filter(|d| **d != inputs[0].1) {
            let mut bad = inputs.clone();
            bad[0].1 = wrong.to_string();
            let r = c.infer(name, &request(&bad, 1.0)).await;
            refused(&what(&format!("datatype {wrong}")), r, "expected");
        }
        // Zero rows, a missing dimension, a wrong size.
        let mut zero = inputs.clone();
        for i in &mut zero {
            i.2[0] = 0;
        }
        refused(
            &what("zero rows"),
            c.infer(name, &request(&zero, 1.0)).await,
            "0",
        );
        let mut flat = inputs.clone();
        flat[0].2.pop();
        refused(
            &what("rank"),
            c.infer(name, &request(&flat, 1.0)).await,
            "expected",
        );
        // Data that does not match the shape.
        let mut short = request(&inputs, 1.0);
        short["inputs"][0]["data"] = json!([1]);
        refused(&what("short data"), c.infer(name, &short).await, "");

        if inputs[0].1 == "FP32" {
            // Non-finite and extreme floats are values, not errors: never a 500.
            for v in [
                f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::MAX,
                -f32::MAX,
            ] {
                let r = c
                    .infer_binary(name, binary_f32(&inputs[0].0, &inputs[0].2, v))
                    .await;
                assert_eq!(r.0, 200, "{name} with {v}: {}", r.1);
            }
        } else {
            // Ids past the vocabulary (30522 entries): the engine refuses
            // them. (Negative ids count from the end, as in numpy: valid.)
            for v in [1e9, 30522.0] {
                let mut bad = request(&inputs, 1.0);
                bad["inputs"][0]["data"] = data("INT64", 8, v);
                refused(
                    &what(&format!("id {v}")),
                    c.infer(name, &bad).await,
                    "cannot run on this input",
                );
            }
        }
        // Still serving.
        assert_eq!(
            c.infer(name, &good).await.0,
            200,
            "{name} after the mistakes"
        );
    }

    // MiniLM: sequences the model's 512-position table cannot take.
    let seq = |b: i64, n: i64| -> Vec<(String, String, Vec<i64>)> {
        ["input_ids", "attention_mask", "token_type_ids"]
            .iter()
            .map(|k| (k.to_string(), "INT64".to_string(), vec![b, n]))
            .collect()
    };
    let r = c.infer("minilm", &request(&seq(1, 513), 1.0)).await;
    refused("minilm seq 513", r, "cannot run on this input");
    let r = c.infer("minilm", &request(&seq(1, 100_000), 1.0)).await;
    refused("minilm [1, 100000]", r, "cannot run on this input");
    // 64 × 100000 ids would make the engine allocate ~10 GB before failing:
    // the element limit refuses it before it is queued.
    let r = c.infer("minilm", &request(&seq(64, 100_000), 0.0)).await;
    refused("minilm [64, 100000]", r, "max_elements_per_request");
    // Inputs whose sequence lengths disagree.
    let mut odd = seq(1, 8);
    odd[1].2 = vec![1, 9];
    refused(
        "minilm mismatched seq",
        c.infer("minilm", &request(&odd, 1.0)).await,
        "cannot run",
    );

    // A bad request batched with good ones fails alone.
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (http, base) = (c.http.clone(), c.base.clone());
        let mut body = request(&seq(1, 8), 1.0);
        if i == 3 {
            body["inputs"][0]["data"] = data("INT64", 8, 1e9);
        }
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(format!("{base}/v2/models/minilm/infer"))
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            (i, r.status().as_u16())
        }));
    }
    for t in tasks {
        let (i, code) = t.await.unwrap();
        assert_eq!(code, if i == 3 { 400 } else { 200 }, "request {i}");
    }

    // No request above was counted as a server fault.
    let metrics = reqwest::get(format!("http://{}/metrics", server.metrics_addr.unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !metrics
            .lines()
            .any(|l| l.contains("reason=\"BACKEND\"") && !l.ends_with(" 0")),
        "{metrics}"
    );
    server.shutdown().await;
}
