//! The metrics port: Prometheus text at `/metrics`, the dashboard at `/`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::routing::get;

use crate::state::ServerState;

/// The metrics port's router: `/metrics` and the dashboard.
pub fn metrics_router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/", get(crate::dashboard::page))
        .route("/dashboard.json", get(crate::dashboard::data))
        .route(
            "/metrics",
            get(|State(s): State<Arc<ServerState>>| async move {
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], {
                    let mut text = s.repo.render_metrics();
                    s.observer.render_metrics(&mut text);
                    s.shadows.render_metrics(&mut text);
                    s.feedback.render_metrics(&mut text);
                    s.control.rollouts.render_metrics(&mut text);
                    text
                })
            }),
        )
        .with_state(state)
}
