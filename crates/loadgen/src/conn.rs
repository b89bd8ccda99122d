//! Connections that send one request at a time: HTTP/1.1 keep-alive over
//! hyper (what tritonclient, perf_analyzer and wrk use), or a gRPC channel.
//! A failed request is named by what a user would look for: the HTTP status,
//! the gRPC code, or `connection`.

use bytes::Bytes;
use hone_core::{Error, Result};
use hone_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value as Json;

/// `host:port` of an `http://host:port` URL.
pub fn authority(base: &str) -> Result<String> {
    let rest = base.strip_prefix("http://").ok_or_else(|| {
        Error::invalid(format!(
            "--url {base}: give http://HOST:PORT (TLS endpoints are not driven yet)"
        ))
    })?;
    Ok(rest.trim_end_matches('/').to_string())
}

/// One HTTP/1.1 keep-alive connection.
pub struct Http {
    send: SendRequest<Full<Bytes>>,
    host: String,
    /// `Bearer KEY` sent with every request, for servers with API keys.
    auth: Option<String>,
}

impl Http {
    pub async fn connect(base: &str, key: Option<&str>) -> Result<Http> {
        let host = authority(base)?;
        let stream = tokio::net::TcpStream::connect(&host)
            .await
            .map_err(|e| Error::unavailable(format!("cannot connect to {host}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Error::unavailable(format!("{host}: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
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
    ) -> std::result::Result<(u16, Bytes), String> {
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
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        self.send.ready().await.map_err(|e| e.to_string())?;
        let resp = self
            .send
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }
}

/// GET `path` as JSON over a fresh connection; an error names the status
/// and the server's message.
pub async fn get_json(base: &str, path: &str, key: Option<&str>) -> Result<Json> {
    let mut c = Http::connect(base, key).await?;
    let (status, body) = c
        .request("GET", path, Bytes::new(), None)
        .await
        .map_err(|e| Error::unavailable(format!("GET {base}{path}: {e}")))?;
    let v: Json = serde_json::from_slice(&body).unwrap_or(Json::Null);
    if status != 200 {
        let msg = v.get("error").and_then(Json::as_str).map_or_else(
            || String::from_utf8_lossy(&body).into_owned(),
            str::to_string,
        );
        let e = format!("GET {base}{path}: {status} {msg}");
        return Err(if status == 404 {
            Error::not_found(e)
        } else {
            Error::unavailable(e)
        });
    }
    Ok(v)
}

/// A gRPC client on its own HTTP/2 connection.
pub type Grpc = GrpcInferenceServiceClient<tonic::transport::Channel>;

pub async fn grpc(url: &str) -> Result<Grpc> {
    GrpcInferenceServiceClient::connect(url.to_string())
        .await
        .map(|c| c.max_decoding_message_size(usize::MAX))
        .map_err(|e| Error::unavailable(format!("cannot connect to gRPC {url}: {e}")))
}
