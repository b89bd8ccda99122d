//! Runs the client suites in tests/conformance against the real `hone`
//! binary: conformance.py (tritonclient over HTTP JSON, HTTP binary and gRPC,
//! outputs checked against Python onnxruntime) and kserve_sdk.py (the KServe
//! Python SDK's V2 REST and gRPC clients) and tls.py (tritonclient's
//! `ssl=True` clients, with and without a client certificate, against
//! certificates made here). Each venv is made once under target/.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{run, venv, workspace};

/// `python SCRIPT HONE SHARED WORK` from the given venv.
fn run_suite(python: PathBuf, shared: PathBuf, script: &str, work: &str) {
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join(work);
    run(Command::new(python)
        .arg(workspace().join("tests/conformance").join(script))
        .arg(env!("CARGO_BIN_EXE_hone"))
        .arg(shared)
        .arg(&work));
}

#[test]
fn tritonclient_conformance() {
    let Some(shared) = common::shared("tritonclient_conformance") else {
        return;
    };
    let python = venv("tests/conformance/requirements.txt", "conformance-venv");
    run_suite(python, shared, "conformance.py", "conformance-work");
}

#[test]
fn kserve_sdk_conformance() {
    let Some(shared) = common::shared("kserve_sdk_conformance") else {
        return;
    };
    let python = venv("tests/conformance/kserve-requirements.txt", "kserve-venv");
    run_suite(python, shared, "kserve_sdk.py", "kserve-work");
}

#[test]
fn tritonclient_over_tls() {
    let Some(shared) = common::shared("tritonclient_over_tls") else {
        return;
    };
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tls-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    common::pki(&work);
    let python = venv("tests/conformance/requirements.txt", "conformance-venv");
    run_suite(python, shared, "tls.py", "tls-work");
}

/// TF Serving's REST documentation's own example, against a
/// `half_plus_two` built here (y = 0.5 x + 2 over a 1-D float input) and
/// served by the real binary with ONNX Runtime: the same request gets the
/// same answer, row and columnar.
#[test]
fn tf_serving_half_plus_two() {
    use hone_onnx::{Dim, GraphBuilder, elem};
    let repo = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tfs-half-plus-two");
    let _ = std::fs::remove_dir_all(&repo);
    std::fs::create_dir_all(repo.join("half_plus_two/1")).unwrap();
    let mut g = GraphBuilder::new("half_plus_two");
    let x = g.input("x", elem::FLOAT, &[Dim::Named("batch".into())]);
    let a = g.initializer(hone_onnx::tensor_f32("a", &[], &[0.5]));
    let b = g.initializer(hone_onnx::tensor_f32("b", &[], &[2.0]));
    let ax = g.node("Mul", &[&x, &a], None, vec![]);
    let y = g.node("Add", &[&ax, &b], Some("y"), vec![]);
    g.output(&y, elem::FLOAT, &[Dim::Named("batch".into())]);
    std::fs::write(
        repo.join("half_plus_two/1/model.onnx"),
        hone_onnx::encode(&g.finish("test", &[])),
    )
    .unwrap();
    let server = common::ServeProcess::start(&repo);
    // curl -d '{"instances": [1.0, 2.0, 5.0]}' -X POST .../v1/models/half_plus_two:predict
    let (code, body) = server.post(
        "/v1/models/half_plus_two:predict",
        r#"{"instances": [1.0, 2.0, 5.0]}"#,
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v, serde_json::json!({"predictions": [2.5, 3.0, 4.5]}));
    let (code, body) = server.post(
        "/v1/models/half_plus_two/versions/1:predict",
        r#"{"signature_name": "serving_default", "inputs": [1.0, 2.0, 5.0]}"#,
    );
    assert_eq!((code, body.as_str()), (200, r#"{"outputs":[2.5,3.0,4.5]}"#));
    let (code, body) = server.get("/v1/models/half_plus_two");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""state":"AVAILABLE""#), "{body}");
    let (code, body) = server.get("/v1/models/half_plus_two/metadata");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let sig = &v["metadata"]["signature_def"]["signature_def"]["serving_default"];
    assert_eq!(sig["inputs"]["x"]["dtype"], "DT_FLOAT");
    assert_eq!(sig["outputs"]["y"]["tensor_shape"]["dim"][0]["size"], "-1");
}
