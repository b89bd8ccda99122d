#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
//! Live drift on a real server (fake engine: y = 2x over two features):
//! traffic from the reference distribution stays stable, one feature
//! shifted by two standard deviations is flagged and only that one, the
//! window expires, and a model without a profile has no drift series.

mod common;

use std::path::Path;
use std::time::Duration;

use common::fake::fake_server;
use serde_json::{Value, json};

/// Deterministic standard normal draws (LCG + Box-Muller).
struct Normal(u64);

impl Normal {
    fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn next(&mut self) -> f64 {
        let (a, b) = (self.uniform(), self.uniform());
        (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
    }
}

/// A reference histogram of `values` as `hone profile` writes one: 10
/// equal-width bins over [min, max].
fn stats(name: &str, values: &[f64]) -> Value {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut counts = [0u64; 10];
    for v in values {
        let i = (((v - lo) / (hi - lo) * 10.0) as usize).min(9);
        counts[i] += 1;
    }
    let edges: Vec<f64> = (0..=10).map(|i| lo + (hi - lo) * i as f64 / 10.0).collect();
    json!({"name": name, "histogram": {"edges": edges, "counts": counts}})
}

fn write_profile(model_dir: &Path) {
    let mut n = Normal(7);
    let x: Vec<(f64, f64)> = (0..20_000).map(|_| (n.next(), n.next())).collect();
    let col = |f: &dyn Fn(&(f64, f64)) -> f64| x.iter().map(f).collect::<Vec<f64>>();
    let profile = json!({
        "inputs": [stats("age", &col(&|r| r.0)), stats("income", &col(&|r| r.1))],
        "outputs": [stats("y0", &col(&|r| 2.0 * r.0)), stats("y1", &col(&|r| 2.0 * r.1))],
    });
    std::fs::write(
        model_dir.join("model.profile.json"),
        serde_json::to_vec(&profile).unwrap(),
    )
    .unwrap();
}

async fn send(client: &reqwest::Client, url: &str, n: &mut Normal, shift: f64, rows: usize) {
    for _ in 0..rows / 50 {
        let data: Vec<f64> = (0..50).flat_map(|_| [n.next(), n.next() + shift]).collect();
        let body =
            json!({"inputs": [{"name": "x", "shape": [50, 2], "datatype": "FP32", "data": data}]});
        let r = client
            .post(format!("{url}/v2/models/m/infer"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
}

/// Waits until the worker has binned `rows` input rows.
async fn drift_after(client: &reqwest::Client, url: &str, rows: u64) -> Value {
    for _ in 0..200 {
        let d = common::get_json(client, &format!("{url}/v2/models/m/versions/1/drift")).await;
        let no_outputs = d["outputs"].as_array().is_some_and(Vec::is_empty);
        if d["rows"].as_u64() == Some(rows)
            && (no_outputs || d["output_rows"].as_u64() == Some(rows))
        {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the window never reached {rows} rows");
}

async fn metrics(client: &reqwest::Client, server: &hone_server::Server) -> String {
    let url = format!("http://{}/metrics", server.metrics_addr.unwrap());
    let text = client.get(url).send().await.unwrap().text().await.unwrap();
    common::promtool_clean(&text);
    text
}

fn psi(d: &Value, side: &str, i: usize) -> f64 {
    d[side][i]["psi"].as_f64().unwrap()
}

/// Every request sampled: the tests count rows exactly.
const ALL: &str =
    "parameters { key: \"drift_max_rows_per_second\" value: { string_value: \"1000000000\" } }\n";

#[tokio::test]
async fn a_shifted_feature_is_flagged_and_only_that_one() {
    let (server, _l, dir) = fake_server("drift-shift", "scale=2", ALL, |dir, o| {
        write_profile(&dir.join("m/1"));
        o
    })
    .await;
    let url = format!("http://{}", server.http_addr);
    let client = reqwest::Client::new();
    let mut n = Normal(99);
    send(&client, &url, &mut n, 0.0, 2000).await;
    let d = drift_after(&client, &url, 2000).await;
    for (side, i) in [
        ("features", 0),
        ("features", 1),
        ("outputs", 0),
        ("outputs", 1),
    ] {
        assert!(psi(&d, side, i) < 0.1, "{side} {i} in distribution: {d}");
        assert_eq!(d[side][i]["verdict"], "stable");
    }
    assert_eq!(d["features"][1]["name"], "income");
    assert_eq!(d["source"], "model.profile.json");

    // The same model after a shift of income by two standard deviations:
    // restarted so the window holds only shifted traffic.
    server.shutdown().await;
    let (server, _l, _dir) = fake_server("drift-shift2", "scale=2", ALL, |dir, o| {
        write_profile(&dir.join("m/1"));
        o
    })
    .await;
    let url = format!("http://{}", server.http_addr);
    send(&client, &url, &mut n, 2.0, 2000).await;
    let d = drift_after(&client, &url, 2000).await;
    assert!(psi(&d, "features", 0) < 0.1, "age untouched: {d}");
    assert!(psi(&d, "features", 1) > 0.25, "income shifted: {d}");
    assert_eq!(d["features"][1]["verdict"], "major");
    let text = metrics(&client, &server).await;
    assert!(
        text.contains("hone_feature_drift_verdict{model=\"m\",version=\"1\",feature=\"income\",verdict=\"major\"} 1"),
        "{text}"
    );
    assert!(d["features"][1]["above_range"].as_u64().unwrap() > 0);
    assert!(
        d["features"][1]["jensen_shannon"].as_f64().unwrap()
            > d["features"][0]["jensen_shannon"].as_f64().unwrap()
    );
    // Prediction drift follows the input it depends on.
    assert!(
        psi(&d, "outputs", 0) < 0.1 && psi(&d, "outputs", 1) > 0.25,
        "{d}"
    );

    // The same figures on the metrics page.
    let text = metrics(&client, &server).await;
    let line = text
        .lines()
        .find(|l| l.starts_with("hone_feature_drift_psi{") && l.contains("feature=\"income\""))
        .unwrap_or_else(|| panic!("no income PSI series:\n{text}"));
    let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(v > 0.25, "{line}");
    assert!(
        text.contains("hone_prediction_drift_psi{model=\"m\",version=\"1\",output=\"y1\"}"),
        "{text}"
    );
    assert!(
        text.contains("hone_drift_window_rows{model=\"m\",version=\"1\"} 2000"),
        "{text}"
    );
    assert!(text.contains("hone_feature_out_of_range_rows{model=\"m\",version=\"1\",feature=\"income\",side=\"above\"}"), "{text}");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_window_expires_and_models_without_a_profile_have_no_series() {
    let config = format!(
        "{ALL}parameters {{ key: \"drift_window_seconds\" value: {{ string_value: \"1\" }} }}\n"
    );
    let (server, _l, dir) = fake_server("drift-window", "scale=2", &config, |dir, o| {
        write_profile(&dir.join("m/1"));
        common::fake::write_model(dir, "plain", 1, "scale=1", common::fake::ONE_INSTANCE);
        o
    })
    .await;
    let url = format!("http://{}", server.http_addr);
    let client = reqwest::Client::new();
    let mut n = Normal(5);
    send(&client, &url, &mut n, 0.0, 500).await;
    let d = drift_after(&client, &url, 500).await;
    assert_eq!(d["window_seconds"], 1.0);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let d = common::get_json(&client, &format!("{url}/v2/models/m/drift")).await;
    assert_eq!(d["rows"], 0, "the window let its rows go: {d}");
    assert!(d["features"][0]["psi"].is_null(), "{d}");

    // A model without a profile: a clear 404 and no series.
    let r = client
        .get(format!("{url}/v2/models/plain/drift"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no reference profile"),
        "{body}"
    );
    let text = metrics(&client, &server).await;
    assert!(
        !text.contains("model=\"plain\",version=\"1\",feature="),
        "{text}"
    );
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn heavy_traffic_is_sampled_within_the_rows_per_second_budget() {
    let config =
        "parameters { key: \"drift_max_rows_per_second\" value: { string_value: \"100\" } }\n";
    let (server, _l, dir) = fake_server("drift-sample", "scale=2", config, |dir, o| {
        write_profile(&dir.join("m/1"));
        o
    })
    .await;
    let url = format!("http://{}", server.http_addr);
    let client = reqwest::Client::new();
    let start = std::time::Instant::now();
    send(&client, &url, &mut Normal(3), 0.0, 1000).await;
    let secs = start.elapsed().as_secs() + 1;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let d = common::get_json(&client, &format!("{url}/v2/models/m/drift")).await;
    assert_eq!(d["rows_seen"], 1000);
    let sampled = d["rows_sampled"].as_u64().unwrap();
    // Whole 50-row requests, at most twice the budget in each second it
    // ran (a burst after a quiet second may take both halves).
    assert!(sampled >= 50 && sampled <= 200 * secs, "{d}");
    assert_eq!(d["rows"].as_u64().unwrap(), sampled, "{d}");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A shifted burst right after normal traffic is still seen: the first
/// rows of a second do not spend its whole budget.
#[tokio::test]
async fn a_burst_after_normal_traffic_is_sampled_too() {
    let config =
        "parameters { key: \"drift_max_rows_per_second\" value: { string_value: \"100\" } }\n";
    let (server, _l, dir) = fake_server("drift-burst", "scale=2", config, |dir, o| {
        write_profile(&dir.join("m/1"));
        o
    })
    .await;
    let url = format!("http://{}", server.http_addr);
    let client = reqwest::Client::new();
    let mut n = Normal(5);
    send(&client, &url, &mut n, 0.0, 100).await;
    send(&client, &url, &mut n, 6.0, 200).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let d = common::get_json(&client, &format!("{url}/v2/models/m/drift")).await;
    // Income moved six standard deviations: far past the reference's range.
    let above = d["features"][1]["above_range"].as_u64().unwrap();
    assert!(above > 0, "the burst was never sampled: {d}");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Headless Chromium (Debian's package; `.ci/run` installs it) loads the
/// dashboard from the metrics port after stable and shifted traffic; the
/// drawn page flags the shifted feature and not the other.
#[tokio::test]
async fn the_dashboard_draws_drift_in_a_real_browser() {
    let (server, _l, dir) = fake_server("drift-dash", "scale=2", ALL, |dir, o| {
        write_profile(&dir.join("m/1"));
        // A card too, so answers can be labelled: the live accuracy panel.
        let card = json!({"task": "binary", "labels": ["no", "yes"], "output": {"name": "y"},
            "metrics": {"validation": {"accuracy": 0.9}}});
        std::fs::write(dir.join("m/1/model.card.json"), card.to_string()).unwrap();
        o
    })
    .await;
    let url = format!("http://{}", server.http_addr);
    let client = reqwest::Client::new();
    send(&client, &url, &mut Normal(11), 2.0, 1000).await;
    drift_after(&client, &url, 1000).await;
    let r = client
        .post(format!("{url}/v2/models/m/infer"))
        .json(&json!({"id": "q1", "inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [0.2, 0.8]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(format!("{url}/v2/models/m/feedback"))
        .json(&json!({"id": "q1", "labels": ["yes"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = format!("http://{}/", server.metrics_addr.unwrap());
    let work = dir.join("chromium");
    std::fs::create_dir_all(&work).unwrap();
    let shot = work.join("dashboard.png");
    if !common::have_tool("chromium") {
        return;
    }
    let chromium = "chromium";
    let run = |extra: &[String]| {
        let mut c = std::process::Command::new(chromium);
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=4000",
            "--window-size=1200,900",
        ])
        .arg(format!(
            "--user-data-dir={}",
            work.join("profile").display()
        ))
        .args(extra)
        .arg(&page);
        c
    };
    // Chromium is a blocking child; the server runs on this runtime's threads.
    let dom = tokio::task::spawn_blocking({
        let mut c = run(&["--dump-dom".to_string()]);
        move || c.output().unwrap()
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    assert!(
        dom.contains("data-loaded=\"1\""),
        "the page never drew its data:\n{dom}"
    );
    assert!(
        dom.contains("data-feature=\"income\" data-verdict=\"major\""),
        "{dom}"
    );
    assert!(
        dom.contains("data-feature=\"age\" data-verdict=\"stable\""),
        "{dom}"
    );
    assert!(
        dom.contains("data-output=\"y1\" data-verdict=\"major\""),
        "{dom}"
    );
    assert!(dom.contains("data-model=\"m\""), "{dom}");
    assert!(
        dom.contains("data-live=\"m/1\"")
            && dom.contains("data-metric=\"accuracy\" data-value=\"1\""),
        "the live accuracy panel: {dom}"
    );
    let shot_arg = format!("--screenshot={}", shot.display());
    let out = tokio::task::spawn_blocking({
        let mut c = run(&[shot_arg]);
        move || c.output().unwrap()
    })
    .await
    .unwrap();
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if let Some(keep) = std::env::var_os("HONE_KEEP_SCREENSHOT") {
        std::fs::write(keep, &png).unwrap();
    }
    // The same page on the HTTP port, its data beside it.
    let r = client.get(format!("{url}/dashboard")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("dashboard.json"));
    let j = common::get_json(&client, &format!("{url}/dashboard.json")).await;
    assert_eq!(j["versions"][0]["model"], "m", "{j}");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A categorical feature (codes 0, 1, 2 at 50/30/20 %): traffic at those
/// frequencies is stable; traffic shifted to code 2 with unseen codes is
/// flagged, and the unseen ones are counted apart.
#[tokio::test]
async fn categorical_features_drift_on_category_frequencies() {
    let profile = |dir: &Path| {
        let numeric = stats(
            "amount",
            &(0..1000).map(|i| f64::from(i % 10)).collect::<Vec<_>>(),
        );
        let colour = json!({"name": "colour", "histogram": {"edges": [0.0, 2.0], "counts": [1000]},
            "categories": [{"label": "red", "value": 0.0, "count": 500},
                           {"label": "green", "value": 1.0, "count": 300},
                           {"label": "blue", "value": 2.0, "count": 200}]});
        let p = json!({"inputs": [colour, numeric]});
        std::fs::write(
            dir.join("m/1/model.profile.json"),
            serde_json::to_vec(&p).unwrap(),
        )
        .unwrap();
    };
    let (server, _l, _dir) = fake_server("drift-cat", "scale=2", ALL, |dir, o| {
        profile(dir);
        o
    })
    .await;
    let url = format!("http://{}", server.http_addr);
    let client = reqwest::Client::new();
    // 10 rows a request; codes cycle so every request keeps the frequencies.
    let post = |codes: [f64; 10]| {
        let data: Vec<f64> = codes
            .iter()
            .enumerate()
            .flat_map(|(i, &c)| [c, (i % 10) as f64])
            .collect();
        let body =
            json!({"inputs": [{"name": "x", "shape": [10, 2], "datatype": "FP32", "data": data}]});
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r = client
                .post(format!("{url}/v2/models/m/infer"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    for _ in 0..50 {
        post([0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 2.0]).await;
    }
    let d = drift_after(&client, &url, 500).await;
    let f = &d["features"][0];
    assert!(f["psi"].as_f64().unwrap() < 0.1, "{f}");
    assert_eq!(f["categories"], json!(["red", "green", "blue"]));
    assert_eq!(f["current"], json!([250, 150, 100]));
    assert_eq!(f["unseen"], 0);
    for _ in 0..50 {
        post([2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 0.0, 1.0, -1.0, 7.0]).await;
    }
    let d = drift_after(&client, &url, 1000).await;
    let f = &d["features"][0];
    assert!(f["psi"].as_f64().unwrap() > 0.25, "{f}");
    assert_eq!(f["verdict"], "major");
    assert_eq!(f["unseen"], 100, "-1 and 7 are no category: {f}");
    assert_eq!(f["below_range"], 0);
    assert!(d["features"][1]["psi"].as_f64().unwrap() < 0.1, "{d}");
    let text = metrics(&client, &server).await;
    assert!(
        text.contains("hone_feature_out_of_range_rows{model=\"m\",version=\"1\",feature=\"colour\",side=\"unseen\"} 100"),
        "{text}"
    );
}

/// Requests marked `hone-traffic: synthetic` (ship's smoke test) are
/// answered but are not live traffic: drift never sees them.
#[tokio::test]
async fn synthetic_requests_stay_out_of_drift() {
    let (server, _l, dir) = fake_server("drift-synthetic", "scale=2", ALL, |dir, o| {
        write_profile(&dir.join("m/1"));
        o
    })
    .await;
    let url = format!("http://{}", server.http_addr);
    let client = reqwest::Client::new();
    let body = json!({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4]}]});
    for _ in 0..5 {
        let r = client
            .post(format!("{url}/v2/models/m/infer"))
            .header("hone-traffic", "synthetic")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = client
        .post(format!("{url}/v2/models/m/infer"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let d = drift_after(&client, &url, 2).await;
    assert_eq!(d["rows_seen"], 2, "{d}");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
