//! The configuration as Triton renders it: JSON for
//! `/v2/models/{m}/config`, protobuf for gRPC `ModelConfig`, side by side so
//! the two stay the same.

use hone_core::DataType;
use serde_json::{Value as Json, json};

use super::{IoConfig, ModelConfig, VersionPolicy};
use crate::proto::{self, *};

impl ModelConfig {
    /// Triton's JSON form of the configuration.
    pub fn to_json(&self) -> Json {
        let io = |v: &[IoConfig]| -> Vec<Json> {
            v.iter()
                .map(|t| {
                    let mut j =
                        json!({"name": t.name, "data_type": t.dtype.as_triton(), "dims": t.dims});
                    if let (Some(f), Json::Object(m)) = (self.label_files.get(&t.name), &mut j) {
                        m.insert("label_filename".into(), json!(f));
                    }
                    j
                })
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
                    "default_queue_policy": {
                        "max_queue_size": d.effective_queue_size(),
                        "default_timeout_microseconds": d.default_timeout_us,
                        "allow_timeout_override": d.allow_timeout_override,
                        "timeout_action": if d.delay_on_timeout { "DELAY" } else { "REJECT" },
                    },
                }),
            );
        }
        if let (Some(level), Json::Object(m)) = (self.optimization_level, &mut o) {
            m.insert("optimization".into(), json!({"graph": {"level": level}}));
        }
        if let (Some(e), Json::Object(m)) = (&self.ensemble, &mut o) {
            let map = |v: &[(String, String)]| -> serde_json::Map<String, Json> {
                v.iter().map(|(k, t)| (k.clone(), json!(t))).collect()
            };
            let steps: Vec<Json> = e
                .steps
                .iter()
                .map(|s| {
                    json!({
                        "model_name": s.model_name,
                        "model_version": s.model_version,
                        "input_map": map(&s.input_map),
                        "output_map": map(&s.output_map),
                    })
                })
                .collect();
            m.insert("ensemble_scheduling".into(), json!({ "step": steps }));
        }
        o
    }

    /// Triton's protobuf form, for gRPC `ModelConfig`.
    pub fn to_proto(&self) -> proto::ModelConfig {
        let c = self;
        let dt =
            |d: DataType| proto::DataType::from_str_name(d.as_triton()).map_or(0, |x| x as i32);
        proto::ModelConfig {
            name: c.name.clone(),
            platform: c.platform.clone(),
            backend: c.backend.clone(),
            version_policy: Some(ModelVersionPolicy {
                policy_choice: Some(match &c.version_policy {
                    VersionPolicy::Latest(n) => {
                        model_version_policy::PolicyChoice::Latest(model_version_policy::Latest {
                            num_versions: *n,
                        })
                    }
                    VersionPolicy::All => {
                        model_version_policy::PolicyChoice::All(model_version_policy::All {})
                    }
                    VersionPolicy::Specific(v) => model_version_policy::PolicyChoice::Specific(
                        model_version_policy::Specific {
                            versions: v.clone(),
                        },
                    ),
                }),
            }),
            max_batch_size: c.max_batch_size() as i32,
            input: c
                .inputs
                .iter()
                .map(|i| ModelInput {
                    name: i.name.clone(),
                    data_type: dt(i.dtype),
                    dims: i.dims.clone(),
                })
                .collect(),
            output: c
                .outputs
                .iter()
                .map(|i| ModelOutput {
                    name: i.name.clone(),
                    data_type: dt(i.dtype),
                    dims: i.dims.clone(),
                })
                .collect(),
            instance_group: vec![ModelInstanceGroup {
                name: format!("{}_0", c.name),
                count: c.instance_count as i32,
                kind: model_instance_group::Kind::Cpu as i32,
            }],
            default_model_filename: c.default_model_filename.clone(),
            dynamic_batching: c.dynamic_batching.as_ref().map(|d| ModelDynamicBatching {
                preferred_batch_size: d.preferred_batch_size.iter().map(|&p| p as i32).collect(),
                max_queue_delay_microseconds: d.max_queue_delay_us,
                default_queue_policy: Some(ModelQueuePolicy {
                    max_queue_size: d.effective_queue_size(),
                    default_timeout_microseconds: d.default_timeout_us,
                    allow_timeout_override: d.allow_timeout_override,
                    timeout_action: if d.delay_on_timeout {
                        model_queue_policy::TimeoutAction::Delay as i32
                    } else {
                        model_queue_policy::TimeoutAction::Reject as i32
                    },
                }),
            }),
            optimization: c.optimization_level.map(|l| ModelOptimizationPolicy {
                graph: Some(model_optimization_policy::Graph { level: l as i32 }),
            }),
            parameters: c
                .parameters
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        ModelParameter {
                            string_value: v.clone(),
                        },
                    )
                })
                .collect(),
        }
    }
}

impl ModelConfig {
    /// The text form a `config.pbtxt` holds; [`ModelConfig::parse`] reads
    /// it back to the same configuration (`hone tune --write` uses it).
    pub fn to_pbtxt(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let q = |s: &str| format!("{s:?}");
        if !self.name.is_empty() {
            let _ = writeln!(o, "name: {}", q(&self.name));
        }
        if !self.platform.is_empty() {
            let _ = writeln!(o, "platform: {}", q(&self.platform));
        }
        if !matches!(self.backend.as_str(), "" | "onnxruntime") {
            let _ = writeln!(o, "backend: {}", q(&self.backend));
        }
        if let Some(m) = self.max_batch_size {
            let _ = writeln!(o, "max_batch_size: {m}");
        }
        for (key, list) in [("input", &self.inputs), ("output", &self.outputs)] {
            for t in list {
                let labels = match self.label_files.get(&t.name) {
                    Some(f) if key == "output" => format!(" label_filename: {}", q(f)),
                    _ => String::new(),
                };
                let _ = writeln!(
                    o,
                    "{key} {{ name: {} data_type: {} dims: {:?}{labels} }}",
                    q(&t.name),
                    t.dtype.as_triton(),
                    t.dims
                );
            }
        }
        match &self.version_policy {
            VersionPolicy::Latest(1) => {}
            VersionPolicy::Latest(n) => {
                let _ = writeln!(o, "version_policy {{ latest {{ num_versions: {n} }} }}");
            }
            VersionPolicy::All => o.push_str("version_policy { all {} }\n"),
            VersionPolicy::Specific(v) => {
                let _ = writeln!(o, "version_policy {{ specific {{ versions: {v:?} }} }}");
            }
        }
        if let Some(d) = &self.dynamic_batching {
            o.push_str("dynamic_batching {\n");
            if !d.preferred_batch_size.is_empty() {
                let _ = writeln!(o, "  preferred_batch_size: {:?}", d.preferred_batch_size);
            }
            let _ = writeln!(
                o,
                "  max_queue_delay_microseconds: {}",
                d.max_queue_delay_us
            );
            // Left out when it says nothing: Triton reads max_queue_size 0
            // as unbounded, hone as its default bound.
            let policy_default = d.max_queue_size == 0
                && d.default_timeout_us == 0
                && !d.allow_timeout_override
                && !d.delay_on_timeout;
            if !policy_default {
                let _ = writeln!(
                    o,
                    "  default_queue_policy {{ max_queue_size: {} default_timeout_microseconds: {} allow_timeout_override: {} timeout_action: {} }}",
                    d.max_queue_size,
                    d.default_timeout_us,
                    d.allow_timeout_override,
                    if d.delay_on_timeout {
                        "DELAY"
                    } else {
                        "REJECT"
                    }
                );
            }
            o.push_str("}\n");
        }
        if self.instance_count > 0 {
            let _ = writeln!(
                o,
                "instance_group [{{ count: {} kind: {} }}]",
                self.instance_count, self.instance_kind
            );
        }
        if let Some(level) = self.optimization_level {
            let _ = writeln!(o, "optimization {{ graph {{ level: {level} }} }}");
        }
        for (k, v) in &self.parameters {
            let _ = writeln!(
                o,
                "parameters {{ key: {} value: {{ string_value: {} }} }}",
                q(k),
                q(v)
            );
        }
        if let Some(e) = &self.ensemble {
            o.push_str("ensemble_scheduling {\n");
            for s in &e.steps {
                let _ = write!(
                    o,
                    "  step {{ model_name: {} model_version: {}",
                    q(&s.model_name),
                    s.model_version
                );
                for (key, map) in [("input_map", &s.input_map), ("output_map", &s.output_map)] {
                    for (k, v) in map {
                        let _ = write!(o, " {key} {{ key: {} value: {} }}", q(k), q(v));
                    }
                }
                o.push_str(" }\n");
            }
            o.push_str("}\n");
        }
        if self.default_model_filename != ModelConfig::default().default_model_filename {
            let _ = writeln!(
                o,
                "default_model_filename: {}",
                q(&self.default_model_filename)
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbtxt_reads_back_to_the_same_config() {
        let text = r#"name: "m" platform: "onnxruntime_onnx" max_batch_size: 16
            input [{ name: "input" data_type: TYPE_FP32 dims: [ 30 ] }]
            output [{ name: "output" data_type: TYPE_FP32 dims: [ 1 ] }]
            version_policy { all {} }
            dynamic_batching { preferred_batch_size: [4, 8] max_queue_delay_microseconds: 250
              default_queue_policy { max_queue_size: 9 default_timeout_microseconds: 7 allow_timeout_override: true timeout_action: REJECT } }
            instance_group [{ count: 2 kind: KIND_CPU }]
            optimization { graph { level: 1 } }
            parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
            default_model_filename: "net.onnx""#;
        let (c, warnings) = ModelConfig::parse(text).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let (back, warnings) = ModelConfig::parse(&c.to_pbtxt()).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(back, c, "{}", c.to_pbtxt());
        let (empty, _) = ModelConfig::parse("").unwrap();
        assert_eq!(ModelConfig::parse(&empty.to_pbtxt()).unwrap().0, empty);
    }
}
