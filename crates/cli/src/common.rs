//! Small answers several commands give the same way: where the dashboard
//! is, and which column `--target` means when it is not given.

use hone_server::Server;

/// Where the live dashboard is: the metrics port's root, or `/dashboard` on
/// the HTTP port when the metrics port is off.
pub fn dashboard_url(server: &Server, scheme: &str) -> String {
    match server.metrics_addr {
        Some(a) => format!("http://{a}/"),
        None => format!("{scheme}://{}/dashboard", server.http_addr),
    }
}

/// `--target` when given; otherwise the target the model's card names
/// (`hone train`/`ship` wrote it beside the model), else `label`: the same
/// default as `train` and `ship`.
pub fn target_or_card(target: Option<String>, model: &std::path::Path) -> String {
    target
        .or_else(|| {
            let text = std::fs::read_to_string(hone_pipeline::card_path(model)).ok()?;
            let card: serde_json::Value = serde_json::from_str(&text).ok()?;
            card["target"].as_str().map(str::to_string)
        })
        .unwrap_or_else(|| "label".into())
}
