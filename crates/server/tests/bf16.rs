#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! BF16 end to end on ONNX Runtime: a model that takes a BF16 tensor and
//! answers it back (Identity) and as FP32 (Cast), over V2 JSON, the V2
//! binary extension and TF Serving REST.

mod common;

use hone_onnx::elem;
use hone_onnx::{Attr, Dim, GraphBuilder};
use hone_server::{Server, ServerOptions};
use serde_json::{Value, json};

fn bf16_model(path: &std::path::Path) {
    let mut g = GraphBuilder::new("bf16");
    let dims = [Dim::Named("batch".into()), Dim::Fixed(2)];
    let x = g.input("x", elem::BFLOAT16, &dims);
    g.node("Identity", &[&x], Some("same"), vec![]);
    g.node(
        "Cast",
        &[&x],
        Some("wide"),
        vec![("to", Attr::Int(elem::FLOAT.into()))],
    );
    g.output("same", elem::BFLOAT16, &dims);
    g.output("wide", elem::FLOAT, &dims);
    hone_onnx::save(&g.finish("test", &[]), path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bf16_tensors_round_trip_over_every_protocol() {
    let dir = common::TempDir::new();
    std::fs::create_dir_all(dir.path().join("b/1")).unwrap();
    bf16_model(&dir.path().join("b/1/model.onnx"));
    let s = Server::start(ServerOptions::ephemeral(dir.path()))
        .await
        .expect("server starts");
    let c = reqwest::Client::new();
    let base = format!("http://{}", s.http_addr);

    let meta = common::get_json(&c, &format!("{base}/v2/models/b")).await;
    assert_eq!(meta["inputs"][0]["datatype"], "BF16", "{meta}");

    // 1.5 and -2.0 are exact in bfloat16; 1.00390625 (1 + 2^-8) rounds to 1.
    let body = json!({"inputs": [{"name": "x", "datatype": "BF16", "shape": [2, 2],
                      "data": [1.5, -2.0, 1.003_906_25, 256.0]}]});
    let r: Value = c
        .post(format!("{base}/v2/models/b/infer"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let out = |name: &str| {
        r["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {r}"))
    };
    assert_eq!(out("same")["datatype"], "BF16");
    assert_eq!(out("same")["data"], json!([1.5, -2.0, 1.0, 256.0]));
    assert_eq!(out("wide")["datatype"], "FP32");
    assert_eq!(out("wide")["data"], json!([1.5, -2.0, 1.0, 256.0]));

    // FP32 data for the BF16 input is refused, naming the input and both types.
    let r = c
        .post(format!("{base}/v2/models/b/infer"))
        .json(
            &json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2],
                       "data": [1.0, 2.0]}]}),
        )
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert!(
        status == 400 && text.contains("'x'") && text.contains("BF16"),
        "{status} {text}"
    );

    // The binary extension: raw little-endian bfloat16 in, raw out.
    let raw: Vec<u8> = [3.0f32, 0.5]
        .iter()
        .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
        .collect();
    let header = json!({"inputs": [{"name": "x", "datatype": "BF16", "shape": [1, 2],
                         "parameters": {"binary_data_size": raw.len()}}],
                        "outputs": [{"name": "same", "parameters": {"binary_data": true}}]})
    .to_string();
    let mut payload = header.clone().into_bytes();
    payload.extend(&raw);
    let r = c
        .post(format!("{base}/v2/models/b/infer"))
        .header("Inference-Header-Content-Length", header.len())
        .body(payload)
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
    assert_eq!(&bytes[n..], &raw[..]);

    // TF Serving: DT_BFLOAT16 in its metadata, numbers in and out.
    let meta = common::get_json(&c, &format!("{base}/v1/models/b/metadata")).await;
    assert!(meta.to_string().contains("DT_BFLOAT16"), "{meta}");
    let r: Value = c
        .post(format!("{base}/v1/models/b:predict"))
        .json(&json!({"instances": [[0.25, 8.0]]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["predictions"][0]["wide"], json!([0.25, 8.0]), "{r}");
}
