//! The smoke test: held-out rows sent to the live endpoint over V2 JSON,
//! whose answers must equal what ONNX Runtime computes offline on them.

use hone_client::Client;
use hone_core::{DataType, Tensor, TensorData};
use hone_data::{Prepared, npy};
use hone_runtime::{OrtBackend, SessionConfig};
use serde_json::{Value, json};

use crate::eval::Dataset;
use crate::{PipelineError, Result};

/// What the smoke test sends, and what it expects back.
pub(super) struct Smoke {
    body: Value,
    /// The output compared.
    output: String,
    offline: Vec<f32>,
    rows: usize,
    /// A one-row request, for the report's example.
    pub(super) example: String,
}

impl Smoke {
    /// A hone-trained model: the first `rows` encoded held-out rows as its
    /// one FP32 input.
    pub(super) fn trained(onnx: &[u8], holdout: &Prepared, rows: usize) -> Result<Smoke> {
        let n = rows.clamp(1, holdout.rows.max(1)).min(holdout.rows);
        if n == 0 {
            return Err(PipelineError::Message("no held-out rows to send".into()));
        }
        let sample = holdout.select(&(0..n).collect::<Vec<_>>());
        let offline = crate::ort_predict(onnx, &sample)?;
        let input = |rows: usize, data: &[f32]| json!({"name": hone_train::export::INPUT, "shape": [rows, sample.cols], "datatype": "FP32", "data": data});
        Ok(Smoke {
            body: json!({"id": "hone-ship-smoke", "inputs": [input(n, &sample.x)]}),
            output: hone_train::export::OUTPUT.into(),
            offline,
            rows: n,
            example: json!({"inputs": [input(1, &sample.x[..sample.cols])]}).to_string(),
        })
    }

    /// Any model: the first `rows` rows of `ds`, each input as its own
    /// dtype (text as BYTES), compared on output `out`.
    pub(super) fn given(onnx: &[u8], ds: &Dataset, out: usize, rows: usize) -> Result<Smoke> {
        let n = rows.clamp(1, ds.rows.max(1)).min(ds.rows);
        if n == 0 {
            return Err(PipelineError::Message("no rows to send".into()));
        }
        hone_runtime::init()?;
        let mut ort = OrtBackend::from_bytes(onnx, &SessionConfig::default())?;
        let meta = hone_core::Backend::metadata(&ort).clone();
        let batch = ds.slice(0, n);
        let outs = hone_core::Backend::infer(&mut ort, &[&batch])?;
        let output = meta
            .outputs
            .get(out)
            .map(|o| o.name.clone())
            .unwrap_or_default();
        let offline = outs
            .get(out)
            .and_then(npy::to_f32)
            .ok_or_else(|| PipelineError::Message(format!("output {output:?} is not numeric")))?;
        let inputs = |batch: &[Tensor]| -> Result<Vec<Value>> {
            meta.inputs
                .iter()
                .zip(batch)
                .map(|(spec, t)| {
                    Ok(json!({"name": spec.name, "shape": t.shape, "datatype": t.dtype.as_v2(), "data": values(t)?}))
                })
                .collect()
        };
        let one = ds.slice(0, 1);
        Ok(Smoke {
            body: json!({"id": "hone-ship-smoke", "inputs": inputs(&batch)?}),
            output,
            offline,
            rows: n,
            example: json!({"inputs": inputs(&one)?}).to_string(),
        })
    }

    /// Sends the rows and compares the answer.
    pub(super) async fn check(&self, client: &Client, name: &str, version: u64) -> Result<String> {
        let v: Value = client
            .infer_synthetic(name, Some(version), &self.body)
            .await
            .map_err(PipelineError::from)?;
        let data = v["outputs"]
            .as_array()
            .and_then(|outs| outs.iter().find(|o| o["name"] == self.output.as_str()))
            .and_then(|o| o["data"].as_array())
            .ok_or_else(|| {
                PipelineError::Message(format!("the answer has no output {:?}: {v}", self.output))
            })?;
        let served: Vec<f32> = data
            .iter()
            .filter_map(|x| x.as_f64().map(|f| f as f32))
            .collect();
        if served.len() != self.offline.len() {
            return Err(PipelineError::Message(format!(
                "served {} values for {} rows, offline {}",
                served.len(),
                self.rows,
                self.offline.len()
            )));
        }
        let diff = crate::max_rel_diff(&served, &self.offline);
        if diff > 1e-6 {
            return Err(PipelineError::Message(format!(
                "served predictions differ from offline ones by up to {diff:e}"
            )));
        }
        Ok(format!(
            "{} held-out rows over V2 JSON: served == offline (max |diff| {diff:.1e})",
            self.rows
        ))
    }
}

/// A tensor's elements as JSON: numbers, or text for BYTES.
fn values(t: &Tensor) -> Result<Value> {
    if let (DataType::Bytes, TensorData::Strings(s)) = (t.dtype, &t.data) {
        return Ok(s
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect());
    }
    npy::to_f32(t)
        .map(|v| json!(v))
        .ok_or_else(|| PipelineError::Message(format!("cannot send a {} tensor", t.dtype.as_v2())))
}
