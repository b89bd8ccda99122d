//! `hone models`: a running server's models from the command line, over
//! its HTTP API (repository index/load/unload, traffic, rollout). Tables
//! for people, `--json` for scripts.

use std::path::PathBuf;
use std::process::ExitCode;

use hone_client::{Access, Method};
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    action: Action,
    /// The server's HTTP address.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8000")]
    url: String,
    /// File holding the admin key (first non-comment line), sent as a
    /// Bearer token; load, unload, traffic and rollout need it once the
    /// server has keys.
    #[arg(long, global = true, value_name = "FILE")]
    admin_key_file: Option<PathBuf>,
    /// File holding an inference key, for list and status on a server
    /// with keys (the admin key opens them too).
    #[arg(long, global = true, value_name = "FILE")]
    api_key_file: Option<PathBuf>,
    /// PEM CA certificate(s) to trust for an https:// server.
    #[arg(long, global = true, value_name = "PEM")]
    cacert: Option<PathBuf>,
    /// Print the server's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Every model and version in the repository, with its state.
    List,
    /// One model: each version's readiness, request rate, p50/p99, errors
    /// by reason, queue time and drift; the traffic split; the rollout's
    /// step, its progress and deadline.
    Status {
        name: String,
        /// Seconds between the two samples the request rate comes from.
        #[arg(long, default_value_t = 1.0)]
        window: f64,
    },
    /// Load (or reload) a model from the repository.
    Load { name: String },
    /// Unload a model.
    Unload { name: String },
    /// Set how unversioned requests are split between versions.
    Traffic {
        name: String,
        /// VERSION=WEIGHT,... e.g. 1=90,2=10
        #[arg(long, value_name = "V=W,...")]
        weights: Option<String>,
        /// LABEL=VERSION,... e.g. stable=1,canary=2
        #[arg(long, value_name = "L=V,...")]
        labels: Option<String>,
        /// Requests with the same value of this header go to one version.
        #[arg(long)]
        sticky_header: Option<String>,
        /// VERSION:SHARE: also send this share of requests to VERSION,
        /// compare its answers, return none of them.
        #[arg(long, value_name = "V:SHARE")]
        shadow: Option<String>,
        /// Drop the run-time split: back to the model's config.
        #[arg(long, conflicts_with_all = ["weights", "labels", "sticky_header", "shadow"])]
        clear: bool,
    },
    /// Move traffic to a version step by step; promote while it holds up
    /// against the stable version, roll back on a breach.
    Rollout {
        name: String,
        #[arg(long)]
        to: i64,
        /// The stable version (default: the one serving now).
        #[arg(long)]
        from: Option<i64>,
        /// Percent at each step, ending at 100.
        #[arg(long, default_value = "5,25,50,100", value_delimiter = ',')]
        steps: Vec<u32>,
        /// Requests the new version answers at a step before it is judged.
        #[arg(long, default_value_t = 500)]
        step_requests: u64,
        /// Error rate the new version may add over the stable one.
        #[arg(long, default_value_t = 0.01)]
        max_error_rate_increase: f64,
        /// p99 ratio allowed over the stable version.
        #[arg(long, default_value_t = 2.0)]
        max_p99_ratio: f64,
        /// Share of stable requests shadowed to the new version to compare outputs.
        #[arg(long, default_value_t = 0.1)]
        shadow_share: f64,
        /// Share of rows allowed to change class.
        #[arg(long, default_value_t = 0.05)]
        max_class_mismatch: f64,
        /// Gate on ground truth: the new version's live accuracy on labelled
        /// predictions (POST /v2/models/NAME/feedback) must stay at or above this.
        #[arg(long)]
        min_live_accuracy: Option<f64>,
        /// Gate on ground truth for regression: the live MAE must stay at or below this.
        #[arg(long)]
        max_live_mae: Option<f64>,
        /// Labels the live gate needs before judging; the last step waits for them.
        #[arg(long, default_value_t = 100)]
        min_labels: u64,
        /// Wait until it is promoted or rolled back; exit 1 on rollback.
        #[arg(long)]
        wait: bool,
    },
    /// End a running rollout: all traffic to the new version.
    Promote { name: String },
    /// End a running rollout: all traffic back to the stable version.
    Rollback { name: String },
}

/// `hone_client` with the key each route needs: reads take the API key,
/// changes the admin key.
struct Api(hone_client::Client);

impl Api {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let access = if method == Method::GET || path == "/v2/repository/index" {
            Access::Read
        } else {
            Access::Admin
        };
        self.0
            .call(access, method, path, body.as_ref())
            .await
            .map_err(|e| e.to_string())
    }
}

fn pairs(text: &str, sep: char) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.split_once(sep)
                .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
                .ok_or_else(|| format!("{p:?}: expected A{sep}B"))
        })
        .collect()
}

fn num(s: &str) -> Result<Value, String> {
    s.parse::<u64>()
        .map(Value::from)
        .map_err(|_| format!("{s:?} is not a whole number"))
}

pub fn run(a: ModelsArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hone models: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(go(a)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hone models: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn go(a: ModelsArgs) -> Result<ExitCode, String> {
    let api = Api(hone_client::Client::new(&hone_client::Options {
        url: a.url.clone(),
        admin_key_file: a.admin_key_file.clone(),
        api_key_file: a.api_key_file.clone(),
        cacert: a.cacert.clone(),
    })
    .map_err(|e| e.to_string())?);
    use Method as M;
    let out = match &a.action {
        Action::List => {
            api.call(M::POST, "/v2/repository/index", Some(json!({})))
                .await?
        }
        Action::Status { name, window } => {
            let window = std::time::Duration::try_from_secs_f64(*window)
                .map_err(|_| format!("--window {window}: expected seconds"))?;
            crate::models_status::gather(&api.0, name, window).await?
        }
        Action::Load { name } => {
            api.call(M::POST, &format!("/v2/repository/models/{name}/load"), None)
                .await?
        }
        Action::Unload { name } => {
            api.call(
                M::POST,
                &format!("/v2/repository/models/{name}/unload"),
                None,
            )
            .await?
        }
        Action::Traffic {
            name,
            weights,
            labels,
            sticky_header,
            shadow,
            clear,
        } => {
            let path = format!("/v2/models/{name}/traffic");
            if *clear {
                api.call(M::DELETE, &path, None).await?
            } else {
                let mut body = serde_json::Map::new();
                if let Some(w) = weights {
                    let m: serde_json::Map<String, Value> = pairs(w, '=')?
                        .into_iter()
                        .map(|(v, w)| Ok((v, num(&w)?)))
                        .collect::<Result<_, String>>()?;
                    body.insert("weights".into(), Value::Object(m));
                }
                if let Some(l) = labels {
                    let m: serde_json::Map<String, Value> = pairs(l, '=')?
                        .into_iter()
                        .map(|(l, v)| Ok((l, num(&v)?)))
                        .collect::<Result<_, String>>()?;
                    body.insert("labels".into(), Value::Object(m));
                }
                if let Some(h) = sticky_header {
                    body.insert("sticky_header".into(), json!(h));
                }
                if let Some(s) = shadow {
                    let (v, share) = s
                        .split_once(':')
                        .ok_or("--shadow: expected VERSION:SHARE")?;
                    let share: f64 = share
                        .parse()
                        .map_err(|_| format!("--shadow: {share:?} is not a share"))?;
                    body.insert("shadow".into(), json!({"version": v, "share": share}));
                }
                api.call(M::PUT, &path, Some(Value::Object(body))).await?
            }
        }
        Action::Rollout {
            name,
            to,
            from,
            steps,
            step_requests,
            max_error_rate_increase,
            max_p99_ratio,
            shadow_share,
            max_class_mismatch,
            min_live_accuracy,
            max_live_mae,
            min_labels,
            wait,
        } => {
            let path = format!("/v2/models/{name}/rollout");
            let policy = json!({"to": to, "from": from, "steps": steps, "step_requests": step_requests,
                "max_error_rate_increase": max_error_rate_increase, "max_p99_ratio": max_p99_ratio,
                "shadow_share": shadow_share, "max_class_mismatch": max_class_mismatch,
                "min_live_accuracy": min_live_accuracy, "max_live_mae": max_live_mae, "min_labels": min_labels});
            let mut st = api.call(M::POST, &path, Some(policy)).await?;
            if *wait {
                let mut shown = 0;
                while st["state"] == "running" {
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    st = api.call(M::GET, &path, None).await?;
                    if !a.json {
                        let steps = st["steps"].as_array().cloned().unwrap_or_default();
                        for s in steps.iter().skip(shown) {
                            println!(
                                "step {:>3} %: {} requests to version {to}, {}",
                                s["percent"].as_u64().unwrap_or(0),
                                s["new_requests"],
                                if s["passed"] == true {
                                    "passed"
                                } else {
                                    "failed"
                                }
                            );
                        }
                        shown = steps.len();
                    }
                }
            }
            st
        }
        Action::Promote { name } => {
            api.call(M::POST, &format!("/v2/models/{name}/rollout/promote"), None)
                .await?
        }
        Action::Rollback { name } => {
            api.call(
                M::POST,
                &format!("/v2/models/{name}/rollout/rollback"),
                None,
            )
            .await?
        }
    };
    if a.json {
        println!("{out}");
    } else if let Action::Status { .. } = a.action {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        print!("{}", crate::models_status::render(&out, now));
    } else {
        print!("{}", table(&a.action, &out));
    }
    let rolled_back =
        matches!(a.action, Action::Rollout { wait: true, .. }) && out["state"] == "rolled_back";
    Ok(if rolled_back {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    }
}

fn rollout_line(r: &Value) -> String {
    format!(
        "rollout: {} → {}: {} at {} %{}\n",
        s(&r["from"]),
        s(&r["to"]),
        s(&r["state"]),
        s(&r["percent"]),
        r["reason"]
            .as_str()
            .map(|w| format!(" ({w})"))
            .unwrap_or_default()
    )
}

fn table(action: &Action, v: &Value) -> String {
    let mut out = String::new();
    match action {
        Action::List => {
            out += &format!(
                "{:<24} {:<8} {:<12} {}\n",
                "MODEL", "VERSION", "STATE", "REASON"
            );
            for m in v.as_array().into_iter().flatten() {
                out += &format!(
                    "{:<24} {:<8} {:<12} {}\n",
                    s(&m["name"]),
                    s(&m["version"]),
                    s(&m["state"]),
                    m["reason"].as_str().unwrap_or("")
                );
            }
        }
        Action::Traffic { .. } => {
            let t = v;
            out += &format!(
                "model {} (split from {})\n",
                s(&t["model"]),
                s(&t["source"])
            );
            out += &format!(
                "{:<8} {:>7} {:>7} {:>10}\n",
                "VERSION", "WEIGHT", "SHARE", "ANSWERED"
            );
            for r in t["versions"].as_array().into_iter().flatten() {
                let share = r["share"]
                    .as_f64()
                    .map_or("-".into(), |x| format!("{:.0} %", x * 100.0));
                out += &format!(
                    "{:<8} {:>7} {:>7} {:>10}\n",
                    s(&r["version"]),
                    s(&r["weight"]),
                    share,
                    s(&r["success"])
                );
            }
            if let Some(l) = t["split"]["labels"].as_object().filter(|l| !l.is_empty()) {
                let l: Vec<String> = l.iter().map(|(k, v)| format!("{k}={}", s(v))).collect();
                out += &format!("labels: {}\n", l.join(", "));
            }
            for sh in t["shadow"].as_array().into_iter().flatten() {
                out += &crate::models_status::shadow_line(sh);
            }
        }
        Action::Status { .. } => {}
        Action::Load { name } => out += &format!("loaded {name}\n"),
        Action::Unload { name } => out += &format!("unloaded {name}\n"),
        Action::Rollout { .. } | Action::Promote { .. } | Action::Rollback { .. } => {
            out += &rollout_line(v)
        }
    }
    out
}
