//! Request and response compression: gzip and deflate bodies over REST
//! (what tritonclient's compression options send), gzip over gRPC, an
//! unknown coding refused with 415, and a gzip bomb stopped at the limit.

// Tests may unwrap and index: a panic here is a failed test, not a crashed server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::io::{Read, Write};

use common::fake::{fake_server, grpc_request_x};
use hone_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use hone_server::{Server, ServerOptions};

const INFER: &str = r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}"#;

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn zlib(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

async fn server(tag: &str) -> Server {
    let (s, _, _) = fake_server(&format!("gz-{tag}"), "scale=3", "", |_, opts| {
        ServerOptions {
            max_request_bytes: 1 << 20,
            ..opts
        }
    })
    .await;
    s
}

#[tokio::test]
async fn rest_bodies_are_decoded_and_answers_encoded() {
    let s = server("rest").await;
    let url = format!("http://{}/v2/models/m/infer", s.http_addr);
    let c = reqwest::Client::new();
    for (coding, body) in [
        ("gzip", gzip(INFER.as_bytes())),
        ("deflate", zlib(INFER.as_bytes())),
    ] {
        let r = c
            .post(&url)
            .header("Content-Encoding", coding)
            .header("Accept-Encoding", coding)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{coding}");
        assert_eq!(r.headers()["content-encoding"], coding);
        let packed = r.bytes().await.unwrap();
        let mut text = String::new();
        match coding {
            "gzip" => flate2::read::GzDecoder::new(&packed[..]).read_to_string(&mut text),
            _ => flate2::read::ZlibDecoder::new(&packed[..]).read_to_string(&mut text),
        }
        .unwrap();
        assert!(text.contains("[3.0,6.0]"), "{text}");
    }
    // No Accept-Encoding: a plain answer.
    let r = c.post(&url).body(INFER).send().await.unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    // An unknown coding is 415 with a JSON error.
    let r = c
        .post(&url)
        .header("Content-Encoding", "br")
        .body(INFER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("'br'"));
    // 8 MiB of zeros in a few KB of gzip: refused at the 1 MiB limit.
    let bomb = gzip(&vec![b' '; 8 << 20]);
    assert!(bomb.len() < 64 << 10);
    let r = c
        .post(&url)
        .header("Content-Encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Corrupt gzip is the client's error.
    let r = c
        .post(&url)
        .header("Content-Encoding", "gzip")
        .body("not gzip at all")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        c.get(format!("http://{}/v2/health/live", s.http_addr))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    s.shutdown().await;
}

#[tokio::test]
async fn grpc_gzip_both_ways() {
    let s = server("grpc").await;
    let enc = tonic::codec::CompressionEncoding::Gzip;
    let mut c = GrpcInferenceServiceClient::connect(format!("http://{}", s.grpc_addr.unwrap()))
        .await
        .unwrap()
        .send_compressed(enc)
        .accept_compressed(enc);
    let req = grpc_request_x();
    let out = c.model_infer(req).await.unwrap().into_inner();
    let got: Vec<f32> = out.raw_output_contents[0]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(got, vec![3.0, 6.0]);
    s.shutdown().await;
}
