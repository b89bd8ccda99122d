//! A client of a running hone server (or any KServe V2 server): over HTTP,
//! inference, metadata, statistics, readiness, the repository, traffic and
//! rollout; over gRPC, a channel to the V2 inference service ([`grpc`]).
//! It sends the API key on inference and read routes and the admin key on
//! control routes (`Authorization: Bearer`), and trusts a CA file for
//! `https://`. `hone models`, `hone ship --into`, `hone bench` and
//! `hone tune` speak through it.

pub mod grpc;

use std::path::{Path, PathBuf};

pub use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Where the server is and how to prove who we are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `http://host:port` or `https://host:port`; a bare `host:port` is
    /// taken as `http://`.
    pub url: String,
    /// The admin key's file (first line that is not empty or a `#`
    /// comment): load, unload, traffic and rollout need it once the server
    /// has keys.
    pub admin_key_file: Option<PathBuf>,
    /// An inference key's file, same format, for inference and read routes.
    pub api_key_file: Option<PathBuf>,
    /// PEM CA certificate(s) to trust for an `https://` server.
    pub cacert: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no key in it (the first line that is not empty or a # comment)", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: not a PEM certificate bundle: {source}", path.display())]
    Certificate {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot set up the HTTP client: {0}")]
    Setup(#[source] reqwest::Error),
    #[error("{url} is https: give --cacert with its CA")]
    NoCa { url: String },
    #[error("cannot connect to gRPC {url}: {source}")]
    Grpc {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// No answer: `cause` is the innermost reason (connection refused, a
    /// name that does not resolve, an untrusted certificate), with a hint.
    #[error("cannot connect to {url} ({method}): {cause}")]
    Unreachable {
        method: Method,
        url: String,
        cause: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status; `message` is its `error`
    /// field, or the body.
    #[error("{method} {url}: {status}: {message}")]
    Refused {
        method: Method,
        url: String,
        status: StatusCode,
        message: String,
    },
}

impl ClientError {
    /// The server's status, when it answered at all.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// Which key a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Inference, metadata, readiness, the repository index.
    Read,
    /// Load, unload, traffic, rollout.
    Admin,
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    admin_key: Option<String>,
    api_key: Option<String>,
}

impl Client {
    pub fn new(o: &Options) -> Result<Client> {
        let mut b = reqwest::Client::builder();
        if let Some(p) = &o.cacert {
            let pem = std::fs::read(p).map_err(|source| ClientError::Read {
                path: p.clone(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
                ClientError::Certificate {
                    path: p.clone(),
                    source,
                }
            })?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let base = o.url.trim_end_matches('/');
        let base = if base.contains("://") {
            base.to_string()
        } else {
            format!("http://{base}")
        };
        Ok(Client {
            http: b.build().map_err(ClientError::Setup)?,
            base,
            admin_key: o.admin_key_file.as_deref().map(read_key).transpose()?,
            api_key: o.api_key_file.as_deref().map(read_key).transpose()?,
        })
    }

    /// The server's base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The inference key read from `api_key_file`, for callers that send
    /// requests on connections of their own (the load generator).
    pub fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }

    /// Calls `path` (from the base URL) and returns the JSON answer (a
    /// string for an answer that is not JSON, `null` for an empty one).
    pub async fn call(
        &self,
        access: Access,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let (status, url, text) = self.send(access, method.clone(), path, body).await?;
        answer(method, status, url, text)
    }

    /// The status and body of a call, whatever the status.
    async fn send(
        &self,
        access: Access,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, String, String)> {
        self.send_with(access, method, path, body, None).await
    }

    async fn send_with(
        &self,
        access: Access,
        method: Method,
        path: &str,
        body: Option<&Value>,
        header: Option<(&str, &str)>,
    ) -> Result<(StatusCode, String, String)> {
        let url = format!("{}{path}", self.base);
        let mut r = self.http.request(method.clone(), &url);
        if let Some((k, v)) = header {
            r = r.header(k, v);
        }
        // The admin key opens read routes too; a server without an admin
        // key lets its inference keys make changes.
        let key = match access {
            Access::Admin => self.admin_key.as_ref().or(self.api_key.as_ref()),
            Access::Read => self.api_key.as_ref().or(self.admin_key.as_ref()),
        };
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        if let Some(b) = body {
            r = r.json(b);
        }
        let unreachable = |source: reqwest::Error| ClientError::Unreachable {
            method: method.clone(),
            url: url.clone(),
            cause: root_cause(&source, url.starts_with("https://")),
            source,
        };
        let resp = r.send().await.map_err(unreachable)?;
        let status = resp.status();
        let text = resp.text().await.map_err(unreachable)?;
        Ok((status, url, text))
    }

    /// Whether a model (or one version of it) is ready. A refusal other
    /// than "not ready" (a missing key, say) is an error, not a no.
    pub async fn ready(&self, model: &str, version: Option<u64>) -> Result<bool> {
        let path = match version {
            Some(v) => format!("/v2/models/{model}/versions/{v}/ready"),
            None => format!("/v2/models/{model}/ready"),
        };
        let (status, url, text) = self.send(Access::Read, Method::GET, &path, None).await?;
        match status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST | StatusCode::SERVICE_UNAVAILABLE => {
                Ok(false)
            }
            status => Err(ClientError::Refused {
                method: Method::GET,
                url,
                status,
                message: text,
            }),
        }
    }

    /// Has the server load (or reload) a model from its repository.
    pub async fn load(&self, model: &str) -> Result<()> {
        let path = format!("/v2/repository/models/{model}/load");
        self.call(Access::Admin, Method::POST, &path, None).await?;
        Ok(())
    }

    /// Has the server unload a model.
    pub async fn unload(&self, model: &str) -> Result<()> {
        let path = format!("/v2/repository/models/{model}/unload");
        self.call(Access::Admin, Method::POST, &path, None).await?;
        Ok(())
    }

    /// A model's traffic split; None when the server does not know it.
    pub async fn traffic(&self, model: &str) -> Result<Option<Value>> {
        let path = format!("/v2/models/{model}/traffic");
        match self.call(Access::Read, Method::GET, &path, None).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets a model's traffic split (`{"weights": …, "labels": …}`).
    pub async fn set_traffic(&self, model: &str, split: &Value) -> Result<Value> {
        let path = format!("/v2/models/{model}/traffic");
        self.call(Access::Admin, Method::PUT, &path, Some(split))
            .await
    }

    /// Starts a rollout (`{"to": …, "from": …, "steps": […]}`).
    pub async fn start_rollout(&self, model: &str, plan: &Value) -> Result<Value> {
        let path = format!("/v2/models/{model}/rollout");
        self.call(Access::Admin, Method::POST, &path, Some(plan))
            .await
    }

    /// A model's (or one version's) V2 metadata: name, versions, inputs
    /// and outputs with their datatypes and shapes.
    pub async fn metadata(&self, model: &str, version: Option<&str>) -> Result<Value> {
        let path = model_path(model, version);
        self.call(Access::Read, Method::GET, &path, None).await
    }

    /// The model configuration (Triton's model-configuration extension:
    /// `max_batch_size`, `dynamic_batching`, `instance_group`, ...).
    pub async fn model_config(&self, model: &str, version: Option<&str>) -> Result<Value> {
        let path = format!("{}/config", model_path(model, version));
        self.call(Access::Read, Method::GET, &path, None).await
    }

    /// Triton's statistics extension for a model (or one version):
    /// counts and cumulative nanoseconds of success, queue and compute.
    pub async fn statistics(&self, model: &str, version: Option<&str>) -> Result<Value> {
        let path = format!("{}/stats", model_path(model, version));
        self.call(Access::Read, Method::GET, &path, None).await
    }

    /// A V2 JSON inference request marked synthetic ([`SYNTHETIC_HEADER`]):
    /// answered as any other, left out of the model's live drift. For
    /// checks such as ship's smoke test.
    pub async fn infer_synthetic(
        &self,
        model: &str,
        version: Option<u64>,
        body: &Value,
    ) -> Result<Value> {
        let method = Method::POST;
        let path = infer_path(model, version);
        let (status, url, text) = self
            .send_with(
                Access::Read,
                method.clone(),
                &path,
                Some(body),
                Some((SYNTHETIC_HEADER, "synthetic")),
            )
            .await?;
        answer(method, status, url, text)
    }

    /// A KServe V2 JSON inference request to a model (or one version).
    pub async fn infer(&self, model: &str, version: Option<u64>, body: &Value) -> Result<Value> {
        self.call(
            Access::Read,
            Method::POST,
            &infer_path(model, version),
            Some(body),
        )
        .await
    }
}

/// The innermost error under reqwest's "error sending request" (where the
/// reason is), with what to do about an untrusted certificate.
fn root_cause(e: &reqwest::Error, https: bool) -> String {
    let mut inner: &dyn std::error::Error = e;
    while let Some(s) = inner.source() {
        inner = s;
    }
    let text = inner.to_string();
    if e.is_timeout() {
        return format!("no answer in time ({text})");
    }
    let lower = text.to_lowercase();
    if https && (lower.contains("certificate") || lower.contains("unknownissuer")) {
        return format!("{text}: give --cacert with the CA that signed the server's certificate");
    }
    text
}

/// A call's JSON answer (a string for an answer that is not JSON, `null`
/// for an empty one), or the refusal with the server's `error` field.
fn answer(method: Method, status: StatusCode, url: String, text: String) -> Result<Value> {
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or(text);
        return Err(ClientError::Refused {
            method,
            url,
            status,
            message,
        });
    }
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The request header hone serve reads to tell checks from live traffic
/// (value `synthetic`); the server's own constant has the same name.
pub const SYNTHETIC_HEADER: &str = "hone-traffic";

/// The V2 route of a model (or one version).
fn model_path(model: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("/v2/models/{model}/versions/{v}"),
        None => format!("/v2/models/{model}"),
    }
}

/// The V2 inference route of a model (or one version).
pub fn infer_path(model: &str, version: Option<u64>) -> String {
    match version {
        Some(v) => format!("/v2/models/{model}/versions/{v}/infer"),
        None => format!("/v2/models/{model}/infer"),
    }
}

/// A key file's key: the first word of its first line that is not empty
/// or a `#` comment (the server's key files may add ` rate=N`).
pub fn read_key(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|source| ClientError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().next())
        .map(str::to_string)
        .ok_or_else(|| ClientError::NoKey {
            path: path.to_path_buf(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("hone-client-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn key_files_and_ca_files_fail_with_their_path() {
        let k = tmp("key", "# comment\n\n  sk-123 rate=5\nother\n");
        assert_eq!(read_key(&k).unwrap(), "sk-123");
        let empty = tmp("empty", "# only a comment\n");
        let e = read_key(&empty).unwrap_err();
        assert!(matches!(e, ClientError::NoKey { .. }), "{e}");
        assert!(e.to_string().contains(&*empty.to_string_lossy()), "{e}");
        let missing = std::env::temp_dir().join("hone-client-no-such-file");
        let e = read_key(&missing).unwrap_err();
        assert!(matches!(e, ClientError::Read { .. }), "{e}");
        assert!(std::error::Error::source(&e).is_some());
        let ca = tmp(
            "ca",
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        );
        let o = Options {
            url: "https://127.0.0.1:1".into(),
            cacert: Some(ca),
            ..Options::default()
        };
        let e = Client::new(&o).unwrap_err();
        assert!(matches!(e, ClientError::Certificate { .. }), "{e}");
    }

    #[test]
    fn a_bare_address_is_plain_http() {
        let c = Client::new(&Options {
            url: "127.0.0.1:8000/".into(),
            ..Options::default()
        })
        .unwrap();
        assert_eq!(c.base(), "http://127.0.0.1:8000");
        assert_eq!(infer_path("m", Some(3)), "/v2/models/m/versions/3/infer");
    }
}
