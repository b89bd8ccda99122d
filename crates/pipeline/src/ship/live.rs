//! The serve and smoke-test stages: start a server on the repository (or
//! have a running one load the new version), check live answers against
//! offline ones, and take the version back out when that fails.

use std::path::Path;
use std::time::Instant;

use hone_data::Prepared;
use hone_server::Server;

use super::report::{Data, Run, ShipOptions, Stage, Status};
use crate::{PipelineError, Result};

/// The serve and smoke-test stages: start a server on the repository (or
/// have a running one load the new version), then check live answers against
/// offline ones.
pub(super) async fn go_live(
    opts: &ShipOptions,
    run: &mut Run,
    version: u64,
    dir: &Path,
    onnx_bytes: &[u8],
    data: &Data,
    keep_serving: bool,
) -> Result<Option<Server>> {
    fn failed(run: &mut Run, stage: &'static str, t: Instant, msg: String) -> PipelineError {
        run.report.stages.push(Stage {
            stage,
            seconds: t.elapsed().as_secs_f64(),
            status: Status::Failed,
            detail: msg.clone(),
        });
        PipelineError(msg)
    }
    run.check_cancel()?;
    if run.progress {
        eprintln!("hone ship: serve ...");
    }
    let t = Instant::now();
    let client = reqwest::Client::new();
    let mut canary_msg: Option<String> = None;
    let (base, server) = match &opts.hot_load {
        Some(url) => {
            let base = url.trim_end_matches('/').to_string();
            // A canary: the versions serving now keep all traffic while the
            // new one loads, then the rollout takes over.
            let stable = match opts.canary {
                Some(_) => match canary_prepare(&client, &base, &opts.name).await {
                    Ok(v) => v,
                    Err(e) => return Err(failed(run, "serve", t, e.0)),
                },
                None => None,
            };
            if let Err(e) = repository_call(&client, &base, &opts.name, "load").await {
                return Err(failed(run, "serve", t, e.0));
            }
            if let (Some(p), Some(from)) = (opts.canary, stable) {
                match canary_start(&client, &base, &opts.name, from, version, p).await {
                    Ok(msg) => canary_msg = Some(msg),
                    Err(e) => return Err(failed(run, "serve", t, e.0)),
                }
            }
            (base, None)
        }
        None => {
            let mut server_opts = opts.server.clone();
            server_opts.model_repository = opts.repository.clone();
            match Server::start(server_opts).await {
                Ok(s) => (format!("http://{}", s.http_addr), Some(s)),
                Err(e) => {
                    return Err(failed(
                        run,
                        "serve",
                        t,
                        format!("cannot start the server: {e}"),
                    ));
                }
            }
        }
    };
    let stop = |server: Option<Server>| async move {
        if let Some(s) = server {
            s.shutdown().await;
        }
    };
    let endpoint = format!("{base}/v2/models/{}/versions/{version}/infer", opts.name);
    let ready_url = format!("{base}/v2/models/{}/versions/{version}/ready", opts.name);
    let ready = client
        .get(&ready_url)
        .send()
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false);
    if !ready {
        let mut msg = format!(
            "version {version} of {} is not ready at {ready_url}",
            opts.name
        );
        if opts.hot_load.is_some() {
            msg.push_str(&format!(
                " (is that server serving --model-repository {}?)",
                opts.repository.display()
            ));
        }
        stop(server).await;
        return Err(failed(run, "serve", t, msg));
    }
    let detail = match &server {
        Some(s) => format!(
            "{base} (gRPC {}), version {version} ready",
            s.grpc_addr.map_or("off".into(), |a| a.to_string())
        ),
        None => format!(
            "hot-loaded into the running server at {base}: version {version} ready{}",
            canary_msg
                .as_deref()
                .map(|c| format!("; {c}"))
                .unwrap_or_default()
        ),
    };
    run.report.stages.push(Stage {
        stage: "serve",
        seconds: t.elapsed().as_secs_f64(),
        status: Status::Ok,
        detail,
    });
    run.report.endpoint = Some(endpoint.clone());

    if run.progress {
        eprintln!("hone ship: smoke test ...");
    }
    let t = Instant::now();
    if let Some(row) = (data.holdout.rows > 0).then(|| data.holdout.row(0)) {
        run.report.example_request = Some(
            serde_json::json!({"inputs": [{"name": hone_train::export::INPUT, "shape": [1, row.len()], "datatype": "FP32", "data": row}]})
                .to_string(),
        );
    }
    match smoke_test(
        &client,
        &endpoint,
        onnx_bytes,
        &data.holdout,
        opts.smoke_rows,
    )
    .await
    {
        Ok(detail) => run.report.stages.push(Stage {
            stage: "smoke test",
            seconds: t.elapsed().as_secs_f64(),
            status: Status::Ok,
            detail,
        }),
        Err(e) => {
            stop(server).await;
            return Err(failed(run, "smoke test", t, e.0));
        }
    }
    let json = serde_json::to_vec_pretty(&run.report)?;
    // The report beside the model it describes; the version is already live, so this is best effort.
    if let Err(e) = std::fs::write(dir.join("ship.json"), json) {
        tracing::warn!("cannot write {}: {e}", dir.join("ship.json").display());
    }
    if keep_serving {
        Ok(server)
    } else {
        stop(server).await;
        Ok(None)
    }
}

/// Asks a running hone (or Triton) server to `load` (or reload) or `unload`
/// a model of its repository; a refusal comes back with the server's reason.
async fn repository_call(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    action: &str,
) -> Result<()> {
    let url = format!("{base}/v2/repository/models/{name}/{action}");
    let resp = client
        .post(&url)
        .send()
        .await
        .map_err(|e| PipelineError(format!("cannot reach the server: POST {url}: {e}")))?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(PipelineError(format!("POST {url}: {status}: {text}")));
    }
    Ok(())
}

/// Before a canary's load: the version serving now gets all traffic (so
/// the new one gets none once it loads). None for a model with no ready
/// version: then there is nothing to be a canary against.
async fn canary_prepare(client: &reqwest::Client, base: &str, name: &str) -> Result<Option<i64>> {
    let url = format!("{base}/v2/models/{name}/traffic");
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| PipelineError(format!("cannot reach the server: GET {url}: {e}")))?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let v: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| PipelineError(format!("GET {url}: {e}")))?;
    // The version with the largest share serves now.
    let stable = v["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some((
                r["share"].as_f64()?,
                r["version"].as_str()?.parse::<i64>().ok()?,
            ))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, v)| v);
    let Some(stable) = stable else {
        return Ok(None);
    };
    let body =
        serde_json::json!({"weights": {stable.to_string(): 100}, "labels": {"stable": stable}});
    let r = client
        .put(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| PipelineError(format!("PUT {url}: {e}")))?;
    if !r.status().is_success() {
        let text = r.text().await.unwrap_or_default();
        return Err(PipelineError(format!("PUT {url}: {text}")));
    }
    Ok(Some(stable))
}

/// After a canary's load: the rollout from `from` to `to`, starting at
/// `percent`, then 50 (if below) and 100.
async fn canary_start(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    from: i64,
    to: u64,
    percent: u32,
) -> Result<String> {
    let ready = client
        .get(format!("{base}/v2/models/{name}/versions/{from}/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    if !ready {
        return Err(PipelineError(format!(
            "--canary: version {from} stopped serving when version {to} loaded; the model must keep two versions loaded (config.pbtxt: version_policy: {{ latest: {{ num_versions: 2 }} }})"
        )));
    }
    let mut steps = vec![percent];
    if percent < 50 {
        steps.push(50);
    }
    steps.push(100);
    let url = format!("{base}/v2/models/{name}/rollout");
    let r = client
        .post(&url)
        .json(&serde_json::json!({"to": to, "from": from, "steps": steps}))
        .send()
        .await
        .map_err(|e| PipelineError(format!("POST {url}: {e}")))?;
    if !r.status().is_success() {
        let text = r.text().await.unwrap_or_default();
        return Err(PipelineError(format!("POST {url}: {text}")));
    }
    let steps: Vec<String> = steps.iter().map(u32::to_string).collect();
    Ok(format!(
        "canary: rollout {from} → {to} over {} % started (hone models status {name})",
        steps.join(" → ")
    ))
}

/// Takes a published version back out of the repository after a failed
/// serve or smoke test, and has a running server follow. Says what it did.
pub(super) async fn roll_back(
    opts: &ShipOptions,
    version: u64,
    dir: &Path,
    new_model: bool,
) -> String {
    let target = if new_model {
        opts.repository.join(&opts.name)
    } else {
        dir.to_path_buf()
    };
    if let Err(e) = std::fs::remove_dir_all(&target) {
        return format!(
            "version {version} could not be removed from the repository ({}: {e})",
            target.display()
        );
    }
    let mut said = format!("version {version} was removed from the repository");
    if let Some(url) = &opts.hot_load {
        let base = url.trim_end_matches('/');
        let client = reqwest::Client::new();
        // A model that did not exist before goes away; otherwise the server
        // reloads the directory as it now is.
        let action = if new_model { "unload" } else { "load" };
        let back = repository_call(&client, base, &opts.name, action).await;
        match back {
            Ok(()) => said.push_str(" and the running server reloaded what it served before"),
            Err(e) => said.push_str(&format!(
                ", but the running server could not be told: {}",
                e.0
            )),
        }
    }
    said
}

/// Sends held-out rows to the live endpoint over V2 JSON and checks the
/// answers equal what ONNX Runtime computes offline on the same rows.
async fn smoke_test(
    client: &reqwest::Client,
    endpoint: &str,
    onnx: &[u8],
    holdout: &Prepared,
    rows: usize,
) -> Result<String> {
    let n = rows.clamp(1, holdout.rows.max(1)).min(holdout.rows);
    if n == 0 {
        return Err(PipelineError("no held-out rows to send".into()));
    }
    let sample = holdout.select(&(0..n).collect::<Vec<_>>());
    let offline = crate::ort_predict(onnx, &sample)?;
    let body = serde_json::json!({
        "id": "hone-ship-smoke",
        "inputs": [{
            "name": hone_train::export::INPUT,
            "shape": [n, sample.cols],
            "datatype": "FP32",
            "data": sample.x,
        }]
    });
    let resp = client
        .post(endpoint)
        .json(&body)
        .send()
        .await
        .map_err(|e| PipelineError(format!("POST {endpoint}: {e}")))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| PipelineError(format!("reading the answer: {e}")))?;
    if !status.is_success() {
        return Err(PipelineError(format!("POST {endpoint}: {status}: {text}")));
    }
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let data = v["outputs"][0]["data"]
        .as_array()
        .ok_or_else(|| PipelineError(format!("the answer has no outputs[0].data: {text}")))?;
    let served: Vec<f32> = data
        .iter()
        .filter_map(|x| x.as_f64().map(|f| f as f32))
        .collect();
    if served.len() != offline.len() {
        return Err(PipelineError(format!(
            "served {} values for {n} rows, offline {}",
            served.len(),
            offline.len()
        )));
    }
    let diff = crate::max_rel_diff(&served, &offline);
    if diff > 1e-6 {
        return Err(PipelineError(format!(
            "served predictions differ from offline ones by up to {diff:e}"
        )));
    }
    Ok(format!(
        "{n} held-out rows over V2 JSON: served == offline (max |diff| {diff:.1e})"
    ))
}
