//! The KServe V2 REST front end, with Triton's config/stats/repository
//! extensions and the binary tensor data extension.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hone_core::{Error, ErrorKind};
use serde_json::{Value as Json, json};

use crate::auth::{self, Denied};
use crate::budget::{Overloaded, RETRY_AFTER_SECS, Ticket};
use crate::codec::{self, RequestedOutput};
use crate::compress;
use crate::model::LoadedModel;
use crate::repository::check_load_parameters;
use crate::state::{EXTENSIONS, SERVER_NAME, ServerState};

const HEADER_LEN: &str = "inference-header-content-length";
/// Bodies larger than this are (de)compressed on a blocking thread.
const OFF_THREAD_BYTES: usize = 256 << 10;

type St = State<Arc<ServerState>>;
type Params = Path<HashMap<String, String>>;

/// An error as the client sees it: a status and `{"error": message}`.
pub struct ApiError {
    err: Error,
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
    fn with_status(code: StatusCode, message: impl Into<String>) -> Self {
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
async fn cpu<T: Send + 'static>(
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
async fn read_body(
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
fn drain(s: &Arc<ServerState>, headers: &HeaderMap, body: Body) {
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

fn json_response(v: &Json) -> Response {
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

type ApiResult = Result<Response, ApiError>;

/// The REST routes. Body size and read time are enforced by `read_body`.
pub fn router(state: Arc<ServerState>) -> Router {
    let open = state.keys.is_open();
    let r = Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/stats", get(stats))
        .route("/v2/models/{model}", get(model_metadata))
        .route("/v2/models/{model}/versions/{version}", get(model_metadata))
        .route("/v2/models/{model}/ready", get(model_ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(model_ready),
        )
        .route("/v2/models/{model}/config", get(model_config))
        .route(
            "/v2/models/{model}/versions/{version}/config",
            get(model_config),
        )
        .route("/v2/models/{model}/stats", get(stats))
        .route("/v2/models/{model}/versions/{version}/stats", get(stats))
        .route("/v2/models/{model}/drift", get(drift))
        .route("/v2/models/{model}/versions/{version}/drift", get(drift))
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer))
        .route("/dashboard", get(crate::dashboard::page))
        .route("/dashboard.json", get(crate::dashboard::data))
        .route("/v2/repository/index", post(repository_index))
        .route("/v2/repository/models/{model}/load", post(repository_load))
        .route(
            "/v2/repository/models/{model}/unload",
            post(repository_unload),
        )
        .fallback(|| async { ApiError::from(Error::not_found("no such endpoint")) })
        .method_not_allowed_fallback(|| async {
            ApiError::with_status(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint",
            )
        });
    // Without keys the check is skipped entirely: no cost on the open path.
    let r = if open {
        r
    } else {
        r.layer(KeyCheckLayer(state.clone()))
    };
    r.with_state(state)
}

/// The key check as a layer on every route: a refusal is answered at once,
/// and an allowed request goes straight on to the route's own future (no
/// boxed middleware future, no extra task state), so keys cost the check.
#[derive(Clone)]
struct KeyCheckLayer(Arc<ServerState>);

impl<S> tower_layer::Layer<S> for KeyCheckLayer {
    type Service = KeyCheck<S>;
    fn layer(&self, inner: S) -> KeyCheck<S> {
        KeyCheck {
            inner,
            state: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct KeyCheck<S> {
    inner: S,
    state: Arc<ServerState>,
}

impl<S> tower_service::Service<axum::extract::Request> for KeyCheck<S>
where
    S: tower_service::Service<
            axum::extract::Request,
            Response = Response,
            Error = std::convert::Infallible,
        >,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::Either<
        std::future::Ready<Result<Response, std::convert::Infallible>>,
        S::Future,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::extract::Request) -> Self::Future {
        use futures_util::future::Either;
        let need = auth::http_access(req.uri().path());
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        match self.state.keys.check(need, given) {
            Ok(()) => Either::Right(self.inner.call(req)),
            Err(d) => Either::Left(std::future::ready(Ok(refuse(&self.state, d, req)))),
        }
    }
}

/// The answer to a request without the key its route needs, before its
/// body is read.
fn refuse(s: &Arc<ServerState>, d: Denied, req: axum::extract::Request) -> Response {
    let code = match d {
        Denied::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        Denied::Forbidden => StatusCode::FORBIDDEN,
        Denied::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
    };
    let mut r = (code, json_response(&json!({"error": d.message()}))).into_response();
    // A refused upload is read off in the background, as in `read_body`, so
    // the client reads this answer, not a reset.
    let (parts, body) = req.into_parts();
    drain(s, &parts.headers, body);
    match d {
        Denied::Unauthenticated(_) => {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        Denied::RateLimited(secs) => {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        Denied::Forbidden => {}
    }
    r
}

fn model(state: &ServerState, p: &HashMap<String, String>) -> Result<Arc<LoadedModel>, ApiError> {
    let name = p.get("model").map(String::as_str).unwrap_or_default();
    // `/versions//infer` names no version: an error, not the default version.
    if p.get("version").is_some_and(String::is_empty) {
        return Err(Error::invalid(
            "empty version in the URL: give a version number, or leave out /versions/",
        )
        .into());
    }
    Ok(state
        .repo
        .models()
        .get(name, p.get("version").map(String::as_str))?)
}

async fn server_metadata() -> Response {
    json_response(
        &json!({"name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION"), "extensions": EXTENSIONS}),
    )
}

async fn live() -> Response {
    json_response(&json!({"live": true}))
}

async fn ready(State(s): St) -> Response {
    let ready = s.ready();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, json_response(&json!({"ready": ready}))).into_response()
}

async fn model_ready(State(s): St, Path(p): Params) -> ApiResult {
    match model(&s, &p) {
        Ok(m) if !m.healthy() => Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            json_response(&json!({"name": p.get("model"), "ready": false, "error": "an engine instance crashed and is being restarted"})),
        )
            .into_response()),
        Ok(_) => Ok(json_response(
            &json!({"name": p.get("model"), "ready": true}),
        )),
        Err(e) if e.err.kind == ErrorKind::Unavailable => Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            json_response(&json!({"name": p.get("model"), "ready": false, "error": e.err.message})),
        )
            .into_response()),
        Err(e) => Err(e),
    }
}

async fn model_metadata(State(s): St, Path(p): Params) -> ApiResult {
    let m = model(&s, &p)?;
    let t = |t: &hone_core::TensorSpec| json!({"name": t.name, "datatype": t.dtype.as_v2(), "shape": t.dims});
    Ok(json_response(&json!({
        "name": m.name,
        "versions": s.repo.models().ready_versions(&m.name),
        "platform": m.config.platform,
        "inputs": m.input_specs.iter().map(t).collect::<Vec<_>>(),
        "outputs": m.metadata.outputs.iter().map(t).collect::<Vec<_>>(),
    })))
}

async fn model_config(State(s): St, Path(p): Params) -> ApiResult {
    Ok(json_response(&model(&s, &p)?.config.to_json()))
}

async fn stats(State(s): St, p: Option<Params>) -> ApiResult {
    let p = p.map(|Path(p)| p).unwrap_or_default();
    let models = if p.contains_key("model") {
        vec![model(&s, &p)?]
    } else {
        s.repo.models().loaded()
    };
    let list: Vec<Json> = models
        .iter()
        .map(|m| m.stats.to_json(&m.name, &m.version))
        .collect();
    Ok(json_response(&json!({"model_stats": list})))
}

/// The drift window against the reference profile, with both histograms.
async fn drift(State(s): St, Path(p): Params) -> ApiResult {
    let m = model(&s, &p)?;
    let d = m.drift.as_ref().ok_or_else(|| {
        Error::not_found(format!(
            "{} version {} has no reference profile (model.profile.json from `hone profile`, or a hone model card)",
            m.name, m.version
        ))
    })?;
    #[derive(serde::Serialize)]
    struct Named<'a> {
        model: &'a str,
        version: &'a str,
        #[serde(flatten)]
        drift: crate::drift::Snapshot,
    }
    let v = serde_json::to_value(Named {
        model: &m.name,
        version: &m.version,
        drift: d.snapshot(),
    })
    .map_err(|e| Error::internal(e.to_string()))?;
    Ok(json_response(&v))
}

async fn repository_index(State(s): St, headers: HeaderMap, body: Body) -> ApiResult {
    let (body, _ticket) = read_body(&s, &headers, body).await?;
    // Body is optional: `{"ready": true}` limits the list to ready models.
    let ready_only = if body.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        let v: Json = serde_json::from_slice(&body)
            .map_err(|e| Error::invalid(format!("malformed JSON: {e}")))?;
        v.get("ready").and_then(Json::as_bool).unwrap_or(false)
    };
    Ok(json_response(
        &serde_json::to_value(s.repo.models().index(ready_only)).unwrap_or_default(),
    ))
}

/// Triton's load/unload bodies are optional: `{"parameters": {...}}`.
fn check_repository_params(body: &[u8]) -> Result<(), Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let v: Json =
        serde_json::from_slice(body).map_err(|e| Error::invalid(format!("malformed JSON: {e}")))?;
    match v.get("parameters").and_then(Json::as_object) {
        Some(params) => check_load_parameters(params.keys().map(String::as_str)),
        None => Ok(()),
    }
}

async fn repository_load(s: St, p: Params, headers: HeaderMap, body: Body) -> ApiResult {
    repository_change(s, p, headers, body, true).await
}

async fn repository_unload(s: St, p: Params, headers: HeaderMap, body: Body) -> ApiResult {
    repository_change(s, p, headers, body, false).await
}

/// Triton's repository `load` (or reload) and `unload`.
async fn repository_change(
    State(s): St,
    Path(p): Params,
    headers: HeaderMap,
    body: Body,
    load: bool,
) -> ApiResult {
    let (body, _ticket) = read_body(&s, &headers, body).await?;
    check_repository_params(&body)?;
    let name = p.get("model").map(String::as_str).unwrap_or_default();
    if load {
        s.load_model(name).await?;
    } else {
        s.unload_model(name).await?;
    }
    Ok(json_response(&json!({})))
}

async fn infer(State(s): St, Path(p): Params, headers: HeaderMap, body: Body) -> ApiResult {
    let m = match model(&s, &p) {
        Ok(m) => m,
        Err(e) => {
            drain(&s, &headers, body);
            return Err(e);
        }
    };
    let (body, mut ticket) = read_body(&s, &headers, body).await?;
    let received = std::time::Instant::now();
    let header_len = match headers.get(HEADER_LEN) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    Error::invalid("Inference-Header-Content-Length must be a non-negative integer")
                })?,
        ),
    };
    let big = body.len() > OFF_THREAD_BYTES;
    let decoded = cpu(&s, big, "request decoder", move || {
        codec::decode_request(body, header_len)
    })
    .await?;
    let req = match decoded {
        Ok(r) => r,
        Err(e) => {
            m.stats.fail(
                crate::metrics::FailReason::Invalid,
                std::time::Duration::ZERO,
            );
            return Err(e.into());
        }
    };
    // JSON numbers become new buffers (binary inputs are slices of the
    // body): those bytes are in flight too.
    if header_len.is_none() {
        let decoded: usize = req
            .inputs
            .iter()
            .map(|(_, t)| match &t.data {
                hone_core::TensorData::Raw(b) => b.len(),
                hone_core::TensorData::Strings(v) => v.iter().map(|b| b.len() + 24).sum(),
            })
            .sum();
        ticket.grow(decoded)?;
    }
    for o in &req.outputs {
        if m.output_spec(&o.name).is_none() {
            return Err(Error::invalid(format!("unknown output '{}' requested", o.name)).into());
        }
    }
    let deadline = crate::model::Deadline {
        timeout_us: req.timeout_us,
        client: None,
    };
    let outputs = m.infer(req.inputs, deadline).await?;
    let out_bytes: usize = outputs
        .iter()
        .map(|t| t.element_count() * t.dtype.size().unwrap_or(16))
        .sum();
    let encode = {
        let m = m.clone();
        let (wanted, binary_default, id) = (req.outputs, req.binary_default, req.id);
        move || encode_outputs(&m, &outputs, &wanted, binary_default, id.as_deref())
    };
    // JSON text of a large output is several times its binary size.
    let enc = cpu(
        &s,
        out_bytes > OFF_THREAD_BYTES / 4,
        "response encoder",
        encode,
    )
    .await?;
    let (coding, body) = match compress::response_coding(&headers) {
        compress::Coding::Identity => (compress::Coding::Identity, enc.body),
        c => {
            let body = enc.body;
            let big = body.len() > OFF_THREAD_BYTES;
            cpu(&s, big, "response compressor", move || {
                compress::encode(c, body)
            })
            .await?
        }
    };
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if coding != compress::Coding::Identity {
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.name()),
        );
    }
    match enc.header_len {
        Some(n) => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(HEADER_LEN, HeaderValue::from(n));
        }
        None => {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    m.answered(received);
    Ok(resp)
}

/// The response for the outputs a request asked for (all when it named none).
fn encode_outputs(
    m: &LoadedModel,
    outputs: &[hone_core::Tensor],
    wanted: &[RequestedOutput],
    binary_default: bool,
    id: Option<&str>,
) -> codec::EncodedResponse {
    let selected: Vec<(&str, &hone_core::Tensor, bool)> = m
        .metadata
        .outputs
        .iter()
        .zip(outputs)
        .filter_map(|(spec, t)| {
            if wanted.is_empty() {
                return Some((spec.name.as_str(), t, binary_default));
            }
            wanted
                .iter()
                .find(|o| o.name == spec.name)
                .map(|o| (spec.name.as_str(), t, o.binary))
        })
        .collect();
    codec::encode_response(&m.name, &m.version, id, &selected)
}
