//! Helpers shared by the CLI tests: the real `hone` binary, the shared model
//! zoo, and scratch directories under target/tmp.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn shared() -> PathBuf {
    let s = workspace().join("../shared/models");
    assert!(
        s.join("manifest.json").is_file(),
        "these tests need the shared model zoo at {}",
        s.display()
    );
    s
}

pub fn hone(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hone"))
        .args(args)
        .env("HONE_LOG", "warn")
        .output()
        .expect("run hone")
}

/// A fresh directory `target/tmp/<group>/<name>`.
pub fn tmp(group: &str, name: &str) -> PathBuf {
    let d = workspace().join("target/tmp").join(group).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
