//! What scales the pods: the HorizontalPodAutoscaler (CPU, or queue time
//! through prometheus-adapter, with its rule as Helm values) and KEDA's
//! ScaledObject.

use serde_json::{Value, json};

use super::options::{Autoscale, K8sOptions};
use super::pod::labels;

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
pub(super) const PENDING_PER_POD: &str = "4";

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
