//! The repository's lifecycle and the server's shutdown with a fake engine:
//! which versions load, reload, keep serving or unload, and that every
//! request in flight at shutdown is answered.

// Tests may unwrap and index: a panic here is a failed test, not a crashed server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::fake::{FakeLoader, fake_server, write_model};
use hone_core::{ErrorKind, Tensor};
use hone_server::repository::Change;
use hone_server::{Repository, Server, ServerOptions};

const ONE: &str = "instance_group [{ count: 1 kind: KIND_CPU }]\n";

fn x() -> Vec<(String, Tensor)> {
    vec![(
        "x".into(),
        Tensor::from_f32(vec![1, 2], &[1.0, 2.0]).unwrap(),
    )]
}

async fn answer(repo: &Repository, name: &str) -> Vec<u8> {
    let m = repo.models().get(name, None).unwrap();
    let out = m
        .infer(repo.models(), x(), Default::default(), true)
        .await
        .unwrap();
    out.outputs[0].to_wire_bytes().to_vec()
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|f| f.to_le_bytes()).collect()
}

#[tokio::test]
async fn reload_reuses_unchanged_versions_and_keeps_serving_on_failure() {
    let dir = tempdir("reload");
    write_model(&dir, "m", 1, "scale=1", ONE);
    write_model(&dir, "broken", 1, "fail", ONE);
    let loader = Arc::new(FakeLoader::default());
    let repo = Repository::open(&dir, loader.clone()).unwrap();
    assert_eq!(loader.loads.load(Ordering::SeqCst), 1, "only m loads");
    assert_eq!(answer(&repo, "m").await, f32s(&[1.0, 2.0]));
    // A model that fails as a whole is listed with its reason; readiness says so.
    assert!(!repo.models().all_ready());
    let idx = repo.models().index(false);
    let broken = idx.iter().find(|e| e.name == "broken").unwrap();
    assert_eq!(broken.state, "UNAVAILABLE");
    assert!(
        broken.reason.contains("fake engine cannot load"),
        "{broken:?}"
    );

    // Nothing changed: a reload builds no engine.
    assert_eq!(
        repo.load("m").unwrap(),
        Change::Loaded {
            name: "m".into(),
            versions: vec!["1".into()]
        }
    );
    assert_eq!(loader.loads.load(Ordering::SeqCst), 1);

    // A new version (latest 1) replaces the old one.
    write_model(&dir, "m", 2, "scale=2", ONE);
    repo.load("m").unwrap();
    assert_eq!(loader.loads.load(Ordering::SeqCst), 2);
    assert_eq!(answer(&repo, "m").await, f32s(&[2.0, 4.0]));
    assert_eq!(repo.models().ready_versions("m"), vec!["2".to_string()]);

    // A broken newer version: the reload fails, version 2 keeps serving.
    write_model(&dir, "m", 3, "fail", ONE);
    let e = repo.load("m").unwrap_err();
    assert!(e.message.contains("version(s) 2 keep serving"), "{e}");
    assert_eq!(answer(&repo, "m").await, f32s(&[2.0, 4.0]));
}

#[tokio::test]
async fn unload_and_poll_follow_the_directory() {
    let dir = tempdir("poll");
    write_model(&dir, "a", 1, "scale=3", ONE);
    write_model(&dir, "b", 1, "scale=1", ONE);
    let loader = Arc::new(FakeLoader::default());
    let repo = Repository::open(&dir, loader.clone()).unwrap();
    assert!(repo.models().all_ready());

    repo.unload("a").unwrap();
    let e = repo.models().get("a", None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(repo.models().all_ready(), "unloaded models do not count");
    // A model with no version left still has a readiness series.
    let metrics = repo.models().render_metrics();
    assert!(
        metrics.contains("hone_model_ready{model=\"a\",version=\"\"} 0"),
        "{metrics}"
    );
    // Unchanged on disk: polling leaves it unloaded.
    assert!(repo.poll().is_empty());
    assert!(repo.models().get("a", None).is_err());

    // A new directory loads; a removed one unloads.
    write_model(&dir, "c", 1, "scale=5", ONE);
    std::fs::remove_dir_all(dir.join("b")).unwrap();
    let mut changes = repo.poll();
    changes.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        changes.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
        vec![
            Change::Loaded {
                name: "c".into(),
                versions: vec!["1".into()]
            },
            Change::Unloaded { name: "b".into() },
        ]
    );
    assert_eq!(answer(&repo, "c").await, f32s(&[5.0, 10.0]));
    assert_eq!(
        repo.models().get("b", None).unwrap_err().kind,
        ErrorKind::NotFound
    );
    // Names from URLs stay inside the repository.
    assert_eq!(repo.load("../a").unwrap_err().kind, ErrorKind::InvalidInput);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests() {
    // One engine, no batching: one request in the engine, the rest queued.
    let (server, loader, _) =
        fake_server("shutdown", "scale=2", "max_batch_size: 0\n", |_, o| o).await;
    loader.close();
    let url = format!("http://{}/v2/models/m/infer", server.http_addr);
    let body = r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}"#;
    const N: usize = 6;
    let client = reqwest::Client::new();
    let in_flight: Vec<_> = (0..N)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let r = client.post(&url).body(body).send().await?;
                Ok::<_, reqwest::Error>((r.status().as_u16(), r.text().await?))
            })
        })
        .collect();
    // Wait until every request is inside the server: one in the engine,
    // N - 1 in the queue.
    let stats = server
        .state
        .repo
        .models()
        .get("m", None)
        .unwrap()
        .stats
        .clone();
    let t = Instant::now();
    while loader.calls.load(Ordering::SeqCst) < 1
        || stats.pending.load(Ordering::SeqCst) < N as i64 - 1
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "requests never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let http = server.http_addr;
    let shutdown = tokio::spawn(server.shutdown());
    // The listener closes at once; accepted requests still wait on the engine.
    let t = Instant::now();
    while tokio::net::TcpStream::connect(http).await.is_ok() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "still accepting after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    loader.open();
    tokio::time::timeout(Duration::from_secs(20), shutdown)
        .await
        .expect("shutdown hung")
        .unwrap();
    for f in in_flight {
        let (status, text) = tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .expect("a request was never answered")
            .unwrap()
            .expect("a request was cut off");
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("[2.0,4.0]"), "{text}");
    }
    assert_eq!(loader.calls.load(Ordering::SeqCst), N);
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("hone-lifecycle-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_reports_not_ready_and_exit_timeout_bounds_a_stuck_shutdown() {
    let (server, loader, _) =
        fake_server("drain", "scale=2", "max_batch_size: 0\n", |_, o| o).await;
    let base = format!("http://{}", server.http_addr);
    let body = r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}"#;
    let c = reqwest::Client::new();
    let get = |p: &str| c.get(format!("{base}{p}")).send();
    assert_eq!(get("/v2/health/ready").await.unwrap().status(), 200);
    // Draining: not ready, still live, still serving.
    server.drain();
    assert_eq!(get("/v2/health/ready").await.unwrap().status(), 503);
    assert_eq!(get("/v2/health/live").await.unwrap().status(), 200);
    let r = c
        .post(format!("{base}/v2/models/m/infer"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A client that sends half its headers and then nothing, and an engine
    // call that never returns: shutdown gives up at the limit.
    let mut slow = tokio::net::TcpStream::connect(server.http_addr)
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut slow,
        b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\n",
    )
    .await
    .unwrap();
    loader.close();
    let stuck = tokio::spawn(
        c.post(format!("{base}/v2/models/m/infer"))
            .body(body)
            .send(),
    );
    let t = Instant::now();
    while loader.calls.load(Ordering::SeqCst) < 2 {
        assert!(t.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t = Instant::now();
    let finished = server.shutdown_within(Duration::from_millis(500)).await;
    assert!(
        !finished,
        "shutdown cannot finish while the engine is stuck"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    loader.open();
    let _ = stuck.await;
    drop(slow);
}

#[tokio::test]
async fn readiness_is_strict_unless_asked_otherwise() {
    let dir = tempdir("strict");
    write_model(&dir, "good", 1, "scale=1", ONE);
    write_model(&dir, "bad", 1, "fail", ONE);
    for (strict, want) in [(true, 503), (false, 200)] {
        let opts = ServerOptions {
            strict_readiness: strict,
            ..ServerOptions::ephemeral(&dir)
        };
        let server = Server::start_with(opts, Arc::new(FakeLoader::default()))
            .await
            .unwrap();
        let r = reqwest::get(format!("http://{}/v2/health/ready", server.http_addr))
            .await
            .unwrap();
        assert_eq!(r.status(), want, "strict {strict}");
        server.shutdown().await;
    }
}

#[tokio::test]
async fn paths_stay_inside_the_repository_and_out_of_errors() {
    let dir = tempdir("paths");
    write_model(
        &dir,
        "escape",
        1,
        "scale=1",
        &format!("default_model_filename: \"../../../etc/passwd\"\n{ONE}"),
    );
    write_model(&dir, "broken", 1, "fail", ONE);
    write_model(
        &dir,
        "missing",
        1,
        "scale=1",
        &format!("default_model_filename: \"other.onnx\"\n{ONE}"),
    );
    let repo = Repository::open(&dir, Arc::new(FakeLoader::default())).unwrap();
    let idx = repo.models().index(false);
    let reason = |n: &str| idx.iter().find(|e| e.name == n).unwrap().reason.clone();
    assert!(
        reason("escape").contains("plain file name"),
        "{}",
        reason("escape")
    );
    assert!(
        reason("broken").contains("broken/1/model.onnx"),
        "{}",
        reason("broken")
    );
    assert!(
        reason("missing").contains("missing/1/other.onnx does not exist"),
        "{}",
        reason("missing")
    );
    let abs = dir.display().to_string();
    for e in &idx {
        assert!(!e.reason.contains(&abs), "{e:?} reveals the server path");
    }
    let e = repo.load("nope").unwrap_err();
    assert!(!e.message.contains(&abs), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_engine_fails_its_batch_and_is_restarted() {
    let (s, l, _) =
        common::fake::fake_server("crash", "scale=1", "max_batch_size: 0\n", |_, o| o).await;
    let base = format!("http://{}", s.http_addr);
    let c = reqwest::Client::new();
    let infer = |first: f32| {
        c.post(format!("{base}/v2/models/m/infer"))
            .body(format!(r#"{{"inputs":[{{"name":"x","shape":[1,2],"datatype":"FP32","data":[{first},2]}}]}}"#))
            .send()
    };
    assert_eq!(infer(1.0).await.unwrap().status(), 200);
    // The restart cannot get an engine at first: the model is not ready.
    l.refuse_loads.store(true, Ordering::SeqCst);
    let r = infer(13.0).await.unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.text().await.unwrap().contains("engine crashed"));
    let get = |p: &str| c.get(format!("{base}{p}")).send();
    assert_eq!(get("/v2/health/ready").await.unwrap().status(), 503);
    assert_eq!(get("/v2/models/m/ready").await.unwrap().status(), 503);
    let metrics = s.state.repo.models().render_metrics();
    assert!(
        metrics.contains("hone_model_ready{model=\"m\",version=\"1\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hone_engine_restarts_total{model=\"m\",version=\"1\"} 1"),
        "{metrics}"
    );
    // Loads work again: the retry brings the engine back, and it serves.
    l.refuse_loads.store(false, Ordering::SeqCst);
    let t = Instant::now();
    while get("/v2/health/ready").await.unwrap().status() != 200 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the engine never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(infer(1.0).await.unwrap().status(), 200);
    assert_eq!(
        l.loads.load(Ordering::SeqCst),
        2,
        "one load at start, one restart"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_answer_while_the_repository_loads() {
    let dir = tempdir("loading");
    write_model(&dir, "m", 1, "scale=1", ONE);
    // A port known before the server starts, so the test can call it early.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let loader = Arc::new(FakeLoader::default());
    loader.hold_loads();
    let opts = ServerOptions {
        http_port: port,
        grpc_port: None,
        metrics_port: None,
        ..ServerOptions::ephemeral(&dir)
    };
    let starting = tokio::spawn(Server::start_with(opts, loader.clone()));
    let base = format!("http://127.0.0.1:{port}");
    let t = Instant::now();
    let live = loop {
        if let Ok(r) = reqwest::get(format!("{base}/v2/health/live")).await {
            break r;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the port never answered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(live.status(), 200);
    let ready = reqwest::get(format!("{base}/v2/health/ready"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "not ready while loading");
    assert!(!starting.is_finished());
    loader.release_loads();
    let server = tokio::time::timeout(Duration::from_secs(10), starting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        reqwest::get(format!("{base}/v2/health/ready"))
            .await
            .unwrap()
            .status(),
        200
    );
    server.shutdown().await;
}
