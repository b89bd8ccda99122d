//! The KServe V2 REST front end, with Triton's config/stats/repository
//! extensions and the binary tensor data extension.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hone_core::{Error, ErrorKind};
use serde_json::{Value as Json, json};

use crate::codec::{self, RequestedOutput};
use crate::model::LoadedModel;
use crate::repository::check_load_parameters;
use crate::state::{EXTENSIONS, SERVER_NAME, ServerState};

const HEADER_LEN: &str = "inference-header-content-length";

type St = State<Arc<ServerState>>;
type Params = Path<HashMap<String, String>>;

pub struct ApiError(Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = match self.0.kind {
            ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (code, json_response(&json!({"error": self.0.message}))).into_response()
    }
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

pub fn router(state: Arc<ServerState>, max_body: usize) -> Router {
    Router::new()
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
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer))
        .route("/v2/repository/index", post(repository_index))
        .route("/v2/repository/models/{model}/load", post(repository_load))
        .route(
            "/v2/repository/models/{model}/unload",
            post(repository_unload),
        )
        .fallback(|| async { ApiError(Error::not_found("no such endpoint")) })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

fn model(state: &ServerState, p: &HashMap<String, String>) -> Result<Arc<LoadedModel>, ApiError> {
    let name = p.get("model").map(String::as_str).unwrap_or_default();
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
        Ok(_) => Ok(json_response(
            &json!({"name": p.get("model"), "ready": true}),
        )),
        Err(ApiError(e)) if e.kind == ErrorKind::Unavailable => Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            json_response(&json!({"name": p.get("model"), "ready": false, "error": e.message})),
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

async fn repository_index(State(s): St, body: Bytes) -> ApiResult {
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

async fn repository_load(State(s): St, Path(p): Params, body: Bytes) -> ApiResult {
    check_repository_params(&body)?;
    let name = p.get("model").map(String::as_str).unwrap_or_default();
    s.load_model(name).await?;
    Ok(json_response(&json!({})))
}

async fn repository_unload(State(s): St, Path(p): Params, body: Bytes) -> ApiResult {
    check_repository_params(&body)?;
    let name = p.get("model").map(String::as_str).unwrap_or_default();
    s.unload_model(name).await?;
    Ok(json_response(&json!({})))
}

async fn infer(
    State(s): St,
    Path(p): Params,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let m = model(&s, &p)?;
    let body = body.map_err(|r| {
        let msg = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            format!(
                "request body exceeds the {} byte limit (--max-request-bytes)",
                s.max_request_bytes
            )
        } else {
            format!("cannot read request body: {}", r.body_text())
        };
        Error::invalid(msg)
    })?;
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
    let req = match codec::decode_request(body, header_len) {
        Ok(r) => r,
        Err(e) => {
            m.stats.fail(
                crate::metrics::FailReason::Invalid,
                std::time::Duration::ZERO,
            );
            return Err(e.into());
        }
    };
    for o in &req.outputs {
        if m.output_spec(&o.name).is_none() {
            return Err(Error::invalid(format!("unknown output '{}' requested", o.name)).into());
        }
    }
    let outputs = m.infer(req.inputs).await?;
    let selected: Vec<(&str, &hone_core::Tensor, bool)> = m
        .metadata
        .outputs
        .iter()
        .zip(&outputs)
        .filter_map(|(spec, t)| {
            if req.outputs.is_empty() {
                return Some((spec.name.as_str(), t, req.binary_default));
            }
            req.outputs
                .iter()
                .find(|o: &&RequestedOutput| o.name == spec.name)
                .map(|o| (spec.name.as_str(), t, o.binary))
        })
        .collect();
    let enc = codec::encode_response(&m.name, &m.version, req.id.as_deref(), &selected);
    let mut resp = Response::new(Body::from(enc.body));
    let h = resp.headers_mut();
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
    Ok(resp)
}

/// The metrics port's router: `/metrics` only.
pub fn metrics_router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(s): St| async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    s.repo.models().render_metrics(),
                )
            }),
        )
        .with_state(state)
}
