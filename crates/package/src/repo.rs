//! What the image says about its models: each model, version, file sha256
//! and the model card's validation metric, read from the repository.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result, at};
use crate::layer::sha256_hex;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Version {
    pub model: String,
    pub version: String,
    /// The model file (model.onnx or the first .onnx file).
    pub file: String,
    pub sha256: String,
    /// The card's validation metrics (else its training metrics), compact JSON.
    pub metric: Option<String>,
}

/// Every numbered version directory of every model.
pub fn scan(repo: &Path) -> Result<Vec<Version>> {
    let read =
        |p: &Path| std::fs::read_dir(p).map_err(at(format_args!("cannot read {}", p.display())));
    let mut out = Vec::new();
    let mut models: Vec<_> = read(repo)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .collect();
    models.sort_by_key(|e| e.file_name());
    for m in models {
        let model = m.file_name().to_string_lossy().into_owned();
        let mut versions: Vec<(u64, std::path::PathBuf)> = read(&m.path())?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
            .collect();
        versions.sort();
        for (v, dir) in versions {
            let mut files: Vec<String> = read(&dir)?
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(String::from))
                .filter(|n| n.ends_with(".onnx"))
                .collect();
            files.sort();
            let Some(file) = files
                .iter()
                .find(|f| *f == "model.onnx")
                .or(files.first())
                .cloned()
            else {
                continue;
            };
            let path = dir.join(&file);
            let bytes =
                std::fs::read(&path).map_err(at(format_args!("cannot read {}", path.display())))?;
            out.push(Version {
                model: model.clone(),
                version: v.to_string(),
                sha256: sha256_hex(&bytes),
                metric: card_metric(&path.with_extension("card.json")),
                file,
            });
        }
    }
    if out.is_empty() {
        return Err(Error::Invalid(format!(
            "{} holds no model version (MODEL/1/model.onnx)",
            repo.display()
        )));
    }
    Ok(out)
}

fn card_metric(card: &Path) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(card).ok()?).ok()?;
    let m = &v["metrics"];
    let pick = if m["validation"].is_object() {
        &m["validation"]
    } else {
        &m["train"]
    };
    // Figures only: the confusion matrix and curves stay in the card.
    let figures: BTreeMap<&str, &serde_json::Value> = pick
        .as_object()?
        .iter()
        .filter(|(_, v)| v.is_number())
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    serde_json::to_string(&figures).ok()
}

/// Image labels (and manifest annotations) naming the models.
pub fn labels(versions: &[Version]) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    let mut by_model: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for v in versions {
        by_model.entry(&v.model).or_default().push(&v.version);
        let key = format!("ai.hone.model.{}.{}", v.model, v.version);
        l.insert(format!("{key}.file"), v.file.clone());
        l.insert(format!("{key}.sha256"), v.sha256.clone());
        if let Some(m) = &v.metric {
            l.insert(format!("{key}.validation"), m.clone());
        }
    }
    l.insert(
        "ai.hone.models".into(),
        by_model.keys().copied().collect::<Vec<_>>().join(","),
    );
    for (m, vs) in by_model {
        l.insert(format!("ai.hone.model.{m}.versions"), vs.join(","));
    }
    l
}
