//! Triton model configuration: the subset users write, read from
//! `config.pbtxt`, completed from the ONNX file, and rendered back as JSON for
//! `/v2/models/{m}/config`.

use std::collections::BTreeMap;

use hone_core::{DataType, Error, ModelMetadata, Result, TensorSpec};
use hone_runtime::{GraphOptimization, SessionConfig};
use serde_json::{Value as Json, json};

use crate::pbtxt::{self, Message, Value};

/// Batch size used when a model has a dynamic first dimension and no config
/// says otherwise.
pub const DEFAULT_MAX_BATCH_SIZE: u32 = 64;
/// Queue bound when the config gives none; Triton's is unbounded, but an
/// unbounded queue turns overload into memory growth instead of a fast 503.
pub const DEFAULT_MAX_QUEUE_SIZE: u32 = 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct IoConfig {
    pub name: String,
    pub dtype: DataType,
    /// Without the batch dimension when `max_batch_size > 0` (Triton's rule).
    pub dims: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DynamicBatching {
    pub preferred_batch_size: Vec<u32>,
    pub max_queue_delay_us: u64,
    /// 0 means [`DEFAULT_MAX_QUEUE_SIZE`].
    pub max_queue_size: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum VersionPolicy {
    Latest(u32),
    All,
    Specific(Vec<i64>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub name: String,
    pub platform: String,
    pub backend: String,
    /// `None` when the file did not say; filled in by [`ModelConfig::complete`].
    pub max_batch_size: Option<u32>,
    pub inputs: Vec<IoConfig>,
    pub outputs: Vec<IoConfig>,
    pub dynamic_batching: Option<DynamicBatching>,
    /// 0 until resolved: the config did not say (see [`default_instances`]).
    pub instance_count: u32,
    pub instance_kind: String,
    pub version_policy: VersionPolicy,
    pub parameters: BTreeMap<String, String>,
    pub optimization_level: Option<i64>,
    pub default_model_filename: String,
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Instances when the config names none. Two sessions with half the cores
/// each where there are two cores to share and the model is mid-sized; one
/// otherwise. Independent sessions keep a server's throughput when other
/// threads (the network, the client) take CPU: one session's intra-op threads
/// wait for their slowest member at every operator, so one preempted thread
/// stalls the whole call (resnet18 here: 84 % of in-process throughput with
/// one session, 92 % with two). Below 1 MiB a call takes microseconds and the
/// batcher's coalescing does better with one engine thread (mlp100: about
/// 15 % more requests/s); from 1 GiB a second copy of the weights costs too
/// much memory.
pub fn default_instances(model_bytes: u64) -> u32 {
    if cores() >= 2 && (1 << 20..1 << 30).contains(&model_bytes) {
        2
    } else {
        1
    }
}

/// The session a model file of this size gets from `hone serve` when its
/// config sets nothing: the default instance count, and the cores shared out
/// between the instances. `hone optimize` times candidates with it, so the
/// speed it reports is the speed the server will deliver.
pub fn default_session_config(model_bytes: u64) -> SessionConfig {
    let c = ModelConfig {
        instance_count: default_instances(model_bytes),
        ..ModelConfig::default()
    };
    // No parameters are set, so nothing can fail to parse.
    c.session_config().unwrap_or_default()
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            platform: "onnxruntime_onnx".into(),
            backend: "onnxruntime".into(),
            max_batch_size: None,
            inputs: Vec::new(),
            outputs: Vec::new(),
            dynamic_batching: None,
            instance_count: 0,
            instance_kind: "KIND_CPU".into(),
            version_policy: VersionPolicy::Latest(1),
            parameters: BTreeMap::new(),
            optimization_level: None,
            default_model_filename: "model.onnx".into(),
        }
    }
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

fn number<T: std::str::FromStr>(v: &Value, path: &str) -> Result<T> {
    let s = scalar(v, path)?;
    s.parse()
        .map_err(|_| Error::invalid(format!("{path}: '{s}' is not a valid number here")))
}

fn io(m: &Message, path: &str, warnings: &mut Vec<String>) -> Result<IoConfig> {
    let mut name = None;
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
    Ok(IoConfig { name, dtype, dims })
}

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
                "platform" => {
                    c.platform = scalar(v, k)?.to_string();
                    if c.platform != "onnxruntime_onnx" {
                        return Err(Error::invalid(format!(
                            "platform '{}' is not served by hone (only onnxruntime_onnx)",
                            c.platform
                        )));
                    }
                }
                "backend" => {
                    c.backend = scalar(v, k)?.to_string();
                    if c.backend != "onnxruntime" {
                        return Err(Error::invalid(format!(
                            "backend '{}' is not served by hone (only onnxruntime)",
                            c.backend
                        )));
                    }
                }
                "max_batch_size" => c.max_batch_size = Some(number(v, k)?),
                "input" => c.inputs.push(io(message(v, k)?, "input", &mut w)?),
                "output" => c.outputs.push(io(message(v, k)?, "output", &mut w)?),
                "default_model_filename" => c.default_model_filename = scalar(v, k)?.to_string(),
                "dynamic_batching" => {
                    let mut d = DynamicBatching::default();
                    for (k2, v2) in &message(v, k)?.fields {
                        let p = format!("dynamic_batching.{k2}");
                        match k2.as_str() {
                            "preferred_batch_size" => d.preferred_batch_size.push(number(v2, &p)?),
                            "max_queue_delay_microseconds" => {
                                d.max_queue_delay_us = number(v2, &p)?
                            }
                            "default_queue_policy" => {
                                for (k3, v3) in &message(v2, &p)?.fields {
                                    let p3 = format!("{p}.{k3}");
                                    match k3.as_str() {
                                        "max_queue_size" => d.max_queue_size = number(v3, &p3)?,
                                        _ => w.push(format!(
                                            "{p3} is not supported by hone and is ignored"
                                        )),
                                    }
                                }
                            }
                            _ => w.push(format!("{p} is not supported by hone and is ignored")),
                        }
                    }
                    c.dynamic_batching = Some(d);
                }
                "instance_group" => {
                    // Several groups add up; hone runs every instance on the CPU.
                    let mut count = 0;
                    for (k2, v2) in &message(v, k)?.fields {
                        let p = format!("instance_group.{k2}");
                        match k2.as_str() {
                            "count" => count = number::<u32>(v2, &p)?,
                            "kind" => {
                                let kind = scalar(v2, &p)?;
                                if kind != "KIND_CPU" && kind != "KIND_AUTO" {
                                    w.push(format!("{p} {kind}: hone runs on the CPU"));
                                }
                            }
                            _ => w.push(format!("{p} is not supported by hone and is ignored")),
                        }
                    }
                    instances = instances.saturating_add(count.max(1));
                }
                "version_policy" => {
                    let m = message(v, k)?;
                    let Some((kind, body)) = m.fields.first() else {
                        return Err(Error::invalid("version_policy: empty"));
                    };
                    let body = message(body, kind)?;
                    c.version_policy = match kind.as_str() {
                        "latest" => VersionPolicy::Latest(match body.fields.first() {
                            Some((n, v)) if n == "num_versions" => {
                                number(v, "version_policy.latest.num_versions")?
                            }
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
                    };
                }
                "parameters" => {
                    let m = message(v, k)?;
                    let mut key = None;
                    let mut value = None;
                    for (k2, v2) in &m.fields {
                        match k2.as_str() {
                            "key" => key = Some(scalar(v2, "parameters.key")?.to_string()),
                            "value" => {
                                for (k3, v3) in &message(v2, "parameters.value")?.fields {
                                    if k3 == "string_value" {
                                        value = Some(
                                            scalar(v3, "parameters.value.string_value")?
                                                .to_string(),
                                        );
                                    }
                                }
                            }
                            _ => w.push(format!("unknown field parameters.{k2} ignored")),
                        }
                    }
                    match (key, value) {
                        (Some(k), Some(v)) => {
                            c.parameters.insert(k, v);
                        }
                        _ => {
                            return Err(Error::invalid(
                                "parameters: each entry needs a key and value { string_value }",
                            ));
                        }
                    }
                }
                "optimization" => {
                    for (k2, v2) in &message(v, k)?.fields {
                        if k2 == "graph" {
                            for (k3, v3) in &message(v2, "optimization.graph")?.fields {
                                if k3 == "level" {
                                    c.optimization_level =
                                        Some(number(v3, "optimization.graph.level")?);
                                }
                            }
                        } else {
                            w.push(format!(
                                "optimization.{k2} is not supported by hone and is ignored"
                            ));
                        }
                    }
                }
                "sequence_batching" | "ensemble_scheduling" => {
                    return Err(Error::invalid(format!("{k} is not supported by hone")));
                }
                _ => w.push(format!("unknown field '{k}' ignored")),
            }
        }
        if instances > 0 {
            c.instance_count = instances;
        }
        Ok((c, w))
    }

    /// Fills what the file left out from the engine's view of the model, and
    /// checks that what it did say matches the model.
    pub fn complete(&mut self, name: &str, meta: &ModelMetadata) -> Result<()> {
        if self.name.is_empty() {
            self.name = name.to_string();
        }
        let batchable = meta.batchable();
        let mbs =
            *self
                .max_batch_size
                .get_or_insert(if batchable { DEFAULT_MAX_BATCH_SIZE } else { 0 });
        if mbs > 0 && !batchable {
            return Err(Error::invalid(format!(
                "max_batch_size is {mbs} but not every input and output of the model has a dynamic first dimension"
            )));
        }
        if mbs > 0 && self.dynamic_batching.is_none() && self.inputs.is_empty() {
            // No config to speak of: batch what is already queued, adding no delay.
            self.dynamic_batching = Some(DynamicBatching::default());
        }
        let skip = usize::from(mbs > 0);
        for (kind, given, actual) in [
            ("input", &mut self.inputs, &meta.inputs),
            ("output", &mut self.outputs, &meta.outputs),
        ] {
            if given.is_empty() {
                *given = actual
                    .iter()
                    .map(|t| IoConfig {
                        name: t.name.clone(),
                        dtype: t.dtype,
                        dims: t.dims.iter().skip(skip).copied().collect(),
                    })
                    .collect();
                continue;
            }
            for g in given.iter() {
                let a = actual.iter().find(|a| a.name == g.name).ok_or_else(|| {
                    let names: Vec<&str> = actual.iter().map(|a| a.name.as_str()).collect();
                    Error::invalid(format!(
                        "config {kind} '{}' is not in the model (it has {names:?})",
                        g.name
                    ))
                })?;
                let model_dims = &a.dims[skip.min(a.dims.len())..];
                let fits = g.dtype == a.dtype
                    && g.dims.len() == model_dims.len()
                    && g.dims
                        .iter()
                        .zip(model_dims)
                        .all(|(&c, &m)| m < 0 || c == m || c == -1);
                if !fits {
                    return Err(Error::invalid(format!(
                        "config {kind} '{}' is {} {:?}, the model has {} {:?}{}",
                        g.name,
                        g.dtype.as_triton(),
                        g.dims,
                        a.dtype.as_triton(),
                        model_dims,
                        if skip == 1 {
                            " (after the batch dimension)"
                        } else {
                            ""
                        }
                    )));
                }
            }
            if kind == "input" && given.len() != actual.len() {
                return Err(Error::invalid(format!(
                    "config lists {} inputs, the model has {}",
                    given.len(),
                    actual.len()
                )));
            }
        }
        Ok(())
    }

    pub fn max_batch_size(&self) -> u32 {
        self.max_batch_size.unwrap_or(0)
    }

    /// The shape every request must fit, per model input in model order: the
    /// model's own dims, narrowed where the config names a size the model
    /// leaves dynamic. Call after [`ModelConfig::complete`].
    pub fn input_specs(&self, meta: &ModelMetadata) -> Vec<TensorSpec> {
        let skip = usize::from(self.max_batch_size() > 0);
        meta.inputs
            .iter()
            .map(|m| {
                let mut dims = m.dims.clone();
                if let Some(c) = self.inputs.iter().find(|c| c.name == m.name) {
                    for (d, &cd) in dims.iter_mut().skip(skip).zip(&c.dims) {
                        if *d < 0 {
                            *d = cd;
                        }
                    }
                }
                TensorSpec {
                    name: m.name.clone(),
                    dtype: m.dtype,
                    dims,
                }
            })
            .collect()
    }

    pub fn session_config(&self) -> Result<SessionConfig> {
        let get = |k: &str| -> Result<usize> {
            match self.parameters.get(k) {
                None => Ok(0),
                Some(v) => v.parse().map_err(|_| {
                    Error::invalid(format!(
                        "parameter {k}: '{v}' is not a non-negative integer"
                    ))
                }),
            }
        };
        let intra = match get("intra_op_thread_count")? {
            // Not given: the cores are shared out between the instances, so
            // N sessions never start N × cores threads.
            0 => (cores() / self.instance_count.max(1) as usize).max(1),
            n => n,
        };
        Ok(SessionConfig {
            intra_op_threads: intra,
            inter_op_threads: get("inter_op_thread_count")?,
            optimization: self
                .optimization_level
                .map_or(GraphOptimization::All, GraphOptimization::from_triton_level),
            allow_spinning: matches!(
                self.parameters.get("allow_spinning").map(String::as_str),
                Some("1" | "true")
            ),
        })
    }

    /// Triton's JSON form of the configuration.
    pub fn to_json(&self) -> Json {
        let io = |v: &[IoConfig]| -> Vec<Json> {
            v.iter()
                .map(|t| json!({"name": t.name, "data_type": t.dtype.as_triton(), "dims": t.dims}))
                .collect()
        };
        let mut o = json!({
            "name": self.name,
            "platform": self.platform,
            "backend": self.backend,
            "version_policy": match &self.version_policy {
                VersionPolicy::Latest(n) => json!({"latest": {"num_versions": n}}),
                VersionPolicy::All => json!({"all": {}}),
                VersionPolicy::Specific(v) => json!({"specific": {"versions": v}}),
            },
            "max_batch_size": self.max_batch_size(),
            "input": io(&self.inputs),
            "output": io(&self.outputs),
            "instance_group": [{"name": format!("{}_0", self.name), "kind": self.instance_kind, "count": self.instance_count}],
            "default_model_filename": self.default_model_filename,
            "parameters": self.parameters.iter().map(|(k, v)| (k.clone(), json!({"string_value": v}))).collect::<serde_json::Map<_, _>>(),
        });
        if let (Some(d), Json::Object(m)) = (&self.dynamic_batching, &mut o) {
            m.insert(
                "dynamic_batching".into(),
                json!({
                    "preferred_batch_size": d.preferred_batch_size,
                    "max_queue_delay_microseconds": d.max_queue_delay_us,
                    "default_queue_policy": {"max_queue_size": d.effective_queue_size()},
                }),
            );
        }
        if let (Some(level), Json::Object(m)) = (self.optimization_level, &mut o) {
            m.insert("optimization".into(), json!({"graph": {"level": level}}));
        }
        o
    }
}

impl DynamicBatching {
    pub fn effective_queue_size(&self) -> u32 {
        if self.max_queue_size == 0 {
            DEFAULT_MAX_QUEUE_SIZE
        } else {
            self.max_queue_size
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ModelMetadata {
        ModelMetadata {
            inputs: vec![TensorSpec {
                name: "input".into(),
                dtype: DataType::F32,
                dims: vec![-1, 30],
            }],
            outputs: vec![TensorSpec {
                name: "output".into(),
                dtype: DataType::F32,
                dims: vec![-1, 1],
            }],
        }
    }

    #[test]
    fn full_config_is_read() {
        let (c, w) = ModelConfig::parse(
            r#"name: "mlp" platform: "onnxruntime_onnx" max_batch_size: 16
            input [{ name: "input" data_type: TYPE_FP32 dims: [30] }]
            output [{ name: "output" data_type: TYPE_FP32 dims: [1] }]
            dynamic_batching { preferred_batch_size: [4, 8] max_queue_delay_microseconds: 200
              default_queue_policy { max_queue_size: 7 } }
            instance_group [{ count: 2 kind: KIND_CPU }]
            version_policy: { specific: { versions: [1, 3] } }
            parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
            model_warmup [{ name: "w" }]
            "#,
        )
        .unwrap();
        assert_eq!(c.max_batch_size, Some(16));
        assert_eq!(c.instance_count, 2);
        assert_eq!(c.version_policy, VersionPolicy::Specific(vec![1, 3]));
        let d = c.dynamic_batching.clone().unwrap();
        assert_eq!(
            (
                d.preferred_batch_size,
                d.max_queue_delay_us,
                d.max_queue_size
            ),
            (vec![4, 8], 200, 7)
        );
        assert_eq!(c.session_config().unwrap().intra_op_threads, 1);
        assert_eq!(w, vec!["unknown field 'model_warmup' ignored".to_string()]);
        let mut c2 = c.clone();
        c2.complete("mlp", &meta()).unwrap();
        assert_eq!(c2.input_specs(&meta())[0].dims, vec![-1, 30]);
    }

    #[test]
    fn threads_not_given_are_shared_between_instances() {
        let (c, _) = ModelConfig::parse("instance_group [{ count: 2 kind: KIND_CPU }]").unwrap();
        let intra = c.session_config().unwrap().intra_op_threads;
        assert_eq!(intra, (cores() / 2).max(1));
        assert!(intra * 2 <= cores().max(2));
        let (c, _) = ModelConfig::parse("").unwrap();
        assert_eq!(c.instance_count, 0, "unset until the model file is seen");
        let many = cores() >= 2;
        assert_eq!(
            default_instances(40 << 10),
            1,
            "tiny models batch on one thread"
        );
        assert_eq!(default_instances(45 << 20), if many { 2 } else { 1 });
        assert_eq!(default_instances(2 << 30), 1, "huge models keep one copy");
        // What hone optimize times with: the same split as a served model.
        let mid = default_session_config(45 << 20);
        assert_eq!(
            mid.intra_op_threads,
            (cores() / default_instances(45 << 20) as usize).max(1)
        );
        assert_eq!(default_session_config(40 << 10).intra_op_threads, cores());
        assert!(!mid.allow_spinning);
    }

    #[test]
    fn mismatches_are_load_errors() {
        let (mut c, _) = ModelConfig::parse(
            r#"max_batch_size: 4 input [{ name: "input" data_type: TYPE_FP32 dims: [31] }]"#,
        )
        .unwrap();
        let e = c.complete("m", &meta()).unwrap_err();
        assert!(
            e.message
                .contains("config input 'input' is TYPE_FP32 [31], the model has TYPE_FP32 [30]"),
            "{e}"
        );
        assert!(ModelConfig::parse("platform: \"tensorflow_savedmodel\"").is_err());
        assert!(ModelConfig::parse("input [{ name: \"x\" data_type: TYPE_BF17 }]").is_err());
        assert!(ModelConfig::parse("max_batch_size: lots").is_err());
    }

    #[test]
    fn derived_config_batches_without_delay() {
        let mut c = ModelConfig::default();
        c.complete("m", &meta()).unwrap();
        assert_eq!(c.max_batch_size(), DEFAULT_MAX_BATCH_SIZE);
        assert_eq!(c.dynamic_batching, Some(DynamicBatching::default()));
        assert_eq!(c.inputs[0].dims, vec![30]);
        assert_eq!(c.to_json()["input"][0]["data_type"], "TYPE_FP32");
    }
}
