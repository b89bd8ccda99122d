//! TLS on both ports with certificates made in the test (rcgen): HTTPS and
//! gRPC over TLS answer a client that trusts the CA, plain HTTP on the TLS
//! port gets nothing, and with a client CA only clients holding a
//! certificate it signed are served (mutual TLS).

// Tests may unwrap and index: a panic here is a failed test, not a crashed server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::fake::{FakeLoader, write_model};
use hone_server::grpc::proto::{self, grpc_inference_service_client::GrpcInferenceServiceClient};
use hone_server::{Server, ServerOptions, TlsFiles};
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};

struct Pki {
    ca: String,
    client_cert: String,
    client_key: String,
}

/// A CA, a server certificate for localhost/127.0.0.1 and a client
/// certificate, written as PEM files under `dir`.
fn pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let srv_key = KeyPair::generate().unwrap();
    let srv = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&srv_key, &ca, &ca_key)
        .unwrap();
    let cli_key = KeyPair::generate().unwrap();
    let mut cli_params = CertificateParams::new(vec!["client".to_string()]).unwrap();
    cli_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cli = cli_params.signed_by(&cli_key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), srv.pem()).unwrap();
    std::fs::write(dir.join("server.key"), srv_key.serialize_pem()).unwrap();
    Pki {
        ca: ca.pem(),
        client_cert: cli.pem(),
        client_key: cli_key.serialize_pem(),
    }
}

async fn server(tag: &str, mutual: bool) -> (Server, Pki) {
    let dir = std::env::temp_dir().join(format!("hone-tls-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    write_model(
        &dir,
        "m",
        1,
        "scale=1",
        "instance_group [{ count: 1 kind: KIND_CPU }]\n",
    );
    let pki = pki(&dir);
    let opts = ServerOptions {
        tls: Some(TlsFiles {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            client_ca: mutual.then(|| dir.join("ca.pem")),
        }),
        ..ServerOptions::ephemeral(&dir)
    };
    let s = Server::start_with(opts, Arc::new(FakeLoader::default()))
        .await
        .unwrap();
    (s, pki)
}

fn client(pki: &Pki, with_cert: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca.as_bytes()).unwrap());
    if with_cert {
        let pem = format!("{}{}", pki.client_cert, pki.client_key);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

#[tokio::test]
async fn https_and_grpc_over_tls() {
    let (s, pki) = server("plain", false).await;
    let port = s.http_addr.port();
    let r = client(&pki, false)
        .post(format!("https://localhost:{port}/v2/models/m/infer"))
        .body(r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN offers h2");
    // Plain HTTP on the TLS port is not answered as HTTP.
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/v2/health/live"))
            .await
            .is_err()
    );
    // A client that does not trust the CA refuses the server.
    assert!(
        reqwest::Client::builder()
            .use_rustls_tls()
            .build()
            .unwrap()
            .get(format!("https://localhost:{port}/v2/health/live"))
            .send()
            .await
            .is_err()
    );
    // gRPC over TLS.
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    let ch = tonic::transport::Channel::from_shared(format!(
        "https://localhost:{}",
        s.grpc_addr.unwrap().port()
    ))
    .unwrap()
    .tls_config(tls)
    .unwrap()
    .connect()
    .await
    .unwrap();
    let mut c = GrpcInferenceServiceClient::new(ch);
    assert!(
        c.server_live(proto::ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    s.shutdown().await;
}

#[tokio::test]
async fn mutual_tls_needs_a_client_certificate() {
    let (s, pki) = server("mutual", true).await;
    let url = format!("https://localhost:{}/v2/health/live", s.http_addr.port());
    assert!(
        client(&pki, false).get(&url).send().await.is_err(),
        "no client certificate"
    );
    let r = client(&pki, true).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    s.shutdown().await;
}

#[tokio::test]
async fn bad_certificate_files_stop_the_start_with_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("hone-tls-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    write_model(&dir, "m", 1, "scale=1", "");
    std::fs::write(dir.join("empty.pem"), "not a certificate\n").unwrap();
    let opts = ServerOptions {
        tls: Some(TlsFiles {
            cert: dir.join("empty.pem"),
            key: dir.join("missing.key"),
            client_ca: None,
        }),
        ..ServerOptions::ephemeral(&dir)
    };
    let e = Server::start_with(opts, Arc::new(FakeLoader::default()))
        .await
        .err()
        .unwrap();
    assert!(e.message.contains("--tls-cert"), "{e}");
}
