#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Models whose weights live in external files beside them (ONNX external
//! data, as exporters write big models): the shared digits CNN written
//! that way is optimized (and the result written with external data again,
//! to a file and to a repository version), profiled and served; a location
//! that leaves the model's directory is refused.

mod common;

use common::{ServeProcess, hone, s};
use serde_json::{Value, json};

#[test]
fn external_data_models_optimize_profile_and_serve() {
    let Some(m) = common::shared("external_data_models_optimize_profile_and_serve") else {
        return;
    };
    let d = common::tmp("external", "data");
    let src = d.join("src");
    std::fs::create_dir_all(&src).unwrap();
    // What an exporter writes: the graph, and the weights in a file beside it.
    let mut model = hone_onnx::load(&m.join("digits_cnn/digits_cnn.onnx")).unwrap();
    let data = hone_onnx::external::externalize(&mut model, "digits.onnx.data", 1024);
    assert!(!data.is_empty());
    std::fs::write(src.join("digits.onnx.data"), &data).unwrap();
    hone_onnx::save(&model, &src.join("digits.onnx")).unwrap();
    let graph_only = std::fs::metadata(src.join("digits.onnx")).unwrap().len();
    assert!(graph_only < data.len() as u64 / 4, "the weights moved out");

    let refs = m.join("digits_cnn/ref/digits_cnn");
    let out = d.join("out/digits-int8.onnx");
    let repo = d.join("repo");
    let o = hone(&[
        "optimize",
        s(&src.join("digits.onnx")),
        "--data",
        s(&refs),
        "--techniques",
        "dynamic",
        "--max-drop",
        "0.05",
        "--measure-seconds",
        "0.2",
        "--external-data",
        "-o",
        s(&out),
        "--model-repository",
        s(&repo),
        "--name",
        "digits",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(d.join("out/digits-int8.onnx.data").is_file());
    assert!(repo.join("digits/1/model.onnx.data").is_file());
    // The written model reads back whole.
    let back = hone_onnx::load(&out).unwrap();
    assert!(!hone_onnx::external::has_external(&back));

    let o = hone(&[
        "profile",
        s(&refs),
        "--model",
        s(&src.join("digits.onnx")),
        "-o",
        s(&d.join("profile.json")),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let server = ServeProcess::start(&repo);
    let (code, text) = server.get("/v2/models/digits");
    assert_eq!(code, 200, "{text}");
    let meta: Value = serde_json::from_str(&text).unwrap();
    let input = &meta["inputs"][0];
    let shape: Vec<i64> = input["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap().max(1))
        .collect();
    let n: i64 = shape.iter().product();
    let body = json!({"inputs": [{"name": input["name"], "datatype": "FP32", "shape": shape,
                       "data": vec![0.5; n as usize]}]});
    let (code, text) = server.post("/v2/models/digits/infer", &body.to_string());
    assert_eq!(code, 200, "{text}");
    drop(server);

    // A location outside the model's directory is refused, naming the tensor.
    let evil = d.join("evil");
    std::fs::create_dir_all(&evil).unwrap();
    let mut model = hone_onnx::load(&m.join("digits_cnn/digits_cnn.onnx")).unwrap();
    let data = hone_onnx::external::externalize(&mut model, "../outside.data", 1024);
    std::fs::write(d.join("outside.data"), &data).unwrap();
    hone_onnx::save(&model, &evil.join("digits.onnx")).unwrap();
    let o = hone(&[
        "optimize",
        s(&evil.join("digits.onnx")),
        "--data",
        s(&refs),
        "-o",
        s(&d.join("never.onnx")),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("not a file inside the model's directory"),
        "{err}"
    );
    assert!(!d.join("never.onnx").exists());
}
