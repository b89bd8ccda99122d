//! KServe V2 REST bodies: JSON tensors and Triton's binary tensor data
//! extension, in both directions.
//!
//! JSON `data` is parsed straight into packed little-endian bytes (no
//! intermediate `serde_json::Value`); binary payloads are sliced out of the
//! request body without copying.

use std::fmt;

use bytes::Bytes;
use hone_core::element::{JsonNumber, NonFinite, push_json_number, write_json_list};
use hone_core::{DataType, Error, Result, Tensor, TensorData};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde_json::value::RawValue;

use hone_core::NamedTensor;

#[derive(Deserialize)]
struct RequestJson<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
    #[serde(borrow)]
    inputs: Vec<InputJson<'a>>,
    #[serde(default)]
    outputs: Option<Vec<OutputJson>>,
}

#[derive(Deserialize, Default)]
struct Parameters {
    #[serde(default)]
    binary_data_size: Option<u64>,
    #[serde(default)]
    binary_data: Option<bool>,
    #[serde(default)]
    binary_data_output: Option<bool>,
    /// Triton's classification extension, on a requested output.
    #[serde(default)]
    classification: Option<serde_json::Value>,
    /// Triton's request timeout, in microseconds.
    #[serde(default)]
    timeout: Option<u64>,
}

#[derive(Deserialize)]
struct InputJson<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Parameters>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct OutputJson {
    name: String,
    #[serde(default)]
    parameters: Option<Parameters>,
}

/// An output the client asked for, and whether it wants it as binary.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedOutput {
    pub name: String,
    pub binary: bool,
    /// The top k classes as text (Triton's classification extension).
    pub classification: Option<usize>,
}

#[derive(Debug)]
pub struct DecodedRequest {
    pub id: Option<String>,
    pub inputs: Vec<NamedTensor>,
    /// Empty: every output, each binary if `binary_default`.
    pub outputs: Vec<RequestedOutput>,
    pub binary_default: bool,
    /// The request's `timeout` parameter (µs), if it gave one.
    pub timeout_us: Option<u64>,
}

/// Decodes a V2 infer body. `header_len` is the value of the
/// `Inference-Header-Content-Length` header when the client sent binary data.
pub fn decode_request(body: Bytes, header_len: Option<usize>) -> Result<DecodedRequest> {
    if body.is_empty() {
        return Err(Error::invalid(
            "empty request body; expected a JSON inference request",
        ));
    }
    let json_len = header_len.unwrap_or(body.len());
    if json_len > body.len() {
        return Err(Error::invalid(format!(
            "Inference-Header-Content-Length is {json_len} but the body has only {} bytes",
            body.len()
        )));
    }
    let json = body.get(..json_len).unwrap_or_default();
    let req: RequestJson<'_> = serde_json::from_slice(json)
        .map_err(|e| Error::invalid(format!("malformed inference request JSON: {e}")))?;
    let params = req.parameters.unwrap_or_default();
    if params.classification.is_some() {
        return Err(Error::invalid(
            "the classification extension is not supported",
        ));
    }
    let binary_default = params.binary_data_output.unwrap_or(false);
    let mut offset = json_len;
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for input in req.inputs {
        let dtype = DataType::from_v2(&input.datatype).ok_or_else(|| {
            Error::invalid(format!(
                "input '{}': unknown datatype '{}'",
                input.name, input.datatype
            ))
        })?;
        let binary_size = input.parameters.as_ref().and_then(|p| p.binary_data_size);
        let tensor = match (binary_size, input.data) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(format!(
                    "input '{}' has both 'data' and binary_data_size",
                    input.name
                )));
            }
            (Some(size), None) => {
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                let end = offset.checked_add(size).filter(|&e| e <= body.len()).ok_or_else(|| {
                    Error::invalid(format!(
                        "input '{}': binary_data_size {size} runs past the end of the body ({} binary bytes remain)",
                        input.name,
                        body.len() - offset
                    ))
                })?;
                let t = Tensor::from_wire_bytes(dtype, input.shape, body.slice(offset..end))
                    .map_err(|e| {
                        Error::invalid(format!("input '{}': {}", input.name, e.message))
                    })?;
                offset = end;
                t
            }
            (None, Some(raw)) => decode_json_data(&input.name, dtype, input.shape, raw)?,
            (None, None) => {
                return Err(Error::invalid(format!(
                    "input '{}' has neither 'data' nor binary_data_size",
                    input.name
                )));
            }
        };
        inputs.push((input.name, tensor));
    }
    if offset != body.len() {
        return Err(Error::invalid(format!(
            "{} bytes of binary data follow the JSON header but the inputs claim {}",
            body.len() - json_len,
            offset - json_len
        )));
    }
    let outputs = req
        .outputs
        .unwrap_or_default()
        .into_iter()
        .map(|o| {
            let p = o.parameters.unwrap_or_default();
            let k = match &p.classification {
                None => None,
                Some(v) => Some(v.as_i64().ok_or_else(|| {
                    Error::invalid(format!(
                        "output '{}': parameter classification must be a whole number, not {v}",
                        o.name
                    ))
                })?),
            };
            Ok(RequestedOutput {
                classification: crate::classify::count(&o.name, k)?,
                binary: p.binary_data.unwrap_or(binary_default),
                name: o.name,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(DecodedRequest {
        id: req.id,
        inputs,
        outputs,
        binary_default,
        timeout_us: params.timeout,
    })
}

/// Flattens arbitrarily nested JSON arrays into packed elements.
struct Flatten<'a> {
    dtype: DataType,
    raw: &'a mut Vec<u8>,
    strings: &'a mut Vec<Bytes>,
    count: &'a mut usize,
    limit: usize,
}

impl Flatten<'_> {
    fn reborrow(&mut self) -> Flatten<'_> {
        Flatten {
            dtype: self.dtype,
            raw: self.raw,
            strings: self.strings,
            count: self.count,
            limit: self.limit,
        }
    }

    fn bump<E: de::Error>(&mut self) -> Result<(), E> {
        *self.count += 1;
        if *self.count > self.limit {
            return Err(E::custom(format_args!(
                "more elements than the shape holds ({})",
                self.limit
            )));
        }
        Ok(())
    }

    fn num<E: de::Error>(mut self, v: JsonNumber) -> Result<(), E> {
        self.bump()?;
        if push_json_number(self.dtype, v, self.raw) {
            Ok(())
        } else {
            Err(E::custom(format_args!(
                "{v} is not a valid {} value",
                self.dtype
            )))
        }
    }
}

impl<'de> DeserializeSeed<'de> for Flatten<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Flatten<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of {} values", self.dtype)
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self.reborrow())?.is_some() {}
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.num(JsonNumber::B(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.num(JsonNumber::U(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.num(JsonNumber::I(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.num(JsonNumber::F(v))
    }
    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        if self.dtype != DataType::Bytes {
            return Err(E::custom(format_args!(
                "a string is not a valid {} value",
                self.dtype
            )));
        }
        self.bump()?;
        self.strings.push(Bytes::copy_from_slice(v.as_bytes()));
        Ok(())
    }
}

fn decode_json_data(
    name: &str,
    dtype: DataType,
    shape: Vec<i64>,
    raw: &RawValue,
) -> Result<Tensor> {
    let n = hone_core::element_count(&shape)
        .map_err(|e| Error::invalid(format!("input '{name}': {}", e.message)))?;
    // Every JSON element takes at least one byte of text, so this bounds the
    // allocation by the body size whatever shape is declared.
    if n > raw.get().len() {
        return Err(Error::invalid(format!(
            "input '{name}': shape {shape:?} needs {n} elements but 'data' is only {} bytes of JSON",
            raw.get().len()
        )));
    }
    let mut bytes = Vec::with_capacity(n * dtype.size().unwrap_or(0));
    let mut strings = Vec::new();
    let mut count = 0usize;
    let mut de = serde_json::Deserializer::from_str(raw.get());
    Flatten {
        dtype,
        raw: &mut bytes,
        strings: &mut strings,
        count: &mut count,
        limit: n,
    }
    .deserialize(&mut de)
    .map_err(|e| Error::invalid(format!("input '{name}': {e}")))?;
    if count != n {
        return Err(Error::invalid(format!(
            "input '{name}': shape {shape:?} needs {n} elements, 'data' has {count}"
        )));
    }
    let data = if dtype == DataType::Bytes {
        TensorData::Strings(strings)
    } else {
        TensorData::Raw(Bytes::from(bytes))
    };
    Tensor::new(dtype, shape, data)
        .map_err(|e| Error::invalid(format!("input '{name}': {}", e.message)))
}

/// An encoded response body and, when binary outputs follow the JSON, the
/// JSON header's length.
pub struct EncodedResponse {
    pub body: Vec<u8>,
    pub header_len: Option<usize>,
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // serde_json's escaping is correct for any string; names are short.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_data(out: &mut Vec<u8>, t: &Tensor) {
    out.push(b'[');
    match &t.data {
        TensorData::Strings(items) => {
            for (i, s) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, &String::from_utf8_lossy(s));
            }
        }
        // JSON has no NaN/Infinity; null is what clients can parse.
        TensorData::Raw(b) => write_json_list(t.dtype, b, NonFinite::Null, out),
    }
    out.push(b']');
}

/// `[{"name", "datatype", "shape", "data" | binary_data_size}, ...]`; the
/// binary ones' bytes are pushed to `binary`.
fn write_list(out: &mut Vec<u8>, tensors: &[(&str, &Tensor, bool)], binary: &mut Vec<Bytes>) {
    out.push(b'[');
    let mut ib = itoa::Buffer::new();
    for (i, (name, t, as_binary)) in tensors.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        write_str(out, name);
        out.extend_from_slice(b",\"datatype\":\"");
        out.extend_from_slice(t.dtype.as_v2().as_bytes());
        out.extend_from_slice(b"\",\"shape\":[");
        for (j, d) in t.shape.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(ib.format(*d).as_bytes());
        }
        out.push(b']');
        if *as_binary {
            let wire = t.to_wire_bytes();
            out.extend_from_slice(b",\"parameters\":{\"binary_data_size\":");
            out.extend_from_slice(ib.format(wire.len()).as_bytes());
            out.push(b'}');
            binary.push(wire);
        } else {
            out.extend_from_slice(b",\"data\":");
            write_data(out, t);
        }
        out.push(b'}');
    }
    out.push(b']');
}

/// Tensors as a JSON list, their data inline (the payload log's lines).
pub fn write_tensors(out: &mut Vec<u8>, tensors: &[(&str, &Tensor)]) {
    let mut unused = Vec::new();
    let inline: Vec<(&str, &Tensor, bool)> = tensors.iter().map(|&(n, t)| (n, t, false)).collect();
    write_list(out, &inline, &mut unused);
}

/// Encodes outputs (already filtered and ordered) as a V2 response.
pub fn encode_response(
    model: &str,
    version: &str,
    id: Option<&str>,
    outputs: &[(&str, &Tensor, bool)],
) -> EncodedResponse {
    let mut out = Vec::with_capacity(
        128 + outputs
            .iter()
            .map(|(_, t, _)| t.element_count() * 12)
            .sum::<usize>(),
    );
    out.extend_from_slice(b"{\"model_name\":");
    write_str(&mut out, model);
    out.extend_from_slice(b",\"model_version\":");
    write_str(&mut out, version);
    if let Some(id) = id {
        out.extend_from_slice(b",\"id\":");
        write_str(&mut out, id);
    }
    out.extend_from_slice(b",\"outputs\":");
    let mut binary: Vec<Bytes> = Vec::new();
    write_list(&mut out, outputs, &mut binary);
    out.push(b'}');
    if binary.is_empty() {
        return EncodedResponse {
            body: out,
            header_len: None,
        };
    }
    let header_len = out.len();
    for b in binary {
        out.extend_from_slice(&b);
    }
    EncodedResponse {
        body: out,
        header_len: Some(header_len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> Result<DecodedRequest> {
        decode_request(Bytes::copy_from_slice(s.as_bytes()), None)
    }

    #[test]
    fn nested_and_flat_json_data() {
        let r = decode(
            r#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"INT16","data":[[1,-2],[3,4]]}]}"#,
        )
        .unwrap();
        let TensorData::Raw(b) = &r.inputs[0].1.data else {
            panic!()
        };
        assert_eq!(&b[..], &[1, 0, 254, 255, 3, 0, 4, 0]);
        let r = decode(
            r#"{"inputs":[{"name":"b","shape":[2],"datatype":"BOOL","data":[true,false]}]}"#,
        )
        .unwrap();
        assert_eq!(
            r.inputs[0].1.data,
            TensorData::Raw(Bytes::from_static(&[1, 0]))
        );
        let r = decode(r#"{"inputs":[{"name":"s","shape":[1],"datatype":"BYTES","data":["hé"]}]}"#)
            .unwrap();
        assert_eq!(
            r.inputs[0].1.data,
            TensorData::Strings(vec![Bytes::from("hé")])
        );
    }

    #[test]
    fn rejects_values_that_do_not_fit() {
        for (body, needle) in [
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"UINT8","data":[256]}]}"#,
                "not a valid UINT8",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT32","data":[1.5]}]}"#,
                "not a valid INT32",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":["a"]}]}"#,
                "string is not a valid FP32",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}"#,
                "needs 3 elements, 'data' has 2",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1,2]}]}"#,
                "more elements than the shape",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[100000000],"datatype":"FP32","data":[1]}]}"#,
                "only 3 bytes of JSON",
            ),
        ] {
            let e = decode(body).unwrap_err();
            assert!(e.message.contains(needle), "{body}: {e}");
        }
    }

    #[test]
    fn binary_round_trip() {
        let header = r#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}"#;
        let mut body = header.as_bytes().to_vec();
        body.extend_from_slice(&1.5f32.to_le_bytes());
        body.extend_from_slice(&(-2f32).to_le_bytes());
        let r = decode_request(Bytes::from(body.clone()), Some(header.len())).unwrap();
        assert_eq!(
            r.inputs[0].1,
            Tensor::from_f32(vec![2], &[1.5, -2.0]).unwrap()
        );
        assert_eq!(
            r.outputs,
            vec![RequestedOutput {
                name: "y".into(),
                binary: true,
                classification: None,
            }]
        );
        assert!(
            decode_request(
                Bytes::from(body[..body.len() - 1].to_vec()),
                Some(header.len())
            )
            .is_err()
        );
        let mut longer = body.clone();
        longer.push(0);
        assert!(decode_request(Bytes::from(longer), Some(header.len())).is_err());

        let t = Tensor::from_f32(vec![1, 2], &[0.1, f32::NAN]).unwrap();
        let e = encode_response("m", "1", Some("7"), &[("y", &t, false), ("z", &t, true)]);
        let h = e.header_len.unwrap();
        let j: serde_json::Value = serde_json::from_slice(&e.body[..h]).unwrap();
        assert_eq!(j["outputs"][0]["data"], serde_json::json!([0.1, null]));
        assert_eq!(j["outputs"][1]["parameters"]["binary_data_size"], 8);
        assert_eq!(j["id"], "7");
        assert_eq!(e.body.len(), h + 8);
    }
}
