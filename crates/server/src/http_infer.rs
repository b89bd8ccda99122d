//! KServe V2 over REST: JSON and binary-extension bodies to a [`Call`],
//! an [`Answer`] back; everything else is the core's ([`crate::infer`]).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use hone_core::Error;

use crate::codec::{self, RequestedOutput};
use crate::error::ServeError;
use crate::http_transport::{Http, HttpBody, HttpEncoded};
use crate::infer::{Answer, Call, Infer, Wire};
use crate::model::{Deadline, LoadedModel};
use crate::offload::OFF_THREAD_BYTES;
use crate::rest::{Params, St, head_of};

pub(crate) async fn infer(
    State(s): St,
    Path(p): Params,
    headers: HeaderMap,
    body: Body,
) -> Response {
    Infer::new(s)
        .serve::<V2Rest>(head_of(&p, headers), body)
        .await
}

/// What decoding keeps for encoding: the outputs asked for (with their
/// binary flags), the default, and the request id.
pub(crate) struct Wanted {
    outputs: Vec<RequestedOutput>,
    binary_default: bool,
    id: Option<String>,
}

/// KServe V2 over REST.
pub(crate) struct V2Rest;

impl Wire for V2Rest {
    const PROTOCOL: &'static str = "http";
    type Transport = Http;
    type Keep = Wanted;

    fn decode_off_thread(raw: &HttpBody) -> bool {
        raw.bytes.len() > OFF_THREAD_BYTES
    }

    fn decode(raw: HttpBody, _: &LoadedModel) -> Result<(Call, Wanted), ServeError> {
        let header_len = match raw.header_len {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or_else(|| {
                        Error::invalid(
                            "Inference-Header-Content-Length must be a non-negative integer",
                        )
                    })?,
            ),
        };
        let req = codec::decode_request(raw.bytes, header_len)?;
        // JSON numbers become new buffers; binary inputs are slices of
        // the body, already charged.
        let fresh_bytes = match header_len {
            None => Call::tensor_bytes(&req.inputs),
            Some(_) => 0,
        };
        let call = Call {
            classify: req
                .outputs
                .iter()
                .filter_map(|o| Some((o.name.clone(), o.classification?)))
                .collect(),
            outputs: req.outputs.iter().map(|o| o.name.clone()).collect(),
            inputs: req.inputs,
            deadline: Deadline {
                timeout_us: req.timeout_us,
                client: None,
            },
            // An empty id is none, as on gRPC.
            id: req.id.clone().filter(|id| !id.is_empty()),
            fresh_bytes,
        };
        let wanted = Wanted {
            outputs: req.outputs,
            binary_default: req.binary_default,
            id: req.id,
        };
        Ok((call, wanted))
    }

    fn encode_off_thread(answer: &Answer) -> bool {
        // JSON text of a large output is several times its binary size.
        answer.bytes() > OFF_THREAD_BYTES / 4
    }

    fn encode(answer: &Answer, w: Wanted) -> Result<HttpEncoded, ServeError> {
        let selected: Vec<(&str, &hone_core::Tensor, bool)> = answer
            .named()
            .filter_map(|(name, t)| {
                if w.outputs.is_empty() {
                    return Some((name, t, w.binary_default));
                }
                let o = w.outputs.iter().find(|o| o.name == name)?;
                Some((name, t, o.binary))
            })
            .collect();
        let m = &answer.model;
        let enc = codec::encode_response(
            &m.name,
            &m.version,
            w.id.as_deref()
                .filter(|id| !id.is_empty())
                .or(answer.id.as_deref()),
            &selected,
        );
        Ok(HttpEncoded {
            body: enc.body,
            content_type: match enc.header_len {
                Some(_) => "application/octet-stream",
                None => "application/json",
            },
            header_len: enc.header_len,
        })
    }
}
