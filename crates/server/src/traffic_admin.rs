//! The traffic admin actions both front ends offer (REST
//! `/v2/models/{m}/traffic`, gRPC `hone.admin.v1.Admin`): the split in force
//! as JSON, setting one (versions must be ready), clearing it.

use hone_core::{Error, Result};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value as Json, json};

use crate::split::Split;
use crate::state::Control;

/// The split in force for a model, as REST (JSON) and gRPC (the typed
/// message) both show it.
#[derive(Debug, Clone, Serialize)]
pub struct TrafficView {
    pub model: String,
    /// Where the split comes from: "api" (set at run time), "config" or
    /// "default" (the newest ready version takes everything).
    pub source: &'static str,
    #[serde(serialize_with = "split_json")]
    pub split: Option<Arc<Split>>,
    pub versions: Vec<VersionShare>,
    /// Each shadow version and what its comparisons found.
    pub shadow: Json,
}

/// One ready version's place in the split.
#[derive(Debug, Clone, Serialize)]
pub struct VersionShare {
    #[serde(serialize_with = "as_text")]
    pub version: i64,
    pub weight: Option<u32>,
    pub share: f64,
    /// Requests it has answered.
    pub success: u64,
}

fn split_json<S: serde::Serializer>(split: &Option<Arc<Split>>, s: S) -> Result2<S::Ok, S::Error> {
    split.as_deref().map(Split::to_json).serialize(s)
}

// Versions are strings on the wire, as in KServe V2.
fn as_text<S: serde::Serializer>(v: &i64, s: S) -> Result2<S::Ok, S::Error> {
    s.collect_str(v)
}

type Result2<T, E> = std::result::Result<T, E>;

/// The split in force for a model, with each ready version's weight, share
/// and the requests it has answered.
pub fn view(s: &Control, name: &str) -> Result<TrafficView> {
    let ready = s.repo.models().ready(name);
    if ready.is_empty() {
        // Unknown or not ready: the registry's own error says which.
        s.repo.models().get(name, None)?;
    }
    let (split, source) = s.traffic.effective(name, &ready);
    let total: u64 = split.as_ref().map_or(0, |sp| {
        sp.weights
            .iter()
            .filter(|(v, _)| ready.contains_key(v))
            .map(|(_, w)| u64::from(*w))
            .sum()
    });
    let newest = ready.keys().next_back().copied();
    let versions = ready
        .iter()
        .map(|(v, m)| {
            let weight = split.as_ref().and_then(|sp| sp.weights.get(v)).copied();
            let share = match (total, weight) {
                (0, _) => f64::from(u8::from(Some(*v) == newest)),
                (t, w) => f64::from(w.unwrap_or(0)) / t as f64,
            };
            VersionShare {
                version: *v,
                weight,
                share,
                success: m.stats.success.load(std::sync::atomic::Ordering::Relaxed),
            }
        })
        .collect();
    Ok(TrafficView {
        model: name.to_string(),
        source: if split.is_some() { source } else { "default" },
        split,
        versions,
        shadow: shadow_json(s, name),
    })
}

/// Each shadow version of `name` and what its comparisons found.
pub fn shadow_json(s: &Control, name: &str) -> Json {
    let list: Vec<Json> = s
        .shadows
        .of(name)
        .into_iter()
        .map(|(v, d)| {
            let mut j = d.to_json();
            if let Some(o) = j.as_object_mut() {
                o.insert("version".into(), json!(v.to_string()));
            }
            j
        })
        .collect();
    Json::Array(list)
}

/// Sets the model's split at run time (until cleared or a restart).
/// Weights, labels and the shadow must name versions that are ready now.
pub fn set(s: &Control, name: &str, split: Split) -> Result<TrafficView> {
    let ready = s.repo.models().ready(name);
    if ready.is_empty() {
        s.repo.models().get(name, None)?;
    }
    let missing = split
        .weights
        .iter()
        .filter(|(_, w)| **w > 0)
        .map(|(v, _)| v)
        .chain(split.labels.values())
        .chain(split.shadow.as_ref().map(|s| &s.version))
        .find(|v| !ready.contains_key(v));
    if let Some(v) = missing {
        return Err(Error::invalid(format!(
            "model '{name}' has no ready version {v}; ready: {:?}",
            ready.keys().collect::<Vec<_>>()
        )));
    }
    tracing::info!(model = name, split = %split.to_json(), "traffic split set");
    s.traffic.set(name, Some(split));
    view(s, name)
}

/// Back to the config's split (or the newest ready version).
pub fn clear(s: &Control, name: &str) -> Result<TrafficView> {
    s.traffic.set(name, None);
    view(s, name)
}
