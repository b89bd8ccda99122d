//! The KServe V2 REST front end, with Triton's config/stats/repository
//! extensions and the binary tensor data extension.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hone_core::{Error, ErrorKind};
use serde_json::{Value as Json, json};

use crate::http_infer::infer;
use crate::keycheck::KeyCheckLayer;
use crate::repository::check_load_parameters;
use crate::rest::{ApiError, ApiResult, Params, St, json_response, model, read_body};
use crate::state::{EXTENSIONS, SERVER_NAME, ServerState};
use crate::traffic_admin;
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
        .route(
            "/v2/models/{model}/feedback",
            get(feedback_get).post(feedback_post),
        )
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/labels/{label}", get(model_metadata))
        .route("/v2/models/{model}/labels/{label}/ready", get(model_ready))
        .route("/v2/models/{model}/labels/{label}/infer", post(infer))
        .route(
            "/v2/models/{model}/rollout",
            get(rollout_get).post(rollout_start),
        )
        .route("/v2/models/{model}/rollout/promote", post(rollout_promote))
        .route(
            "/v2/models/{model}/rollout/rollback",
            post(rollout_rollback),
        )
        .route(
            "/v2/models/{model}/traffic",
            get(traffic_get).put(traffic_put).delete(traffic_delete),
        )
        .route("/v2/models/{model}/versions/{version}/infer", post(infer))
        .route(
            "/v1/models/{*rest}",
            get(crate::tfserving::get).post(crate::tfserving::post),
        )
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
            ApiError::refused(
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
    // Out of memory under the budget, it serves when asked: ready, and a
    // probe does not load it.
    let name = p.get("model").map_or("", String::as_str);
    if s.repo.models().is_dormant(name) {
        return Ok(json_response(&json!({"name": name, "ready": true})));
    }
    match model(&s, &p).await {
        Ok(m) if !m.healthy() => Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            json_response(&json!({"name": p.get("model"), "ready": false, "error": "an engine instance crashed and is being restarted"})),
        )
            .into_response()),
        Ok(_) => Ok(json_response(
            &json!({"name": p.get("model"), "ready": true}),
        )),
        Err(e) if e.kind() == ErrorKind::Unavailable => Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            json_response(&json!({"name": p.get("model"), "ready": false, "error": e.to_string()})),
        )
            .into_response()),
        Err(e) => Err(e),
    }
}

async fn model_metadata(State(s): St, Path(p): Params) -> ApiResult {
    let m = model(&s, &p).await?;
    let t = |t: &hone_core::TensorSpec| json!({"name": t.name, "datatype": t.dtype.as_v2(), "shape": t.dims});
    let mut v = json!({
        "name": m.name,
        "versions": s.repo.models().ready_versions(&m.name),
        "platform": m.config.platform,
        "inputs": m.input_specs.iter().map(t).collect::<Vec<_>>(),
        "outputs": m.metadata.outputs.iter().map(t).collect::<Vec<_>>(),
    });
    // A card's features and classes: what a request by name sends and what
    // its label can be (fields beyond V2's, which clients read past).
    if let (Some(t), Some(o)) = (&m.tabular, v.as_object_mut()) {
        o.insert("features".into(), t.describe());
    }
    if let (Some(l), Some(o)) = (m.labels(), v.as_object_mut()) {
        o.insert("classes".into(), json!(l.labels));
    }
    Ok(json_response(&v))
}

async fn model_config(State(s): St, Path(p): Params) -> ApiResult {
    Ok(json_response(&model(&s, &p).await?.config.to_json()))
}

async fn stats(State(s): St, p: Option<Params>) -> ApiResult {
    let p = p.map(|Path(p)| p).unwrap_or_default();
    let all_versions = !p.contains_key("version") && !p.contains_key("label");
    let models = if let Some(name) = p.get("model") {
        // Every ready version, as Triton does: a traffic split shows here.
        let ready = s.repo.models().ready(name);
        if all_versions && !ready.is_empty() {
            ready.into_values().collect()
        } else {
            vec![model(&s, &p).await?]
        }
    } else {
        s.repo.models().loaded()
    };
    let list: Vec<Json> = models
        .iter()
        .map(|m| m.stats.to_json(&m.name, &m.version))
        .collect();
    let mut body = json!({"model_stats": list});
    if let (Some(name), Some(o)) = (p.get("model"), body.as_object_mut()) {
        let sh = traffic_admin::shadow_json(&s.control, name);
        if sh.as_array().is_some_and(|a| !a.is_empty()) {
            o.insert("shadow".into(), sh);
        }
    }
    Ok(json_response(&body))
}

fn model_name(p: &std::collections::HashMap<String, String>) -> &str {
    p.get("model").map(String::as_str).unwrap_or_default()
}

async fn traffic_get(State(s): St, Path(p): Params) -> ApiResult {
    Ok(json_response(&traffic_admin::view(
        &s.control,
        model_name(&p),
    )?))
}

/// Sets the model's split at run time (until DELETE or a restart).
async fn traffic_put(State(s): St, Path(p): Params, headers: HeaderMap, body: Body) -> ApiResult {
    let (body, _ticket) = read_body(&s, &headers, body).await?;
    let v: Json = serde_json::from_slice(&body)
        .map_err(|e| Error::invalid(format!("the traffic body is not JSON: {e}")))?;
    let split = crate::split::Split::from_json(&v)?;
    Ok(json_response(&traffic_admin::set(
        &s.control,
        model_name(&p),
        split,
    )?))
}

async fn traffic_delete(State(s): St, Path(p): Params) -> ApiResult {
    Ok(json_response(&traffic_admin::clear(
        &s.control,
        model_name(&p),
    )?))
}

async fn rollout_get(State(s): St, Path(p): Params) -> ApiResult {
    let name = model_name(&p);
    let st = s
        .control
        .rollouts
        .status(name)
        .ok_or_else(|| Error::not_found(format!("no rollout of '{name}'")))?;
    Ok(json_response(&st))
}

/// Starts a rollout: `{"to": 2, "steps": [5, 25, 50, 100], ...}` (see
/// [`crate::rollout::Policy`]); 202 with its status.
async fn rollout_start(State(s): St, Path(p): Params, headers: HeaderMap, body: Body) -> ApiResult {
    let (body, _ticket) = read_body(&s, &headers, body).await?;
    let policy: crate::rollout::Policy = serde_json::from_slice(&body)
        .map_err(|e| Error::invalid(format!("rollout policy: {e}")))?;
    let st = crate::rollout::start(&s.control, model_name(&p), policy)?;
    let mut r = json_response(&st);
    *r.status_mut() = StatusCode::ACCEPTED;
    Ok(r)
}

async fn rollout_promote(State(s): St, Path(p): Params) -> ApiResult {
    let st = crate::rollout::decide(&s.control, model_name(&p), true)?;
    Ok(json_response(&st))
}

async fn rollout_rollback(State(s): St, Path(p): Params) -> ApiResult {
    let st = crate::rollout::decide(&s.control, model_name(&p), false)?;
    Ok(json_response(&st))
}

/// The drift window against the reference profile, with both histograms.
async fn drift(State(s): St, Path(p): Params) -> ApiResult {
    let m = model(&s, &p).await?;
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

/// The model a feedback route names: one the repository or the feedback
/// record knows (labels for an unloaded model's answers still join).
fn feedback_model(
    s: &ServerState,
    p: &std::collections::HashMap<String, String>,
) -> Result<String, ApiError> {
    let name = p.get("model").cloned().unwrap_or_default();
    if !s.feedback.knows(&name) {
        s.repo.models().get(&name, None)?;
    }
    Ok(name)
}

/// `POST /v2/models/{m}/feedback`: `{"id": "...", "labels": [...]}`, or a
/// list of such objects; answered with the outcome of each.
async fn feedback_post(State(s): St, Path(p): Params, headers: HeaderMap, body: Body) -> ApiResult {
    let name = feedback_model(&s, &p)?;
    if !s.feedback.enabled() {
        return Err(
            Error::unavailable("feedback is off: the server runs with --feedback-rows 0").into(),
        );
    }
    let (body, _ticket) = read_body(&s, &headers, body).await?;
    let v: Json = serde_json::from_slice(&body)
        .map_err(|e| Error::invalid(format!("malformed JSON: {e}")))?;
    let (list, items) = match &v {
        Json::Array(items) => (true, items.iter().collect::<Vec<_>>()),
        one => (false, vec![one]),
    };
    let at = |i: usize| {
        if list {
            format!("[{i}].")
        } else {
            String::new()
        }
    };
    let mut parsed: Vec<(&str, &[Json])> = Vec::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        let id = v.get("id").and_then(Json::as_str).ok_or_else(|| {
            Error::invalid(format!(
                "{}id: a string is required (the request's id, or the x-request-id hone answered with)",
                at(i)
            ))
        })?;
        let labels = v.get("labels").and_then(Json::as_array).ok_or_else(|| {
            Error::invalid(format!(
                "{}labels: a list is required, one label per row of the request",
                at(i)
            ))
        })?;
        parsed.push((id, labels));
    }
    let receipts = s
        .feedback
        .label(&name, &parsed)
        .map_err(|(i, e)| match e.kind {
            ErrorKind::InvalidInput => Error::invalid(format!("{}{e}", at(i))),
            _ => e,
        })?;
    let answer = if list {
        serde_json::to_value(receipts)
    } else {
        serde_json::to_value(receipts.first())
    }
    .map_err(|e| Error::internal(e.to_string()))?;
    Ok(json_response(&answer))
}

/// `GET /v2/models/{m}/feedback[?window=SECONDS]`: live figures per version.
async fn feedback_get(
    State(s): St,
    Path(p): Params,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> ApiResult {
    let name = feedback_model(&s, &p)?;
    let window = match q.get("window") {
        None => None,
        Some(w) => Some(
            w.parse::<f64>()
                .ok()
                .filter(|w| w.is_finite() && *w > 0.0)
                .ok_or_else(|| {
                    Error::invalid(format!("window: {w:?} is not a positive number of seconds"))
                })?,
        ),
    };
    let v = serde_json::to_value(s.feedback.view(&name, window))
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
    Ok(json_response(&s.repo.index(ready_only)))
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
        s.control.load_model(name).await?;
    } else {
        s.control.unload_model(name).await?;
    }
    Ok(json_response(&json!({})))
}
