//! KServe V2 over gRPC: `ModelInferRequest` to a [`Call`] and an
//! [`Answer`] back to `ModelInferResponse`, as the gRPC transport of the
//! inference core.

use std::sync::Arc;

use std::time::Instant;

use axum::http::HeaderMap;
use bytes::Bytes;
use hone_core::element::{JsonNumber, push_json_number};
use hone_core::{DataType, Error, NamedTensor, Result, Tensor, TensorData};
use tonic::{Response, Status};

use crate::error::ServeError;
use crate::infer::{Answer, Call, Head, Read, Transport, Wire};
use crate::model::{Deadline, LoadedModel};
use crate::proto::*;
use crate::state::ServerState;

/// The gRPC port's `ModelInfer`.
pub(crate) struct Grpc;

/// A request and the deadline its client set on the call.
pub(crate) struct GrpcRaw {
    req: ModelInferRequest,
    client: Option<Instant>,
}

impl Transport for Grpc {
    type Body = ModelInferRequest;
    type Raw = GrpcRaw;
    type Encoded = ModelInferResponse;
    type Reply = std::result::Result<Response<ModelInferResponse>, Status>;

    /// tonic has read and decoded the message; the budget layer charged it.
    async fn read(
        _: &Arc<ServerState>,
        head: &Head,
        req: ModelInferRequest,
    ) -> std::result::Result<Read<GrpcRaw>, ServeError> {
        let client = head.client_deadline();
        Ok(Read {
            raw: GrpcRaw { req, client },
            ticket: None,
        })
    }

    fn discard(_: &Arc<ServerState>, _: &Head, _: ModelInferRequest) {}

    fn raw_len(raw: &GrpcRaw) -> usize {
        raw.req.raw_input_contents.iter().map(Bytes::len).sum()
    }

    async fn reply(
        _: &Arc<ServerState>,
        _: &Head,
        resp: ModelInferResponse,
    ) -> std::result::Result<Self::Reply, ServeError> {
        Ok(Ok(Response::new(resp)))
    }

    fn refuse(e: ServeError) -> Self::Reply {
        Err(e.grpc_status())
    }

    fn annotate(reply: &mut Self::Reply, headers: HeaderMap) {
        let md = match reply {
            Ok(r) => r.metadata_mut(),
            Err(s) => s.metadata_mut(),
        };
        for (name, value) in headers.iter() {
            let key = tonic::metadata::AsciiMetadataKey::from_bytes(name.as_str().as_bytes());
            let value = tonic::metadata::AsciiMetadataValue::try_from(value.as_bytes());
            if let (Ok(k), Ok(v)) = (key, value) {
                md.insert(k, v);
            }
        }
    }

    fn status(reply: &Self::Reply) -> u16 {
        match reply {
            Ok(_) => 0,
            Err(s) => s.code() as u16,
        }
    }

    fn bytes_out(reply: &Self::Reply) -> usize {
        match reply {
            Ok(r) => r.get_ref().raw_output_contents.iter().map(Bytes::len).sum(),
            Err(_) => 0,
        }
    }
}

/// The request id and the outputs asked for.
pub(crate) struct Wanted {
    id: String,
    outputs: Vec<String>,
}

impl Wire for Grpc {
    const PROTOCOL: &'static str = "grpc";
    type Transport = Grpc;
    type Keep = Wanted;

    /// Raw contents are slices of the message; typed contents are small.
    fn decode_off_thread(_: &GrpcRaw) -> bool {
        false
    }

    fn decode(raw: GrpcRaw, _: &LoadedModel) -> std::result::Result<(Call, Wanted), ServeError> {
        let mut req = raw.req;
        let deadline = Deadline {
            timeout_us: request_timeout_us(&req),
            client: raw.client,
        };
        let inputs = decode_inputs(&mut req)?;
        let mut classify = Vec::new();
        for o in &req.outputs {
            use infer_parameter::ParameterChoice;
            let k = match o
                .parameters
                .get("classification")
                .and_then(|p| p.parameter_choice.as_ref())
            {
                None => None,
                Some(ParameterChoice::Int64Param(v)) => Some(*v),
                Some(ParameterChoice::Uint64Param(v)) => {
                    Some(i64::try_from(*v).unwrap_or(i64::MAX))
                }
                Some(_) => {
                    return Err(hone_core::Error::invalid(format!(
                        "output '{}': parameter classification must be an integer",
                        o.name
                    ))
                    .into());
                }
            };
            if let Some(k) = crate::classify::count(&o.name, k)? {
                classify.push((o.name.clone(), k));
            }
        }
        let outputs: Vec<String> = req.outputs.into_iter().map(|o| o.name).collect();
        let call = Call {
            classify,
            inputs,
            outputs: outputs.clone(),
            deadline,
            id: Some(req.id.clone()).filter(|id| !id.is_empty()),
            fresh_bytes: 0,
        };
        Ok((
            call,
            Wanted {
                id: req.id,
                outputs,
            },
        ))
    }

    fn encode_off_thread(_: &Answer) -> bool {
        false
    }

    fn encode(a: &Answer, w: Wanted) -> std::result::Result<ModelInferResponse, ServeError> {
        let mut resp = ModelInferResponse {
            model_name: a.model.name.clone(),
            model_version: a.model.version.clone(),
            id: match (w.id.is_empty(), &a.id) {
                (true, Some(kept)) => kept.clone(),
                _ => w.id,
            },
            ..Default::default()
        };
        for (name, t) in a.named() {
            if !w.outputs.is_empty() && !w.outputs.iter().any(|o| o == name) {
                continue;
            }
            resp.outputs.push(model_infer_response::InferOutputTensor {
                name: name.to_string(),
                datatype: t.dtype.as_v2().into(),
                shape: t.shape.clone(),
                ..Default::default()
            });
            resp.raw_output_contents.push(t.to_wire_bytes());
        }
        Ok(resp)
    }
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

/// Packs the values of one typed field as `dtype`, each through core's one
/// range-checked reader.
fn pack<T: Copy>(
    name: &str,
    dtype: DataType,
    values: &[T],
    number: impl Fn(T) -> JsonNumber,
) -> Result<Bytes> {
    let mut out = Vec::with_capacity(values.len() * dtype.size().unwrap_or(8));
    for &v in values {
        if !push_json_number(dtype, number(v), &mut out) {
            return Err(Error::invalid(format!(
                "input '{name}': a value in contents does not fit the datatype"
            )));
        }
    }
    Ok(Bytes::from(out))
}

/// Typed `contents` to a tensor: the field must fit the datatype, as the
/// protocol assigns them.
fn typed_tensor(
    name: &str,
    dtype: DataType,
    shape: Vec<i64>,
    c: InferTensorContents,
) -> Result<Tensor> {
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
    use JsonNumber::{B, F, I, U};
    let packed = match dtype {
        DataType::Bool => {
            expect("bool_contents", c.bool_contents.len())?;
            pack(name, dtype, &c.bool_contents, B)
        }
        DataType::I8 | DataType::I16 | DataType::I32 => {
            expect("int_contents", c.int_contents.len())?;
            pack(name, dtype, &c.int_contents, |v| I(v.into()))
        }
        DataType::I64 => {
            expect("int64_contents", c.int64_contents.len())?;
            pack(name, dtype, &c.int64_contents, I)
        }
        DataType::U8 | DataType::U16 | DataType::U32 => {
            expect("uint_contents", c.uint_contents.len())?;
            pack(name, dtype, &c.uint_contents, |v| U(v.into()))
        }
        DataType::U64 => {
            expect("uint64_contents", c.uint64_contents.len())?;
            pack(name, dtype, &c.uint64_contents, U)
        }
        DataType::F32 => {
            expect("fp32_contents", c.fp32_contents.len())?;
            pack(name, dtype, &c.fp32_contents, |v| F(v.into()))
        }
        DataType::F64 => {
            expect("fp64_contents", c.fp64_contents.len())?;
            pack(name, dtype, &c.fp64_contents, F)
        }
        DataType::F16 | DataType::Bf16 => Err(Error::invalid(format!(
            "input '{name}': {dtype} has no typed contents field; send it in raw_input_contents"
        ))),
        DataType::Bytes => {
            expect("bytes_contents", c.bytes_contents.len())?;
            let items = c.bytes_contents.into_iter().map(Bytes::from).collect();
            return Tensor::new(dtype, shape, TensorData::Strings(items))
                .map_err(|e| Error::invalid(format!("input '{name}': {}", e.message)));
        }
    };
    Tensor::new(dtype, shape, TensorData::Raw(packed?))
        .map_err(|e| Error::invalid(format!("input '{name}': {}", e.message)))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(dtype: DataType, c: InferTensorContents) -> Result<Tensor> {
        let n = i64::try_from(
            c.bool_contents.len()
                + c.int_contents.len()
                + c.int64_contents.len()
                + c.uint_contents.len()
                + c.uint64_contents.len()
                + c.fp32_contents.len()
                + c.fp64_contents.len(),
        )
        .unwrap();
        typed_tensor("x", dtype, vec![n], c)
    }

    /// Each typed field reaches its datatypes through core's range checks.
    #[test]
    fn typed_contents_are_range_checked_per_datatype() {
        let ints = |v: Vec<i32>| InferTensorContents {
            int_contents: v,
            ..Default::default()
        };
        let t = typed(DataType::I8, ints(vec![-128, 127])).unwrap();
        assert_eq!(t.to_f64s(), Some(vec![-128.0, 127.0]));
        let e = typed(DataType::I8, ints(vec![128])).unwrap_err();
        assert!(e.message.contains("input 'x'"), "{e}");
        let t = typed(
            DataType::U16,
            InferTensorContents {
                uint_contents: vec![65535],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(t.to_f64s(), Some(vec![65535.0]));
        assert!(
            typed(
                DataType::U8,
                InferTensorContents {
                    uint_contents: vec![256],
                    ..Default::default()
                }
            )
            .is_err()
        );
        let t = typed(
            DataType::Bool,
            InferTensorContents {
                bool_contents: vec![true, false],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(t.to_f64s(), Some(vec![1.0, 0.0]));
        // The wrong field for the datatype is named.
        let e = typed(DataType::I64, ints(vec![1])).unwrap_err();
        assert!(e.message.contains("int64_contents"), "{e}");
    }
}
