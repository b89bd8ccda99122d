//! Triton model configuration: the subset users write, read from
//! `config.pbtxt` (`parse`, one small parser per section), completed from
//! the ONNX file, and rendered back as JSON and protobuf (`render`).

mod ensemble;
mod parse;
mod render;

pub use ensemble::{EnsembleConfig, EnsembleStep};

use std::collections::BTreeMap;

use hone_core::{DataType, Error, ModelMetadata, Result, TensorSpec};
use hone_runtime::{GraphOptimization, SessionConfig};

pub use hone_runtime::sizing::DEFAULT_MAX_BATCH_SIZE;
/// What a dimension the model leaves dynamic (a sequence length, an image
/// side) counts for in the default element limits.
pub const DYNAMIC_EXTENT: usize = 4096;

/// Bounds on tensor elements: per request (all inputs together) and per
/// batch the engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElementLimits {
    pub per_request: usize,
    pub per_batch: usize,
}
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
    /// `default_queue_policy.default_timeout_microseconds`; 0: none.
    pub default_timeout_us: u64,
    /// `default_queue_policy.allow_timeout_override`: a request's own
    /// `timeout` may shorten the default.
    pub allow_timeout_override: bool,
    /// `default_queue_policy.timeout_action: DELAY`: late requests still run.
    pub delay_on_timeout: bool,
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
    /// 0 until resolved: the config did not say (see
    /// [`hone_runtime::sizing::default_instances`]).
    pub instance_count: u32,
    pub instance_kind: String,
    pub version_policy: VersionPolicy,
    pub parameters: BTreeMap<String, String>,
    pub optimization_level: Option<i64>,
    pub default_model_filename: String,
    /// `ensemble_scheduling`, with `platform: "ensemble"`.
    pub ensemble: Option<EnsembleConfig>,
    /// An output's `label_filename` (a file in the model's directory, one
    /// class label per line): Triton's classification extension names
    /// classes by it.
    pub label_files: BTreeMap<String, String>,
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
            ensemble: None,
            label_files: BTreeMap::new(),
        }
    }
}

impl ModelConfig {
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
                let model_dims = a.dims.get(skip..).unwrap_or_default();
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

    /// Elements a request, and a batch, may hold (config `parameters`
    /// `max_elements_per_request` / `max_elements_per_batch`). The default is
    /// a full batch of the model's inputs with every dimension the model
    /// leaves dynamic (besides the batch) counted as [`DYNAMIC_EXTENT`]: a
    /// client cannot choose a sequence length that makes the engine allocate
    /// without bound. A request is never allowed more than a batch.
    pub fn element_limits(&self, specs: &[TensorSpec]) -> Result<ElementLimits> {
        let mbs = self.max_batch_size() as usize;
        let full_batch: usize = specs
            .iter()
            .map(|s| {
                let row = s
                    .dims
                    .iter()
                    .skip(usize::from(mbs > 0))
                    .map(|&d| if d < 0 { DYNAMIC_EXTENT } else { d as usize })
                    .fold(1usize, usize::saturating_mul);
                row.saturating_mul(mbs.max(1))
            })
            .fold(0usize, usize::saturating_add)
            .max(1);
        let get = |k: &str| -> Result<Option<usize>> {
            self.parameters
                .get(k)
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| {
                            Error::invalid(format!(
                                "parameter {k}: '{v}' is not a positive integer"
                            ))
                        })
                })
                .transpose()
        };
        let asked = get("max_elements_per_request")?;
        // A raised request limit raises the default batch limit with it.
        let per_batch =
            get("max_elements_per_batch")?.unwrap_or_else(|| full_batch.max(asked.unwrap_or(0)));
        let per_request = asked.unwrap_or(full_batch).min(per_batch);
        Ok(ElementLimits {
            per_request,
            per_batch,
        })
    }

    /// Whether `instances` instances run on one shared session (one copy
    /// of the weights): the config parameter `share_weights`, or by default
    /// when each instance has one intra-op thread. Then a session's pool is
    /// only its caller, so sharing costs nothing; with more threads, runs
    /// on one session would share one pool sized for one instance.
    pub fn shares_weights(&self, instances: u32) -> Result<bool> {
        match self.parameters.get("share_weights").map(String::as_str) {
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(Error::invalid(format!(
                "config parameter share_weights is '{v}': give \"true\" or \"false\""
            ))),
            None => {
                let intra = match self.parameters.get("intra_op_thread_count") {
                    Some(v) => v.parse::<usize>().unwrap_or(0),
                    None => 0,
                };
                let intra = match intra {
                    0 => hone_runtime::sizing::threads_per_instance(instances),
                    n => n,
                };
                Ok(intra <= 1)
            }
        }
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
            0 => hone_runtime::sizing::threads_per_instance(self.instance_count),
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
            // The server's `--custom-op-library`, added by its engine loader.
            op_libraries: Vec::new(),
        })
    }
}

impl DynamicBatching {
    /// How long a request may wait in the queue, in microseconds, given what
    /// the request asked for (Triton's rule): the request's own timeout when
    /// there is no default, the shorter of the two when overriding is
    /// allowed, else the default; None when nothing limits it.
    pub fn queue_timeout_us(&self, requested: Option<u64>) -> Option<u64> {
        if self.delay_on_timeout {
            return None;
        }
        let requested = requested.filter(|&r| r > 0);
        match (self.default_timeout_us, requested) {
            (0, r) => r,
            (d, Some(r)) if self.allow_timeout_override => Some(r.min(d)),
            (d, _) => Some(d),
        }
    }

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
        let cores = hone_runtime::sizing::cores();
        let (c, _) = ModelConfig::parse("instance_group [{ count: 2 kind: KIND_CPU }]").unwrap();
        let intra = c.session_config().unwrap().intra_op_threads;
        assert_eq!(intra, (cores / 2).max(1));
        assert!(intra * 2 <= cores.max(2));
        let (c, _) = ModelConfig::parse("").unwrap();
        assert_eq!(c.instance_count, 0, "unset until the model file is seen");
        // What hone optimize times with is what a config that sets nothing gets.
        let served = ModelConfig {
            instance_count: hone_runtime::sizing::default_instances(45 << 20),
            ..ModelConfig::default()
        };
        assert_eq!(
            served.session_config().unwrap(),
            hone_runtime::sizing::default_session_config(45 << 20)
        );
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

    #[test]
    fn element_limits_default_to_a_full_batch_and_take_parameters() {
        let spec = |dims: Vec<i64>| TensorSpec {
            name: "ids".into(),
            dtype: DataType::I64,
            dims,
        };
        let mut c = ModelConfig::parse("max_batch_size: 8").unwrap().0;
        // [batch, seq] twice: 8 rows of DYNAMIC_EXTENT each, per input.
        let two = [spec(vec![-1, -1]), spec(vec![-1, -1])];
        let l = c.element_limits(&two).unwrap();
        assert_eq!(l.per_request, 2 * 8 * DYNAMIC_EXTENT);
        assert_eq!(l.per_batch, l.per_request);
        assert_eq!(
            c.element_limits(&[spec(vec![-1, 3, 4])])
                .unwrap()
                .per_request,
            8 * 12
        );
        c.parameters
            .insert("max_elements_per_request".into(), "1000000".into());
        let l = c.element_limits(&two).unwrap();
        assert_eq!((l.per_request, l.per_batch), (1_000_000, 1_000_000));
        c.parameters
            .insert("max_elements_per_batch".into(), "5000".into());
        let l = c.element_limits(&two).unwrap();
        assert_eq!((l.per_request, l.per_batch), (5000, 5000));
        c.parameters
            .insert("max_elements_per_batch".into(), "0".into());
        assert!(c.element_limits(&two).is_err());
        // Without batching every dimension counts, the first one too.
        let c = ModelConfig::parse("max_batch_size: 0").unwrap().0;
        let l = c.element_limits(&[spec(vec![-1, 2])]).unwrap();
        assert_eq!(l.per_request, DYNAMIC_EXTENT * 2);
    }

    // ensemble_scheduling

    const GOOD: &str = r#"
name: "text" platform: "ensemble" max_batch_size: 0
input [ { name: "text" data_type: TYPE_STRING dims: [ -1 ] } ]
output [ { name: "embedding" data_type: TYPE_FP32 dims: [ -1, 384 ] } ]
ensemble_scheduling {
  step [
    { model_name: "enc" model_version: -1
      input_map { key: "input_ids" value: "ids" }
      input_map { key: "attention_mask" value: "mask" }
      output_map { key: "sentence_embedding" value: "embedding" } },
    { model_name: "tok" model_version: -1
      input_map { key: "text" value: "text" }
      output_map { key: "input_ids" value: "ids" }
      output_map { key: "attention_mask" value: "mask" } }
  ]
}"#;

    #[test]
    fn ensembles_and_steps_round_trip_through_pbtxt() {
        let tok = "backend: \"hone_tokenizer\" max_batch_size: 8";
        for text in [GOOD, tok] {
            let (c, _) = ModelConfig::parse(text).unwrap();
            let (back, _) = ModelConfig::parse(&c.to_pbtxt()).unwrap();
            assert_eq!(back, c, "{}", c.to_pbtxt());
        }
        let (t, _) = ModelConfig::parse(tok).unwrap();
        assert_eq!(
            (t.platform.as_str(), t.backend.as_str()),
            ("", "hone_tokenizer")
        );
        assert!(
            ModelConfig::parse("backend: \"python\"")
                .unwrap_err()
                .message
                .contains("hone_tokenizer")
        );
    }

    #[test]
    fn steps_in_any_order_form_a_dag() {
        let (c, w) = ModelConfig::parse(GOOD).unwrap();
        assert!(w.is_empty(), "{w:?}");
        let e = c.ensemble.unwrap();
        assert_eq!(e.steps.len(), 2);
        assert_eq!(
            e.steps[0].input_map[1],
            ("attention_mask".into(), "mask".into())
        );
    }

    #[test]
    fn broken_graphs_are_refused_with_the_step_named() {
        let cyc = GOOD.replace(
            r#"key: "text" value: "text""#,
            r#"key: "text" value: "embedding""#,
        );
        let e = ModelConfig::parse(&cyc).unwrap_err().message;
        assert!(
            e.contains("step[0] (enc)") && e.contains("neither an ensemble input"),
            "{e}"
        );
        let unmade = GOOD.replace(r#"value: "embedding" }"#, r#"value: "other" }"#);
        let e = ModelConfig::parse(&unmade).unwrap_err().message;
        assert!(e.contains("ensemble output 'embedding'"), "{e}");
        let dup = GOOD.replace(
            r#"output_map { key: "attention_mask" value: "mask" }"#,
            r#"output_map { key: "input_ids" value: "mask" }"#,
        );
        let e = ModelConfig::parse(&dup).unwrap_err().message;
        assert!(e.contains("'input_ids' twice"), "{e}");
        let twice = GOOD.replace(r#"value: "mask" } }"#, r#"value: "ids" } }"#);
        let e = ModelConfig::parse(&twice).unwrap_err().message;
        assert!(e.contains("produced twice"), "{e}");
        let own = GOOD.replace(r#"model_name: "enc""#, r#"model_name: "text""#);
        assert!(
            ModelConfig::parse(&own)
                .unwrap_err()
                .message
                .contains("itself")
        );
        let no_platform = GOOD.replace(r#"platform: "ensemble""#, "");
        assert!(ModelConfig::parse(&no_platform).is_err());
    }
}
