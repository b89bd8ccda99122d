//! The limit server of `bench/serve_overhead.sh`: hone's HTTP listener and
//! V2 JSON decoder with no model behind them. It reads each request body,
//! decodes it as hone does, and answers one constant V2 response, so the
//! ratio of hone's throughput to this one's is what hone's own request path
//! (routing, validation, batcher, engine, encoding, statistics) costs.
//!
//! `cargo run --release -p hone-server --example limit_server -- PORT`

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;

const ANSWER: &str = r#"{"model_name":"mlp100","model_version":"1","outputs":[{"name":"output","datatype":"FP32","shape":[1,1],"data":[0.5]}]}"#;

async fn infer(body: Bytes) -> impl IntoResponse {
    match hone_server::codec::decode_request(body, None) {
        Ok(r) if !r.inputs.is_empty() => (
            axum::http::StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            ANSWER,
        ),
        _ => (
            axum::http::StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error":"bad request"}"#,
        ),
    }
}

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(8000);
    // As `hone serve` sizes its runtime: one worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let app = Router::new().route("/v2/models/{model}/infer", post(infer));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let (_stop, rx) = tokio::sync::watch::channel(false);
        hone_server::listen::serve(listener, app, hone_server::HttpLimits::default(), None, rx)
            .await;
        Ok(())
    })
}
