//! What the Prometheus Operator picks up: the ServiceMonitor (or, with
//! KServe, a PodMonitor) and the alert rules.

use serde_json::{Value, json};

use super::options::K8sOptions;
use super::pod::{labels, selector};

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

/// The PromQL matcher for this package's pods: the ServiceMonitor's job
/// (the Service's name), or KServe's predictor pods.
pub(super) fn series(o: &K8sOptions) -> String {
    if o.modelmesh {
        // ModelMesh names the runtime's pods modelmesh-serving-RUNTIME-*.
        format!(
            "pod=~\"modelmesh-serving-{}-.*\"",
            super::modelmesh::runtime_name(o)
        )
    } else if o.kserve {
        format!("pod=~\"{}-predictor-.*\"", o.name)
    } else {
        format!("job=\"{}\"", o.name)
    }
}

/// Prometheus Operator's PodMonitor for KServe's predictor pods (KServe
/// labels them with the InferenceService's name), on the runtime's
/// `metrics` port.
pub fn pod_monitor(o: &K8sOptions) -> Value {
    // ModelMesh's pods belong to the runtime, labelled with its name.
    let selected = if o.modelmesh {
        json!({"name": format!("modelmesh-serving-{}", super::modelmesh::runtime_name(o))})
    } else {
        json!({"serving.kserve.io/inferenceservice": o.name})
    };
    let mut l = labels(o);
    for (k, v) in &o.monitor_labels {
        l[k.as_str()] = json!(v);
    }
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": o.name, "labels": l},
        "spec": {
            "selector": {"matchLabels": selected},
            "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
        },
    })
}

/// Alert rules for the Prometheus Operator, over the series of this
/// package's pods (`series`): a version that is not ready, server-side errors,
/// p99 latency, queue time, major input drift, live accuracy below the
/// card's, and a rollout rolled back.
/// Labelled like the ServiceMonitor, so the same `ruleSelector` picks it.
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
                // Labels join on the pod that answered: each pod's figure
                // is weighted by its labels.
                rule(
                    "HoneLiveAccuracyLow",
                    format!(
                        "(sum by (model, version) (hone_live_metric{{{job},metric=\"accuracy\"}} * ignoring (metric) hone_live_labels{{{job}}}) / sum by (model, version) (hone_live_labels{{{job}}})) < on (model, version) (max by (model, version) (hone_card_metric{{{job},metric=\"accuracy\"}}) - 0.05) and on (model, version) (sum by (model, version) (hone_live_labels{{{job}}}) >= 200)"
                    ),
                    "30m",
                    "warning",
                    "{{ $labels.model }} version {{ $labels.version }}: live accuracy on labelled predictions is over 5 points below the model card's",
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
