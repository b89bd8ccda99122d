//! The stages every ship ends with, whatever made the model: package the
//! version into the repository, build the image when asked, serve and
//! smoke-test it, and take the version back out when a later stage fails.

use hone_server::Server;

use super::live::{go_live, roll_back};
use super::package::publish;
use super::report::{Run, ShipOptions};
use super::smoke::Smoke;
use crate::{PipelineError, Result};

/// Package (a canary's traffic pinned first), image, serve, smoke test.
pub(super) async fn publish_and_go_live(
    opts: &ShipOptions,
    run: &mut Run,
    onnx_bytes: &[u8],
    card_json: &[u8],
    config: &str,
    smoke: &Smoke,
) -> Result<Option<Server>> {
    let cancel = run.cancel.clone();
    let new_model = !opts.repository.join(&opts.name).exists();
    // A canary into a running server is checked and its traffic pinned to
    // the serving version before the new version exists on disk, so not
    // even a polling server can serve it above its share.
    let canary = match (&opts.live, opts.canary) {
        (super::report::Live::Into(o), Some(_)) if !new_model => {
            let next = crate::publish::next_version(&opts.repository.join(&opts.name));
            super::live::canary_before_publish(opts, o, next).await?
        }
        _ => None,
    };
    let (version, dir) = run.stage("package", || {
        let (v, dir) = publish(
            &opts.repository,
            &opts.name,
            onnx_bytes,
            card_json,
            config,
            &cancel,
        )?;
        let detail = format!(
            "{} ({} bytes of ONNX, card, config)",
            dir.display(),
            onnx_bytes.len()
        );
        Ok(((v, dir), detail))
    })?;
    run.report.version = Some(version);
    run.report.path = Some(dir.display().to_string());

    // From here the version is in the repository: a failure takes it out again.
    let live = match image_stage(opts, run, version) {
        Ok(()) => go_live(opts, run, version, &dir, smoke, canary).await,
        Err(e) => Err(e),
    };
    match live {
        Ok(server) => Ok(server),
        Err(e) => {
            let undone = roll_back(opts, version, &dir, new_model).await;
            Err(PipelineError::Message(format!("{e}; {undone}")))
        }
    }
}

/// The repository, new version included, as a container image. Only a
/// ship that asks for one (--image) has the row.
fn image_stage(opts: &ShipOptions, run: &mut Run, version: u64) -> Result<()> {
    let Some(img) = &opts.image else {
        return Ok(());
    };
    run.stage("image", || {
        let r = hone_package::package(&hone_package::Options {
            repository: opts.repository.clone(),
            output: img.output.clone(),
            // Model names may hold what image names may not (A-Z, +, ...).
            tag: format!(
                "hone-{}:{version}",
                opts.name
                    .chars()
                    .map(|c| match c.to_ascii_lowercase() {
                        c @ ('a'..='z' | '0'..='9' | '.' | '_' | '-') => c,
                        _ => '-',
                    })
                    .collect::<String>()
            ),
            base: None,
            no_models: false,
            hone: img.hone.clone(),
            onnxruntime: img.onnxruntime.clone(),
            created: None,
        })
        .map_err(|e| PipelineError::Message(format!("image: {e}")))?;
        let detail = format!(
            "{} ({}, {} layers, {:.1} MB, {})",
            r.image,
            r.reference,
            r.layers.len(),
            r.total_bytes as f64 / 1e6,
            r.manifest_digest
        );
        Ok(((), detail))
    })
}
