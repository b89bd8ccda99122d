//! The serve and smoke-test stages: start a server on the repository (or
//! have a running one load the new version), check live answers against
//! offline ones, and take the version back out when that fails.

use std::path::Path;
use std::time::Instant;

use hone_client::Client;
use hone_server::Server;
use serde_json::json;

use super::report::{Live, Run, ShipOptions, Stage, Status};
use super::smoke::Smoke;
use crate::{PipelineError, Result};

/// The serve and smoke-test stages: start a server on the repository (or
/// have a running one load the new version), then check live answers against
/// offline ones.
pub(super) async fn go_live(
    opts: &ShipOptions,
    run: &mut Run,
    version: u64,
    dir: &Path,
    smoke: &Smoke,
    canary: Option<Canary>,
) -> Result<Option<Server>> {
    fn failed(run: &mut Run, stage: &'static str, t: Instant, msg: String) -> PipelineError {
        run.report.stages.push(Stage {
            stage,
            seconds: t.elapsed().as_secs_f64(),
            status: Status::Failed,
            detail: msg.clone(),
        });
        PipelineError::Message(msg)
    }
    run.check_cancel()?;
    if run.progress {
        eprintln!("hone ship: serve ...");
    }
    let t = Instant::now();
    // The serving version (checked and pinned before the publish) and the
    // note about a widened config.
    let stable = canary.as_ref().map(|c| c.stable);
    let mut canary_msg: Option<String> = canary.and_then(|c| c.note);
    let (client, server) = match &opts.live {
        Live::Into(o) => {
            let client = Client::new(o).map_err(|e| failed(run, "serve", t, e.to_string()))?;
            if let Err(e) = client.load(&opts.name).await {
                return Err(failed(run, "serve", t, e.to_string()));
            }
            if let (Some(p), Some(from)) = (opts.canary, stable) {
                match canary_start(&client, &opts.name, from, version, p).await {
                    Ok(msg) => {
                        canary_msg = Some(match canary_msg.take() {
                            Some(note) => format!("{note}; {msg}"),
                            None => msg,
                        });
                    }
                    Err(e) => return Err(failed(run, "serve", t, e.to_string())),
                }
            }
            (client, None)
        }
        Live::Check | Live::Serve => {
            let mut server_opts = opts.server.clone();
            server_opts.model_repository = opts.repository.clone();
            let started = Server::start(server_opts).await.map(|s| {
                let url = format!("http://{}", s.http_addr);
                let o = hone_client::Options {
                    url,
                    ..Default::default()
                };
                (Client::new(&o), s)
            });
            match started {
                Ok((Ok(c), s)) => (c, Some(s)),
                Ok((Err(e), s)) => {
                    s.shutdown().await;
                    return Err(failed(run, "serve", t, e.to_string()));
                }
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
    let base = client.base().to_string();
    let endpoint = format!(
        "{base}{}",
        hone_client::infer_path(&opts.name, Some(version))
    );
    let not_ready = match client.ready(&opts.name, Some(version)).await {
        Ok(true) => None,
        Ok(false) => {
            let mut msg = format!("version {version} of {} is not ready at {base}", opts.name);
            if matches!(opts.live, Live::Into(_)) {
                msg.push_str(&format!(
                    " (is that server serving --model-repository {}?)",
                    opts.repository.display()
                ));
            }
            Some(msg)
        }
        Err(e) => Some(e.to_string()),
    };
    if let Some(msg) = not_ready {
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
    run.report.example_request = Some(smoke.example.clone());
    match smoke.check(&client, &opts.name, version).await {
        Ok(detail) => run.report.stages.push(Stage {
            stage: "smoke test",
            seconds: t.elapsed().as_secs_f64(),
            status: Status::Ok,
            detail,
        }),
        Err(e) => {
            stop(server).await;
            return Err(failed(run, "smoke test", t, e.to_string()));
        }
    }
    let json = serde_json::to_vec_pretty(&run.report)?;
    // The report beside the model it describes; the version is already live, so this is best effort.
    if let Err(e) = std::fs::write(dir.join("ship.json"), json) {
        tracing::warn!("cannot write {}: {e}", dir.join("ship.json").display());
    }
    if opts.live == Live::Serve {
        Ok(server)
    } else {
        stop(server).await;
        Ok(None)
    }
}

/// A canary's plan, made before the new version is published.
pub(super) struct Canary {
    /// The version serving now, which keeps all traffic until the rollout.
    stable: i64,
    /// Said in the serve stage: the config ship widened.
    note: Option<String>,
}

/// Before a canary's publish: the policy must keep the serving version
/// beside version `next` (checked first, so a refusal changes nothing),
/// then the serving version gets all traffic, so the new one gets none
/// once it loads. None for a model with no ready version: then there is
/// nothing to be a canary against.
pub(super) async fn canary_before_publish(
    opts: &ShipOptions,
    o: &hone_client::Options,
    next: u64,
) -> Result<Option<Canary>> {
    let client = Client::new(o)?;
    let Some(stable) = serving_version(&client, &opts.name).await? else {
        return Ok(None);
    };
    let note = canary_policy(&opts.repository, &opts.name, stable, next)?;
    let split = json!({"weights": {stable.to_string(): 100}, "labels": {"stable": stable}});
    client.set_traffic(&opts.name, &split).await?;
    Ok(Some(Canary { stable, note }))
}

/// The version with the largest share of a model's traffic now.
async fn serving_version(client: &Client, name: &str) -> Result<Option<i64>> {
    let fail = PipelineError::from;
    let Some(v) = client.traffic(name).await.map_err(fail)? else {
        return Ok(None);
    };
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
    Ok(stable)
}

/// The first line of every config.pbtxt ship writes.
pub(super) const SHIP_HEADER: &str = "# Written by hone ship.";

/// Before a canary's load: the model's config.pbtxt must keep the serving
/// version `from` loaded beside the new `to`. A config ship wrote is
/// widened (`latest` as many versions as reach back to `from`, said in the
/// returned note); a user's own is left alone and the canary refused, with
/// the fix.
fn canary_policy(repo: &Path, name: &str, from: i64, to: u64) -> Result<Option<String>> {
    use hone_server::config::{ModelConfig, VersionPolicy};
    let path = repo.join(name).join("config.pbtxt");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let (mut config, _) = ModelConfig::parse(&text).map_err(|e| {
        PipelineError::Message(format!("--canary: cannot read {}: {e}", path.display()))
    })?;
    let mut on_disk: Vec<i64> = std::fs::read_dir(repo.join(name))
        .map_err(|e| PipelineError::Message(format!("--canary: {}: {e}", repo.display())))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i64>().ok())
        .collect();
    // The new version, about to be published.
    let to = i64::try_from(to).unwrap_or(i64::MAX);
    if !on_disk.contains(&to) {
        on_disk.push(to);
    }
    on_disk.sort_unstable();
    let served: Vec<i64> = match &config.version_policy {
        VersionPolicy::All => on_disk.clone(),
        VersionPolicy::Latest(n) => on_disk.iter().rev().take(*n as usize).copied().collect(),
        VersionPolicy::Specific(v) => on_disk.iter().filter(|x| v.contains(x)).copied().collect(),
    };
    if served.contains(&from) && served.contains(&to) {
        return Ok(None);
    }
    if text.starts_with(SHIP_HEADER) {
        let keep = on_disk
            .iter()
            .filter(|v| **v >= from.min(to))
            .count()
            .max(2);
        config.version_policy = VersionPolicy::Latest(keep as u32);
        let widened = format!("{SHIP_HEADER}\n{}", config.to_pbtxt());
        crate::publish::write_atomic(&path, widened.as_bytes())?;
        return Ok(Some(format!(
            "config.pbtxt now keeps the latest {keep} versions loaded, so version {from} serves while version {to} is a canary"
        )));
    }
    Err(PipelineError::Message(format!(
        "--canary: version {to} under {}'s version_policy would serve versions {served:?}, not version {from} (serving now) beside version {to}; nothing was published or loaded. Keep both loaded (version_policy: {{ latest: {{ num_versions: 2 }} }}) and ship again",
        path.display()
    )))
}

/// After a canary's load: the rollout from `from` to `to`, starting at
/// `percent`, then 50 (if below) and 100.
async fn canary_start(
    client: &Client,
    name: &str,
    from: i64,
    to: u64,
    percent: u32,
) -> Result<String> {
    let ready = client.ready(name, u64::try_from(from).ok()).await;
    if !ready.is_ok_and(|r| r) {
        return Err(PipelineError::Message(format!(
            "--canary: version {from} stopped serving when version {to} loaded; the model must keep two versions loaded (config.pbtxt: version_policy: {{ latest: {{ num_versions: 2 }} }})"
        )));
    }
    let mut steps = vec![percent];
    if percent < 50 {
        steps.push(50);
    }
    steps.push(100);
    client
        .start_rollout(name, &json!({"to": to, "from": from, "steps": steps}))
        .await
        .map_err(PipelineError::from)?;
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
    if let Live::Into(o) = &opts.live {
        // A model that did not exist before goes away; otherwise the server
        // reloads the directory as it now is.
        let back = match Client::new(o) {
            Ok(c) if new_model => c.unload(&opts.name).await,
            Ok(c) => c.load(&opts.name).await,
            Err(e) => Err(e),
        };
        match back {
            Ok(()) => said.push_str(" and the running server reloaded what it served before"),
            Err(e) => said.push_str(&format!(", but the running server could not be told: {e}")),
        }
    }
    said
}
