//! The dashboard: one self-contained page (no CDN) and the JSON it polls,
//! built from the server's own statistics and drift monitors. The page is
//! served on the metrics port at `/` and on the HTTP port at `/dashboard`;
//! its data (`/dashboard.json`) is an admin route once keys exist, and the
//! page asks for the key when it gets a 401.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value as Json, json};

use crate::metrics::FailReason;
use crate::repository::VersionState;
use crate::state::ServerState;

const PAGE: &str = include_str!("dashboard.html");

pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Everything is inline: nothing else may load.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:",
            ),
        ],
        PAGE,
    )
}

pub async fn data(State(s): State<Arc<ServerState>>) -> impl IntoResponse {
    let body = json!({
        "server_ready": s.ready(),
        "unix_ms": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        "versions": versions(&s),
        "memory": memory(&s),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

fn versions(s: &ServerState) -> Vec<Json> {
    s.repo
        .models()
        .versions()
        .into_iter()
        .map(|(name, version, m)| match m {
            VersionState::Unavailable(reason) => {
                json!({"model": name, "version": version, "state": "UNAVAILABLE", "reason": reason})
            }
            VersionState::Ready(m) => {
                let st = &m.stats;
                let relaxed = std::sync::atomic::Ordering::Relaxed;
                let errors: serde_json::Map<String, Json> = FailReason::ALL
                    .iter()
                    .map(|r| (r.label().to_string(), json!(st.failures(*r))))
                    .collect();
                json!({
                    "model": name,
                    "version": version,
                    "state": if m.healthy() { "READY" } else { "RESTARTING" },
                    "success": st.success.load(relaxed),
                    "errors": errors,
                    "inferences": st.inference_count.load(relaxed),
                    "executions": st.execution_count.load(relaxed),
                    "pending": st.pending.load(relaxed),
                    "p50_s": seconds(st.request.quantile(0.5)),
                    "p99_s": seconds(st.request.quantile(0.99)),
                    "drift": m.drift.as_ref().map(|d| d.snapshot()),
                    "live": s.feedback.version_view(&name, &version),
                })
            }
        })
        .collect()
}

/// Which models are in memory and what they take, against the budget.
fn memory(s: &ServerState) -> Json {
    let m = s.repo.memory();
    let models: Vec<Json> = m
        .snapshot()
        .into_iter()
        .map(|(name, f)| {
            json!({
                "model": name,
                "resident": f.resident,
                "bytes": f.bytes(),
                "measured": f.measured.is_some(),
                "pinned": f.pinned,
                "loads": f.loads,
                "evictions": f.evictions,
                "last_load_s": f.last_load_s,
            })
        })
        .collect();
    json!({
        "budget_bytes": m.limit,
        "resident_bytes": m.resident_bytes(""),
        "models": models,
    })
}

/// A quantile for JSON: past the last bucket it is infinite, which JSON
/// cannot carry (serde would write null, read as "no data").
fn seconds(q: Option<f64>) -> Json {
    match q {
        Some(v) if v.is_finite() => json!(v),
        Some(_) => json!("inf"),
        None => Json::Null,
    }
}
