//! Runs tests/conformance/conformance.py: tritonclient over HTTP JSON, HTTP
//! binary and gRPC against the real `hone` binary, outputs checked against
//! Python onnxruntime. The venv it needs is made once under target/.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}

/// A venv with the pinned client packages, rebuilt when the pins change.
fn venv() -> PathBuf {
    let reqs = workspace().join("tests/conformance/requirements.txt");
    let pins = std::fs::read_to_string(&reqs).expect("requirements.txt");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("conformance-venv");
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

#[test]
fn tritonclient_conformance() {
    let shared = workspace().join("../shared/models");
    assert!(
        shared.join("manifest.json").is_file(),
        "the conformance test needs the shared model zoo at {}",
        shared.display()
    );
    let python = venv();
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("conformance-work");
    run(Command::new(python)
        .arg(workspace().join("tests/conformance/conformance.py"))
        .arg(env!("CARGO_BIN_EXE_hone"))
        .arg(&shared)
        .arg(&work));
}
