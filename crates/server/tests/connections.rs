//! The HTTP port under clients that misbehave at the connection level:
//! slow-loris headers and bodies are cut off while other clients are
//! served, and an HTTP/2 (h2c) client is answered instead of left hanging.

// Tests may unwrap and index: a panic here is a failed test, not a crashed server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use common::fake::fake_server;
use hone_server::{HttpLimits, Server, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const INFER: &str = r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}"#;

async fn server(tag: &str) -> Server {
    let limits = HttpLimits {
        header_read: Duration::from_secs(1),
        body_read: Duration::from_secs(1),
    };
    let (s, _, _) = fake_server(&format!("conn-{tag}"), "scale=1", "", |_, opts| {
        ServerOptions {
            http_limits: limits,
            ..opts
        }
    })
    .await;
    s
}

/// Reads until the server closes the connection; what it sent.
async fn read_to_close(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let r = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    assert!(
        r.is_ok(),
        "the server kept the connection open past {limit:?}"
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_is_cut_off_while_others_are_served() {
    let s = server("loris").await;
    let addr = s.http_addr;
    // 50 clients that send half a header block and then nothing.
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Le")
            .await
            .unwrap();
        slow.push(c);
    }
    // One that sends its headers, a tenth of its body, then nothing.
    let mut trickle = TcpStream::connect(addr).await.unwrap();
    trickle
        .write_all(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"inputs\"")
        .await
        .unwrap();
    // Meanwhile a normal client is served, quickly.
    let c = reqwest::Client::new();
    for _ in 0..20 {
        let t = Instant::now();
        let r = c
            .post(format!("http://{addr}/v2/models/m/infer"))
            .body(INFER)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }
    // Every slow client is disconnected after the 1 s header timeout.
    for c in &mut slow {
        read_to_close(c, Duration::from_secs(5)).await;
    }
    // The trickling body gets a 408 with a JSON error.
    let answer =
        String::from_utf8(read_to_close(&mut trickle, Duration::from_secs(5)).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within"), "{answer}");
    // An idle keep-alive connection is closed too.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8(read_to_close(&mut idle, Duration::from_secs(5)).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    s.shutdown().await;
}

#[tokio::test]
async fn http2_cleartext_is_answered() {
    let s = server("h2c").await;
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let base = format!("http://{}", s.http_addr);
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        c.get(format!("{base}/v2/health/ready")).send(),
    )
    .await
    .expect("an HTTP/2 client was left hanging")
    .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{base}/v2/models/m/infer"))
        .body(INFER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("[1.0,2.0]"));
    s.shutdown().await;
}
