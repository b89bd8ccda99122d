//! The `inference.GRPCInferenceService` front end.

use std::sync::Arc;

use bytes::Bytes;
use hone_core::{DataType, Error, ErrorKind, Result, Tensor, TensorData};
use tonic::{Request, Response, Status};

use hone_core::NamedTensor;

use crate::auth::{Access, Denied};
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
    match e.kind {
        ErrorKind::InvalidInput => Status::invalid_argument(e.message),
        ErrorKind::NotFound => Status::not_found(e.message),
        ErrorKind::Unavailable => Status::unavailable(e.message),
        ErrorKind::Internal => Status::internal(e.message),
    }
}

/// What the observer needs to know of a request once it is answered.
#[derive(Default)]
struct Facts {
    model: Option<Arc<crate::model::LoadedModel>>,
    bytes_in: usize,
    timing: Option<crate::scheduler::Timing>,
    keep: bool,
    inputs: Option<Vec<NamedTensor>>,
    outputs: Option<Vec<(String, Tensor)>>,
}

impl GrpcService {
    /// Decode, run, encode; what the observer needs goes into `f`.
    async fn infer(
        &self,
        r: Request<ModelInferRequest>,
        f: &mut Facts,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let client = client_deadline(&r);
        let received = std::time::Instant::now();
        let (md, _, mut req) = r.into_parts();
        // No version: the model's traffic split decides (sticky on metadata).
        let model = crate::traffic::resolve(
            repo(self),
            &self.state.traffic,
            &req.model_name,
            Some(&req.model_version),
            None,
            &|h| md.get(h).map(|v| v.as_bytes().to_vec()),
        )
        .map_err(status)?;
        f.model = Some(model.clone());
        f.bytes_in = req.raw_input_contents.iter().map(Bytes::len).sum();
        let deadline = crate::model::Deadline {
            timeout_us: request_timeout_us(&req),
            client,
        };
        let inputs = match decode_inputs(&mut req) {
            Ok(i) => i,
            Err(e) => {
                model.stats.fail(
                    crate::metrics::FailReason::Invalid,
                    std::time::Duration::ZERO,
                );
                return Err(status(e));
            }
        };
        let wanted: Vec<String> = req.outputs.iter().map(|o| o.name.clone()).collect();
        for w in &wanted {
            if model.output_spec(w).is_none() {
                return Err(Status::invalid_argument(format!(
                    "unknown output '{w}' requested"
                )));
            }
        }
        if f.keep {
            f.inputs = Some(inputs.clone());
        }
        let shadow =
            crate::traffic::shadow_for(&self.state.traffic, &model).map(|t| (t, inputs.clone()));
        let ran = model.infer(inputs, deadline).await.map_err(status)?;
        if let Some((target, copy)) = shadow {
            self.state
                .shadows
                .send(repo(self), &model.name, target, copy, ran.outputs.clone());
        }
        f.timing = Some(ran.timing);
        let outputs = ran.outputs;
        if f.keep {
            let names = model.metadata.outputs.iter().map(|o| o.name.clone());
            f.outputs = Some(names.zip(outputs.iter().cloned()).collect());
        }
        let mut resp = ModelInferResponse {
            model_name: model.name.clone(),
            model_version: model.version.clone(),
            id: req.id,
            ..Default::default()
        };
        for (spec, t) in model.metadata.outputs.iter().zip(outputs) {
            if !wanted.is_empty() && !wanted.contains(&spec.name) {
                continue;
            }
            resp.outputs.push(model_infer_response::InferOutputTensor {
                name: spec.name.clone(),
                datatype: t.dtype.as_v2().into(),
                shape: t.shape.clone(),
                ..Default::default()
            });
            resp.raw_output_contents.push(t.to_wire_bytes());
        }
        model.answered(received);
        let mut resp = Response::new(resp);
        if let Ok(v) = crate::observe::server_timing(&ran.timing).parse() {
            resp.metadata_mut().insert("server-timing", v);
        }
        Ok(resp)
    }

    /// The key check of [`crate::auth`], from the `authorization` metadata.
    fn authorize<T>(&self, r: &Request<T>, need: Access) -> Result<(), Status> {
        authorize(&self.state, r, need)
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

/// The deadline a gRPC client set (`grpc-timeout: 100m`, ...), as an instant.
fn client_deadline<T>(r: &Request<T>) -> Option<std::time::Instant> {
    let v = r.metadata().get("grpc-timeout")?.to_str().ok()?;
    let split = v.len().checked_sub(1)?;
    let (n, unit) = (v.get(..split)?, v.get(split..)?);
    let n: u64 = n.parse().ok()?;
    let d = match unit {
        "H" => std::time::Duration::from_secs(n.saturating_mul(3600)),
        "M" => std::time::Duration::from_secs(n.saturating_mul(60)),
        "S" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_millis(n),
        "u" => std::time::Duration::from_micros(n),
        "n" => std::time::Duration::from_nanos(n),
        _ => return None,
    };
    std::time::Instant::now().checked_add(d)
}

/// Triton's `timeout` request parameter (microseconds).
fn request_timeout_us(req: &ModelInferRequest) -> Option<u64> {
    use infer_parameter::ParameterChoice;
    match req.parameters.get("timeout")?.parameter_choice.as_ref()? {
        ParameterChoice::Int64Param(v) => u64::try_from(*v).ok(),
        ParameterChoice::Uint64Param(v) => Some(*v),
        _ => None,
    }
}

fn repo(s: &GrpcService) -> &Registry {
    s.state.repo.models()
}

fn pack<T: Copy>(name: &str, values: &[T], f: impl Fn(T, &mut Vec<u8>) -> bool) -> Result<Bytes> {
    let mut out = Vec::with_capacity(values.len() * 8);
    for &v in values {
        if !f(v, &mut out) {
            return Err(Error::invalid(format!(
                "input '{name}': a value in contents does not fit the datatype"
            )));
        }
    }
    Ok(Bytes::from(out))
}

macro_rules! narrow {
    ($t:ty) => {
        |v, out: &mut Vec<u8>| {
            <$t>::try_from(v)
                .map(|x| out.extend_from_slice(&x.to_le_bytes()))
                .is_ok()
        }
    };
}

/// Typed `contents` to a tensor: the field must fit the datatype, as the
/// protocol assigns them.
fn typed_tensor(
    name: &str,
    dtype: DataType,
    shape: Vec<i64>,
    c: InferTensorContents,
) -> Result<Tensor> {
    let raw = |b: Result<Bytes>| -> Result<Tensor> {
        Tensor::new(dtype, shape.clone(), TensorData::Raw(b?))
            .map_err(|e| Error::invalid(format!("input '{name}': {}", e.message)))
    };
    let expect = |field: &str, len: usize| -> Result<()> {
        let others = c.bool_contents.len()
            + c.int_contents.len()
            + c.int64_contents.len()
            + c.uint_contents.len()
            + c.uint64_contents.len()
            + c.fp32_contents.len()
            + c.fp64_contents.len()
            + c.bytes_contents.len();
        if others != len {
            return Err(Error::invalid(format!(
                "input '{name}': {dtype} data must be sent in contents.{field} only"
            )));
        }
        Ok(())
    };
    match dtype {
        DataType::Bool => {
            expect("bool_contents", c.bool_contents.len())?;
            raw(Ok(Bytes::from(
                c.bool_contents
                    .iter()
                    .map(|&b| u8::from(b))
                    .collect::<Vec<u8>>(),
            )))
        }
        DataType::I8 => {
            expect("int_contents", c.int_contents.len())?;
            raw(pack(name, &c.int_contents, narrow!(i8)))
        }
        DataType::I16 => {
            expect("int_contents", c.int_contents.len())?;
            raw(pack(name, &c.int_contents, narrow!(i16)))
        }
        DataType::I32 => {
            expect("int_contents", c.int_contents.len())?;
            raw(pack(name, &c.int_contents, narrow!(i32)))
        }
        DataType::I64 => {
            expect("int64_contents", c.int64_contents.len())?;
            raw(pack(name, &c.int64_contents, narrow!(i64)))
        }
        DataType::U8 => {
            expect("uint_contents", c.uint_contents.len())?;
            raw(pack(name, &c.uint_contents, narrow!(u8)))
        }
        DataType::U16 => {
            expect("uint_contents", c.uint_contents.len())?;
            raw(pack(name, &c.uint_contents, narrow!(u16)))
        }
        DataType::U32 => {
            expect("uint_contents", c.uint_contents.len())?;
            raw(pack(name, &c.uint_contents, narrow!(u32)))
        }
        DataType::U64 => {
            expect("uint64_contents", c.uint64_contents.len())?;
            raw(pack(name, &c.uint64_contents, narrow!(u64)))
        }
        DataType::F32 => {
            expect("fp32_contents", c.fp32_contents.len())?;
            raw(pack(name, &c.fp32_contents, |v: f32, o: &mut Vec<u8>| {
                o.extend_from_slice(&v.to_le_bytes());
                true
            }))
        }
        DataType::F64 => {
            expect("fp64_contents", c.fp64_contents.len())?;
            raw(pack(name, &c.fp64_contents, |v: f64, o: &mut Vec<u8>| {
                o.extend_from_slice(&v.to_le_bytes());
                true
            }))
        }
        DataType::F16 => Err(Error::invalid(format!(
            "input '{name}': FP16 has no typed contents field; send it in raw_input_contents"
        ))),
        DataType::Bytes => {
            expect("bytes_contents", c.bytes_contents.len())?;
            let items = c.bytes_contents.into_iter().map(Bytes::from).collect();
            Tensor::new(dtype, shape, TensorData::Strings(items))
                .map_err(|e| Error::invalid(format!("input '{name}': {}", e.message)))
        }
    }
}

fn decode_inputs(req: &mut ModelInferRequest) -> Result<Vec<NamedTensor>> {
    let raw = std::mem::take(&mut req.raw_input_contents);
    if !raw.is_empty() && raw.len() != req.inputs.len() {
        return Err(Error::invalid(format!(
            "raw_input_contents has {} entries for {} inputs",
            raw.len(),
            req.inputs.len()
        )));
    }
    let mut raw = raw.into_iter();
    let mut out = Vec::with_capacity(req.inputs.len());
    for input in std::mem::take(&mut req.inputs) {
        let dtype = DataType::from_v2(&input.datatype).ok_or_else(|| {
            Error::invalid(format!(
                "input '{}': unknown datatype '{}'",
                input.name, input.datatype
            ))
        })?;
        let t = match (raw.next(), input.contents) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(format!(
                    "input '{}' has both contents and raw_input_contents",
                    input.name
                )));
            }
            (Some(bytes), None) => Tensor::from_wire_bytes(dtype, input.shape, bytes)
                .map_err(|e| Error::invalid(format!("input '{}': {}", input.name, e.message)))?,
            (None, Some(c)) => typed_tensor(&input.name, dtype, input.shape, c)?,
            (None, None) => {
                return Err(Error::invalid(format!(
                    "input '{}' has no data",
                    input.name
                )));
            }
        };
        out.push((input.name, t));
    }
    Ok(out)
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
        let r = r.into_inner();
        // Triton answers an unknown model or version with ready: false, not
        // an error, and tritonclient's is_model_ready relies on it.
        let ready = repo(self)
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
        let r = r.into_inner();
        let m = repo(self).get(&r.name, Some(&r.version)).map_err(status)?;
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
        let meta = |n: &str| r.metadata().get(n).map(|v| v.as_bytes());
        let Some(mut obs) =
            self.state
                .observer
                .begin("grpc", meta("traceparent"), meta("x-request-id"))
        else {
            return self.infer(r, &mut Facts::default()).await;
        };
        let mut f = Facts {
            keep: self.state.observer.sample_payload(),
            ..Facts::default()
        };
        let mut result = self.infer(r, &mut f).await;
        let (code, error, bytes_out) = match &result {
            Ok(r) => (
                0,
                None,
                r.get_ref().raw_output_contents.iter().map(Bytes::len).sum(),
            ),
            Err(e) => (e.code() as u16, Some(e.message().to_string()), 0),
        };
        let md = match &mut result {
            Ok(r) => r.metadata_mut(),
            Err(e) => e.metadata_mut(),
        };
        if let Ok(v) = obs.request_id.parse() {
            md.insert("x-request-id", v);
        }
        if let Some(t) = obs.trace.filter(|_| self.state.observer.tracing())
            && let Ok(v) = t.header().parse()
        {
            md.insert("traceparent", v);
        }
        obs.keep = f.inputs.take();
        let outcome = crate::observe::Outcome {
            model: f
                .model
                .as_deref()
                .map(|m| (m.name.as_str(), m.version.as_str())),
            status: code,
            error: error.as_deref(),
            bytes_in: f.bytes_in,
            bytes_out,
            timing: f.timing,
        };
        self.state.observer.finish(obs, &outcome, f.outputs.take());
        result
    }

    async fn model_config(
        &self,
        r: Request<ModelConfigRequest>,
    ) -> Result<Response<ModelConfigResponse>, Status> {
        self.authorize(&r, Access::Read)?;
        let r = r.into_inner();
        let m = repo(self).get(&r.name, Some(&r.version)).map_err(status)?;
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
            vec![repo(self).get(&r.name, Some(&r.version)).map_err(status)?]
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
        self.state.load_model(&r.model_name).await.map_err(status)?;
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
            .unload_model(&r.model_name)
            .await
            .map_err(status)?;
        Ok(Response::new(RepositoryModelUnloadResponse {}))
    }
}
