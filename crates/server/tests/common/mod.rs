//! Shared by the integration tests: a real repository on disk and a real
//! server on loopback ports chosen by the OS.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub mod fake;

use hone_server::{Server, ServerOptions};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh repository: the shipped mlp100 and mlp models, a model whose file
/// is corrupt, and a model whose config does not match its file.
pub fn repository(dir: &Path) {
    let examples = workspace().join("examples/repository");
    for m in ["mlp100", "mlp"] {
        std::fs::create_dir_all(dir.join(m).join("1")).unwrap();
        std::fs::copy(
            examples.join(m).join("1/model.onnx"),
            dir.join(m).join("1/model.onnx"),
        )
        .unwrap();
    }
    std::fs::copy(
        examples.join("mlp/config.pbtxt"),
        dir.join("mlp/config.pbtxt"),
    )
    .unwrap();
    // A second version of mlp100 served alongside the first.
    std::fs::create_dir_all(dir.join("mlp100/2")).unwrap();
    std::fs::copy(
        examples.join("mlp100/1/model.onnx"),
        dir.join("mlp100/2/model.onnx"),
    )
    .unwrap();
    std::fs::write(
        dir.join("mlp100/config.pbtxt"),
        "max_batch_size: 32\nversion_policy: { all: {} }\ndynamic_batching { max_queue_delay_microseconds: 2000 }\n\
         instance_group [{ count: 2, kind: KIND_CPU }]\nparameters { key: \"intra_op_thread_count\" value: { string_value: \"1\" } }\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("corrupt/1")).unwrap();
    std::fs::write(
        dir.join("corrupt/1/model.onnx"),
        b"\x08\x07this is not an onnx model",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("mismatch/1")).unwrap();
    std::fs::copy(
        examples.join("mlp100/1/model.onnx"),
        dir.join("mismatch/1/model.onnx"),
    )
    .unwrap();
    std::fs::write(
        dir.join("mismatch/config.pbtxt"),
        "max_batch_size: 8\ninput [{ name: \"input\", data_type: TYPE_FP32, dims: [ 99 ] }]\n",
    )
    .unwrap();
}

pub struct TestServer {
    pub server: Server,
    pub http: String,
    pub grpc: String,
    pub metrics: String,
    pub dir: TempDir,
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

/// As [`start`], with the options adjusted first.
pub async fn start_with(adjust: impl FnOnce(&mut ServerOptions)) -> TestServer {
    let dir = TempDir::new();
    repository(dir.path());
    let mut opts = ServerOptions::ephemeral(dir.path());
    adjust(&mut opts);
    let server = Server::start(opts).await.expect("server starts");
    TestServer {
        http: format!("http://{}", server.http_addr),
        grpc: format!("http://{}", server.grpc_addr.unwrap()),
        metrics: format!("http://{}/metrics", server.metrics_addr.unwrap()),
        server,
        dir,
    }
}

/// A directory removed on drop (std only, to keep dev-dependencies small).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("hone-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies a shipped example model file to `<repo>/<model>/<version>/model.onnx`.
pub fn add_version(repo: &Path, example: &str, model: &str, version: u32) {
    let dir = repo.join(model).join(version.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        workspace()
            .join("examples/repository")
            .join(example)
            .join("1/model.onnx"),
        dir.join("model.onnx"),
    )
    .unwrap();
}

/// mlp100 on an all-ones row, as every reference implementation computes it.
pub const ONES_OUTPUT: f32 = 0.448_098_45;

pub fn ones_request(rows: usize) -> serde_json::Value {
    serde_json::json!({"inputs": [{"name": "input", "shape": [rows, 100], "datatype": "FP32", "data": vec![1.0f32; rows * 100]}]})
}

/// The shared model set (`../shared/models`), when this checkout has it. In
/// a clone without it, the tests that need it say so and return early;
/// `HONE_REQUIRE_SHARED=1` (set by `.ci/run`) makes its absence a failure.
pub fn shared(test: &str) -> Option<PathBuf> {
    let s = workspace().join("../shared/models");
    if s.join("manifest.json").is_file() {
        return Some(s);
    }
    assert!(
        std::env::var_os("HONE_REQUIRE_SHARED").is_none(),
        "HONE_REQUIRE_SHARED is set but the shared model set is not at {}",
        s.display()
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: needs the shared model set at {}",
        s.display()
    );
    None
}

/// This process's resident memory in KiB (tests that measure memory run in
/// a test binary of their own).
pub fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

/// GET `url` as JSON.
pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// Whether `tool` runs here. A test that needs a missing one prints one
/// `SKIPPED: <tool> missing` line and returns (`scripts/test.sh` installs
/// them as root); `HONE_REQUIRE_TOOLS=1`, as CI sets, makes it a failure.
pub fn have_tool(tool: &str) -> bool {
    if std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    assert!(
        std::env::var_os("HONE_REQUIRE_TOOLS").is_none(),
        "HONE_REQUIRE_TOOLS is set but {tool} is missing (apt-get install {tool}; scripts/test.sh does as root)"
    );
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {tool} missing");
    false
}

/// `promtool check metrics` on a /metrics page: Prometheus' own linter
/// (naming, units, `_total` only on counters, HELP on each) must report
/// nothing. Skipped (one line) where promtool is missing.
pub fn promtool_clean(text: &str) {
    if !have_tool("promtool") {
        return;
    }
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}"
    );
}
