//! Pieces every workload shares: labels, probes on the V2 health routes,
//! the restricted security context, resources and the writable /tmp.

use serde_json::{Value, json};

use super::options::K8sOptions;
use crate::paths::UID;

pub(super) fn labels(o: &K8sOptions) -> Value {
    json!({
        "app.kubernetes.io/name": o.name,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": "hone",
    })
}

pub(super) fn selector(o: &K8sOptions) -> Value {
    json!({"app.kubernetes.io/name": o.name})
}

fn probe(path: &str, port: Value, period: u32, failures: u32) -> Value {
    json!({
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    })
}

/// Ready only once every model is loaded; a slow load is given two
/// minutes before liveness counts.
pub(super) fn probes(port: Value) -> [(&'static str, Value); 3] {
    [
        (
            "startupProbe",
            probe("/v2/health/ready", port.clone(), 2, 60),
        ),
        (
            "readinessProbe",
            probe("/v2/health/ready", port.clone(), 5, 2),
        ),
        ("livenessProbe", probe("/v2/health/live", port, 10, 3)),
    ]
}

/// The pod-level restricted profile: a numeric non-root user, the
/// runtime's default seccomp filter.
pub(super) fn pod_security() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// The container-level restricted profile, repeated per container so a
/// scanner (or a pod that drops the pod-level one) sees it.
pub(super) fn container_security() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": UID,
        "runAsGroup": UID,
        "privileged": false,
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

pub(super) fn resources(o: &K8sOptions) -> Value {
    json!({
        "requests": {"cpu": "1", "memory": o.memory.request()},
        // No CPU limit: throttling inflates tail latency.
        "limits": {"memory": o.memory.limit()},
    })
}

/// The hone container of a KServe ServingRuntime: `args`, the `ports`
/// (name, number) it serves, probes on `probe_port`, the measured memory,
/// the restricted profile and /tmp.
pub(super) fn runtime_container(
    o: &K8sOptions,
    name: &str,
    args: Vec<String>,
    ports: &[(&str, u16)],
    probe_port: u16,
) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p)| json!({"name": n, "containerPort": p, "protocol": "TCP"}))
        .collect();
    let mut c = json!({
        "name": name,
        "image": o.image,
        "imagePullPolicy": "IfNotPresent",
        "command": [crate::paths::HONE_IN_IMAGE],
        "args": args,
        "ports": ports,
        "resources": resources(o),
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    });
    for (k, v) in probes(json!(probe_port)) {
        c[k] = v;
    }
    c
}

/// A writable /tmp on the read-only root.
pub(super) fn tmp_volume() -> Value {
    json!({"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}})
}
