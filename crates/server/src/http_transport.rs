//! The HTTP transport of the inference core, shared by V2 REST and TF
//! Serving: bodies read within the limits and budget, refused bodies
//! drained, answers compressed as the client accepts.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::compress;
use crate::error::ServeError;
use crate::infer::{Head, Read, Transport};
use crate::offload::OFF_THREAD_BYTES;
use crate::rest::{HEADER_LEN, cpu, drain, read_body};
use crate::state::ServerState;

/// A request body as read, with the `Inference-Header-Content-Length` of
/// V2's binary extension (TF Serving ignores it).
pub(crate) struct HttpBody {
    pub bytes: Bytes,
    pub header_len: Option<HeaderValue>,
}

/// HTTP/1.1 and h2c on the HTTP port.
pub(crate) struct Http;

impl Transport for Http {
    type Body = Body;
    type Raw = HttpBody;
    type Encoded = HttpEncoded;
    type Reply = Response;

    async fn read(
        state: &Arc<ServerState>,
        head: &Head,
        body: Body,
    ) -> Result<Read<HttpBody>, ServeError> {
        let (bytes, ticket) = read_body(state, &head.headers, body).await?;
        let header_len = head.headers.get(HEADER_LEN).cloned();
        Ok(Read {
            raw: HttpBody { bytes, header_len },
            ticket: Some(ticket),
        })
    }

    fn discard(state: &Arc<ServerState>, head: &Head, body: Body) {
        drain(state, &head.headers, body);
    }

    fn raw_len(raw: &HttpBody) -> usize {
        raw.bytes.len()
    }

    async fn reply(
        state: &Arc<ServerState>,
        head: &Head,
        enc: HttpEncoded,
    ) -> Result<Response, ServeError> {
        http_reply(state, &head.headers, enc).await
    }

    fn refuse(e: ServeError) -> Response {
        e.into_response()
    }

    fn annotate(reply: &mut Response, headers: HeaderMap) {
        reply.headers_mut().extend(headers);
    }

    fn status(reply: &Response) -> u16 {
        reply.status().as_u16()
    }

    fn bytes_out(reply: &Response) -> usize {
        let hint = axum::body::HttpBody::size_hint(reply.body());
        hint.exact().unwrap_or(hint.lower()) as usize
    }
}

/// An HTTP answer before compression.
pub(crate) struct HttpEncoded {
    pub body: Vec<u8>,
    pub content_type: &'static str,
    /// `Inference-Header-Content-Length` of a binary answer.
    pub header_len: Option<usize>,
}

/// The response for an encoded answer: compressed as `Accept-Encoding`
/// asks (off the async threads when large), with its content headers.
async fn http_reply(
    s: &ServerState,
    headers: &HeaderMap,
    enc: HttpEncoded,
) -> Result<Response, ServeError> {
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
    if coding != compress::Coding::Identity {
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.name()),
        );
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(enc.content_type),
    );
    if let Some(n) = enc.header_len {
        h.insert(HEADER_LEN, HeaderValue::from(n));
    }
    Ok(resp)
}
