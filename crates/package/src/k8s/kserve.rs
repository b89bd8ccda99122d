//! KServe's objects: a namespaced ServingRuntime selected by name only and
//! an InferenceService that names it, scaled by KServe's own classes.

use serde_json::{Value, json};

use super::monitoring::series;
use super::options::{Autoscale, K8sOptions};
use super::pod::{labels, pod_security, runtime_container, tmp_volume};
use super::scaling::PENDING_PER_POD;
use crate::paths::MODELS_IN_IMAGE;

fn runtime_name(o: &K8sOptions) -> String {
    format!("{}-runtime", o.name)
}

/// KServe's runtime, namespaced and selected by name only (no autoSelect:
/// it must not capture other teams' ONNX InferenceServices): the V2
/// protocol on KServe's ports (HTTP 8080, gRPC 8081), the models from the
/// storage initializer's `/mnt/models`, or the image's own without a
/// storage URI.
pub fn serving_runtime(o: &K8sOptions) -> Value {
    let repo = if o.storage_uri.is_some() {
        "/mnt/models"
    } else {
        MODELS_IN_IMAGE
    };
    // KServe's port names: http1 for REST, h2c for gRPC.
    let container = runtime_container(
        o,
        "kserve-container",
        kserve_args(repo),
        &[("http1", 8080), ("h2c", 8081), ("metrics", 8002)],
        8080,
    );
    json!({
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": runtime_name(o), "labels": labels(o)},
        "spec": {
            "annotations": {"prometheus.kserve.io/port": "8002", "prometheus.kserve.io/path": "/metrics"},
            "supportedModelFormats": [{"name": "onnx", "version": "1", "autoSelect": false}],
            "protocolVersions": ["v2", "grpc-v2"],
            "containers": [container],
            "volumes": [tmp_volume()],
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

/// The InferenceService names hone's runtime explicitly, with or without
/// a storage URI, as a raw Deployment (KServe's serverless mode allows a
/// single container port, which would drop gRPC).
pub fn inference_service(o: &K8sOptions) -> Value {
    let mut model = json!({
        "modelFormat": {"name": "onnx"},
        "runtime": runtime_name(o),
        "protocolVersion": "v2",
    });
    if let Some(uri) = &o.storage_uri {
        model["storageUri"] = json!(uri);
    }
    let mut annotations = json!({"serving.kserve.io/deploymentMode": "RawDeployment"});
    let mut predictor = json!({
        "minReplicas": o.replicas,
        "maxReplicas": o.replicas.saturating_mul(4).max(o.replicas.saturating_add(1)),
        "automountServiceAccountToken": false,
        "securityContext": pod_security(),
        "model": model,
    });
    match &o.autoscale {
        // KServe's own HPA on CPU (raw deployment's default class).
        Autoscale::Cpu | Autoscale::QueueTime => {
            annotations["serving.kserve.io/autoscalerClass"] = json!("hpa");
            predictor["scaleMetric"] = json!("cpu");
            predictor["scaleTarget"] = json!(70);
        }
        // KServe's KEDA integration writes the ScaledObject from this. It
        // reads every target as a per-pod average, so the metric must
        // grow with load: requests waiting for an engine, per pod, and
        // (to wake from zero) the request rate per pod.
        Autoscale::Keda { prometheus, wake } => {
            annotations["serving.kserve.io/autoscalerClass"] = json!("keda");
            if wake.is_some() {
                predictor["minReplicas"] = json!(0);
            }
            let pending = format!("sum(hone_pending_requests{{{}}})", series(o));
            let external = |query: &str, value: &str| {
                json!({
                    "type": "External",
                    "external": {
                        "metric": {"backend": "prometheus", "serverAddress": prometheus, "query": query},
                        "target": {"type": "Value", "value": value},
                    },
                })
            };
            let mut metrics = vec![external(&pending, PENDING_PER_POD)];
            if let Some(q) = wake {
                metrics.push(external(q, "50"));
            }
            predictor["autoScaling"] = json!({"metrics": metrics});
        }
    }
    json!({
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": o.name,
            "labels": labels(o),
            "annotations": annotations,
        },
        "spec": {"predictor": predictor},
    })
}
