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
