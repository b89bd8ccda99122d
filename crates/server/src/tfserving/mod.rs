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

use crate::http_transport::{Http, HttpBody, HttpEncoded};
use crate::infer::{Answer, Call, Head, Infer, Route, Wire};
use crate::model::LoadedModel;
use crate::offload::OFF_THREAD_BYTES;
use crate::repository::VersionState;
use crate::rest::{ApiError, ApiResult, St, head_of, json_response, model};

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
        return Err(ApiError::refused(
            StatusCode::METHOD_NOT_ALLOWED,
            "use POST for :predict",
        ));
    }
    if t.metadata {
        let m = model(&s, &t.params).await?;
        return Ok(json_response(&metadata(&m)));
    }
    let name = t
        .params
        .get("model")
        .map(String::as_str)
        .unwrap_or_default();
    // One version (by number or label), else every version of the model.
    let wanted = if t.params.contains_key("version") || t.params.contains_key("label") {
        Some(model(&s, &t.params).await?.version.clone())
    } else {
        // A model out of memory under the budget is brought in, as for
        // metadata: TF Serving's clients wait for AVAILABLE here.
        if s.repo.models().is_dormant(name) {
            model(&s, &t.params).await?;
        }
        None
    };
    let versions: Vec<(String, VersionState)> = s
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
                VersionState::Ready(_) => ("AVAILABLE", "OK", String::new()),
                VersionState::Unavailable(why) => ("END", "UNKNOWN", why.clone()),
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

/// GetModelMetadata's JSON: the signature `serving_default`, and for a
/// model that takes its features by name a second one, `features`: one
/// input per feature (DT_STRING for a category) and the labelled outputs.
fn metadata(m: &LoadedModel) -> Json {
    let mut signatures = serde_json::Map::new();
    signatures.insert(
        SIGNATURE.into(),
        json!({
            "inputs": tensor_info(&m.metadata.inputs),
            "outputs": tensor_info(&m.metadata.outputs),
            "method_name": "tensorflow/serving/predict",
        }),
    );
    if let Some(t) = &m.tabular {
        let mut outputs = m.metadata.outputs.clone();
        if m.labels().is_some() {
            let one = |name: &str, dtype| hone_core::TensorSpec {
                name: name.into(),
                dtype,
                dims: vec![-1],
            };
            outputs.push(one(crate::tabular::LABEL, hone_core::DataType::Bytes));
            outputs.push(one(crate::tabular::PROBABILITY, hone_core::DataType::F32));
        }
        signatures.insert(
            "features".into(),
            json!({
                "inputs": tensor_info(t.specs()),
                "outputs": tensor_info(&outputs),
                "method_name": "tensorflow/serving/predict",
            }),
        );
    }
    json!({
        "model_spec": {"name": m.name, "signature_name": "", "version": m.version},
        "metadata": {"signature_def": {"signature_def": signatures}},
    })
}

/// `POST /v1/models/...:predict`.
pub(crate) async fn post(
    State(s): St,
    Path(rest): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    Infer::new(s)
        .serve::<Predict>(head(&rest, headers), body)
        .await
}

/// The route of a `:predict` path, or why it is refused.
fn head(rest: &str, headers: HeaderMap) -> Head {
    let t = match target(rest) {
        Ok(t) => t,
        Err(e) => {
            return Head {
                route: Route::default(),
                headers,
                refused: Some(e),
            };
        }
    };
    let verb = match t.verb.as_deref() {
        Some("predict") if t.metadata => {
            Err(Error::not_found("no such endpoint: metadata takes GET").into())
        }
        Some("predict") => Ok(()),
        Some(v @ ("classify" | "regress")) => Err(ApiError::refused(
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "{v} is not supported: hone serves ONNX models, whose one signature is {SIGNATURE}; use :predict"
            ),
        )),
        _ => Err(Error::not_found(format!("no such endpoint: POST /v1/models/{rest}")).into()),
    };
    let mut h = head_of(&t.params, headers);
    if let Err(e) = verb {
        h.refused = Some(e);
    }
    h
}

/// TF Serving's `:predict`, rows (`instances`) or columns (`inputs`).
pub(crate) struct Predict;

impl Wire for Predict {
    const PROTOCOL: &'static str = "tfserving";
    type Transport = Http;
    /// The request was columnar: the answer is too.
    type Keep = bool;

    fn decode_off_thread(raw: &HttpBody) -> bool {
        raw.bytes.len() > OFF_THREAD_BYTES
    }

    fn decode(raw: HttpBody, m: &LoadedModel) -> Result<(Call, bool), ApiError> {
        let features = m.tabular.as_ref().map(|t| t.specs());
        let (inputs, columnar) = decode(&raw.bytes, &m.metadata.inputs, features)?;
        let call = Call {
            classify: Vec::new(),
            // Every byte of JSON-decoded tensors is new.
            fresh_bytes: Call::tensor_bytes(&inputs),
            inputs,
            outputs: Vec::new(),
            deadline: crate::model::Deadline::default(),
            id: None,
        };
        Ok((call, columnar))
    }

    fn encode_off_thread(answer: &Answer) -> bool {
        let elements: usize = answer.named().map(|(_, t)| t.element_count()).sum();
        elements * 12 > OFF_THREAD_BYTES
    }

    fn encode(answer: &Answer, columnar: bool) -> Result<HttpEncoded, ApiError> {
        Ok(HttpEncoded {
            body: encode(&answer.named().collect::<Vec<_>>(), columnar)?,
            content_type: "application/json",
            header_len: None,
        })
    }
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
