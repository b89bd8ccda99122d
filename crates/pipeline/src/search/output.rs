//! Writing what a search chose: the model file (and its card), the report
//! as JSON and HTML beside it, and optionally a new version in a model
//! repository.

use std::sync::atomic::AtomicBool;

use super::options::OptimizeOptions;
use super::report::{Candidate, OptimizeReport, report_paths};
use crate::Result;
use crate::publish::{publish_files, write_atomic};

pub(crate) fn write_outputs(
    opts: &OptimizeOptions,
    report: &mut OptimizeReport,
    chosen: Option<&Candidate>,
    card: Option<&hone_train::ModelCard>,
) -> Result<()> {
    // In memory: the caller takes the chosen bytes from the report.
    if opts.in_memory.is_some() {
        return Ok(());
    }
    let json = serde_json::to_vec_pretty(&report)?;
    let html = super::html::render(report);
    let (json_path, html_path) = report_paths(&opts.output);
    let mut written = Vec::new();
    if let Some(c) = chosen {
        // With external data: the model and `NAME.data` beside it.
        let external = (opts.external_data || c.bytes.len() >= hone_onnx::external::PROTOBUF_LIMIT)
            .then(|| -> Result<(Vec<u8>, String, Vec<u8>)> {
                let mut m = hone_onnx::decode(&c.bytes)?;
                let name = |p: &std::path::Path| {
                    format!(
                        "{}.data",
                        p.file_name()
                            .map_or("model.onnx".into(), |n| n.to_string_lossy())
                    )
                };
                let data = hone_onnx::external::externalize(&mut m, &name(&opts.output), 1024);
                Ok((hone_onnx::encode(&m), name(&opts.output), data))
            })
            .transpose()?;
        match &external {
            Some((model, data_name, data)) => {
                let data_path = opts.output.with_file_name(data_name);
                write_atomic(&data_path, data)?;
                write_atomic(&opts.output, model)?;
                written.push(data_path.display().to_string());
            }
            None => write_atomic(&opts.output, &c.bytes)?,
        }
        written.push(opts.output.display().to_string());
        if let Some(card) = card {
            // The chosen model answers the same questions; its card travels with it.
            write_atomic(
                &crate::card_path(&opts.output),
                &serde_json::to_vec_pretty(card)?,
            )?;
        }
        if let Some(repo) = &opts.repository {
            let name = opts.name.clone().unwrap_or_else(|| {
                opts.model
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("model")
                    .to_string()
            });
            let card_bytes = card.map(serde_json::to_vec_pretty).transpose()?;
            // In a repository the data file is named for model.onnx.
            let repo_external = external
                .as_ref()
                .map(|_| -> Result<(Vec<u8>, Vec<u8>)> {
                    let mut m = hone_onnx::decode(&c.bytes)?;
                    let data = hone_onnx::external::externalize(&mut m, "model.onnx.data", 1024);
                    Ok((hone_onnx::encode(&m), data))
                })
                .transpose()?;
            let mut files: Vec<(&str, &[u8])> = vec![
                (
                    "model.onnx",
                    repo_external.as_ref().map_or(&c.bytes[..], |(m, _)| &m[..]),
                ),
                ("report.json", &json),
                ("report.html", html.as_bytes()),
            ];
            if let Some((_, data)) = &repo_external {
                files.push(("model.onnx.data", data));
            }
            if let Some(cb) = &card_bytes {
                files.push(("model.card.json", cb));
            }
            let (_, dir) = publish_files(repo, &name, &files, None, &AtomicBool::new(false))?;
            written.push(dir.display().to_string());
        }
    }
    write_atomic(&json_path, &json)?;
    write_atomic(&html_path, html.as_bytes())?;
    written.push(json_path.display().to_string());
    written.push(html_path.display().to_string());
    // After the chosen model and the reports, so a bad DIR costs only these.
    if let Some(dir) = &opts.keep_candidates {
        let keep = |e: std::io::Error| {
            crate::PipelineError::Message(format!("--keep-candidates {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(keep)?;
        for c in report.candidates.iter().filter(|c| !c.bytes.is_empty()) {
            let path = dir.join(format!("{}.onnx", c.name));
            std::fs::write(&path, &c.bytes).map_err(keep)?;
            written.push(path.display().to_string());
        }
    }
    report.written = written;
    // The report on disk lists where things went too.
    write_atomic(&json_path, &serde_json::to_vec_pretty(&report)?)?;
    Ok(())
}
