//! The KServe V2 REST inference route: body → decode → model → encode.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use hone_core::Error;

use std::collections::HashMap;
use std::sync::Arc;

use axum::response::IntoResponse;
use hone_core::{NamedTensor, Tensor};

use crate::codec::{self, RequestedOutput};
use crate::compress;
use crate::model::LoadedModel;
use crate::observe::{Outcome, server_timing};
use crate::rest::{
    ApiResult, HEADER_LEN, OFF_THREAD_BYTES, Params, St, cpu, drain, read_body, routed,
};
use crate::scheduler::Timing;
use crate::state::ServerState;

/// What the observer needs to know of a request once it is answered.
#[derive(Default)]
struct Facts {
    model: Option<Arc<LoadedModel>>,
    bytes_in: usize,
    timing: Option<Timing>,
    /// Set when the payload log sampled this request.
    keep: bool,
    inputs: Option<Vec<NamedTensor>>,
    outputs: Option<Vec<(String, Tensor)>>,
}

pub(crate) async fn infer(
    State(s): St,
    Path(p): Params,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let header = |n: &str| headers.get(n).map(HeaderValue::as_bytes);
    let Some(mut obs) = s
        .observer
        .begin("http", header("traceparent"), header("x-request-id"))
    else {
        let mut f = Facts::default();
        return run(&s, &p, &headers, body, &mut f)
            .await
            .unwrap_or_else(IntoResponse::into_response);
    };
    let mut f = Facts {
        keep: s.observer.sample_payload(),
        ..Facts::default()
    };
    let (mut resp, error) = match run(&s, &p, &headers, body, &mut f).await {
        Ok(r) => (r, None),
        Err(e) => {
            let msg = e.err.message.clone();
            (e.into_response(), Some(msg))
        }
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&obs.request_id) {
        h.insert("x-request-id", v);
    }
    if let Some(t) = obs.trace.filter(|_| s.observer.tracing())
        && let Ok(v) = HeaderValue::from_str(&t.header())
    {
        h.insert("traceparent", v);
    }
    let bytes_out = axum::body::HttpBody::size_hint(resp.body())
        .exact()
        .unwrap_or_default() as usize;
    obs.keep = f.inputs.take();
    let outcome = Outcome {
        model: f
            .model
            .as_deref()
            .map(|m| (m.name.as_str(), m.version.as_str()))
            .or_else(|| p.get("model").map(|m| (m.as_str(), ""))),
        status: resp.status().as_u16(),
        error: error.as_deref(),
        bytes_in: f.bytes_in,
        bytes_out,
        timing: f.timing,
    };
    s.observer.finish(obs, &outcome, f.outputs.take());
    resp
}

async fn run(
    s: &Arc<ServerState>,
    p: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
    f: &mut Facts,
) -> ApiResult {
    let m = match routed(s, p, Some(headers)) {
        Ok(m) => m,
        Err(e) => {
            drain(s, headers, body);
            return Err(e);
        }
    };
    f.model = Some(m.clone());
    let (body, mut ticket) = read_body(s, headers, body).await?;
    f.bytes_in = body.len();
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
    let decoded = cpu(s, big, "request decoder", move || {
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
    if f.keep {
        f.inputs = Some(req.inputs.clone());
    }
    let shadow = crate::traffic::shadow_for(&s.traffic, &m).map(|t| (t, req.inputs.clone()));
    let ran = m.infer(req.inputs, deadline).await?;
    if let Some((target, copy)) = shadow {
        s.shadows
            .send(s.repo.models(), &m.name, target, copy, ran.outputs.clone());
    }
    f.timing = Some(ran.timing);
    let outputs = ran.outputs;
    if f.keep {
        let names = m.metadata.outputs.iter().map(|o| o.name.clone());
        f.outputs = Some(names.zip(outputs.iter().cloned()).collect());
    }
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
        s,
        out_bytes > OFF_THREAD_BYTES / 4,
        "response encoder",
        encode,
    )
    .await?;
    let (coding, body) = match compress::response_coding(headers) {
        compress::Coding::Identity => (compress::Coding::Identity, enc.body),
        c => {
            let body = enc.body;
            let big = body.len() > OFF_THREAD_BYTES;
            cpu(s, big, "response compressor", move || {
                compress::encode(c, body)
            })
            .await?
        }
    };
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(v) = HeaderValue::from_str(&server_timing(&ran.timing)) {
        h.insert("server-timing", v);
    }
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
