//! `hone ship`: CSV → trained model → validated on held-out rows → packaged
//! as the next version in a model repository → served → smoke-tested over
//! the real protocol, with every stage timed.
//!
//! Nothing touches the repository until the package stage, which builds the
//! version in a hidden directory beside the models and renames it into
//! place, so a failed or interrupted ship leaves the repository as it was.

mod given;
mod live;
mod optimize_stage;
mod package;
mod release;
mod report;
mod smoke;
mod stages;

use std::sync::atomic::Ordering;
use std::time::Instant;

pub use package::config_pbtxt;
pub use report::{ImageStage, Live, ShipOptions, ShipReport, Shipped, Stage, Status, render};

use report::Run;

/// Runs the whole path. The report is complete whether or not it succeeded.
pub async fn ship(opts: ShipOptions) -> Shipped {
    let mut run = Run {
        report: ShipReport {
            name: opts.name.clone(),
            ..Default::default()
        },
        start: Instant::now(),
        progress: opts.progress,
        cancel: opts.cancel.clone(),
    };
    let result = match package::validate_name(&opts.name) {
        Err(e) => Err(e),
        Ok(()) => match &opts.model {
            Some(given) => given::run_stages(&opts, given, &mut run).await,
            None => stages::run_stages(&opts, &mut run).await,
        },
    };
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
            run.report.error = Some(e.to_string());
            Shipped {
                report: run.report,
                server: None,
            }
        }
    }
}

/// [`ship`] with Ctrl-C watched: before the model is live, Ctrl-C stops the
/// ship between stages and leaves the repository as it was.
pub async fn ship_interruptible(opts: ShipOptions) -> Shipped {
    let flag = opts.cancel.clone();
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::Relaxed);
        }
    });
    let shipped = ship(opts).await;
    watcher.abort();
    shipped
}
