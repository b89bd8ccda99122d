//! `hone models status MODEL`: what an operator checks first, gathered
//! from the server's HTTP API: each version's readiness, request rate (over
//! a short window), p50/p99, errors by reason, mean queue time and drift,
//! then the traffic split and the rollout's step with its deadline.

use std::time::Duration;

use hone_client::{Access, Client, Method};
use serde_json::{Value, json};

/// The status of `name`, as JSON, sampling counters `window` apart for
/// the request rate.
pub async fn gather(c: &Client, name: &str, window: Duration) -> Result<Value, String> {
    let get = |path: String| async move {
        c.call(Access::Read, Method::GET, &path, None)
            .await
            .map_err(|e| e.to_string())
    };
    let index = c
        .call(
            Access::Read,
            Method::POST,
            "/v2/repository/index",
            Some(&json!({})),
        )
        .await
        .map_err(|e| e.to_string())?;
    let listed: Vec<&Value> = index
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["name"] == name)
        .collect();
    if listed.is_empty() {
        return Err(format!("no model '{name}' in the server's repository"));
    }
    // The dashboard's view has errors by reason, quantiles and drift; it
    // is an admin route once the server has keys, so it may be refused.
    let dashboard = || async {
        c.call(Access::Admin, Method::GET, "/dashboard.json", None)
            .await
            .ok()
    };
    let before = dashboard().await;
    let stats = get(format!("/v2/models/{name}/stats")).await.ok();
    tokio::time::sleep(window).await;
    let after = dashboard().await;
    let traffic = get(format!("/v2/models/{name}/traffic")).await.ok();
    let rollout = get(format!("/v2/models/{name}/rollout")).await.ok();
    // Live figures from ground-truth labels (a read route).
    let feedback = get(format!("/v2/models/{name}/feedback")).await.ok();
    let live = |v: &str| -> Value {
        feedback
            .as_ref()
            .and_then(|f| f["versions"].as_array())
            .and_then(|vs| vs.iter().find(|x| x["version"] == v))
            .cloned()
            .unwrap_or(Value::Null)
    };

    let row = |d: &Option<Value>, v: &str| -> Option<Value> {
        d.as_ref()?["versions"]
            .as_array()?
            .iter()
            .find(|r| r["model"] == name && r["version"] == v)
            .cloned()
    };
    let mut versions = Vec::new();
    for m in listed {
        let v = m["version"].as_str().unwrap_or_default().to_string();
        let (b, a) = (row(&before, &v), row(&after, &v));
        let count = |r: &Option<Value>| r.as_ref().and_then(|r| r["success"].as_u64());
        let rate = match (count(&b), count(&a)) {
            (Some(x), Some(y)) if !window.is_zero() => {
                json!(y.saturating_sub(x) as f64 / window.as_secs_f64())
            }
            _ => Value::Null,
        };
        let queue = stats.as_ref().and_then(|s| {
            let st = s["model_stats"]
                .as_array()?
                .iter()
                .find(|x| x["version"] == v.as_str())?;
            let q = &st["inference_stats"]["queue"];
            let n = q["count"].as_u64().filter(|n| *n > 0)?;
            Some(q["ns"].as_u64()? as f64 / n as f64 / 1e6)
        });
        let a = a.unwrap_or(Value::Null);
        versions.push(json!({
            "version": v,
            "state": m["state"],
            "reason": m["reason"],
            "requests_per_sec": rate,
            "success": a["success"],
            "errors": a["errors"],
            "p50_ms": ms(&a["p50_s"]),
            "p99_ms": ms(&a["p99_s"]),
            "queue_mean_ms": queue,
            "pending": a["pending"],
            "drift": drift_summary(&a["drift"]),
            "live": live(&v),
        }));
    }
    Ok(json!({
        "model": name,
        "window_seconds": window.as_secs_f64(),
        "versions": versions,
        "traffic": traffic,
        "rollout": rollout,
    }))
}

fn ms(v: &Value) -> Value {
    v.as_f64().map_or(Value::Null, |s| json!(s * 1e3))
}

/// Features (and outputs) by verdict and the window's size; None without a reference.
fn drift_summary(d: &Value) -> Value {
    let Some(features) = d["features"].as_array() else {
        return Value::Null;
    };
    let mut bands = serde_json::Map::new();
    for f in features
        .iter()
        .chain(d["outputs"].as_array().into_iter().flatten())
    {
        let b = f["verdict"]
            .as_str()
            .unwrap_or("not_enough_data")
            .to_string();
        let n = bands.get(&b).and_then(Value::as_u64).unwrap_or(0);
        bands.insert(b, json!(n + 1));
    }
    json!({"rows": d["rows"], "features": features.len(), "verdicts": bands})
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        Value::Number(n) => n
            .as_f64()
            .filter(|x| x.fract() != 0.0)
            .map_or_else(|| n.to_string(), |x| format!("{x:.2}")),
        v => v.to_string(),
    }
}

/// One shadow comparison of a traffic view, as a line.
pub(crate) fn shadow_line(sh: &Value) -> String {
    format!(
        "shadow version {}: {} compared, max |diff| {}, mean |diff| {}, class changed {}\n",
        s(&sh["version"]),
        s(&sh["compared"]),
        s(&sh["max_abs_diff"]),
        s(&sh["mean_abs_diff"]),
        s(&sh["class_mismatch_ratio"])
    )
}

/// The table people read.
/// "live: accuracy 0.974 (card 0.945) on 114 labels", or nothing before
/// the first label.
fn live_line(l: &Value) -> String {
    let Some(n) = l["labels"].as_u64().filter(|n| *n > 0) else {
        return String::new();
    };
    let figure = ["accuracy", "r2", "mae"]
        .iter()
        .find_map(|k| Some((*k, l["live"][k].as_f64()?)));
    match figure {
        Some((k, x)) => {
            let card = l["card"][k]
                .as_f64()
                .map(|c| format!(" (card {c:.3})"))
                .unwrap_or_default();
            format!("         live: {k} {x:.3}{card} on {n} labels\n")
        }
        None => format!("         live: {n} labels\n"),
    }
}

pub fn render(v: &Value, now_unix: f64) -> String {
    let mut out = format!(
        "model {} (rate over {} s)\n{:<8} {:<12} {:>8} {:>8} {:>8} {:>9} {:>8}  {:<20} {}\n",
        s(&v["model"]),
        s(&v["window_seconds"]),
        "VERSION",
        "STATE",
        "REQ/S",
        "P50 ms",
        "P99 ms",
        "QUEUE ms",
        "PENDING",
        "ERRORS",
        "DRIFT"
    );
    for r in v["versions"].as_array().into_iter().flatten() {
        let errors: Vec<String> = r["errors"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        let drift = match r["drift"]["verdicts"].as_object() {
            Some(b) => {
                let parts: Vec<String> = b.iter().map(|(k, n)| format!("{n} {k}")).collect();
                format!(
                    "{} (window {} rows)",
                    parts.join(", "),
                    s(&r["drift"]["rows"])
                )
            }
            None => "-".into(),
        };
        out += &format!(
            "{:<8} {:<12} {:>8} {:>8} {:>8} {:>9} {:>8}  {:<20} {}\n",
            s(&r["version"]),
            s(&r["state"]),
            s(&r["requests_per_sec"]),
            s(&r["p50_ms"]),
            s(&r["p99_ms"]),
            s(&r["queue_mean_ms"]),
            s(&r["pending"]),
            if errors.is_empty() {
                "none".to_string()
            } else {
                errors.join(" ")
            },
            drift
        );
        if let Some(why) = r["reason"].as_str().filter(|w| !w.is_empty()) {
            out += &format!("         {why}\n");
        }
        out += &live_line(&r["live"]);
    }
    if let Some(t) = v["traffic"].as_object() {
        let shares: Vec<String> = t
            .get("versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|r| {
                let share = r["share"]
                    .as_f64()
                    .map_or("-".into(), |x| format!("{:.0} %", x * 100.0));
                format!("{} {share}", s(&r["version"]))
            })
            .collect();
        out += &format!(
            "traffic (from {}): {}\n",
            s(&v["traffic"]["source"]),
            shares.join(", ")
        );
        for sh in t
            .get("shadow")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out += &shadow_line(sh);
        }
    }
    if let Some(r) = v["rollout"].as_object() {
        out += &format!(
            "rollout {} → {}: {} at {} %",
            s(&v["rollout"]["from"]),
            s(&v["rollout"]["to"]),
            s(&v["rollout"]["state"]),
            s(&v["rollout"]["percent"])
        );
        if let Some(w) = r.get("reason").and_then(Value::as_str) {
            out += &format!(" ({w})");
        }
        out += "\n";
        if let Some(c) = r.get("current").filter(|c| !c.is_null()) {
            let left = c["deadline_unix"].as_f64().map_or(0.0, |d| d - now_unix);
            out += &format!(
                "  step {} %: {} of {} requests to version {}; fails if short in {:.0} s; next: {}\n",
                s(&c["percent"]),
                s(&c["new_requests"]),
                s(&c["needed"]),
                s(&v["rollout"]["to"]),
                left.max(0.0),
                c["next_percent"]
                    .as_u64()
                    .map_or("promote".into(), |p| format!("{p} %"))
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_line_gives_the_figure_beside_the_card() {
        let l = json!({"version": "1", "labels": 114, "live": {"accuracy": 0.9736, "auc": 0.99},
                       "card": {"accuracy": 0.945}});
        assert_eq!(
            live_line(&l),
            "         live: accuracy 0.974 (card 0.945) on 114 labels\n"
        );
        let r = json!({"labels": 20, "live": {"mae": 1.5, "r2": 0.8}, "card": {}});
        assert_eq!(live_line(&r), "         live: r2 0.800 on 20 labels\n");
        assert_eq!(live_line(&Value::Null), "");
        assert_eq!(live_line(&json!({"labels": 0})), "");
    }
}
