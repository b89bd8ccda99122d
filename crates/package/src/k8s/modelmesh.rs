//! KServe ModelMesh's objects: a multi-model ServingRuntime whose pods run
//! hone with ModelMesh's runtime API on, and an InferenceService placed
//! on it. ModelMesh's puller fetches each model from its storage URI into
//! the pod; hone loads it when ModelMesh asks and ModelMesh routes
//! inference to the pod that holds it.

use serde_json::{Value, json};

use super::options::K8sOptions;
use super::pod::{labels, runtime_container, tmp_volume};

/// ModelMesh's ports: its runtime API (hone listens on loopback; the
/// puller beside it in the pod calls it) and the V2 gRPC data port.
const MANAGEMENT_PORT: u16 = 8085;
const DATA_PORT: u16 = 8001;
/// Where hone links the models ModelMesh places (writable: under /tmp).
const REPOSITORY: &str = "/tmp/modelmesh-models";

pub(super) fn runtime_name(o: &K8sOptions) -> String {
    format!("{}-mm", o.name)
}

/// The ServingRuntime: `multiModel`, hone's runtime API as ModelMesh's
/// `grpcEndpoint`, its V2 gRPC port as the data endpoint. Selected by name
/// only (no autoSelect), so it never captures other teams' ONNX models.
pub fn serving_runtime(o: &K8sOptions) -> Value {
    let args: Vec<String> = [
        "serve",
        "--model-repository",
        REPOSITORY,
        "--host",
        "0.0.0.0",
        "--http-port",
        "8000",
        "--grpc-port",
        &DATA_PORT.to_string(),
        "--metrics-port",
        "8002",
        "--modelmesh-port",
        &MANAGEMENT_PORT.to_string(),
        // An empty repository is the normal start: ModelMesh places models.
        "--strict-readiness",
        "false",
    ]
    .map(String::from)
    .to_vec();
    let container = runtime_container(
        o,
        "hone",
        args,
        &[("http", 8000), ("grpc", DATA_PORT), ("metrics", 8002)],
        8000,
    );
    json!({
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": runtime_name(o), "labels": labels(o)},
        "spec": {
            "supportedModelFormats": [{"name": "onnx", "version": "1", "autoSelect": false}],
            "protocolVersions": ["grpc-v2"],
            "multiModel": true,
            "grpcEndpoint": format!("port:{MANAGEMENT_PORT}"),
            "grpcDataEndpoint": format!("port:{DATA_PORT}"),
            "replicas": o.replicas,
            "containers": [container],
            "volumes": [tmp_volume()],
        },
    })
}

/// An InferenceService ModelMesh places on hone's runtime, its model
/// pulled from `storage_uri`.
pub fn inference_service(o: &K8sOptions, storage_uri: &str) -> Value {
    json!({
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": o.name,
            "labels": labels(o),
            "annotations": {"serving.kserve.io/deploymentMode": "ModelMesh"},
        },
        "spec": {"predictor": {"model": {
            "modelFormat": {"name": "onnx"},
            "runtime": runtime_name(o),
            "storageUri": storage_uri,
        }}},
    })
}
