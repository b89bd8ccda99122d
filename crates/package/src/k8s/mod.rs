//! Kubernetes manifests for a hone image: Deployment, Service,
//! HorizontalPodAutoscaler (on CPU, or on hone's queue time through
//! prometheus-adapter, whose Helm values are written beside),
//! PodDisruptionBudget, ServiceMonitor, and with KServe a namespaced
//! ServingRuntime plus an InferenceService that names it (with ModelMesh,
//! a multi-model one).
//!
//! Every object a `kubectl apply -R` of the folder creates has its own
//! kind and name; every container has probes and the restricted security
//! context; memory is sized from what the caller measured.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::{Result, at};
use crate::paths::MODELS_IN_IMAGE;
use crate::yaml;

mod job;
mod kserve;
mod modelmesh;
mod monitoring;
mod options;
mod pod;
mod scaling;

pub use options::{Autoscale, K8sOptions, Memory};
use pod::{container_security, labels, pod_security, probes, resources, selector, tmp_volume};

pub use job::{DATA_MOUNT, ScoreJob, score_job, write_job};
pub use kserve::{inference_service, serving_runtime};
pub use monitoring::{pod_monitor, prometheus_rule, service_monitor};
pub use scaling::{QUEUE_METRIC, adapter_values, hpa, scaled_object};

/// Seconds `hone serve` keeps going after SIGTERM to finish in-flight work
/// (its `--exit-timeout-secs` default).
const EXIT_TIMEOUT: u64 = 30;
/// preStop pause: endpoints stop sending new requests before SIGTERM.
const PRESTOP: u64 = 5;

/// A Kubernetes name from an image reference: `ghcr.io/me/fraud-model:2` →
/// `fraud-model`.
pub fn name_from(reference: &str) -> String {
    // A digest (`name@sha256:...`) is no part of the name.
    let reference = reference.split('@').next().unwrap_or(reference);
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
    n = n.trim_end_matches('-').to_string();
    if n.is_empty() { "hone".into() } else { n }
}

/// A reference a cluster pulls from where the user pushed it: its first
/// component must be a registry host (with a dot or a port, or
/// `localhost`). `churn:1` or `team/churn:1` would silently resolve to
/// Docker Hub on every node.
pub fn check_registry(reference: &str) -> std::result::Result<(), String> {
    let host = reference.split('/').next().unwrap_or_default();
    let has_path = reference.contains('/');
    if has_path && (host.contains('.') || host.contains(':') || host == "localhost") {
        return Ok(());
    }
    let repo = reference.rsplit_once(':').map_or(reference, |(n, _)| n);
    let hub = if has_path {
        format!("docker.io/{reference}")
    } else {
        format!("docker.io/library/{reference}")
    };
    Err(format!(
        "the image {reference} names no registry, so every node would pull {hub} from Docker Hub; \
         push the image to your registry and pass --image REGISTRY/{repo}:TAG \
         (write docker.io/... if Docker Hub is meant)"
    ))
}

pub fn deployment(o: &K8sOptions) -> Value {
    let mut mounts = vec![json!({"name": "tmp", "mountPath": "/tmp"})];
    let mut volumes = vec![tmp_volume()];
    if let Some(claim) = &o.models_claim {
        mounts.push(json!({"name": "models", "mountPath": MODELS_IN_IMAGE, "readOnly": true}));
        volumes.push(json!({"name": "models", "persistentVolumeClaim": {"claimName": claim, "readOnly": true}}));
    }
    let mut container = json!({
        "name": "hone",
        "image": o.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [
            {"name": "http", "containerPort": 8000, "protocol": "TCP"},
            {"name": "grpc", "containerPort": 8001, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 8002, "protocol": "TCP"},
        ],
        // The pod leaves the Service's endpoints while it still serves;
        // then SIGTERM: hone finishes what it accepted within
        // --exit-timeout-secs.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP}}},
        "resources": resources(o),
        "securityContext": container_security(),
        "volumeMounts": mounts,
    });
    for (k, v) in probes(json!("http")) {
        container[k] = v;
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": o.name, "labels": labels(o)},
        // No replicas: the HorizontalPodAutoscaler owns the count, and a
        // replicas field would reset it on every `kubectl apply`.
        "spec": {
            "selector": {"matchLabels": selector(o)},
            "template": {
                "metadata": {"labels": labels(o)},
                "spec": {
                    "terminationGracePeriodSeconds": PRESTOP + EXIT_TIMEOUT + 5,
                    "automountServiceAccountToken": false,
                    "securityContext": pod_security(),
                    "containers": [container],
                    "volumes": volumes,
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

/// Writes every manifest into `dir`; returns the files written.
pub fn write(o: &K8sOptions, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(at(format_args!("cannot create {}", dir.display())))?;
    let autoscaler = match &o.autoscale {
        Autoscale::Keda { prometheus, wake } => (
            "keda/scaledobject.yaml",
            scaled_object(o, prometheus, wake.as_deref()),
        ),
        _ => ("hpa.yaml", hpa(o)),
    };
    // KServe runs the pods itself: its objects replace the Deployment,
    // Service, autoscaler and budget, so applying the folder deploys the
    // model once.
    let objects: Vec<(&str, Value)> = if let (true, Some(uri)) = (o.modelmesh, &o.storage_uri) {
        vec![
            (
                "modelmesh/servingruntime.yaml",
                modelmesh::serving_runtime(o),
            ),
            (
                "modelmesh/inferenceservice.yaml",
                modelmesh::inference_service(o, uri),
            ),
            ("prometheus-operator/podmonitor.yaml", pod_monitor(o)),
            (
                "prometheus-operator/prometheusrule.yaml",
                prometheus_rule(o),
            ),
        ]
    } else if o.kserve {
        vec![
            ("kserve/servingruntime.yaml", serving_runtime(o)),
            ("kserve/inferenceservice.yaml", inference_service(o)),
            ("prometheus-operator/podmonitor.yaml", pod_monitor(o)),
            (
                "prometheus-operator/prometheusrule.yaml",
                prometheus_rule(o),
            ),
        ]
    } else {
        vec![
            ("deployment.yaml", deployment(o)),
            ("service.yaml", service(o)),
            autoscaler,
            ("pdb.yaml", pdb(o)),
            (
                "prometheus-operator/servicemonitor.yaml",
                service_monitor(o),
            ),
            (
                "prometheus-operator/prometheusrule.yaml",
                prometheus_rule(o),
            ),
        ]
    };
    let mut files: Vec<(&str, String)> = objects
        .into_iter()
        .map(|(name, v)| {
            (
                name,
                format!("# Written by hone package.\n{}", yaml::to_yaml(&v)),
            )
        })
        .collect();
    if o.autoscale == Autoscale::QueueTime && !o.kserve {
        files.push(("prometheus-adapter.values", adapter_values()));
    }
    let mut out = Vec::new();
    for (name, text) in files {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(at(format_args!("cannot create {}", parent.display())))?;
        }
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
        assert_eq!(name_from("ghcr.io/me/fraud@sha256:0123abcd"), "fraud");
    }

    #[test]
    fn references_without_a_registry_are_refused() {
        for ok in [
            "ghcr.io/me/churn:1",
            "registry.example.com:5000/churn",
            "localhost/churn:2",
            "docker.io/me/churn:1",
        ] {
            assert!(check_registry(ok).is_ok(), "{ok}");
        }
        let e = check_registry("churn:1").unwrap_err();
        assert!(e.contains("docker.io/library/churn:1"), "{e}");
        let e = check_registry("team/churn").unwrap_err();
        assert!(e.contains("docker.io/team/churn"), "{e}");
    }

    #[test]
    fn memory_follows_the_measured_peak() {
        let m = Memory::from_peak_rss(40 << 20);
        assert_eq!((m.request_mib, m.limit_mib), (64, 128));
        let m = Memory::from_peak_rss(1000 << 20);
        assert_eq!((m.request_mib, m.limit_mib), (1264, 2528));
    }
}
