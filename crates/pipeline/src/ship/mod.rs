//! `hone ship`: CSV → trained model → validated on held-out rows → packaged
//! as the next version in a model repository → served → smoke-tested over
//! the real protocol, with every stage timed.
//!
//! Nothing touches the repository until the package stage, which builds the
//! version in a hidden directory beside the models and renames it into
//! place, so a failed or interrupted ship leaves the repository as it was.

mod live;
mod optimize_stage;
mod package;
mod report;
mod stages;

use std::sync::atomic::Ordering;
use std::time::Instant;

pub use package::config_pbtxt;
pub use report::{ImageStage, ShipOptions, ShipReport, Shipped, Stage, Status, render};

use report::Run;

/// Runs the whole path. The report is complete whether or not it succeeded.
pub async fn ship(opts: ShipOptions, keep_serving: bool) -> Shipped {
    let mut run = Run {
        report: ShipReport {
            name: opts.name.clone(),
            ..Default::default()
        },
        start: Instant::now(),
        progress: opts.progress,
        cancel: opts.cancel.clone(),
    };
    let result = stages::run_stages(&opts, &mut run, keep_serving).await;
    run.report.total_seconds = run.start.elapsed().as_secs_f64();
    match result {
        Ok(server) => {
            run.report.ok = true;
            Shipped {
                report: run.report,
                server,
            }
        }
        Err(e) => {
            run.report.error = Some(e.0);
            Shipped {
                report: run.report,
                server: None,
            }
        }
    }
}

/// What happens once the new version is in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Live {
    /// Start a server, smoke-test, stop.
    Check,
    /// Start a server, smoke-test, keep serving.
    Serve,
    /// Have the server at this URL (or `host:port`) load it, smoke-test there.
    Into(String),
}

impl Live {
    /// The base URL of the server to hot-load into; `host:port` is taken to
    /// mean plain HTTP, as curl does.
    pub fn hot_load_url(&self) -> Option<String> {
        match self {
            Live::Into(url) if url.contains("://") => Some(url.clone()),
            Live::Into(url) => Some(format!("http://{url}")),
            _ => None,
        }
    }
}

/// [`ship`] with Ctrl-C watched: before the model is live, Ctrl-C stops the
/// ship between stages and leaves the repository as it was.
pub async fn ship_interruptible(opts: ShipOptions, live: &Live) -> Shipped {
    let flag = opts.cancel.clone();
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::Relaxed);
        }
    });
    let shipped = ship(opts, *live == Live::Serve).await;
    watcher.abort();
    shipped
}
