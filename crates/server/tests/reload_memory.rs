//! Unloading returns memory: 50 load → infer → unload cycles of resnet18
//! through the repository API grow RSS by at most 10 % over the first
//! cycle (Triton and TF Serving users report leaks here). Its own test
//! binary, so the process's RSS is this server's.

// Tests may unwrap and index: a panic here is a failed test, not a crashed server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use hone_server::{Server, ServerOptions};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reload_cycles_of_resnet18_return_their_memory() {
    let Some(shared) = common::shared("fifty_reload_cycles_of_resnet18_return_their_memory") else {
        return;
    };
    // As `hone serve` runs: one malloc arena per core.
    hone_runtime::memory::limit_arenas(hone_runtime::sizing::cores());
    let dir = common::TempDir::new();
    let m = dir.path().join("resnet18");
    std::fs::create_dir_all(m.join("1")).unwrap();
    std::fs::copy(
        shared.join("resnet18/resnet18.onnx"),
        m.join("1/model.onnx"),
    )
    .unwrap();
    std::fs::write(
        m.join("config.pbtxt"),
        "max_batch_size: 4\ninstance_group [{ count: 2, kind: KIND_CPU }]\n",
    )
    .unwrap();
    let server = Server::start(ServerOptions::ephemeral(dir.path()))
        .await
        .unwrap();
    let base = format!("http://{}", server.http_addr);
    let http = reqwest::Client::new();
    let n = 3 * 224 * 224;
    let header = json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224],
        "parameters": {"binary_data_size": n * 4}}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": true}}]})
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend(std::iter::repeat_n(0u8, n * 4));

    // Each cycle: infer, measure (the version loaded and its arena in
    // use), unload, load again.
    let mut after = Vec::new();
    let cycles: usize = std::env::var("CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(50);
    for cycle in 0..cycles {
        let r = http
            .post(format!("{base}/v2/models/resnet18/infer"))
            .header("Inference-Header-Content-Length", header.len())
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "cycle {cycle}: {}",
            r.text().await.unwrap()
        );
        after.push(common::rss_kib());
        for step in ["unload", "load"] {
            let r = http
                .post(format!("{base}/v2/repository/models/resnet18/{step}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{step} {cycle}");
        }
    }
    // The first cycle is the one after the first unload and load: the
    // start-up load's own allocations are not the baseline.
    // The end is the median of the last five: one sample can catch a
    // transient allocation (+9 MB spikes come and go); a leak lifts them all.
    let mut tail = after[cycles - 5..].to_vec();
    tail.sort_unstable();
    let (first, last) = (after[1], tail[2]);
    let peak = *after.iter().max().unwrap();
    eprintln!(
        "RSS after cycle 1: {} MiB, at the end (median of the last 5): {} MiB, peak {} MiB ({:+.1} %)",
        first / 1024,
        last / 1024,
        peak / 1024,
        (last as f64 / first as f64 - 1.0) * 100.0
    );
    assert!(
        last * 10 <= first * 11,
        "RSS grew from {first} KiB to {last} KiB over {cycles} cycles: {after:?}"
    );
    server.shutdown().await;
}
