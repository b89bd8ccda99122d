//! Reading `config.pbtxt`: one small parser per top-level section, each
//! turning its part of the text-format message into [`ModelConfig`] fields
//! and collecting warnings for what hone does not act on.

use hone_core::{DataType, Error, Result};

use super::ensemble::EnsembleConfig;
use super::{DynamicBatching, IoConfig, ModelConfig, VersionPolicy};
use crate::pbtxt::{self, Message, Value};

/// Warnings about fields hone reads past.
type Warnings = Vec<String>;

impl ModelConfig {
    /// Parses `config.pbtxt` text. Unknown fields are returned as warnings.
    pub fn parse(text: &str) -> Result<(Self, Vec<String>)> {
        let root = pbtxt::parse(text).map_err(|e| Error::invalid(format!("config.pbtxt {e}")))?;
        let mut c = ModelConfig::default();
        let mut w = Vec::new();
        let mut instances = 0u32;
        for (k, v) in &root.fields {
            match k.as_str() {
                "name" => c.name = scalar(v, k)?.to_string(),
                "platform" => c.platform = served(v, k, &["onnxruntime_onnx", "ensemble"])?,
                "backend" => c.backend = served(v, k, &BACKENDS)?,
                "max_batch_size" => c.max_batch_size = Some(number(v, k)?),
                "input" => c.inputs.push(io(message(v, k)?, "input", &mut w)?.0),
                "output" => {
                    let (o, labels) = io(message(v, k)?, "output", &mut w)?;
                    if let Some(file) = labels {
                        c.label_files.insert(o.name.clone(), file);
                    }
                    c.outputs.push(o);
                }
                "default_model_filename" => c.default_model_filename = file_name(v, k)?,
                "dynamic_batching" => {
                    c.dynamic_batching = Some(dynamic_batching(message(v, k)?, &mut w)?)
                }
                // Several groups add up; hone runs every instance on the CPU.
                "instance_group" => {
                    instances = instances.saturating_add(instance_group(message(v, k)?, &mut w)?)
                }
                "version_policy" => c.version_policy = version_policy(message(v, k)?)?,
                "parameters" => {
                    let (key, value) = parameter(message(v, k)?, &mut w)?;
                    c.parameters.insert(key, value);
                }
                "optimization" => {
                    if let Some(level) = optimization(message(v, k)?, &mut w)? {
                        c.optimization_level = Some(level);
                    }
                }
                "ensemble_scheduling" => c.ensemble = Some(EnsembleConfig::parse(message(v, k)?)?),
                "sequence_batching" => {
                    return Err(Error::invalid(format!("{k} is not supported by hone")));
                }
                _ => w.push(format!("unknown field '{k}' ignored")),
            }
        }
        if instances > 0 {
            c.instance_count = instances;
        }
        match (&c.ensemble, c.platform == "ensemble") {
            (Some(e), true) => {
                e.check(&c.name, &names(&c.inputs), &names(&c.outputs))?;
                // An ensemble runs no backend of its own (Triton leaves it empty).
                c.backend.clear();
            }
            (None, true) => {
                return Err(Error::invalid(
                    "platform \"ensemble\" needs an ensemble_scheduling section",
                ));
            }
            (Some(_), false) => {
                return Err(Error::invalid(
                    "ensemble_scheduling needs platform: \"ensemble\"",
                ));
            }
            (None, false) if c.backend != "onnxruntime" => c.platform.clear(),
            (None, false) => {}
        }
        Ok((c, w))
    }
}

/// A file name inside the version directory: no separators, no `..`, so a
/// config cannot point the server at a file outside the repository.
fn file_name(v: &Value, path: &str) -> Result<String> {
    let s = scalar(v, path)?;
    let ok = !s.is_empty()
        && s != "."
        && s != ".."
        && !s.contains(['/', '\\', '\0'])
        && !s.starts_with('~');
    if ok {
        Ok(s.to_string())
    } else {
        Err(Error::invalid(format!(
            "{path} '{s}' must be a plain file name inside the version directory"
        )))
    }
}

fn names(v: &[IoConfig]) -> Vec<&str> {
    v.iter().map(|t| t.name.as_str()).collect()
}

/// ONNX Runtime, then hone's built-in processing steps.
const BACKENDS: [&str; 4] = [
    "onnxruntime",
    "hone_tokenizer",
    "hone_image",
    "hone_postprocess",
];

/// `platform` / `backend`: only what hone serves is accepted.
fn served(v: &Value, what: &str, only: &[&str]) -> Result<String> {
    let s = scalar(v, what)?;
    if !only.contains(&s) {
        return Err(Error::invalid(format!(
            "{what} '{s}' is not served by hone (it serves {})",
            only.join(", ")
        )));
    }
    Ok(s.to_string())
}

/// One `input`/`output` entry, and an output's `label_filename`.
fn io(m: &Message, path: &str, warnings: &mut Warnings) -> Result<(IoConfig, Option<String>)> {
    let mut name = None;
    let mut labels = None;
    let mut dtype = None;
    let mut dims = Vec::new();
    for (k, v) in &m.fields {
        let p = format!("{path}.{k}");
        match k.as_str() {
            "name" => name = Some(scalar(v, &p)?.to_string()),
            "data_type" => {
                let s = scalar(v, &p)?;
                dtype = Some(DataType::from_triton(s).ok_or_else(|| {
                    Error::invalid(format!("{p}: unknown or unsupported data type '{s}'"))
                })?)
            }
            "dims" => dims.push(number::<i64>(v, &p)?),
            "label_filename" if path == "output" => labels = Some(file_name(v, &p)?),
            "format" | "reshape" | "label_filename" | "optional" | "is_shape_tensor"
            | "allow_ragged_batch" => {
                warnings.push(format!("{p} is not supported by hone and is ignored"))
            }
            _ => warnings.push(format!("unknown field {p} ignored")),
        }
    }
    let name = name.ok_or_else(|| Error::invalid(format!("{path}: missing 'name'")))?;
    let dtype =
        dtype.ok_or_else(|| Error::invalid(format!("{path} '{name}': missing 'data_type'")))?;
    Ok((IoConfig { name, dtype, dims }, labels))
}

fn dynamic_batching(m: &Message, w: &mut Warnings) -> Result<DynamicBatching> {
    let mut d = DynamicBatching::default();
    for (k, v) in &m.fields {
        let p = format!("dynamic_batching.{k}");
        match k.as_str() {
            "preferred_batch_size" => d.preferred_batch_size.push(number(v, &p)?),
            "max_queue_delay_microseconds" => d.max_queue_delay_us = number(v, &p)?,
            "default_queue_policy" => {
                for (k3, v3) in &message(v, &p)?.fields {
                    let p3 = format!("{p}.{k3}");
                    match k3.as_str() {
                        "max_queue_size" => d.max_queue_size = number(v3, &p3)?,
                        "default_timeout_microseconds" => d.default_timeout_us = number(v3, &p3)?,
                        "allow_timeout_override" => d.allow_timeout_override = boolean(v3, &p3)?,
                        "timeout_action" => match scalar(v3, &p3)? {
                            "REJECT" => d.delay_on_timeout = false,
                            "DELAY" => {
                                // Triton runs late requests after the others;
                                // hone runs them in order, without a limit.
                                w.push(format!("{p3} DELAY: late requests run in arrival order"));
                                d.delay_on_timeout = true;
                            }
                            other => {
                                return Err(Error::invalid(format!(
                                    "{p3}: '{other}' is not REJECT or DELAY"
                                )));
                            }
                        },
                        _ => w.push(format!("{p3} is not supported by hone and is ignored")),
                    }
                }
            }
            _ => w.push(format!("{p} is not supported by hone and is ignored")),
        }
    }
    Ok(d)
}

/// One `instance_group` entry; returns its count.
fn instance_group(m: &Message, w: &mut Warnings) -> Result<u32> {
    let mut count = 0;
    for (k, v) in &m.fields {
        let p = format!("instance_group.{k}");
        match k.as_str() {
            "count" => count = number::<u32>(v, &p)?,
            "kind" => {
                let kind = scalar(v, &p)?;
                if kind != "KIND_CPU" && kind != "KIND_AUTO" {
                    w.push(format!("{p} {kind}: hone runs on the CPU"));
                }
            }
            _ => w.push(format!("{p} is not supported by hone and is ignored")),
        }
    }
    Ok(count.max(1))
}

fn version_policy(m: &Message) -> Result<VersionPolicy> {
    let Some((kind, body)) = m.fields.first() else {
        return Err(Error::invalid("version_policy: empty"));
    };
    let body = message(body, kind)?;
    Ok(match kind.as_str() {
        "latest" => VersionPolicy::Latest(match body.fields.first() {
            Some((n, v)) if n == "num_versions" => number(v, "version_policy.latest.num_versions")?,
            _ => 1,
        }),
        "all" => VersionPolicy::All,
        "specific" => VersionPolicy::Specific(
            body.fields
                .iter()
                .map(|(_, v)| number(v, "version_policy.specific.versions"))
                .collect::<Result<_>>()?,
        ),
        other => {
            return Err(Error::invalid(format!(
                "version_policy: unknown policy '{other}'"
            )));
        }
    })
}

/// One `parameters { key, value { string_value } }` entry.
fn parameter(m: &Message, w: &mut Warnings) -> Result<(String, String)> {
    let mut key = None;
    let mut value = None;
    for (k, v) in &m.fields {
        match k.as_str() {
            "key" => key = Some(scalar(v, "parameters.key")?.to_string()),
            "value" => {
                for (k3, v3) in &message(v, "parameters.value")?.fields {
                    if k3 == "string_value" {
                        value = Some(scalar(v3, "parameters.value.string_value")?.to_string());
                    }
                }
            }
            _ => w.push(format!("unknown field parameters.{k} ignored")),
        }
    }
    match (key, value) {
        (Some(k), Some(v)) => Ok((k, v)),
        _ => Err(Error::invalid(
            "parameters: each entry needs a key and value { string_value }",
        )),
    }
}

/// `optimization { graph { level } }`; returns the level when given.
fn optimization(m: &Message, w: &mut Warnings) -> Result<Option<i64>> {
    let mut level = None;
    for (k, v) in &m.fields {
        if k == "graph" {
            for (k3, v3) in &message(v, "optimization.graph")?.fields {
                if k3 == "level" {
                    level = Some(number(v3, "optimization.graph.level")?);
                }
            }
        } else {
            w.push(format!(
                "optimization.{k} is not supported by hone and is ignored"
            ));
        }
    }
    Ok(level)
}

fn scalar<'a>(v: &'a Value, path: &str) -> Result<&'a str> {
    match v {
        Value::Scalar(s) => Ok(s),
        Value::Message(_) => Err(Error::invalid(format!(
            "{path}: expected a value, found a message"
        ))),
    }
}

fn message<'a>(v: &'a Value, path: &str) -> Result<&'a Message> {
    match v {
        Value::Message(m) => Ok(m),
        Value::Scalar(s) => Err(Error::invalid(format!(
            "{path}: expected a message, found '{s}'"
        ))),
    }
}

fn boolean(v: &Value, path: &str) -> Result<bool> {
    match scalar(v, path)? {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        s => Err(Error::invalid(format!(
            "{path}: '{s}' is not true or false"
        ))),
    }
}

fn number<T: std::str::FromStr>(v: &Value, path: &str) -> Result<T> {
    let s = scalar(v, path)?;
    s.parse()
        .map_err(|_| Error::invalid(format!("{path}: '{s}' is not a valid number here")))
}
