//! REST plumbing every HTTP route shares: the error type and its JSON
//! answer, bounded body reading, background draining of refused bodies,
//! CPU work off the async threads, and the model a URL names.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hone_core::{Error, ErrorKind};
use serde_json::{Value as Json, json};

use crate::budget::{Overloaded, RETRY_AFTER_SECS, Ticket};
use crate::compress;
use crate::model::LoadedModel;
use crate::state::ServerState;

pub(crate) const HEADER_LEN: &str = "inference-header-content-length";
/// Bodies larger than this are (de)compressed on a blocking thread.
pub(crate) const OFF_THREAD_BYTES: usize = 256 << 10;

pub(crate) type St = State<Arc<ServerState>>;
pub(crate) type Params = Path<HashMap<String, String>>;

/// An error as the client sees it: a status and `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) err: Error,
    status: Option<StatusCode>,
    /// Overload: the client may retry after `Retry-After` seconds.
    retry: bool,
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        Self {
            err,
            status: None,
            retry: false,
        }
    }
}

impl From<Overloaded> for ApiError {
    fn from(o: Overloaded) -> Self {
        Self {
            err: Error::unavailable(o.0),
            status: None,
            retry: true,
        }
    }
}

impl ApiError {
    /// A status the error kind alone does not say (405, 413).
    pub(crate) fn with_status(code: StatusCode, message: impl Into<String>) -> Self {
        Self {
            err: Error::invalid(message),
            status: Some(code),
            retry: false,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.status.unwrap_or(match self.err.kind {
            ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        });
        let mut r = (code, json_response(&json!({"error": self.err.message}))).into_response();
        if self.retry {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        r
    }
}

/// Runs CPU work on a blocking thread when it is `big` (megabytes of JSON
/// or compression take milliseconds), inline otherwise; either way health
/// checks and small requests keep their latency. Big work takes a permit of
/// `heavy` first: it never holds every core, so the I/O threads always
/// have one.
pub(crate) async fn cpu<T: Send + 'static>(
    s: &ServerState,
    big: bool,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    if !big {
        return Ok(f());
    }
    let _permit = s
        .heavy
        .acquire()
        .await
        .map_err(|_| Error::unavailable("the server is shutting down"))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("{what} panicked: {e}")))
}

/// Reads a request body within the size limit, the body-read timeout and
/// the server's memory budget, so a client that sends its headers and then
/// trickles (or never sends) the body cannot hold a connection and memory,
/// and many large bodies at once cannot exhaust RAM: 413 over the limit,
/// 408 past the timeout, 503 with `Retry-After` over the budget, all JSON.
/// The ticket holds the bytes until the caller drops it with its answer.
pub(crate) async fn read_body(
    s: &Arc<ServerState>,
    headers: &HeaderMap,
    mut body: Body,
) -> Result<(Bytes, Ticket), ApiError> {
    use http_body_util::BodyExt;
    let limit = s.max_request_bytes;
    let too_large = || {
        ApiError::with_status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the {limit} byte limit (--max-request-bytes)"),
        )
    };
    let coding = match compress::request_coding(headers) {
        Ok(c) => c,
        Err(m) => {
            drain(s, headers, body);
            return Err(ApiError::with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE, m));
        }
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    // Refused before a byte is buffered: too large, or no room right now.
    let ticket = match declared {
        Some(n) if n > limit => Err(too_large()),
        n => s.budget.take(n.unwrap_or(0)).map_err(ApiError::from),
    };
    let mut ticket = match ticket {
        Ok(t) => t,
        Err(e) => {
            drain(s, headers, body);
            return Err(e);
        }
    };
    let read = async {
        // One frame (the common case) is kept as is; more are copied into
        // one buffer sized from Content-Length, never collected twice.
        let mut first: Option<Bytes> = None;
        let mut buf = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                ApiError::with_status(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read request body: {e}"),
                )
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let have = first.as_ref().map_or(buf.len(), Bytes::len);
            let total = have + data.len();
            if total > limit {
                return Err(too_large());
            }
            if total > ticket.held() {
                ticket.grow(total - ticket.held())?;
            }
            match first.take() {
                None if buf.is_empty() => first = Some(data),
                prev => {
                    if let Some(p) = prev {
                        buf.reserve(declared.unwrap_or(0).max(total));
                        buf.extend_from_slice(&p);
                    }
                    buf.extend_from_slice(&data);
                }
            }
        }
        Ok(first.unwrap_or_else(|| buf.freeze()))
    };
    let raw = match tokio::time::timeout(s.http_limits.body_read, read).await {
        Ok(Ok(raw)) => raw,
        // Over the size or the budget part-way through a chunked body: the
        // rest is read off so the client gets the answer, not a reset.
        Ok(Err(e)) => {
            drain(s, headers, body);
            return Err(e);
        }
        Err(_) => {
            return Err(ApiError::with_status(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s",
                    s.http_limits.body_read.as_secs_f64()
                ),
            ));
        }
    };
    if coding == compress::Coding::Identity {
        return Ok((raw, ticket));
    }
    let big = raw.len() > OFF_THREAD_BYTES;
    let inflated = cpu(s, big, "body decoder", move || {
        compress::decode(coding, raw, limit)
    })
    .await??
    .ok_or_else(too_large)?;
    ticket.grow(inflated.len())?;
    Ok((inflated, ticket))
}

/// Reads and discards the body of a refused request in the background (up
/// to the body-read timeout), so the client, still sending, reads the
/// refusal instead of a connection reset. A few drains run at once: under
/// a flood of refused uploads the rest wait (their clients blocked on a
/// full socket, costing nothing) and the cores stay with admitted work and
/// health checks. A client that asked `Expect: 100-continue` has sent
/// nothing yet: dropping the body tells hyper to answer without inviting it.
pub(crate) fn drain(s: &Arc<ServerState>, headers: &HeaderMap, body: Body) {
    if headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
    {
        return;
    }
    let (s, limit) = (s.clone(), s.http_limits.body_read);
    tokio::spawn(async move {
        use http_body_util::BodyExt;
        let mut body = body;
        let _ = tokio::time::timeout(limit, async {
            let Ok(_permit) = s.drains.acquire().await else {
                return;
            };
            while let Some(Ok(_)) = body.frame().await {}
        })
        .await;
    });
}

pub(crate) fn json_response(v: &Json) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

pub(crate) type ApiResult = Result<Response, ApiError>;

/// The version a URL names (by number or label), else the newest ready.
pub(crate) fn model(
    state: &ServerState,
    p: &HashMap<String, String>,
) -> Result<Arc<LoadedModel>, ApiError> {
    routed(state, p, None)
}

/// As [`model`]; an inference request (`headers` given) that names no
/// version goes where the model's traffic split sends it.
pub(crate) fn routed(
    state: &ServerState,
    p: &HashMap<String, String>,
    headers: Option<&HeaderMap>,
) -> Result<Arc<LoadedModel>, ApiError> {
    let name = p.get("model").map(String::as_str).unwrap_or_default();
    // `/versions//infer` names no version: an error, not the default version.
    if p.get("version").is_some_and(String::is_empty) {
        return Err(Error::invalid(
            "empty version in the URL: give a version number, or leave out /versions/",
        )
        .into());
    }
    let version = p.get("version").map(String::as_str);
    let label = p.get("label").map(String::as_str);
    let Some(headers) = headers.filter(|_| version.is_none()) else {
        if label.is_none() {
            return Ok(state.repo.models().get(name, version)?);
        }
        return Ok(crate::traffic::resolve(
            state.repo.models(),
            &state.traffic,
            name,
            version,
            label,
            &|_| None,
        )?);
    };
    Ok(crate::traffic::resolve(
        state.repo.models(),
        &state.traffic,
        name,
        None,
        label,
        &|h| headers.get(h).map(|v| v.as_bytes().to_vec()),
    )?)
}
