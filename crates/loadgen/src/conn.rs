//! The measured HTTP/1.1 keep-alive connections, over hyper (what
//! tritonclient, perf_analyzer and wrk use): one per client task, no pool,
//! so the bench sends exactly what it times. Metadata, statistics and gRPC
//! channels come from hone-client.
//! A failed request is named by what a user would look for: the HTTP status,
//! the gRPC code, or `connection`.

use bytes::Bytes;
use hone_core::{Error, Result};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// `host:port` of an `http://` or `https://` URL, and whether it is TLS.
pub fn authority(base: &str) -> Result<(String, bool)> {
    let (rest, tls) = match (base.strip_prefix("http://"), base.strip_prefix("https://")) {
        (Some(r), _) => (r, false),
        (_, Some(r)) => (r, true),
        _ => {
            return Err(Error::invalid(format!(
                "--url {base}: give http://HOST:PORT or https://HOST:PORT"
            )));
        }
    };
    Ok((rest.trim_end_matches('/').to_string(), tls))
}

/// Trust for `https://` servers: the certificates of a PEM file (--cacert).
#[derive(Clone)]
pub struct Tls {
    client: tokio_rustls::TlsConnector,
    /// The same CA for gRPC.
    pub ca_pem: Vec<u8>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls { .. }")
    }
}

impl Tls {
    pub fn from_pem_file(path: &std::path::Path) -> Result<Tls> {
        use rustls_pki_types::pem::PemObject;
        let pem = std::fs::read(path)
            .map_err(|e| Error::invalid(format!("--cacert {}: {e}", path.display())))?;
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            let c = c.map_err(|e| Error::invalid(format!("--cacert {}: {e}", path.display())))?;
            roots
                .add(c)
                .map_err(|e| Error::invalid(format!("--cacert {}: {e}", path.display())))?;
        }
        if roots.is_empty() {
            return Err(Error::invalid(format!(
                "--cacert {}: no certificate in it",
                path.display()
            )));
        }
        let cfg = tokio_rustls::rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Tls {
            client: tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg)),
            ca_pem: pem,
        })
    }
}

/// How long a connection (TCP, and TLS for gRPC) may take to open.
const CONNECT: std::time::Duration = std::time::Duration::from_secs(10);

/// One HTTP/1.1 keep-alive connection.
pub struct Http {
    send: SendRequest<Full<Bytes>>,
    host: String,
    /// `Bearer KEY` sent with every request, for servers with API keys.
    auth: Option<String>,
}

impl Http {
    pub async fn connect(base: &str, key: Option<&str>, tls: Option<&Tls>) -> Result<Http> {
        let (host, secure) = authority(base)?;
        // Bounded: an address that drops packets must not hang the bench
        // for the OS's two-minute TCP timeout.
        let stream = tokio::time::timeout(CONNECT, tokio::net::TcpStream::connect(&host))
            .await
            .map_err(|_| {
                Error::unavailable(format!(
                    "cannot connect to {host}: no answer within {} s",
                    CONNECT.as_secs()
                ))
            })?
            .map_err(|e| Error::unavailable(format!("cannot connect to {host}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let fail = |e: &dyn std::fmt::Display| Error::unavailable(format!("{host}: {e}"));
        let send = if secure {
            let tls = tls.ok_or_else(|| {
                Error::invalid(format!("{base} is https: give --cacert with its CA"))
            })?;
            let name = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
            let name =
                rustls_pki_types::ServerName::try_from(name.to_string()).map_err(|e| fail(&e))?;
            let stream = tls
                .client
                .connect(name, stream)
                .await
                .map_err(|e| fail(&e))?;
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| fail(&e))?;
            tokio::spawn(conn);
            send
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| fail(&e))?;
            tokio::spawn(conn);
            send
        };
        Ok(Http {
            send,
            host,
            auth: key.map(|k| format!("Bearer {k}")),
        })
    }

    /// Sends one request and reads the whole answer: Ok((status, body)), or
    /// Err when the connection failed (the caller reconnects).
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Bytes,
        header_len: Option<usize>,
    ) -> std::result::Result<(u16, Bytes), Box<dyn std::error::Error + Send + Sync>> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        if !body.is_empty() {
            req = req.header("content-type", "application/json");
        }
        if let Some(n) = header_len {
            req = req.header("inference-header-content-length", n);
        }
        if let Some(a) = &self.auth {
            req = req.header("authorization", a);
        }
        let req = req.body(Full::new(body))?;
        self.send.ready().await?;
        let resp = self.send.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}
