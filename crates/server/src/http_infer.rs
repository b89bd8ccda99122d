//! The KServe V2 REST inference route: body → decode → model → encode.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use hone_core::Error;

use crate::codec::{self, RequestedOutput};
use crate::compress;
use crate::model::LoadedModel;
use crate::rest::{
    ApiResult, HEADER_LEN, OFF_THREAD_BYTES, Params, St, cpu, drain, model, read_body,
};

pub(crate) async fn infer(
    State(s): St,
    Path(p): Params,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
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
