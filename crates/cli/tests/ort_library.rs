//! Where ONNX Runtime may be loaded from: only a cache directory private to
//! the user, and only a library whose sha256 is still the pinned one.
//! Each case runs `hone eval` in a controlled environment.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `hone eval` of the example MLP with exactly `env` (plus PATH).
fn eval_with(env: &[(&str, &Path)]) -> Output {
    let w = workspace();
    let mut c = Command::new(env!("CARGO_BIN_EXE_hone"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .arg("eval")
        .arg(w.join("examples/repository/mlp/1/model.onnx"))
        .arg("--data")
        .arg(w.join("examples/data/breast_cancer.csv"));
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn fresh(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hone-ortlib-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A cache root holding a copy of the real library, every level 0700.
fn cache_with_copy(tag: &str) -> (PathBuf, PathBuf) {
    let real = hone_runtime::library_path().unwrap();
    let root = fresh(tag);
    let dir = root.join(format!("onnxruntime-{}", hone_runtime::ORT_VERSION));
    std::fs::create_dir_all(&dir).unwrap();
    for d in [&root, &dir] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let lib = dir.join(format!("libonnxruntime.so.{}", hone_runtime::ORT_VERSION));
    std::fs::copy(&real, &lib).unwrap();
    (root, lib)
}

#[test]
fn without_home_there_is_no_world_writable_fallback() {
    let o = eval_with(&[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("no private directory"), "{e}");
    assert!(!e.contains("/tmp/.cache"), "{e}");
}

#[test]
fn a_private_cache_with_the_pinned_library_loads() {
    let (root, _) = cache_with_copy("ok");
    let o = eval_with(&[("HONE_CACHE_DIR", &root)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn a_cache_others_can_write_is_refused() {
    let (root, _) = cache_with_copy("open");
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = eval_with(&[("HONE_CACHE_DIR", &root)]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("refusing to load ONNX Runtime"), "{e}");
    assert!(e.contains("mode 777"), "{e}");
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn a_changed_library_is_not_loaded() {
    let (root, lib) = cache_with_copy("tampered");
    // One byte changed near the end (a section nobody parses at load).
    let mut bytes = std::fs::read(&lib).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0xff;
    std::fs::write(&lib, bytes).unwrap();
    // Re-fetching is refused too (no pip), so the run must fail, never load it.
    let o = eval_with(&[
        ("HONE_CACHE_DIR", &root),
        ("HONE_PYTHON", Path::new("/bin/false")),
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("not the pinned"), "{e}");
    assert!(e.contains("fetching it failed"), "{e}");
    let _ = std::fs::remove_dir_all(root);
}
