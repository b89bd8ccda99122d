//! Runs the client suites in tests/conformance against the real `hone`
//! binary: conformance.py (tritonclient over HTTP JSON, HTTP binary and gRPC,
//! outputs checked against Python onnxruntime) and kserve_sdk.py (the KServe
//! Python SDK's V2 REST and gRPC clients) and tls.py (tritonclient's
//! `ssl=True` clients, with and without a client certificate, against
//! certificates made here). Each venv is made once under target/.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::workspace;

fn run(cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}

/// A venv with the pinned client packages, rebuilt when the pins change.
fn venv(requirements: &str, name: &str) -> PathBuf {
    // Two suites share a venv: one builds it while the other waits.
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let reqs = workspace().join("tests/conformance").join(requirements);
    let pins = std::fs::read_to_string(&reqs).expect("requirements file");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let stamp = dir.join("pins.txt");
    let python = dir.join("bin/python");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(pins.as_str()) || !python.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        run(Command::new("python3").args(["-m", "venv"]).arg(&dir));
        run(Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "-r"])
            .arg(&reqs));
        std::fs::write(&stamp, pins).expect("write stamp");
    }
    python
}

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
    let python = venv("requirements.txt", "conformance-venv");
    run_suite(python, shared, "conformance.py", "conformance-work");
}

#[test]
fn kserve_sdk_conformance() {
    let Some(shared) = common::shared("kserve_sdk_conformance") else {
        return;
    };
    let python = venv("kserve-requirements.txt", "kserve-venv");
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
    let python = venv("requirements.txt", "conformance-venv");
    run_suite(python, shared, "tls.py", "tls-work");
}
