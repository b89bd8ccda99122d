//! What the model takes (from the server's metadata and config), and the
//! pool of requests built from it once, before the clock starts, in each
//! protocol's form: nothing is encoded while measuring.

use std::path::PathBuf;

use bytes::Bytes;
use hone_core::{DataType, Error, Result, Tensor, TensorData};
use hone_proto as proto;
use serde_json::{Value as Json, json};

/// Where request data comes from.
#[derive(Debug, Clone)]
pub enum Data {
    /// Seeded random values in each input's dtype: floats in [0, 1), integers
    /// in 0..100 (valid token ids for text models), booleans, "x" strings.
    Random,
    /// A CSV whose columns (all but one named `label`) are the one FP32 input's
    /// features, row by row.
    Csv(PathBuf),
    /// `<input>.npy` per input, rows along the first dimension.
    NpyDir(PathBuf),
    /// A text file: each non-empty line one element of the one BYTES input
    /// (a sentence for a text pipeline).
    Lines(PathBuf),
    /// A directory of files (JPEG, PNG, WebP...): each file's bytes one
    /// element of the one BYTES input.
    Files(PathBuf),
}

/// One model input as a request sends it.
#[derive(Debug, Clone)]
pub struct Input {
    pub name: String,
    pub dtype: DataType,
    /// The shape of one request (batch included when the model batches).
    pub shape: Vec<i64>,
}

/// The model under load.
#[derive(Debug, Clone)]
pub struct Target {
    pub model: String,
    pub version: Option<String>,
    pub inputs: Vec<Input>,
    /// Dynamic dimensions given a size nobody asked for (`--shape` sets them).
    pub guessed: Vec<String>,
    /// The features a model with a card takes by name (hone's metadata
    /// field `features`): a CSV with those columns is sent as records.
    pub features: Vec<(String, DataType)>,
}

/// A dynamic dimension without `--shape` counts this many.
pub const DEFAULT_DYNAMIC: i64 = 16;

impl Target {
    /// Rows one request carries: the first input's first dimension (1 for a
    /// model that does not batch).
    pub(crate) fn rows_per_request(&self) -> usize {
        let first = self.inputs.first().and_then(|i| i.shape.first());
        first.copied().unwrap_or(1).max(1) as usize
    }

    /// Reads the model's metadata (and Triton's config extension, for
    /// `max_batch_size`) from `base`; `shapes` give dims without the batch
    /// dimension, as perf_analyzer's `--shape` does.
    pub async fn describe(
        client: &hone_client::Client,
        model: &str,
        version: Option<&str>,
        batch: usize,
        shapes: &[(String, Vec<i64>)],
    ) -> Result<Target> {
        let meta = client
            .metadata(model, version)
            .await
            .map_err(crate::driver::client_error)?;
        // Servers without the config extension: a dynamic first dimension is
        // taken for the batch dimension.
        let max_batch = client
            .model_config(model, version)
            .await
            .ok()
            .and_then(|c| c.get("max_batch_size").and_then(Json::as_i64));
        let list = meta.get("inputs").and_then(Json::as_array).ok_or_else(|| {
            Error::invalid(format!(
                "{}: the metadata of '{model}' lists no inputs",
                client.base()
            ))
        })?;
        let mut inputs = Vec::new();
        let mut guessed = Vec::new();
        for i in list {
            let name = i.get("name").and_then(Json::as_str).unwrap_or_default();
            let dt = i.get("datatype").and_then(Json::as_str).unwrap_or_default();
            let dtype = DataType::from_v2(dt).ok_or_else(|| {
                Error::invalid(format!("input '{name}': unknown datatype '{dt}'"))
            })?;
            let dims: Vec<i64> = i
                .get("shape")
                .and_then(Json::as_array)
                .map(|a| a.iter().filter_map(Json::as_i64).collect())
                .unwrap_or_default();
            let batched = match max_batch {
                Some(m) => m > 0,
                None => dims.first() == Some(&-1),
            };
            let rest = if batched {
                dims.get(1..).unwrap_or_default()
            } else {
                &dims[..]
            };
            let mut shape: Vec<i64> = match shapes.iter().find(|(n, _)| n == name) {
                Some((_, s)) if s.len() == rest.len() => s.clone(),
                Some((_, s)) => {
                    return Err(Error::invalid(format!(
                        "--shape {name}: {} dims given, the model's input has {} (without the batch dimension): {rest:?}",
                        s.len(),
                        rest.len()
                    )));
                }
                None => rest
                    .iter()
                    .map(|&d| {
                        if d < 0 {
                            guessed.push(name.to_string());
                            DEFAULT_DYNAMIC
                        } else {
                            d
                        }
                    })
                    .collect(),
            };
            if batched {
                shape.insert(0, batch as i64);
            }
            inputs.push(Input {
                name: name.to_string(),
                dtype,
                shape,
            });
        }
        guessed.dedup();
        let features = meta
            .get("features")
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|f| {
                        let name = f.get("name")?.as_str()?;
                        let dtype = DataType::from_v2(f.get("datatype")?.as_str()?)?;
                        Some((name.to_string(), dtype))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Target {
            model: model.to_string(),
            version: version.map(str::to_string),
            inputs,
            guessed,
            features,
        })
    }
}

/// A request in every protocol's form, built once.
#[derive(Debug, Clone)]
pub struct Payload {
    /// What it sends, per input: `name DTYPE [shape]`.
    pub inputs: Vec<String>,
    pub json: Bytes,
    /// The binary tensor extension body and its JSON header's length.
    pub binary: (Bytes, usize),
    pub grpc: proto::ModelInferRequest,
}

/// Up to this many distinct requests are cycled through.
pub(crate) const POOL: usize = 64;

pub(crate) fn random(i: &Input, rng: &mut hone_data::rng::Rng) -> Result<Tensor> {
    let n = hone_core::element_count(&i.shape)?;
    let mut raw = Vec::with_capacity(n * i.dtype.size().unwrap_or(0));
    let int = |rng: &mut hone_data::rng::Rng| rng.below(100) as u64;
    for _ in 0..n {
        match i.dtype {
            DataType::Bool => raw.push((rng.below(2)) as u8),
            DataType::U8 | DataType::I8 => raw.push(int(rng) as u8),
            DataType::U16 | DataType::I16 => raw.extend((int(rng) as u16).to_le_bytes()),
            DataType::U32 | DataType::I32 => raw.extend((int(rng) as u32).to_le_bytes()),
            DataType::U64 | DataType::I64 => raw.extend(int(rng).to_le_bytes()),
            DataType::F16 => raw.extend(half::f16::from_f32(rng.uniform(0.0, 1.0)).to_le_bytes()),
            DataType::Bf16 => raw.extend(half::bf16::from_f32(rng.uniform(0.0, 1.0)).to_le_bytes()),
            DataType::F32 => raw.extend(rng.uniform(0.0, 1.0).to_le_bytes()),
            DataType::F64 => raw.extend(rng.next_f64().to_le_bytes()),
            DataType::Bytes => {}
        }
    }
    let data = if i.dtype == DataType::Bytes {
        TensorData::Strings(vec![Bytes::from_static(b"x"); n])
    } else {
        TensorData::Raw(Bytes::from(raw))
    };
    Tensor::new(i.dtype, i.shape.clone(), data)
}

pub(crate) fn one_input(target: &Target, what: &str) -> Result<Input> {
    match &target.inputs[..] {
        [i] => Ok(i.clone()),
        _ => Err(Error::invalid(format!(
            "{what} feeds one input; model '{}' has {} (use a directory of <input>.npy files)",
            target.model,
            target.inputs.len()
        ))),
    }
}

pub(crate) fn from_csv(target: &Target, path: &std::path::Path) -> Result<Vec<Vec<Tensor>>> {
    let input = one_input(target, "a CSV")?;
    let table = hone_data::Table::read_csv(path).map_err(|e| Error::invalid(e.to_string()))?;
    let cols: Vec<usize> = (0..table.names.len())
        .filter(|&c| table.names.get(c).is_some_and(|n| n != "label"))
        .collect();
    let per_row: i64 = input.shape.iter().skip(1).product();
    if cols.len() as i64 != per_row {
        return Err(Error::invalid(format!(
            "{}: {} feature columns, input '{}' takes {per_row} values per row",
            path.display(),
            cols.len(),
            input.name
        )));
    }
    let rows = table.rows();
    let batch = target.rows_per_request();
    if rows == 0 {
        return Err(Error::invalid(format!("{}: no rows", path.display())));
    }
    let mut sets = Vec::new();
    for p in 0..rows.div_ceil(batch).min(POOL) {
        let mut values = Vec::with_capacity(batch * cols.len());
        for r in 0..batch {
            let row = (p * batch + r) % rows;
            for &c in &cols {
                let text = table.columns.get(c).and_then(|col| col.get(row));
                let v: f32 = text.and_then(|t| t.trim().parse().ok()).ok_or_else(|| {
                    Error::invalid(format!(
                        "{} row {}: '{}' is not a number",
                        path.display(),
                        row + 2,
                        text.map_or("", String::as_str)
                    ))
                })?;
                values.push(v);
            }
        }
        let t = Tensor::from_f32(input.shape.clone(), &values)?;
        sets.push(vec![convert_f32(t, input.dtype)?]);
    }
    Ok(sets)
}

/// A CSV gives floats; an FP64, FP16 or BF16 input gets them converted.
fn convert_f32(t: Tensor, dtype: DataType) -> Result<Tensor> {
    let TensorData::Raw(b) = &t.data else {
        return Ok(t);
    };
    let vals = b
        .chunks_exact(4)
        .filter_map(|c| c.try_into().ok())
        .map(f32::from_le_bytes);
    let raw: Vec<u8> = match dtype {
        DataType::F32 => return Ok(t),
        DataType::F64 => vals.flat_map(|v| f64::from(v).to_le_bytes()).collect(),
        DataType::F16 => vals
            .flat_map(|v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        DataType::Bf16 => vals
            .flat_map(|v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
        other => {
            return Err(Error::invalid(format!(
                "a CSV feeds a floating-point input; this one is {other}"
            )));
        }
    };
    Tensor::new(dtype, t.shape, TensorData::Raw(Bytes::from(raw)))
}

pub(crate) fn from_npy(target: &Target, dir: &std::path::Path) -> Result<Vec<Vec<Tensor>>> {
    let mut arrays = Vec::new();
    for i in &target.inputs {
        let path = dir.join(format!("{}.npy", i.name));
        let a = hone_data::npy::read(&path).map_err(|e| Error::invalid(e.to_string()))?;
        if a.dtype != i.dtype || a.shape.get(1..) != i.shape.get(1..) {
            return Err(Error::invalid(format!(
                "{}: {} {:?}, input '{}' takes {} [N, {:?}]",
                path.display(),
                a.dtype,
                a.shape,
                i.name,
                i.dtype,
                i.shape.get(1..).unwrap_or_default()
            )));
        }
        arrays.push(a);
    }
    let rows = arrays.iter().map(Tensor::batch).min().unwrap_or(0);
    if rows == 0 {
        return Err(Error::invalid(format!("{}: no rows", dir.display())));
    }
    let batch = target.rows_per_request();
    let batch = batch.min(rows);
    Ok((0..(rows / batch).min(POOL))
        .map(|p| {
            arrays
                .iter()
                .map(|a| a.slice_batch(p * batch, (p + 1) * batch))
                .collect()
        })
        .collect())
}

/// A tensor's elements as JSON numbers (or strings, or booleans).
fn json_data(t: &Tensor) -> Json {
    let raw = match &t.data {
        TensorData::Strings(v) => {
            return v
                .iter()
                .map(|s| Json::from(String::from_utf8_lossy(s).into_owned()))
                .collect();
        }
        TensorData::Raw(b) => b,
    };
    // Written by core's one element writer, then read back as a value:
    // requests are built once, before the run.
    let mut out = vec![b'['];
    hone_core::element::write_json_list(
        t.dtype,
        raw,
        hone_core::element::NonFinite::Null,
        &mut out,
    );
    out.push(b']');
    serde_json::from_slice(&out).unwrap_or_else(|_| Json::Array(Vec::new()))
}

pub(crate) fn encode(target: &Target, set: &[(String, Tensor)]) -> Result<Payload> {
    let names = set.iter().map(|(n, _)| n.as_str());
    let set: Vec<&Tensor> = set.iter().map(|(_, t)| t).collect();
    let set = set.as_slice();
    let described = names
        .clone()
        .zip(set)
        .map(|(n, t)| format!("{n} {} {:?}", t.dtype, t.shape))
        .collect();
    let json_inputs: Vec<Json> = names
        .clone()
        .zip(set)
        .map(|(n, t)| json!({"name": n, "datatype": t.dtype.as_v2(), "shape": t.shape, "data": json_data(t)}))
        .collect();
    let json = serde_json::to_vec(&json!({"inputs": json_inputs}))
        .map_err(|e| Error::internal(e.to_string()))?;
    let wire: Vec<Bytes> = set.iter().map(|t| t.to_wire_bytes()).collect();
    let header_inputs: Vec<Json> = names
        .clone()
        .zip(set)
        .zip(&wire)
        .map(|((n, t), w)| {
            json!({"name": n, "datatype": t.dtype.as_v2(), "shape": t.shape,
                   "parameters": {"binary_data_size": w.len()}})
        })
        .collect();
    let header = serde_json::to_vec(
        &json!({"inputs": header_inputs, "parameters": {"binary_data_output": true}}),
    )
    .map_err(|e| Error::internal(e.to_string()))?;
    let header_len = header.len();
    let mut body = header;
    for w in &wire {
        body.extend_from_slice(w);
    }
    let grpc = proto::ModelInferRequest {
        model_name: target.model.clone(),
        model_version: target.version.clone().unwrap_or_default(),
        inputs: names
            .zip(set)
            .map(|(n, t)| proto::model_infer_request::InferInputTensor {
                name: n.to_string(),
                datatype: t.dtype.as_v2().to_string(),
                shape: t.shape.clone(),
                ..Default::default()
            })
            .collect(),
        raw_input_contents: wire,
        ..Default::default()
    };
    Ok(Payload {
        inputs: described,
        json: Bytes::from(json),
        binary: (Bytes::from(body), header_len),
        grpc,
    })
}
