//! KServe ModelMesh's runtime API (`--modelmesh-port`), as ModelMesh's
//! puller drives it: status purges what a restarted mesh left, models load
//! from the pulled files in each layout (a directory with one `.onnx`, a
//! file, a Triton model directory), inference on the V2 gRPC port finds
//! them by ModelMesh's id (header or injected name), sizes are reported,
//! bad requests are refused before anything loads, and unload removes them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{ONES_OUTPUT, TempDir, workspace};
use hone_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use hone_server::grpc::proto::{self, ModelInferRequest};
use hone_server::proto::mmesh::model_runtime_client::ModelRuntimeClient;
use hone_server::proto::mmesh::*;
use hone_server::{Server, ServerOptions};
use tonic::Code;

fn mlp100() -> std::path::PathBuf {
    workspace().join("examples/repository/mlp100/1/model.onnx")
}

fn ones(model: &str) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.into(),
        inputs: vec![proto::model_infer_request::InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, 100],
            ..Default::default()
        }],
        raw_input_contents: vec![
            [1f32; 100]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>()
                .into(),
        ],
        ..Default::default()
    }
}

/// The first output of an inference, as floats.
fn first(r: &proto::ModelInferResponse) -> f32 {
    let b = &r.raw_output_contents[0];
    f32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn load(id: &str, path: &std::path::Path) -> LoadModelRequest {
    LoadModelRequest {
        model_id: id.into(),
        model_type: "onnx".into(),
        model_path: path.display().to_string(),
        model_key: "{}".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modelmesh_places_serves_sizes_and_removes_models() {
    let repo = TempDir::new();
    let pulled = TempDir::new();
    // A model a restarted mesh left behind: the status call purges it.
    common::add_version(repo.path(), "mlp", "stale", 1);
    // The puller's three layouts.
    let a = pulled.path().join("a");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::copy(mlp100(), a.join("model.onnx")).unwrap();
    let b = pulled.path().join("b/weights.onnx");
    std::fs::create_dir_all(b.parent().unwrap()).unwrap();
    std::fs::copy(mlp100(), &b).unwrap();
    let c = pulled.path().join("c");
    std::fs::create_dir_all(c.join("3")).unwrap();
    std::fs::copy(mlp100(), c.join("3/model.onnx")).unwrap();
    std::fs::write(c.join("config.pbtxt"), "max_batch_size: 4\n").unwrap();
    let empty = pulled.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("README"), "no model here").unwrap();

    let mut opts = ServerOptions::ephemeral(repo.path());
    opts.strict_readiness = false;
    opts.modelmesh_port = Some(0);
    let server = Server::start(opts).await.unwrap();
    let mesh_url = format!("http://{}", server.modelmesh_addr.unwrap());
    assert!(server.modelmesh_addr.unwrap().ip().is_loopback());
    let mut mm = ModelRuntimeClient::connect(mesh_url).await.unwrap();
    let mut v2 =
        GrpcInferenceServiceClient::connect(format!("http://{}", server.grpc_addr.unwrap()))
            .await
            .unwrap();

    let status = mm
        .runtime_status(RuntimeStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status, runtime_status_response::Status::Ready as i32);
    assert!(status.capacity_in_bytes > 0);
    assert_eq!(
        status.method_infos["inference.GRPCInferenceService/ModelInfer"].id_injection_path,
        [1]
    );
    assert!(!repo.path().join("stale").exists(), "purged at start");
    assert!(v2.model_infer(ones("stale")).await.is_err());

    let file_bytes = std::fs::metadata(mlp100()).unwrap().len();
    let predicted = mm
        .predict_model_size(PredictModelSizeRequest {
            model_id: "a".into(),
            model_path: a.display().to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .size_in_bytes;
    assert!(predicted >= file_bytes, "{predicted} < {file_bytes}");

    // A directory holding one .onnx file.
    let id = "mnist__isvc-6b2eb0b8bf";
    let loaded = mm.load_model(load(id, &a)).await.unwrap().into_inner();
    assert!(loaded.size_in_bytes >= file_bytes, "{loaded:?}");
    // ModelMesh's header names the model over the message's own name.
    let mut r = tonic::Request::new(ones("the-isvc-name"));
    r.metadata_mut().insert("mm-model-id", id.parse().unwrap());
    let out = v2.model_infer(r).await.unwrap().into_inner();
    assert!((first(&out) - ONES_OUTPUT).abs() < 1e-5, "{out:?}");
    // The id injected into the model name works as well.
    assert!(v2.model_infer(ones(id)).await.is_ok());
    let size = mm
        .model_size(ModelSizeRequest {
            model_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(size.size_in_bytes, loaded.size_in_bytes);

    // A file of another name; a Triton model directory.
    mm.load_model(load("b", &b)).await.unwrap();
    assert!(v2.model_infer(ones("b")).await.is_ok());
    mm.load_model(load("c", &c)).await.unwrap();
    let out = v2.model_infer(ones("c")).await.unwrap().into_inner();
    assert_eq!(out.model_version, "3");

    // Refused before anything loads: INVALID_ARGUMENT, nothing left behind.
    for (req, what) in [
        (load("../escape", &a), "an id that leaves the repository"),
        (
            load("gone", &pulled.path().join("nope")),
            "a path that does not exist",
        ),
        (load("empty", &empty), "a directory without a model"),
    ] {
        let e = mm.load_model(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
    }
    assert!(!repo.path().join("empty").exists());
    assert!(!repo.path().join("gone").exists());

    // Unload: gone from the repository and from the disk; twice is fine.
    for _ in 0..2 {
        mm.unload_model(UnloadModelRequest {
            model_id: id.into(),
        })
        .await
        .unwrap();
    }
    assert!(!repo.path().join(id).exists());
    let e = v2.model_infer(ones(id)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = mm
        .model_size(ModelSizeRequest {
            model_id: id.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // The others still serve, and the pulled files are untouched.
    assert!(v2.model_infer(ones("b")).await.is_ok());
    assert!(a.join("model.onnx").is_file() && b.is_file());
    server.shutdown().await;
}
