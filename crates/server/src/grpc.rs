//! The `inference.GRPCInferenceService` front end.

use std::sync::Arc;

use hone_core::{Error, Result};
use tonic::{Request, Response, Status};

use crate::auth::{Access, Denied};
use crate::model::LoadedModel;
use crate::repository::{Registry, check_load_parameters};
use crate::state::ServerState;
use crate::state::{EXTENSIONS, SERVER_NAME};

pub use crate::proto;

use proto::grpc_inference_service_server::GrpcInferenceService;
use proto::*;

pub use proto::grpc_inference_service_server::GrpcInferenceServiceServer;

pub struct GrpcService {
    pub state: Arc<ServerState>,
}

pub(crate) fn status(e: Error) -> Status {
    crate::error::ServeError::from(e).grpc_status()
}

impl GrpcService {
    /// The key check of [`crate::auth`], from the `authorization` metadata.
    fn authorize<T>(&self, r: &Request<T>, need: Access) -> Result<(), Status> {
        authorize(&self.state, r, need)
    }

    /// The version asked for (empty: the newest ready), loaded first when
    /// out of memory under the budget.
    async fn model(&self, name: &str, version: &str) -> Result<Arc<LoadedModel>, Status> {
        let v = Some(version);
        self.state
            .repo
            .lookup(name, None, |models| models.get(name, v))
            .await
            .map_err(status)
    }
}

/// The key check of [`crate::auth`] from the `authorization` metadata, for
/// every gRPC service on the port.
pub(crate) fn authorize<T>(
    state: &ServerState,
    r: &Request<T>,
    need: Access,
) -> Result<(), Status> {
    let given = r.metadata().get("authorization").map(|v| v.as_bytes());
    state.keys.check(need, given).map_err(|d| match d {
        Denied::Unauthenticated(m) => Status::unauthenticated(m),
        Denied::Forbidden => Status::permission_denied(d.message()),
        Denied::RateLimited(_) => Status::resource_exhausted(d.message()),
    })
}

/// The model ModelMesh routed a request to (its `mm-model-id` header),
/// which names it over the message's own model name.
fn mesh_id<T>(r: &Request<T>) -> Option<String> {
    let v = r.metadata().get(crate::modelmesh::MODEL_ID_HEADER)?;
    v.to_str()
        .ok()
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

fn repo(s: &GrpcService) -> &Registry {
    s.state.repo.models()
}

#[tonic::async_trait]
impl GrpcInferenceService for GrpcService {
    async fn server_live(
        &self,
        r: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        self.authorize(&r, Access::Health)?;
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        r: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        self.authorize(&r, Access::Health)?;
        Ok(Response::new(ServerReadyResponse {
            ready: self.state.ready(),
        }))
    }

    async fn model_ready(
        &self,
        r: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        self.authorize(&r, Access::Health)?;
        let mesh = mesh_id(&r);
        let mut r = r.into_inner();
        if let Some(id) = mesh {
            r.name = id;
        }
        // Triton answers an unknown model or version with ready: false, not
        // an error, and tritonclient's is_model_ready relies on it.
        let ready = repo(self).is_dormant(&r.name)
            || repo(self)
                .get(&r.name, Some(&r.version))
                .is_ok_and(|m| m.healthy());
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        r: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        self.authorize(&r, Access::Read)?;
        Ok(Response::new(ServerMetadataResponse {
            name: SERVER_NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: EXTENSIONS.iter().map(|s| s.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        r: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        self.authorize(&r, Access::Read)?;
        let mesh = mesh_id(&r);
        let r = r.into_inner();
        let m = self
            .model(mesh.as_deref().unwrap_or(&r.name), &r.version)
            .await?;
        let tm = |t: &hone_core::TensorSpec| model_metadata_response::TensorMetadata {
            name: t.name.clone(),
            datatype: t.dtype.as_v2().into(),
            shape: t.dims.clone(),
        };
        Ok(Response::new(ModelMetadataResponse {
            name: m.name.clone(),
            versions: repo(self).ready_versions(&m.name),
            platform: m.config.platform.clone(),
            inputs: m.input_specs.iter().map(tm).collect(),
            outputs: m.metadata.outputs.iter().map(tm).collect(),
        }))
    }

    async fn model_infer(
        &self,
        r: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        self.authorize(&r, Access::Read)?;
        let mesh = mesh_id(&r);
        let (md, _, req) = r.into_parts();
        let head = crate::infer::Head {
            route: crate::infer::Route {
                model: mesh.unwrap_or_else(|| req.model_name.clone()),
                // proto3's default, "", names no version.
                version: Some(req.model_version.clone()).filter(|v| !v.is_empty()),
                label: None,
            },
            headers: md.into_headers(),
            refused: None,
        };
        crate::infer::Infer::new(self.state.clone())
            .serve::<crate::grpc_infer::Grpc>(head, req)
            .await
    }

    async fn model_config(
        &self,
        r: Request<ModelConfigRequest>,
    ) -> Result<Response<ModelConfigResponse>, Status> {
        self.authorize(&r, Access::Read)?;
        let r = r.into_inner();
        let m = self.model(&r.name, &r.version).await?;
        Ok(Response::new(ModelConfigResponse {
            config: Some(m.config.to_proto()),
        }))
    }

    async fn model_statistics(
        &self,
        r: Request<ModelStatisticsRequest>,
    ) -> Result<Response<ModelStatisticsResponse>, Status> {
        self.authorize(&r, Access::Read)?;
        let r = r.into_inner();
        let models = if r.name.is_empty() {
            repo(self).loaded()
        } else {
            vec![self.model(&r.name, &r.version).await?]
        };
        let d = |count: u64, ns: u64| Some(StatisticDuration { count, ns });
        use std::sync::atomic::Ordering::Relaxed;
        let model_stats = models
            .iter()
            .map(|m| {
                let s = &m.stats;
                let [input, infer, output] = s.compute_stats();
                proto::ModelStatistics {
                    name: m.name.clone(),
                    version: m.version.clone(),
                    last_inference: s.last_inference_ms.load(Relaxed),
                    inference_count: s.inference_count.load(Relaxed),
                    execution_count: s.execution_count.load(Relaxed),
                    inference_stats: Some(InferStatistics {
                        success: d(s.success.load(Relaxed), s.request.sum_ns()),
                        fail: d(s.total_failures(), s.fail_ns.load(Relaxed)),
                        queue: d(s.queue.count(), s.queue.sum_ns()),
                        compute_input: d(input.0, input.1),
                        compute_infer: d(infer.0, infer.1),
                        compute_output: d(output.0, output.1),
                    }),
                }
            })
            .collect();
        Ok(Response::new(ModelStatisticsResponse { model_stats }))
    }

    async fn repository_index(
        &self,
        r: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        self.authorize(&r, Access::Read)?;
        let r = r.into_inner();
        let models = repo(self)
            .index(r.ready)
            .into_iter()
            .map(|e| repository_index_response::ModelIndex {
                name: e.name,
                version: e.version,
                state: e.state,
                reason: e.reason,
            })
            .collect();
        Ok(Response::new(RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        r: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        self.authorize(&r, Access::Admin)?;
        let r = r.into_inner();
        check_load_parameters(r.parameters.keys().map(String::as_str)).map_err(status)?;
        self.state
            .control
            .load_model(&r.model_name)
            .await
            .map_err(status)?;
        Ok(Response::new(RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        r: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        self.authorize(&r, Access::Admin)?;
        let r = r.into_inner();
        check_load_parameters(r.parameters.keys().map(String::as_str)).map_err(status)?;
        self.state
            .control
            .unload_model(&r.model_name)
            .await
            .map_err(status)?;
        Ok(Response::new(RepositoryModelUnloadResponse {}))
    }
}
