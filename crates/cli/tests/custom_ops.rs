//! Custom operators: a model made of onnxruntime-extensions' StringLower
//! does not load without its library (the reason says how to give it), and
//! serves with `--custom-op-library`. The library is the PyPI wheel's, a
//! Python extension module, so the server runs with libpython preloaded.

mod common;

use std::process::Command;

use common::{ServeProcess, s, tmp, venv, workspace};
use serde_json::{Value, json};

#[test]
fn a_model_with_extension_operators_loads_with_their_library() {
    let python = venv("tests/custom_ops/requirements.txt", "custom-ops-venv");
    let repo = tmp("custom_ops", "repo");
    let o = Command::new(&python)
        .arg(workspace().join("tests/custom_ops/make_model.py"))
        .arg(&repo)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let mut lines = text.lines();
    let library = lines.next().unwrap().to_string();
    let libpython = lines.next().unwrap_or_default().to_string();
    if libpython.is_empty() {
        assert!(
            std::env::var_os("HONE_REQUIRE_TOOLS").is_none(),
            "HONE_REQUIRE_TOOLS is set but python3 has no shared libpython (apt-get install libpython3.X; scripts/test.sh does as root)"
        );
        eprintln!(
            "SKIPPED: libpython missing (the onnxruntime-extensions wheel's library needs it)"
        );
        return;
    }

    // Without the library: unavailable, and the reason says what to do.
    let server = ServeProcess::start(&repo);
    let (_, index) = server.post("/v2/repository/index", "{}");
    let index: Value = serde_json::from_str(&index).unwrap();
    assert_eq!(index[0]["state"], "UNAVAILABLE", "{index}");
    let reason = index[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("StringLower") && reason.contains("--custom-op-library"),
        "{reason}"
    );
    drop(server);

    let server = ServeProcess::start_env(
        &repo,
        &["--custom-op-library", &library],
        &[("LD_PRELOAD", &libpython)],
    );
    let (code, text) = server.post(
        "/v2/models/lower/infer",
        &json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["Hello WORLD", "ÄÖ"]}]})
            .to_string(),
    );
    assert_eq!(code, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["outputs"][0]["data"], json!(["hello world", "äö"]), "{v}");

    // A library that is not there stops the server before it starts.
    let o = common::hone(&[
        "serve",
        "--model-repository",
        s(&repo),
        "--custom-op-library",
        "/nonexistent/libx.so",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such file"));
}
