//! REST plumbing every HTTP route shares: the error type and its JSON
//! answer, bounded body reading, background draining of refused bodies,
//! CPU work off the async threads, and the model a URL names.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hone_core::Error;
use serde_json::json;

use crate::budget::{RETRY_AFTER_SECS, Ticket};
use crate::compress;
use crate::error::ServeError;
use crate::infer::{Head, Route};
use crate::model::LoadedModel;
use crate::offload::{self, OFF_THREAD_BYTES};
use crate::state::ServerState;

pub(crate) const HEADER_LEN: &str = "inference-header-content-length";

pub(crate) type St = State<Arc<ServerState>>;
pub(crate) type Params = Path<HashMap<String, String>>;

/// An error as a REST client sees it: a status and `{"error": message}`.
pub type ApiError = ServeError;

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let code = self.http_status();
        let retry = self.retry();
        let mut r = (code, json_response(&json!({"error": self.to_string()}))).into_response();
        if retry {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        r
    }
}

/// [`offload::cpu`] with the server's permits.
pub(crate) async fn cpu<T: Send + 'static>(
    s: &ServerState,
    big: bool,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    offload::cpu(&s.limits.heavy, big, what, f).await
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
    let limit = s.limits.max_request_bytes;
    let too_large = || {
        ApiError::refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the {limit} byte limit (--max-request-bytes)"),
        )
    };
    let coding = match compress::request_coding(headers) {
        Ok(c) => c,
        Err(m) => {
            drain(s, headers, body);
            return Err(ApiError::refused(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                m.to_string(),
            ));
        }
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    // Refused before a byte is buffered: too large, or no room right now.
    let ticket = match declared {
        Some(n) if n > limit => Err(too_large()),
        n => s.limits.budget.take(n.unwrap_or(0)).map_err(ApiError::from),
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
                ApiError::refused(
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
    let raw = match tokio::time::timeout(s.limits.http.body_read, read).await {
        Ok(Ok(raw)) => raw,
        // Over the size or the budget part-way through a chunked body: the
        // rest is read off so the client gets the answer, not a reset.
        Ok(Err(e)) => {
            drain(s, headers, body);
            return Err(e);
        }
        Err(_) => {
            return Err(ApiError::refused(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s",
                    s.limits.http.body_read.as_secs_f64()
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
    let (s, limit) = (s.clone(), s.limits.http.body_read);
    tokio::spawn(async move {
        use http_body_util::BodyExt;
        let mut body = body;
        let _ = tokio::time::timeout(limit, async {
            let Ok(_permit) = s.limits.drains.acquire().await else {
                return;
            };
            while let Some(Ok(_)) = body.frame().await {}
        })
        .await;
    });
}

/// `v` as a JSON answer; one that cannot be written is a 500, never an
/// empty 200.
pub(crate) fn json_response(v: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(v) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json!({"error": format!("cannot write the answer as JSON: {e}")}).to_string(),
        )
            .into_response(),
    }
}

pub(crate) type ApiResult = Result<Response, ApiError>;

/// The version a URL names (by number or label), else the newest ready
/// (metadata, config and statistics routes: no traffic split). A model out
/// of memory under the budget is loaded: clients read metadata first.
pub(crate) async fn model(
    state: &ServerState,
    p: &HashMap<String, String>,
) -> Result<Arc<LoadedModel>, ApiError> {
    let r = route_of(p)?;
    Ok(state
        .repo
        .lookup(&r.model, None, |models| {
            if r.label.is_none() {
                return models.get(&r.model, r.version.as_deref());
            }
            crate::traffic::resolve(
                models,
                &state.traffic,
                &r.model,
                r.version.as_deref(),
                r.label.as_deref(),
                &|_| None,
            )
        })
        .await?)
}

/// The route a V2 URL's parameters name. `/versions//infer` names no
/// version: an error, not the default version.
pub(crate) fn route_of(p: &HashMap<String, String>) -> Result<Route, ServeError> {
    if p.get("version").is_some_and(String::is_empty) {
        return Err(Error::invalid(
            "empty version in the URL: give a version number, or leave out /versions/",
        )
        .into());
    }
    Ok(Route {
        model: p.get("model").cloned().unwrap_or_default(),
        version: p.get("version").cloned(),
        label: p.get("label").cloned(),
    })
}

/// The [`Head`] of a REST inference request; a bad path is refused by the
/// core, observed like any other refusal.
pub(crate) fn head_of(p: &HashMap<String, String>, headers: HeaderMap) -> Head {
    let (route, refused) = match route_of(p) {
        Ok(r) => (r, None),
        Err(e) => (Route::default(), Some(e)),
    };
    Head {
        route,
        headers,
        refused,
    }
}
