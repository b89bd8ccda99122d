//! Batch scoring on the cluster: an indexed Job whose pods each run `hone
//! score` on one shard of a file on a PersistentVolumeClaim (pod `i` takes
//! every N-th chunk from chunk `i`, told by `JOB_COMPLETION_INDEX`) and
//! write their part beside it.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::options::K8sOptions;
use super::pod::{container_security, pod_security, resources, tmp_volume};
use crate::error::{Result, at};
use crate::paths::{HONE_IN_IMAGE, MODELS_IN_IMAGE};
use crate::yaml;

/// Where the data claim is mounted in the pods.
pub const DATA_MOUNT: &str = "/data";

#[derive(Debug, Clone)]
pub struct ScoreJob {
    /// The model's name in the repository.
    pub model: String,
    /// The claim that holds the input and receives the output.
    pub claim: String,
    /// The input file, relative to the claim.
    pub input: String,
    /// Each pod's output, relative to the claim; `{shard}` is its index.
    pub output: String,
    pub shards: u32,
}

pub fn score_job(o: &K8sOptions, j: &ScoreJob) -> Value {
    let mut mounts = vec![
        json!({"name": "tmp", "mountPath": "/tmp"}),
        json!({"name": "data", "mountPath": DATA_MOUNT}),
    ];
    let mut volumes = vec![
        tmp_volume(),
        json!({"name": "data", "persistentVolumeClaim": {"claimName": j.claim}}),
    ];
    if let Some(claim) = &o.models_claim {
        mounts.push(json!({"name": "models", "mountPath": MODELS_IN_IMAGE, "readOnly": true}));
        volumes.push(json!({"name": "models", "persistentVolumeClaim": {"claimName": claim, "readOnly": true}}));
    }
    let labels = json!({
        "app.kubernetes.io/name": o.name,
        "app.kubernetes.io/component": "batch-scoring",
        "app.kubernetes.io/managed-by": "hone",
    });
    let shards = j.shards.max(1);
    // The engine as served, plus the chunks in flight (a few 8192-row
    // chunks of text cells and tensors).
    let scoring = K8sOptions {
        memory: super::Memory {
            request_mib: o.memory.request_mib + 64,
            limit_mib: (o.memory.request_mib + 64) * 2,
        },
        ..o.clone()
    };
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": format!("{}-score", o.name), "labels": labels},
        "spec": {
            "completionMode": "Indexed",
            "completions": shards,
            "parallelism": shards,
            // A pod that fails is retried on its own shard, twice.
            "backoffLimitPerIndex": 2,
            "maxFailedIndexes": 0,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "securityContext": pod_security(),
                    "containers": [{
                        "name": "score",
                        "image": o.image,
                        "imagePullPolicy": "IfNotPresent",
                        // The image's entrypoint is `hone serve`: the same
                        // binary scores (`hone score` reads its shard from
                        // JOB_COMPLETION_INDEX).
                        "command": [HONE_IN_IMAGE],
                        "args": [
                            "score",
                            format!("{MODELS_IN_IMAGE}/{}", j.model),
                            "--data", format!("{DATA_MOUNT}/{}", j.input),
                            "-o", format!("{DATA_MOUNT}/{}", j.output),
                            "--shards", shards.to_string(),
                            "--json",
                        ],
                        "resources": resources(&scoring),
                        "securityContext": container_security(),
                        "volumeMounts": mounts,
                    }],
                    "volumes": volumes,
                },
            },
        },
    })
}

/// Writes the Job to `path`.
pub fn write_job(o: &K8sOptions, j: &ScoreJob, path: &Path) -> Result<PathBuf> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(at(format_args!("cannot create {}", parent.display())))?;
    }
    let text = format!(
        "# Written by hone package: kubectl apply -f this file to score {} on the cluster.\n{}",
        j.input,
        yaml::to_yaml(&score_job(o, j))
    );
    std::fs::write(path, text).map_err(at(format_args!("cannot write {}", path.display())))?;
    Ok(path.to_path_buf())
}
