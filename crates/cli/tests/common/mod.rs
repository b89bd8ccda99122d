//! Helpers shared by the CLI tests: the real `hone` binary, the shared model
//! zoo, and scratch directories under target/tmp.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shared model set beside the checkout (`../shared/models`). In a
/// clone without it, the tests that need it say once what they skip and why,
/// then each returns early; `HONE_REQUIRE_SHARED=1` (set by `.ci/run`) makes
/// its absence a failure instead, so CI never skips them.
pub fn shared(test: &str) -> Option<PathBuf> {
    static SAID: std::sync::Once = std::sync::Once::new();
    let s = workspace().join("../shared/models");
    if s.join("manifest.json").is_file() {
        return Some(s);
    }
    assert!(
        std::env::var_os("HONE_REQUIRE_SHARED").is_none(),
        "HONE_REQUIRE_SHARED is set but the shared model set is not at {}",
        s.display()
    );
    // Straight to stderr: libtest captures eprintln! of passing tests.
    use std::io::Write;
    SAID.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: tests that use the shared model set (trained reference models, their data, resnet18, MiniLM, the digits CNN) need it at {}; it is not there, so they do not run. CI runs them.",
            s.display()
        );
    });
    let _ = writeln!(std::io::stderr(), "skipped {test}: no shared model set");
    None
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

/// Every server port chosen by the OS.
pub const EPHEMERAL_PORTS: [&str; 6] = [
    "--http-port",
    "0",
    "--grpc-port",
    "0",
    "--metrics-port",
    "0",
];

/// The two files hold the same bytes.
pub fn assert_same_bytes(a: &Path, b: &Path) {
    assert!(
        std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
        "{} and {} differ",
        a.display(),
        b.display()
    );
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `hone serve` as a child process on OS-chosen ports; killed on drop.
pub struct ServeProcess {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// `http[s]://127.0.0.1:PORT` of the gRPC port.
    pub grpc: String,
    /// Every log line after the start-up ones.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServeProcess {
    pub fn start(repo: &Path) -> Self {
        Self::start_with(repo, &[])
    }

    /// As [`ServeProcess::start`], with more `hone serve` flags.
    pub fn start_with(repo: &Path, extra: &[&str]) -> Self {
        Self::start_env(repo, extra, &[])
    }

    /// As [`ServeProcess::start_with`], with environment variables.
    pub fn start_env(repo: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_hone"))
            .args(["serve", "--model-repository", s(repo)])
            .args(EPHEMERAL_PORTS)
            .args(extra)
            .envs(env.iter().copied())
            .env("HONE_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start hone serve");
        let stderr = child.stderr.take().unwrap();
        let mut lines = std::io::BufReader::new(stderr).lines();
        // The log lines that name the addresses: "... on http://127.0.0.1:PORT"
        // for HTTP, then "... on 127.0.0.1:PORT" for gRPC.
        let (mut url, mut grpc) = (String::new(), String::new());
        while grpc.is_empty() {
            let mut line = lines
                .next()
                .expect("hone serve exited before listening")
                .unwrap();
            // --log-format json: the message field holds the text.
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && let Some(m) = v["fields"]["message"].as_str()
            {
                line = m.to_string();
            }
            let addr = || line.rsplit(' ').next().unwrap().to_string();
            if line.contains("KServe V2 REST") {
                url = addr();
            } else if line.contains("GRPCInferenceService") {
                // The gRPC port speaks TLS exactly when the HTTP port does.
                let scheme = if url.starts_with("https://") {
                    "https"
                } else {
                    "http"
                };
                grpc = format!("{scheme}://{}", addr());
            }
        }
        // Keep draining the log so the server never blocks on a full pipe.
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = log.clone();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                keep.lock().unwrap().push(l);
            }
        });
        ServeProcess {
            child,
            url,
            grpc,
            log,
        }
    }

    /// The log lines written since start-up.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// GET `path`: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        self.request("GET", path, "")
    }

    /// POST a JSON `body` to `path`: (status, body).
    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        self.request("POST", path, body)
    }

    fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let addr = self.url.trim_start_matches("http://");
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        write!(
            c,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut text = String::new();
        c.read_to_string(&mut text).unwrap();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map_or("", |b| b.1).to_string();
        (status, body)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a float32 or int64 `.npy` (format 1.0).
pub fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) {
    let shape_s = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_s}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    std::fs::write(path, out).unwrap();
}

/// A CA, a server certificate for localhost/127.0.0.1 and a client
/// certificate, as ca.pem, server.pem, server.key, client.pem and
/// client.key in `dir`.
pub fn pki(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: OpenSSL takes a leaf whose issuer equals its subject
    // for self-signed (rcgen's default name is the same for all).
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "hone test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut server =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = server.signed_by(&key, &ca, &ca_key).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(vec!["client".to_string()]).unwrap();
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client.distinguished_name.push(DnType::CommonName, "client");
    let client = client.signed_by(&client_key, &ca, &ca_key).unwrap();
    for (file, pem) in [
        ("ca.pem", ca.pem()),
        ("server.pem", cert.pem()),
        ("server.key", key.serialize_pem()),
        ("client.pem", client.pem()),
        ("client.key", client_key.serialize_pem()),
    ] {
        std::fs::write(dir.join(file), pem).unwrap();
    }
}

/// Copies the example repository's `model` into `repo` as `version`.
pub fn example_model(repo: &Path, model: &str, version: &str) {
    let to = repo.join(model).join(version);
    std::fs::create_dir_all(&to).unwrap();
    std::fs::copy(
        workspace()
            .join("examples/repository")
            .join(model)
            .join("1/model.onnx"),
        to.join("model.onnx"),
    )
    .unwrap();
}

pub fn run(cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}

/// A venv with the pinned packages of `requirements` (relative to the
/// workspace), rebuilt when the pins change; made once under target/.
pub fn venv(requirements: &str, name: &str) -> PathBuf {
    // Two suites share a venv: one builds it while the other waits.
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let reqs = workspace().join(requirements);
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

/// The candidate `name` of an optimize report.
pub fn candidate<'a>(r: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    r["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {r}"))
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

/// GET an `http://HOST:PORT/PATH` URL over a fresh connection: the body.
pub fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (addr, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(
        c,
        "GET /{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n").map_or("", |b| b.1).to_string()
}

/// `hone bench --json` for one short step (1 s, 200 ms warm-up) against
/// `srv`: the report.
pub fn bench_json(srv: &ServeProcess, args: &[&str]) -> serde_json::Value {
    let mut all = vec![
        "bench",
        "--url",
        &srv.url,
        "--grpc-url",
        &srv.grpc,
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--json",
    ];
    all.extend_from_slice(args);
    let out = hone(&all);
    assert!(
        out.status.success(),
        "hone {all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// [`bench_json`], whose step must have answered without an error.
pub fn bench_step(srv: &ServeProcess, args: &[&str]) -> serde_json::Value {
    let r = bench_json(srv, args);
    let step = &r["steps"][0];
    assert!(step["ok"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
    assert_eq!(step["errors"], serde_json::json!({}), "{r}");
    r
}
