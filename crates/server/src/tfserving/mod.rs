//! TensorFlow Serving's REST API on the HTTP port: model status and
//! metadata (`GET /v1/models/{m}[/versions/{v}|/labels/{l}][/metadata]`) and
//! `POST .../{m}[...]:predict` in the row (`instances` → `predictions`) and
//! columnar (`inputs` → `outputs`) formats, with `{"b64": ...}` bytes, the
//! NaN/Infinity tokens and TF Serving's `{"error": ...}` answers. One
//! signature, `serving_default`: an ONNX model has exactly one. Request
//! JSON → tensors in `decode`, tensors → answer JSON in `encode`.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use hone_core::{Error, TensorSpec};
use serde_json::{Map, Value as Json, json};

use crate::model::LoadedModel;
use crate::rest::{
    ApiError, ApiResult, OFF_THREAD_BYTES, St, cpu, json_response, read_body, routed,
};

mod decode;
mod encode;
mod types;

use decode::decode;
use encode::encode;
use types::{SIGNATURE, dtype};

/// `NAME[/versions/V|/labels/L][/metadata][:verb]` → parts.
struct Target {
    params: HashMap<String, String>,
    metadata: bool,
    verb: Option<String>,
}

fn target(rest: &str) -> Result<Target, ApiError> {
    let (path, verb) = match rest.rsplit_once(':') {
        Some((p, v)) if !v.contains('/') => (p, Some(v.to_string())),
        _ => (rest, None),
    };
    let parts: Vec<&str> = path.split('/').collect();
    let bad = || {
        ApiError::from(Error::not_found(format!(
            "no such endpoint: /v1/models/{rest}"
        )))
    };
    let mut params = HashMap::new();
    let (name, tail) = parts.split_first().ok_or_else(bad)?;
    if name.is_empty() {
        return Err(bad());
    }
    params.insert("model".to_string(), (*name).to_string());
    let tail = match tail {
        ["versions", v, t @ ..] => {
            params.insert("version".to_string(), (*v).to_string());
            t
        }
        ["labels", l, t @ ..] => {
            params.insert("label".to_string(), (*l).to_string());
            t
        }
        t => t,
    };
    let metadata = match tail {
        [] => false,
        ["metadata"] => true,
        _ => return Err(bad()),
    };
    Ok(Target {
        params,
        metadata,
        verb,
    })
}

/// `GET /v1/models/...`: status or metadata.
pub(crate) async fn get(State(s): St, Path(rest): Path<String>) -> ApiResult {
    let t = target(&rest)?;
    if t.verb.is_some() {
        return Err(ApiError::with_status(
            StatusCode::METHOD_NOT_ALLOWED,
            "use POST for :predict",
        ));
    }
    if t.metadata {
        let m = routed(&s, &t.params, None)?;
        return Ok(json_response(&metadata(&m)));
    }
    let name = t
        .params
        .get("model")
        .map(String::as_str)
        .unwrap_or_default();
    // One version (by number or label), else every version of the model.
    let wanted = if t.params.contains_key("version") || t.params.contains_key("label") {
        Some(routed(&s, &t.params, None)?.version.clone())
    } else {
        None
    };
    let versions: Vec<(String, Result<_, String>)> = s
        .repo
        .models()
        .versions()
        .into_iter()
        .filter(|(n, _, _)| n == name)
        .map(|(_, v, st)| (v, st))
        .collect();
    if versions.is_empty() {
        return Err(
            Error::not_found(format!("Could not find any versions of model {name}")).into(),
        );
    }
    let list: Vec<Json> = versions
        .iter()
        .filter(|(v, _)| wanted.as_deref().is_none_or(|w| w == v))
        .map(|(v, state)| {
            let (st, code, msg) = match state {
                Ok(_) => ("AVAILABLE", "OK", String::new()),
                Err(why) => ("END", "UNKNOWN", why.clone()),
            };
            json!({"version": v, "state": st,
                   "status": {"error_code": code, "error_message": msg}})
        })
        .collect();
    Ok(json_response(&json!({"model_version_status": list})))
}

fn tensor_info(specs: &[TensorSpec]) -> Json {
    let map: Map<String, Json> = specs
        .iter()
        .map(|s| {
            let dim: Vec<Json> = s
                .dims
                .iter()
                .map(|d| json!({"size": d.to_string(), "name": ""}))
                .collect();
            (
                s.name.clone(),
                json!({"dtype": dtype(s.dtype), "tensor_shape": {"dim": dim, "unknown_rank": false}, "name": s.name}),
            )
        })
        .collect();
    Json::Object(map)
}

/// GetModelMetadata's JSON: the one signature, `serving_default`.
fn metadata(m: &LoadedModel) -> Json {
    json!({
        "model_spec": {"name": m.name, "signature_name": "", "version": m.version},
        "metadata": {"signature_def": {"signature_def": {SIGNATURE: {
            "inputs": tensor_info(&m.metadata.inputs),
            "outputs": tensor_info(&m.metadata.outputs),
            "method_name": "tensorflow/serving/predict",
        }}}},
    })
}

/// `POST /v1/models/...:predict`.
pub(crate) async fn post(
    State(s): St,
    Path(rest): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    use axum::response::IntoResponse;
    let header = |n: &str| headers.get(n).map(|v| v.as_bytes());
    let obs = s
        .observer
        .begin("tfserving", header("traceparent"), header("x-request-id"));
    let mut facts = Facts::default();
    let result = predict(&s, &rest, &headers, body, &mut facts).await;
    let Some(obs) = obs else {
        return result.unwrap_or_else(IntoResponse::into_response);
    };
    let (mut resp, error) = match result {
        Ok(r) => (r, None),
        Err(e) => {
            let msg = e.err.message.clone();
            (e.into_response(), Some(msg))
        }
    };
    if let Ok(v) = obs.request_id.parse() {
        resp.headers_mut().insert("x-request-id", v);
    }
    if let Some(t) = obs.trace.filter(|_| s.observer.tracing())
        && let Ok(v) = t.header().parse()
    {
        resp.headers_mut().insert("traceparent", v);
    }
    let bytes_out = axum::body::HttpBody::size_hint(resp.body())
        .exact()
        .unwrap_or_default() as usize;
    let outcome = crate::observe::Outcome {
        model: facts
            .model
            .as_deref()
            .map(|m| (m.name.as_str(), m.version.as_str())),
        status: resp.status().as_u16(),
        error: error.as_deref(),
        bytes_in: facts.bytes_in,
        bytes_out,
        timing: facts.timing,
    };
    s.observer.finish(obs, &outcome, None);
    resp
}

/// What the observer learns of a `:predict` request.
#[derive(Default)]
struct Facts {
    model: Option<std::sync::Arc<LoadedModel>>,
    bytes_in: usize,
    timing: Option<crate::scheduler::Timing>,
}

async fn predict(
    s: &std::sync::Arc<crate::state::ServerState>,
    rest: &str,
    headers: &HeaderMap,
    body: Body,
    facts: &mut Facts,
) -> ApiResult {
    let t = target(rest)?;
    match t.verb.as_deref() {
        Some("predict") => {}
        Some(v @ ("classify" | "regress")) => {
            return Err(ApiError::with_status(
                StatusCode::NOT_IMPLEMENTED,
                format!(
                    "{v} is not supported: hone serves ONNX models, whose one signature is {SIGNATURE}; use :predict"
                ),
            ));
        }
        _ => {
            return Err(
                Error::not_found(format!("no such endpoint: POST /v1/models/{rest}")).into(),
            );
        }
    }
    if t.metadata {
        return Err(Error::not_found("no such endpoint: metadata takes GET").into());
    }
    let m = routed(s, &t.params, Some(headers))?;
    facts.model = Some(m.clone());
    let (body, _ticket) = read_body(s, headers, body).await?;
    facts.bytes_in = body.len();
    let received = std::time::Instant::now();
    let big = body.len() > OFF_THREAD_BYTES;
    let specs = m.metadata.inputs.clone();
    let (inputs, columnar) =
        cpu(s, big, "request decoder", move || decode(&body, &specs)).await??;
    let shadow = crate::traffic::shadow_for(&s.traffic, &m).map(|t| (t, inputs.clone()));
    let ran = m.infer(inputs, crate::model::Deadline::default()).await?;
    facts.timing = Some(ran.timing);
    if let Some((target, copy)) = shadow {
        s.shadows
            .send(s.repo.models(), &m.name, target, copy, ran.outputs.clone());
    }
    let out_bytes: usize = ran.outputs.iter().map(|t| t.element_count() * 12).sum();
    let m2 = m.clone();
    let text = cpu(
        s,
        out_bytes > OFF_THREAD_BYTES,
        "response encoder",
        move || encode(&m2, &ran.outputs, columnar),
    )
    .await??;
    m.answered(received);
    let timing = crate::observe::server_timing(&ran.timing);
    Ok(Response::builder()
        .header("content-type", "application/json")
        .header("server-timing", timing)
        .body(Body::from(text))
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let t = target("half:predict").unwrap();
        assert_eq!(
            (t.params["model"].as_str(), t.verb.as_deref(), t.metadata),
            ("half", Some("predict"), false)
        );
        let t = target("m/versions/3/metadata").unwrap();
        assert_eq!((t.params["version"].as_str(), t.metadata), ("3", true));
        let t = target("m/labels/canary:predict").unwrap();
        assert_eq!(t.params["label"], "canary");
        assert!(target("m/bogus").is_err());
        assert!(target("").is_err());
    }
}
