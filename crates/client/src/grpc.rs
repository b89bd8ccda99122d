//! The V2 gRPC inference service (`inference.GRPCInferenceService`) over
//! one HTTP/2 channel, trusting the same CA file as the HTTP client. The
//! API key travels per call: [`authorize`] adds it to a request.

use std::path::Path;
use std::time::Duration;

use hone_proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::{ClientError, Result};

/// A gRPC inference client on its own HTTP/2 connection.
pub type Grpc = GrpcInferenceServiceClient<Channel>;

/// How long the connection (TCP and TLS) may take to open: an address that
/// drops packets must not hang the caller for the OS's TCP timeout.
const CONNECT: Duration = Duration::from_secs(10);

/// Opens a channel to `url` (`http://HOST:PORT` or `https://HOST:PORT`);
/// `https` needs `cacert`, a PEM file of the CA(s) to trust.
pub async fn connect(url: &str, cacert: Option<&Path>) -> Result<Grpc> {
    let fail = |source| ClientError::Grpc {
        url: url.to_string(),
        source,
    };
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .map_err(fail)?
        .connect_timeout(CONNECT);
    if url.starts_with("https://") {
        let path = cacert.ok_or_else(|| ClientError::NoCa {
            url: url.to_string(),
        })?;
        let pem = std::fs::read(path).map_err(|source| ClientError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
            .map_err(fail)?;
    }
    let channel = endpoint.connect().await.map_err(fail)?;
    // Outputs as large as the server sends (an image model's batch).
    Ok(GrpcInferenceServiceClient::new(channel).max_decoding_message_size(usize::MAX))
}

/// `message` as a request carrying `Authorization: Bearer KEY` when there
/// is a key.
pub fn authorize<T>(message: T, api_key: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    if let Some(v) = api_key.and_then(|k| format!("Bearer {k}").parse().ok()) {
        r.metadata_mut().insert("authorization", v);
    }
    r
}
