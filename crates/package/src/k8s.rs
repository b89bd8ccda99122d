//! Kubernetes manifests for a hone image: Deployment, Service,
//! HorizontalPodAutoscaler (on CPU, or on hone's queue time through
//! prometheus-adapter, whose Helm values are written beside),
//! PodDisruptionBudget, ServiceMonitor, and with KServe a namespaced
//! ServingRuntime plus an InferenceService that names it.
//!
//! Every object a `kubectl apply -R` of the folder creates has its own
//! kind and name; every container has probes and the restricted security
//! context; memory is sized from what the caller measured.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::{Result, at};
use crate::paths::{HONE_IN_IMAGE, MODELS_IN_IMAGE, UID};
use crate::yaml;

#[derive(Debug, Clone)]
pub struct K8sOptions {
    /// Resource name (DNS-1123).
    pub name: String,
    /// An image reference that names its registry ([`check_registry`]).
    pub image: String,
    /// The autoscaler's minimum (the Deployment leaves replicas to it).
    pub replicas: u32,
    pub kserve: bool,
    /// For KServe: where the storage initializer fetches the repository
    /// from; without it the runtime serves the image's own models.
    pub storage_uri: Option<String>,
    pub memory: Memory,
    pub autoscale: Autoscale,
    /// Extra labels on the ServiceMonitor (kube-prometheus-stack selects
    /// ServiceMonitors by its `release` label).
    pub monitor_labels: Vec<(String, String)>,
    /// A PersistentVolumeClaim holding the repository, mounted read-only at
    /// the image's model path (for an image built with --no-models).
    pub models_claim: Option<String>,
}

/// What the autoscaler scales on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Autoscale {
    /// CPU utilisation: needs only metrics-server.
    #[default]
    Cpu,
    /// Mean queue time per request, through prometheus-adapter.
    QueueTime,
    /// Mean queue time per request, through a KEDA ScaledObject's
    /// Prometheus trigger (KEDA makes the HPA; hone writes none).
    Keda {
        /// The Prometheus KEDA queries.
        prometheus: String,
        /// Scale to zero when idle, waking on this PromQL request rate
        /// (traffic counted before it reaches a pod: an idle model has
        /// none to report its queue).
        wake: Option<String>,
    },
}

/// Memory request and limit in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub request_mib: u64,
    pub limit_mib: u64,
}

impl Memory {
    /// From the peak RSS of a server that loaded the repository: the
    /// request is that plus a quarter (request buffers, allocator slack),
    /// the limit twice the request, because a hot reload holds the old and
    /// the new version at once. Rounded up to 16 MiB, at least 64 MiB.
    pub fn from_peak_rss(bytes: u64) -> Memory {
        let mib = bytes.div_ceil(1 << 20);
        let request = (mib + mib / 4).max(64).div_ceil(16) * 16;
        Memory {
            request_mib: request,
            limit_mib: request * 2,
        }
    }

    fn request(&self) -> String {
        format!("{}Mi", self.request_mib)
    }

    fn limit(&self) -> String {
        format!("{}Mi", self.limit_mib)
    }
}

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
fn probes(port: Value) -> [(&'static str, Value); 3] {
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
fn pod_security() -> Value {
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
fn container_security() -> Value {
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

fn resources(o: &K8sOptions) -> Value {
    json!({
        "requests": {"cpu": "1", "memory": o.memory.request()},
        // No CPU limit: throttling inflates tail latency.
        "limits": {"memory": o.memory.limit()},
    })
}

/// A writable /tmp on the read-only root.
fn tmp_volume() -> Value {
    json!({"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}})
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

/// The metric prometheus-adapter publishes from the rule in its values.
pub const QUEUE_METRIC: &str = "hone_queue_seconds_per_request";

/// Mean seconds a request waited in hone's queues over the last minute,
/// over the series `sel` (a PromQL label matcher) picks.
fn queue_query(sel: &str) -> String {
    format!(
        "sum(rate(hone_queue_duration_seconds_sum{{{sel}}}[1m])) / clamp_min(sum(rate(hone_queue_duration_seconds_count{{{sel}}}[1m])), 1e-9)"
    )
}

/// The target mean queue time (seconds) every autoscaler aims at.
const QUEUE_TARGET_S: &str = "0.02";

/// Requests waiting per pod KServe's KEDA class aims at.
const PENDING_PER_POD: &str = "4";

/// KEDA's ScaledObject: the Deployment scales on hone's mean queue time
/// (a Value trigger: it is already a mean over the pods) and, with a
/// `wake` query, down to no pod after the cooldown and back to one when
/// that request rate rises above zero.
pub fn scaled_object(o: &K8sOptions, prometheus: &str, wake: Option<&str>) -> Value {
    let mut triggers = vec![json!({
        "type": "prometheus",
        "metricType": "Value",
        "metadata": {
            "serverAddress": prometheus,
            // The ServiceMonitor's job label is the Service's name.
            "query": queue_query(&format!("job=\"{}\"", o.name)),
            "threshold": QUEUE_TARGET_S,
        },
    })];
    if let Some(q) = wake {
        triggers.push(json!({
            "type": "prometheus",
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": prometheus,
                "query": q,
                // Requests per second per pod before another pod is added;
                // any request at all wakes the first.
                "threshold": "50",
                "activationThreshold": "0",
            },
        }));
    }
    json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": o.name, "labels": labels(o)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": o.name},
            "minReplicaCount": if wake.is_some() { 0 } else { o.replicas.max(1) },
            "maxReplicaCount": o.replicas.saturating_mul(4).max(o.replicas.saturating_add(1)),
            "pollingInterval": 15,
            // Scale down slowly: a model's warm-up costs more than a spare pod.
            "cooldownPeriod": 300,
            "triggers": triggers,
        },
    })
}

/// One autoscaler per Deployment, on CPU (every hone pod keeps its cores
/// busy before it queues) or on queue time.
pub fn hpa(o: &K8sOptions) -> Value {
    let metrics = match o.autoscale {
        Autoscale::Cpu | Autoscale::Keda { .. } => json!([{
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
        }]),
        Autoscale::QueueTime => json!([{
            "type": "Pods",
            "pods": {
                "metric": {"name": QUEUE_METRIC},
                "target": {"type": "AverageValue", "averageValue": "20m"},
            },
        }]),
    };
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": o.name, "labels": labels(o)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": o.name},
            "minReplicas": o.replicas.max(1),
            "maxReplicas": o.replicas.saturating_mul(4).max(o.replicas.saturating_add(1)),
            "metrics": metrics,
            // Scale down slowly: a model's warm-up costs more than a spare pod.
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    })
}

/// Helm values for the prometheus-community/prometheus-adapter chart: the
/// rule that turns `hone_queue_duration_seconds` into [`QUEUE_METRIC`]
/// (mean queue time per request over a minute). prometheus-adapter reads
/// its rules from its own chart's ConfigMap, so they go in as values, not
/// as an object of ours.
pub fn adapter_values() -> String {
    format!(
        "# Helm values for prometheus-community/prometheus-adapter: the rule behind\n\
         # hpa.yaml's {QUEUE_METRIC}. Not a Kubernetes object (kubectl apply -R skips\n\
         # this file); merge it into the adapter's release:\n\
         #   helm upgrade --install prometheus-adapter prometheus-community/prometheus-adapter \\\n\
         #     --namespace monitoring --reuse-values -f prometheus-adapter.values\n\
         rules:\n  custom:\n  - seriesQuery: 'hone_queue_duration_seconds_count{{namespace!=\"\",pod!=\"\"}}'\n    resources:\n      overrides:\n        namespace: {{resource: namespace}}\n        pod: {{resource: pod}}\n    name:\n      matches: hone_queue_duration_seconds_count\n      as: {QUEUE_METRIC}\n    metricsQuery: 'sum(rate(hone_queue_duration_seconds_sum{{<<.LabelMatchers>>}}[1m])) by (<<.GroupBy>>) / clamp_min(sum(rate(hone_queue_duration_seconds_count{{<<.LabelMatchers>>}}[1m])) by (<<.GroupBy>>), 1e-9)'\n"
    )
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
    let mut l = labels(o);
    for (k, v) in &o.monitor_labels {
        l[k.as_str()] = json!(v);
    }
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": o.name, "labels": l},
        "spec": {
            "selector": {"matchLabels": selector(o)},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
        },
    })
}

/// Alert rules for the Prometheus Operator, over the series of this
/// Service's pods (`job`): a version that is not ready, server-side errors,
/// p99 latency, queue time, major input drift, and a rollout rolled back.
/// Labelled like the ServiceMonitor, so the same `ruleSelector` picks it.
/// The PromQL matcher for this package's pods: the ServiceMonitor's job
/// (the Service's name), or KServe's predictor pods.
fn series(o: &K8sOptions) -> String {
    if o.kserve {
        format!("pod=~\"{}-predictor-.*\"", o.name)
    } else {
        format!("job=\"{}\"", o.name)
    }
}

/// Prometheus Operator's PodMonitor for KServe's predictor pods (KServe
/// labels them with the InferenceService's name), on the runtime's
/// `metrics` port.
pub fn pod_monitor(o: &K8sOptions) -> Value {
    let mut l = labels(o);
    for (k, v) in &o.monitor_labels {
        l[k.as_str()] = json!(v);
    }
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": o.name, "labels": l},
        "spec": {
            "selector": {"matchLabels": {"serving.kserve.io/inferenceservice": o.name}},
            "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
        },
    })
}

pub fn prometheus_rule(o: &K8sOptions) -> Value {
    let mut l = labels(o);
    for (k, v) in &o.monitor_labels {
        l[k.as_str()] = json!(v);
    }
    let job = series(o);
    let rule = |alert: &str, expr: String, for_: &str, severity: &str, summary: &str| {
        json!({
            "alert": alert,
            "expr": expr,
            "for": for_,
            "labels": {"severity": severity},
            "annotations": {"summary": summary},
        })
    };
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": o.name, "labels": l},
        "spec": {"groups": [{
            "name": format!("hone-{}", o.name),
            "rules": [
                rule(
                    "HoneModelVersionNotReady",
                    format!("hone_model_ready{{{job}}} == 0"),
                    "5m",
                    "critical",
                    "{{ $labels.model }} version {{ $labels.version }} is not serving on {{ $labels.pod }}",
                ),
                // Server-side failures only: a client's bad request is not
                // the model's fault.
                rule(
                    "HoneErrorRateHigh",
                    format!(
                        "sum by (model) (rate(hone_request_failure_total{{{job},reason=~\"BACKEND|TIMEOUT|REJECTED\"}}[5m])) / clamp_min(sum by (model) (rate(hone_request_success_total{{{job}}}[5m])) + sum by (model) (rate(hone_request_failure_total{{{job}}}[5m])), 1e-9) > 0.01"
                    ),
                    "10m",
                    "warning",
                    "{{ $labels.model }}: over 1 % of requests fail on the server side",
                ),
                rule(
                    "HoneP99LatencyHigh",
                    format!(
                        "histogram_quantile(0.99, sum by (model, le) (rate(hone_request_duration_seconds_bucket{{{job}}}[5m]))) > 0.25"
                    ),
                    "10m",
                    "warning",
                    "{{ $labels.model }}: p99 latency above 250 ms",
                ),
                rule(
                    "HoneQueueTimeHigh",
                    format!(
                        "sum by (model) (rate(hone_queue_duration_seconds_sum{{{job}}}[5m])) / clamp_min(sum by (model) (rate(hone_queue_duration_seconds_count{{{job}}}[5m])), 1e-9) > 0.05"
                    ),
                    "10m",
                    "warning",
                    "{{ $labels.model }}: requests wait over 50 ms in the queue; more replicas or instances needed",
                ),
                rule(
                    "HoneInputDriftMajor",
                    format!("max by (model, version, feature, output) (hone_feature_drift_verdict{{{job},verdict=\"major\"}}) == 1"),
                    "30m",
                    "warning",
                    "{{ $labels.model }} version {{ $labels.version }}: {{ $labels.feature }}{{ $labels.output }} drifted (verdict major)",
                ),
                rule(
                    "HoneRolloutRolledBack",
                    format!("increase(hone_rollout_events_total{{{job},event=\"rolled_back\"}}[10m]) > 0"),
                    "0m",
                    "warning",
                    "{{ $labels.model }}: a rollout was rolled back",
                ),
            ],
        }]},
    })
}

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
    let mut container = json!({
        "name": "kserve-container",
        "image": o.image,
        "imagePullPolicy": "IfNotPresent",
        "command": [HONE_IN_IMAGE],
        "args": kserve_args(repo),
        // KServe's port names: http1 for REST, h2c for gRPC.
        "ports": [
            {"name": "http1", "containerPort": 8080, "protocol": "TCP"},
            {"name": "h2c", "containerPort": 8081, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 8002, "protocol": "TCP"},
        ],
        "resources": resources(o),
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    });
    for (k, v) in probes(json!(8080)) {
        container[k] = v;
    }
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
    let objects: Vec<(&str, Value)> = if o.kserve {
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
