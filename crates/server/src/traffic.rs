//! Traffic between a model's versions: requests that name no version go
//! where the split in force sends them (see [`crate::split`]); a label names
//! a version; the run-time split set through the admin route overrides
//! the config's until cleared.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use hone_core::{Error, Result};

use crate::model::LoadedModel;
use crate::split::Split;

/// Run-time splits set through the admin route; they override the config
/// until cleared.
#[derive(Default)]
pub struct Traffic {
    overrides: RwLock<HashMap<String, Arc<Split>>>,
    /// Whether `overrides` holds any split.
    some: AtomicBool,
}

impl Traffic {
    pub fn set(&self, model: &str, split: Option<Split>) {
        if let Ok(mut m) = self.overrides.write() {
            match split {
                Some(s) => m.insert(model.to_string(), Arc::new(s)),
                None => m.remove(model),
            };
            self.some.store(!m.is_empty(), Relaxed);
        }
    }

    /// Shared, not copied: the request path asks for it.
    pub fn get(&self, model: &str) -> Option<Arc<Split>> {
        self.overrides.read().ok()?.get(model).cloned()
    }

    /// The split in force: the run-time one, else the config's (of the
    /// newest ready version, as config is per model).
    pub fn effective(
        &self,
        model: &str,
        ready: &BTreeMap<i64, Arc<LoadedModel>>,
    ) -> (Option<Arc<Split>>, &'static str) {
        if let Some(s) = self.get(model) {
            return (Some(s), "api");
        }
        let cfg = ready.values().next_back().and_then(|m| m.split.clone());
        (cfg, "config")
    }

    /// True when any split is set at run time (the fast path checks this).
    pub fn any(&self) -> bool {
        // A plain load, not the lock: every request asks, on every core.
        self.some.load(Relaxed)
    }
}

/// Whether this request, served by `m`, is also sent to a shadow version.
pub fn shadow_for(traffic: &Traffic, m: &LoadedModel) -> Option<crate::split::ShadowTarget> {
    if m.split.is_none() && !traffic.any() {
        return None;
    }
    let split = traffic.get(&m.name).or_else(|| m.split.clone());
    crate::shadow::pick(split.as_deref(), m)
}

/// The version a request goes to: the one it names, the one its label
/// names, or the split's pick among ready versions.
pub fn resolve(
    registry: &crate::repository::Registry,
    traffic: &Traffic,
    name: &str,
    version: Option<&str>,
    label: Option<&str>,
    header: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Result<Arc<LoadedModel>> {
    if let Some(v) = version.filter(|v| !v.is_empty()) {
        return registry.get(name, Some(v));
    }
    // The common case, no split anywhere: one lookup, no allocation.
    if label.is_none() && !traffic.any() {
        let m = registry.get(name, None)?;
        if m.split.is_none() {
            return Ok(m);
        }
    }
    let ready = registry.ready(name);
    let (split, _) = traffic.effective(name, &ready);
    let Some(split) = split else {
        if let Some(l) = label {
            return Err(Error::not_found(format!(
                "model '{name}' has no label '{l}'"
            )));
        }
        return registry.get(name, None);
    };
    if let Some(l) = label {
        let v = split
            .labels
            .get(l)
            .ok_or_else(|| Error::not_found(format!("model '{name}' has no label '{l}'")))?;
        return registry.get(name, Some(&v.to_string()));
    }
    let versions: Vec<i64> = ready.keys().copied().collect();
    let key = split.sticky_header.as_deref().and_then(header);
    match split.pick(&versions, key.as_deref()) {
        Some(v) => ready
            .get(&v)
            .cloned()
            .map_or_else(|| registry.get(name, None), Ok),
        None => registry.get(name, None),
    }
}
