//! Deadlines and cancellation: a request whose timeout passes in the queue,
//! or whose client went away, is answered (or dropped) without reaching the
//! engine, and counted by reason.

// Tests may unwrap and index: a panic here is a failed test, not a crashed server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::fake::{FakeLoader, fake_server, grpc_request_x};
use hone_server::Server;
use hone_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;

fn body(timeout_us: Option<u64>) -> String {
    let params = timeout_us.map_or(String::new(), |t| {
        format!(r#""parameters":{{"timeout":{t}}},"#)
    });
    format!(r#"{{{params}"inputs":[{{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}}]}}"#)
}

async fn start(tag: &str, config: &str) -> (Server, Arc<FakeLoader>) {
    let (s, l, _) = fake_server(&format!("deadline-{tag}"), "scale=1", config, |_, o| o).await;
    (s, l)
}

async fn wait_calls(l: &FakeLoader, n: usize) {
    let t = Instant::now();
    while l.calls.load(Ordering::SeqCst) < n {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "engine never reached {n} calls"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn failures(s: &Server, reason: &str) -> u64 {
    let m = s.state.repo.models().render_metrics();
    let key =
        format!("hone_request_failure_total{{model=\"m\",version=\"1\",reason=\"{reason}\"}} ");
    m.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Holds the engine with one request, runs `f` while it is held, then lets
/// it go; returns the held request's status.
async fn with_engine_held<F, Fut>(s: &Server, l: &FakeLoader, f: F) -> u16
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    l.close();
    let url = format!("http://{}/v2/models/m/infer", s.http_addr);
    let held = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .body(body(None))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    wait_calls(l, 1).await;
    f().await;
    l.open();
    held.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_timeout_expires_in_the_queue() {
    for (tag, config, timeout) in [
        // Triton's request parameter, no queue policy.
        ("param", "max_batch_size: 0\n", Some(100_000)),
        // The queue policy's default, which a request may not lengthen.
        (
            "policy",
            "max_batch_size: 8\ndynamic_batching { default_queue_policy { default_timeout_microseconds: 100000 allow_timeout_override: false } }\n",
            Some(60_000_000),
        ),
    ] {
        let (s, l) = start(tag, config).await;
        let url = format!("http://{}/v2/models/m/infer", s.http_addr);
        let mut late = None;
        let held = with_engine_held(&s, &l, || {
            // Sent once the engine is held: it waits in the queue past its timeout.
            late = Some(tokio::spawn(
                reqwest::Client::new().post(&url).body(body(timeout)).send(),
            ));
            tokio::time::sleep(Duration::from_millis(300))
        })
        .await;
        assert_eq!(held, 200, "{tag}");
        let late = late.unwrap();
        let r = late.await.unwrap().unwrap();
        let cfg = reqwest::get(format!("http://{}/v2/models/m/config", s.http_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(
            status,
            503,
            "{tag}: {cfg} {text} calls {}",
            l.calls.load(Ordering::SeqCst)
        );
        assert!(text.contains("request timeout expired"), "{tag}: {text}");
        assert_eq!(
            l.calls.load(Ordering::SeqCst),
            1,
            "{tag}: the late request reached the engine"
        );
        assert_eq!(failures(&s, "TIMEOUT"), 1, "{tag}");
        // A request inside its timeout is served as usual.
        let r = reqwest::Client::new()
            .post(&url)
            .body(body(timeout))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{tag}");
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_is_never_run() {
    let (s, l) = start("cancel", "max_batch_size: 0\n").await;
    let url = format!("http://{}/v2/models/m/infer", s.http_addr);
    let held = with_engine_held(&s, &l, || async {
        // This client gives up after 100 ms and closes its connection.
        let c = reqwest::Client::builder()
            .timeout(Duration::from_millis(100))
            .build()
            .unwrap();
        assert!(c.post(&url).body(body(None)).send().await.is_err());
        tokio::time::sleep(Duration::from_millis(200)).await;
    })
    .await;
    assert_eq!(held, 200);
    let t = Instant::now();
    while failures(&s, "CANCELLED") < 1 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the abandoned request was not counted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        l.calls.load(Ordering::SeqCst),
        1,
        "the abandoned request reached the engine"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_deadline_is_honoured() {
    let (s, l) = start("grpc", "max_batch_size: 0\n").await;
    let mut c = GrpcInferenceServiceClient::connect(format!("http://{}", s.grpc_addr.unwrap()))
        .await
        .unwrap();
    let held = with_engine_held(&s, &l, || async {
        let mut r = tonic::Request::new(grpc_request_x());
        r.set_timeout(Duration::from_millis(100));
        let e = c.model_infer(r).await.unwrap_err();
        // tonic's client gives up at the deadline itself ("Timeout
        // expired", CANCELLED) and resets the stream.
        assert!(
            matches!(
                e.code(),
                tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
            ),
            "{e}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    })
    .await;
    assert_eq!(held, 200);
    let t = Instant::now();
    while failures(&s, "TIMEOUT") + failures(&s, "CANCELLED") < 1 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the late gRPC request was not counted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(l.calls.load(Ordering::SeqCst), 1);
    drop(c);
    s.shutdown().await;
}
