//! Triton's `ensemble_scheduling`: the steps of an ensemble (a model, the
//! version it names, and how the ensemble's tensors map to the model's
//! inputs and outputs), read from `config.pbtxt` and checked to form a DAG
//! that produces every output of the ensemble.

use std::collections::{BTreeMap, BTreeSet};

use hone_core::{Error, Result};

use crate::pbtxt::{Message, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct EnsembleStep {
    pub model_name: String,
    /// -1: the model's latest ready version.
    pub model_version: i64,
    /// (the model's input, the ensemble tensor that feeds it).
    pub input_map: Vec<(String, String)>,
    /// (the model's output, the ensemble tensor it becomes).
    pub output_map: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct EnsembleConfig {
    pub steps: Vec<EnsembleStep>,
}

impl EnsembleConfig {
    pub(super) fn parse(m: &Message) -> Result<Self> {
        let mut steps = Vec::new();
        for (k, v) in &m.fields {
            if k != "step" {
                return Err(Error::invalid(format!(
                    "ensemble_scheduling.{k} is not supported by hone"
                )));
            }
            let path = format!("ensemble_scheduling.step[{}]", steps.len());
            steps.push(step(v, &path)?);
        }
        if steps.is_empty() {
            return Err(Error::invalid("ensemble_scheduling has no step"));
        }
        Ok(Self { steps })
    }

    /// Each step's inputs come from the ensemble's inputs or an earlier
    /// step's outputs in some order (no cycle), no tensor is produced twice,
    /// and every ensemble output is produced. `name` is the ensemble's own.
    pub(super) fn check(&self, name: &str, inputs: &[&str], outputs: &[&str]) -> Result<()> {
        if inputs.is_empty() || outputs.is_empty() {
            return Err(Error::invalid(
                "an ensemble's config must declare its input and output tensors",
            ));
        }
        let mut made: BTreeSet<&str> = inputs.iter().copied().collect();
        let mut producer: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, s) in self.steps.iter().enumerate() {
            if !name.is_empty() && s.model_name == name {
                return Err(Error::invalid(format!(
                    "ensemble_scheduling.step[{i}] runs the ensemble itself"
                )));
            }
            for (_, t) in &s.output_map {
                if made.contains(t.as_str()) || producer.insert(t, i).is_some() {
                    return Err(Error::invalid(format!(
                        "ensemble_scheduling.step[{i}] ({}): tensor '{t}' is produced twice",
                        s.model_name
                    )));
                }
            }
        }
        let mut done = vec![false; self.steps.len()];
        loop {
            let mut progressed = false;
            for (i, s) in self.steps.iter().enumerate() {
                let ready = s.input_map.iter().all(|(_, t)| made.contains(t.as_str()));
                if ready && !done.get(i).copied().unwrap_or(true) {
                    if let Some(d) = done.get_mut(i) {
                        *d = true;
                    }
                    made.extend(s.output_map.iter().map(|(_, t)| t.as_str()));
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        if let Some(i) = done.iter().position(|d| !d) {
            let s = self.steps.get(i).ok_or_else(|| Error::internal("step"))?;
            let missing = s
                .input_map
                .iter()
                .map(|(_, t)| t.as_str())
                .find(|t| !made.contains(t))
                .unwrap_or_default();
            return Err(Error::invalid(format!(
                "ensemble_scheduling.step[{i}] ({}): its input tensor '{missing}' is neither an ensemble input nor made by a step that can run first",
                s.model_name
            )));
        }
        if let Some(o) = outputs.iter().find(|o| !made.contains(*o)) {
            return Err(Error::invalid(format!(
                "ensemble output '{o}' is not made by any step (map a step's output to it)"
            )));
        }
        Ok(())
    }
}

fn step(v: &Value, path: &str) -> Result<EnsembleStep> {
    let Value::Message(m) = v else {
        return Err(Error::invalid(format!("{path}: expected a message")));
    };
    let mut s = EnsembleStep {
        model_name: String::new(),
        model_version: -1,
        input_map: Vec::new(),
        output_map: Vec::new(),
    };
    for (k, v) in &m.fields {
        let p = format!("{path}.{k}");
        match (k.as_str(), v) {
            ("model_name", Value::Scalar(n)) => s.model_name = n.clone(),
            ("model_version", Value::Scalar(n)) => {
                s.model_version = n
                    .parse()
                    .map_err(|_| Error::invalid(format!("{p}: '{n}' is not a version number")))?
            }
            ("input_map", Value::Message(e)) => s.input_map.push(entry(e, &p)?),
            ("output_map", Value::Message(e)) => s.output_map.push(entry(e, &p)?),
            _ => return Err(Error::invalid(format!("{p} is not supported by hone"))),
        }
    }
    if s.model_name.is_empty() {
        return Err(Error::invalid(format!("{path}: missing model_name")));
    }
    for (i, (key, _)) in s.output_map.iter().enumerate() {
        if s.output_map.iter().take(i).any(|(k, _)| k == key) {
            return Err(Error::invalid(format!(
                "{path} ({}): output_map names the model's output '{key}' twice",
                s.model_name
            )));
        }
    }
    if s.output_map.is_empty() {
        return Err(Error::invalid(format!(
            "{path} ({}): maps no output, so it would do nothing",
            s.model_name
        )));
    }
    Ok(s)
}

/// A map entry `{ key: "model tensor" value: "ensemble tensor" }`.
fn entry(m: &Message, path: &str) -> Result<(String, String)> {
    let (mut key, mut value) = (None, None);
    for (k, v) in &m.fields {
        match (k.as_str(), v) {
            ("key", Value::Scalar(s)) => key = Some(s.clone()),
            ("value", Value::Scalar(s)) => value = Some(s.clone()),
            _ => return Err(Error::invalid(format!("{path}.{k} is not key or value"))),
        }
    }
    match (key, value) {
        (Some(k), Some(v)) => Ok((k, v)),
        _ => Err(Error::invalid(format!(
            "{path}: each entry needs a key and a value"
        ))),
    }
}
