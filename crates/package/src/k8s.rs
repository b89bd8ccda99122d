//! Kubernetes manifests for a hone image: Deployment, Service,
//! HorizontalPodAutoscaler, PodDisruptionBudget, ServiceMonitor, the
//! Prometheus-adapter rule for queue-time autoscaling, and with KServe a
//! ClusterServingRuntime plus an InferenceService.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::{Result, at};
use crate::paths::{HONE_IN_IMAGE, MODELS_IN_IMAGE, UID};
use crate::yaml;

#[derive(Debug, Clone)]
pub struct K8sOptions {
    /// Resource name (DNS-1123).
    pub name: String,
    pub image: String,
    pub replicas: u32,
    pub kserve: bool,
    /// For KServe: where the storage initializer fetches the repository
    /// from; without it the InferenceService runs the image's own models.
    pub storage_uri: Option<String>,
    /// Bytes of model files, which sizes the memory request.
    pub model_bytes: u64,
}

/// Seconds `hone serve` keeps going after SIGTERM to finish in-flight work
/// (its `--exit-timeout-secs` default).
const EXIT_TIMEOUT: u64 = 30;
/// preStop pause: endpoints stop sending new requests before SIGTERM.
const PRESTOP: u64 = 5;

/// A Kubernetes name from an image reference: `ghcr.io/me/fraud-model:2` →
/// `fraud-model`.
pub fn name_from(reference: &str) -> String {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    let repo = last.split(':').next().unwrap_or(last);
    let mut n: String = repo
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    n = n.trim_matches('-').chars().take(50).collect();
    if n.is_empty() { "hone".into() } else { n }
}

fn labels(o: &K8sOptions) -> Value {
    json!({
        "app.kubernetes.io/name": o.name,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": "hone",
    })
}

fn selector(o: &K8sOptions) -> Value {
    json!({"app.kubernetes.io/name": o.name})
}

/// Memory for the models' sessions: ORT holds about two copies of the
/// weights while it loads; 512 MiB covers the server itself.
fn memory(o: &K8sOptions) -> (String, String) {
    let mib = 512 + (o.model_bytes * 3).div_ceil(1 << 20);
    (format!("{mib}Mi"), format!("{}Mi", mib * 2))
}

pub fn deployment(o: &K8sOptions) -> Value {
    let (req, limit) = memory(o);
    let probe = |path: &str, period: u32, failures: u32| {
        json!({
            "httpGet": {"path": path, "port": "http"},
            "periodSeconds": period,
            "timeoutSeconds": 2,
            "failureThreshold": failures,
        })
    };
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": o.name, "labels": labels(o)},
        "spec": {
            "replicas": o.replicas,
            "selector": {"matchLabels": selector(o)},
            "template": {
                "metadata": {"labels": labels(o)},
                "spec": {
                    "terminationGracePeriodSeconds": PRESTOP + EXIT_TIMEOUT + 5,
                    "automountServiceAccountToken": false,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": UID,
                        "runAsGroup": UID,
                        "fsGroup": UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [{
                        "name": "hone",
                        "image": o.image,
                        "imagePullPolicy": "IfNotPresent",
                        "ports": [
                            {"name": "http", "containerPort": 8000, "protocol": "TCP"},
                            {"name": "grpc", "containerPort": 8001, "protocol": "TCP"},
                            {"name": "metrics", "containerPort": 8002, "protocol": "TCP"},
                        ],
                        // Ready only once every model is loaded; a slow
                        // load is given two minutes before liveness counts.
                        "startupProbe": probe("/v2/health/ready", 2, 60),
                        "readinessProbe": probe("/v2/health/ready", 5, 2),
                        "livenessProbe": probe("/v2/health/live", 10, 3),
                        // The pod leaves the Service's endpoints while it
                        // still serves; then SIGTERM: hone finishes what it
                        // accepted within --exit-timeout-secs.
                        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP}}},
                        "resources": {
                            "requests": {"cpu": "1", "memory": req},
                            // No CPU limit: throttling inflates tail latency.
                            "limits": {"memory": limit},
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                    }],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
                },
            },
        },
    })
}

pub fn service(o: &K8sOptions) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": o.name, "labels": labels(o)},
        "spec": {
            "type": "ClusterIP",
            "selector": selector(o),
            "ports": [
                {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"},
                {"name": "grpc", "port": 8001, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"},
                {"name": "metrics", "port": 8002, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    })
}

fn hpa_base(o: &K8sOptions, metrics: Value) -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": o.name, "labels": labels(o)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": o.name},
            "minReplicas": o.replicas.max(1),
            "maxReplicas": (o.replicas * 4).max(o.replicas + 1),
            "metrics": metrics,
            // Scale down slowly: a model's warm-up costs more than a spare pod.
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    })
}

/// CPU by default: every hone pod keeps its cores busy before it queues.
pub fn hpa(o: &K8sOptions) -> Value {
    hpa_base(
        o,
        json!([{
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
        }]),
    )
}

/// The metric the Prometheus adapter rule below publishes.
pub const QUEUE_METRIC: &str = "hone_queue_seconds_per_request";

/// Scales on the mean time requests wait in hone's queues (needs the rule).
pub fn hpa_queue(o: &K8sOptions) -> Value {
    hpa_base(
        o,
        json!([{
            "type": "Pods",
            "pods": {
                "metric": {"name": QUEUE_METRIC},
                "target": {"type": "AverageValue", "averageValue": "20m"},
            },
        }]),
    )
}

/// prometheus-adapter's rule: mean queue time per request over a minute,
/// from the `hone_queue_duration_seconds` histogram.
pub fn adapter_rule(o: &K8sOptions) -> Value {
    let rule = format!(
        "rules:\n- seriesQuery: 'hone_queue_duration_seconds_count{{namespace!=\"\",pod!=\"\"}}'\n  resources:\n    overrides:\n      namespace: {{resource: namespace}}\n      pod: {{resource: pod}}\n  name:\n    matches: hone_queue_duration_seconds_count\n    as: {QUEUE_METRIC}\n  metricsQuery: 'sum(rate(hone_queue_duration_seconds_sum{{<<.LabelMatchers>>}}[1m])) by (<<.GroupBy>>) / clamp_min(sum(rate(hone_queue_duration_seconds_count{{<<.LabelMatchers>>}}[1m])) by (<<.GroupBy>>), 1e-9)'\n"
    );
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": format!("{}-adapter-rule", o.name), "labels": labels(o)},
        "data": {"config.yaml": rule},
    })
}

pub fn pdb(o: &K8sOptions) -> Value {
    // maxUnavailable, not minAvailable: a single replica must not block
    // node drains forever.
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": o.name, "labels": labels(o)},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(o)}},
    })
}

pub fn service_monitor(o: &K8sOptions) -> Value {
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": o.name, "labels": labels(o)},
        "spec": {
            "selector": {"matchLabels": selector(o)},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
        },
    })
}

/// KServe's runtime: the V2 protocol on KServe's ports (HTTP 8080, gRPC
/// 8081), models from the storage initializer's `/mnt/models`.
pub fn serving_runtime(o: &K8sOptions) -> Value {
    json!({
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ClusterServingRuntime",
        "metadata": {"name": format!("{}-runtime", o.name), "labels": labels(o)},
        "spec": {
            "annotations": {"prometheus.kserve.io/port": "8002", "prometheus.kserve.io/path": "/metrics"},
            "supportedModelFormats": [{"name": "onnx", "version": "1", "autoSelect": true, "priority": 2}],
            "protocolVersions": ["v2", "grpc-v2"],
            "containers": [{
                "name": "kserve-container",
                "image": o.image,
                "command": [HONE_IN_IMAGE],
                "args": kserve_args("/mnt/models"),
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "1", "memory": memory(o).0}, "limits": {"memory": memory(o).1}},
                "securityContext": {
                    "runAsNonRoot": true,
                    "runAsUser": UID,
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]},
                },
            }],
        },
    })
}

fn kserve_args(repo: &str) -> Vec<String> {
    [
        "serve",
        "--model-repository",
        repo,
        "--host",
        "0.0.0.0",
        "--http-port",
        "8080",
        "--grpc-port",
        "8081",
        "--metrics-port",
        "8002",
    ]
    .map(String::from)
    .to_vec()
}

pub fn inference_service(o: &K8sOptions) -> Value {
    let predictor = match &o.storage_uri {
        Some(uri) => json!({
            "minReplicas": o.replicas,
            "model": {
                "modelFormat": {"name": "onnx"},
                "runtime": format!("{}-runtime", o.name),
                "protocolVersion": "v2",
                "storageUri": uri,
            },
        }),
        // No storage: the image's own models, through the same binary.
        None => json!({
            "minReplicas": o.replicas,
            "containers": [{
                "name": "kserve-container",
                "image": o.image,
                "command": [HONE_IN_IMAGE],
                "args": kserve_args(MODELS_IN_IMAGE),
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "1", "memory": memory(o).0}, "limits": {"memory": memory(o).1}},
            }],
        }),
    };
    json!({
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": o.name, "labels": labels(o)},
        "spec": {"predictor": predictor},
    })
}

/// Writes every manifest into `dir`; returns the files written.
pub fn write(o: &K8sOptions, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(at(format_args!("cannot create {}", dir.display())))?;
    let mut files: Vec<(&str, Value)> = vec![
        ("deployment.yaml", deployment(o)),
        ("service.yaml", service(o)),
        ("hpa.yaml", hpa(o)),
        ("pdb.yaml", pdb(o)),
        (
            "prometheus-operator/servicemonitor.yaml",
            service_monitor(o),
        ),
    ];
    // Not applied by `kubectl apply -f DIR`: the queue-time HPA replaces
    // hpa.yaml once prometheus-adapter has the rule.
    let extra: Vec<(&str, Value)> = vec![
        ("optional/hpa-queue-time.yaml", hpa_queue(o)),
        ("optional/prometheus-adapter-rule.yaml", adapter_rule(o)),
    ];
    if o.kserve {
        files.push(("kserve/clusterservingruntime.yaml", serving_runtime(o)));
        files.push(("kserve/inferenceservice.yaml", inference_service(o)));
    }
    let mut out = Vec::new();
    for (name, v) in files.into_iter().chain(extra) {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(at(format_args!("cannot create {}", parent.display())))?;
        }
        let text = format!("# Written by hone package.\n{}", yaml::to_yaml(&v));
        std::fs::write(&p, text).map_err(at(format_args!("cannot write {}", p.display())))?;
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_references() {
        assert_eq!(name_from("ghcr.io/me/Fraud_Model:2"), "fraud-model");
        assert_eq!(name_from("hone"), "hone");
        assert_eq!(name_from(":x"), "hone");
    }
}
