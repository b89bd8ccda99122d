//! API and admin keys over HTTP and gRPC: the full matrix of routes and
//! credentials on a real server (fake engine), keys read from real files.

// Tests may unwrap and index: a panic here is a failed test, not a crashed server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::fake::fake_server;
use hone_server::grpc::proto::{self, grpc_inference_service_client::GrpcInferenceServiceClient};
use hone_server::{Keys, Server, ServerOptions};
use tonic::Code;

const INFER: &str = r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}"#;

async fn server(tag: &str) -> Server {
    let (s, _, _) = fake_server(&format!("auth-{tag}"), "scale=1", "", |dir, opts| {
        std::fs::write(
            dir.join("api.keys"),
            "# inference\ninf-key-1\n\ninf-key-2\n",
        )
        .unwrap();
        std::fs::write(dir.join("admin.keys"), "adm-key\n").unwrap();
        let keys =
            Keys::from_files(Some(&dir.join("api.keys")), Some(&dir.join("admin.keys"))).unwrap();
        ServerOptions { keys, ..opts }
    })
    .await;
    s
}

#[tokio::test]
async fn http_routes_need_the_right_key() {
    let s = server("http").await;
    let base = format!("http://{}", s.http_addr);
    let c = reqwest::Client::new();
    // (method, path, body) and the expected status for: no key, a wrong key,
    // a Basic header, an inference key, the admin key.
    let cases: [(&str, &str, &str, [u16; 5]); 6] = [
        ("GET", "/v2/health/live", "", [200, 200, 200, 200, 200]),
        ("GET", "/v2/health/ready", "", [200, 200, 200, 200, 200]),
        ("GET", "/v2/models/m", "", [401, 401, 401, 200, 200]),
        (
            "POST",
            "/v2/models/m/infer",
            INFER,
            [401, 401, 401, 200, 200],
        ),
        (
            "POST",
            "/v2/repository/index",
            "",
            [401, 401, 401, 200, 200],
        ),
        (
            "POST",
            "/v2/repository/models/m/load",
            "",
            [401, 401, 401, 403, 200],
        ),
    ];
    let creds = [
        None,
        Some("Bearer nope"),
        Some("Basic aW5m"),
        Some("Bearer inf-key-2"),
        Some("Bearer adm-key"),
    ];
    for (method, path, body, want) in cases {
        for (cred, want) in creds.iter().zip(want) {
            let mut r = match method {
                "GET" => c.get(format!("{base}{path}")),
                _ => c.post(format!("{base}{path}")).body(body),
            };
            if let Some(h) = cred {
                r = r.header("Authorization", *h);
            }
            let resp = r.send().await.unwrap();
            let got = resp.status().as_u16();
            let www = resp.headers().get("www-authenticate").cloned();
            let text = resp.text().await.unwrap();
            assert_eq!(got, want, "{method} {path} with {cred:?}: {text}");
            if got == 401 || got == 403 {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert!(
                    v["error"].as_str().unwrap().to_lowercase().contains("key"),
                    "{text}"
                );
                assert_eq!(www.is_some(), got == 401);
            }
        }
    }
    s.shutdown().await;
}

fn with<T>(key: Option<&str>, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(k) = key {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {k}").parse().unwrap());
    }
    r
}

#[tokio::test]
async fn grpc_calls_need_the_right_key() {
    let s = server("grpc").await;
    let mut c = GrpcInferenceServiceClient::connect(format!("http://{}", s.grpc_addr.unwrap()))
        .await
        .unwrap();
    // Health answers without a key; an unknown model is simply not ready.
    assert!(
        c.server_live(with(None, proto::ServerLiveRequest {}))
            .await
            .is_ok()
    );
    let unknown = proto::ModelReadyRequest {
        name: "nope".into(),
        version: String::new(),
    };
    assert!(
        !c.model_ready(with(None, unknown))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let meta = || proto::ModelMetadataRequest {
        name: "m".into(),
        version: String::new(),
    };
    for key in [None, Some("wrong")] {
        let e = c.model_metadata(with(key, meta())).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{key:?}");
    }
    assert!(
        c.model_metadata(with(Some("inf-key-1"), meta()))
            .await
            .is_ok()
    );
    let load = || proto::RepositoryModelLoadRequest {
        model_name: "m".into(),
        ..Default::default()
    };
    let e = c
        .repository_model_load(with(Some("inf-key-1"), load()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        c.repository_model_load(with(Some("adm-key"), load()))
            .await
            .is_ok()
    );
    s.shutdown().await;
}

#[test]
fn an_empty_or_missing_key_file_is_refused() {
    let dir = std::env::temp_dir().join(format!("hone-auth-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("empty"), "# nothing\n\n").unwrap();
    let e = Keys::from_files(Some(&dir.join("empty")), None).unwrap_err();
    assert!(e.message.contains("holds no key"), "{e}");
    let e = Keys::from_files(None, Some(&dir.join("absent"))).unwrap_err();
    assert!(e.message.contains("--admin-key-file"), "{e}");
}

/// `KEY rate=N` in the key file: that key gets N requests a second (bursts
/// of N), then 429 with Retry-After over HTTP and RESOURCE_EXHAUSTED over
/// gRPC; other keys and the admin key are not throttled by it.
#[tokio::test]
async fn a_key_over_its_rate_gets_429() {
    let (s, _, _) = fake_server("auth-rate", "scale=1", "", |dir, opts| {
        std::fs::write(dir.join("api.keys"), "slow rate=2\nfree\n").unwrap();
        std::fs::write(dir.join("admin.keys"), "adm\n").unwrap();
        let keys =
            Keys::from_files(Some(&dir.join("api.keys")), Some(&dir.join("admin.keys"))).unwrap();
        ServerOptions { keys, ..opts }
    })
    .await;
    let url = format!("http://{}/v2/models/m/infer", s.http_addr);
    let c = reqwest::Client::new();
    let post = |key: &'static str| {
        c.post(&url)
            .header("Authorization", format!("Bearer {key}"))
            .body(INFER)
            .send()
    };
    // The burst of two passes; the third within the same second does not.
    assert_eq!(post("slow").await.unwrap().status(), 200);
    assert_eq!(post("slow").await.unwrap().status(), 200);
    let r = post("slow").await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r.text().await.unwrap().contains("rate"));
    for key in ["free", "adm", "free"] {
        assert_eq!(post(key).await.unwrap().status(), 200, "{key}");
    }
    let mut g = GrpcInferenceServiceClient::connect(format!("http://{}", s.grpc_addr.unwrap()))
        .await
        .unwrap();
    let e = g
        .model_infer(with(Some("slow"), common::fake::grpc_request_x()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    // The admin service takes the admin key only.
    use hone_server::grpc::proto::admin::{ModelRef, admin_client::AdminClient};
    let mut a = AdminClient::connect(format!("http://{}", s.grpc_addr.unwrap()))
        .await
        .unwrap();
    let m = || ModelRef { model: "m".into() };
    assert_eq!(
        a.get_traffic(with(None, m())).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        a.get_traffic(with(Some("free"), m()))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        a.get_traffic(with(Some("adm"), m()))
            .await
            .unwrap()
            .into_inner()
            .source,
        "default"
    );
    // Half a second later one token is back.
    tokio::time::sleep(std::time::Duration::from_millis(550)).await;
    assert_eq!(post("slow").await.unwrap().status(), 200);
    s.shutdown().await;
}

#[test]
fn a_malformed_rate_is_refused() {
    let dir = std::env::temp_dir().join(format!("hone-auth-rate-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for bad in ["k rate=0\n", "k rate=fast\n", "k speed=3\n"] {
        std::fs::write(dir.join("keys"), bad).unwrap();
        let e = Keys::from_files(Some(&dir.join("keys")), None).unwrap_err();
        assert!(e.message.contains("line 1"), "{bad}: {e}");
    }
}

/// A large upload without a key is refused before its body is read, and
/// the client, which sends its whole body before reading, still gets the
/// 401: the body is read off and dropped, not met with a reset.
#[tokio::test]
async fn a_refused_large_upload_reads_its_401() {
    let s = server("big").await;
    let addr = s.http_addr;
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        let body = vec![b' '; 32 << 20];
        write!(
            c,
            "POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        c.write_all(&body).expect("the whole body is taken");
        let mut answer = String::new();
        c.read_to_string(&mut answer).expect("the answer");
        answer
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    s.shutdown().await;
}
