//! What a protocol front end supplies to the core. A [`Transport`] reads
//! bodies and sends replies (HTTP for V2 REST and TF Serving, gRPC); a
//! [`Wire`] turns its transport's bodies into a [`Call`] and an [`Answer`]
//! back. A new protocol is one `Wire`, and on a new transport one
//! `Transport`.

use std::future::Future;

use axum::http::HeaderMap;

use std::sync::Arc;

use super::call::{Answer, Call, Head, Read};
use crate::error::ServeError;
use crate::model::LoadedModel;
use crate::state::ServerState;

pub(crate) trait Transport {
    /// What is still to be read once the request is routed.
    type Body: Send;
    /// The request as read, before decoding.
    type Raw: Send + 'static;
    /// An answer in the protocol's form, before compression.
    type Encoded: Send + 'static;
    /// What goes back to the client.
    type Reply;

    /// Reads the body within the server's limits and byte budget.
    fn read(
        state: &Arc<ServerState>,
        head: &Head,
        body: Self::Body,
    ) -> impl Future<Output = Result<Read<Self::Raw>, ServeError>> + Send;

    /// A refused request's body, still arriving, is let go of.
    fn discard(state: &Arc<ServerState>, head: &Head, body: Self::Body);

    /// Bytes the request arrived with.
    fn raw_len(raw: &Self::Raw) -> usize;

    /// The reply for an encoded answer (compressed where the client asks).
    fn reply(
        state: &Arc<ServerState>,
        head: &Head,
        encoded: Self::Encoded,
    ) -> impl Future<Output = Result<Self::Reply, ServeError>> + Send;

    /// The reply for an error.
    fn refuse(e: ServeError) -> Self::Reply;

    /// Adds response headers (gRPC: metadata) to any reply.
    fn annotate(reply: &mut Self::Reply, headers: HeaderMap);

    /// The HTTP status or gRPC code a reply carries.
    fn status(reply: &Self::Reply) -> u16;

    /// Bytes a reply carries.
    fn bytes_out(reply: &Self::Reply) -> usize;
}

/// The raw request of a wire's transport.
pub(crate) type RawOf<W> = <<W as Wire>::Transport as Transport>::Raw;
/// The encoded answer of a wire's transport.
pub(crate) type EncodedOf<W> = <<W as Wire>::Transport as Transport>::Encoded;

pub(crate) trait Wire {
    /// Names the protocol in access logs and spans.
    const PROTOCOL: &'static str;
    type Transport: Transport;
    /// What decoding hands on to encoding (request id, binary flags, row
    /// or column form, ...).
    type Keep: Send + 'static;

    /// Whether decoding `raw` is worth a blocking thread.
    fn decode_off_thread(raw: &RawOf<Self>) -> bool;

    /// Wire format → tensors.
    fn decode(raw: RawOf<Self>, model: &LoadedModel) -> Result<(Call, Self::Keep), ServeError>;

    /// Whether encoding `answer` is worth a blocking thread.
    fn encode_off_thread(answer: &Answer) -> bool;

    /// Tensors → wire format.
    fn encode(answer: &Answer, keep: Self::Keep) -> Result<EncodedOf<Self>, ServeError>;
}
