//! The post-processing step: one operation (config parameter `op`) on a
//! model's scores or embeddings: `classify` (the best class's label and
//! score), `top_k`, `threshold` (a binary label from one score),
//! `mean_pool` (token embeddings averaged under the attention mask) and
//! `normalize` (L2). Labels come from a file in the version directory.

use std::path::Path;

use bytes::Bytes;
use hone_core::element::read_all;
use hone_core::{Backend, DataType, Error, ModelMetadata, Result, Tensor, TensorData, TensorSpec};

use crate::Params;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Classify,
    TopK(usize),
    Threshold(f32),
    MeanPool { normalize: bool },
    Normalize,
}

pub struct PostStep {
    op: Op,
    softmax: bool,
    labels: Vec<Bytes>,
    meta: ModelMetadata,
}

fn spec(name: &str, dtype: DataType, dims: &[i64]) -> TensorSpec {
    TensorSpec {
        name: name.to_string(),
        dtype,
        dims: dims.to_vec(),
    }
}

impl PostStep {
    pub fn load(dir: &Path, p: &Params) -> Result<Self> {
        let op = match p.choice(
            "op",
            &["classify", "top_k", "threshold", "mean_pool", "normalize"],
        )? {
            "classify" => Op::Classify,
            "top_k" => Op::TopK(p.number("k", 5usize, "a number of classes")?.max(1)),
            "threshold" => Op::Threshold(p.number("threshold", 0.5f32, "a number")?),
            "mean_pool" => Op::MeanPool {
                normalize: p.flag("normalize", true)?,
            },
            _ => Op::Normalize,
        };
        let labels = match p.text("labels_file") {
            Some(f) if f.contains(['/', '\\']) || f.starts_with('.') => {
                return Err(Error::invalid(format!(
                    "config parameter labels_file '{f}' must be a plain file name in the version directory"
                )));
            }
            Some(f) => read_labels(&dir.join(f), f)?,
            None if dir.join("labels.txt").is_file() => {
                read_labels(&dir.join("labels.txt"), "labels.txt")?
            }
            None => Vec::new(),
        };
        if matches!(op, Op::Threshold(_)) && !labels.is_empty() && labels.len() != 2 {
            return Err(Error::invalid(format!(
                "op threshold needs two labels (below, then at or above the threshold); the labels file has {}",
                labels.len()
            )));
        }
        use DataType::{Bytes as B, F32, I64};
        let meta = match op {
            Op::Classify => ModelMetadata {
                inputs: vec![spec("scores", F32, &[-1, -1])],
                outputs: vec![spec("label", B, &[-1]), spec("score", F32, &[-1])],
            },
            Op::TopK(_) => ModelMetadata {
                inputs: vec![spec("scores", F32, &[-1, -1])],
                outputs: vec![spec("labels", B, &[-1, -1]), spec("scores", F32, &[-1, -1])],
            },
            Op::Threshold(_) => ModelMetadata {
                inputs: vec![spec("scores", F32, &[-1, -1])],
                outputs: vec![spec("label", B, &[-1]), spec("score", F32, &[-1])],
            },
            Op::MeanPool { .. } => ModelMetadata {
                inputs: vec![
                    spec("token_embeddings", F32, &[-1, -1, -1]),
                    spec("attention_mask", I64, &[-1, -1]),
                ],
                outputs: vec![spec("embedding", F32, &[-1, -1])],
            },
            Op::Normalize => ModelMetadata {
                inputs: vec![spec("input", F32, &[-1, -1])],
                outputs: vec![spec("output", F32, &[-1, -1])],
            },
        };
        Ok(Self {
            op,
            softmax: p.flag("softmax", false)?,
            labels,
            meta,
        })
    }

    fn label(&self, class: usize) -> Bytes {
        self.labels
            .get(class)
            .cloned()
            .unwrap_or_else(|| Bytes::from(class.to_string()))
    }
}

fn read_labels(path: &Path, name: &str) -> Result<Vec<Bytes>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid(format!("cannot read labels file {name}: {e}")))?;
    Ok(text
        .lines()
        .map(|l| Bytes::from(l.trim_end().to_string()))
        .collect())
}

/// A tensor's f32 values and its shape; `name` is its input for errors.
fn floats<'a>(t: Option<&'a Tensor>, name: &str) -> Result<(Vec<f32>, &'a [i64])> {
    let t = t.ok_or_else(|| Error::invalid(format!("input '{name}' is missing")))?;
    match (&t.data, t.dtype) {
        (TensorData::Raw(b), DataType::F32) => Ok((read_all::<f32>(b).collect(), &t.shape)),
        _ => Err(Error::invalid(format!(
            "input '{name}' must be FP32, got {}",
            t.dtype
        ))),
    }
}

fn dim(shape: &[i64], i: usize) -> usize {
    shape.get(i).map_or(1, |&d| d.max(0) as usize)
}

fn f32_tensor(shape: Vec<i64>, v: &[f32]) -> Result<Tensor> {
    Tensor::from_f32(shape, v)
}

fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in row.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    if sum > 0.0 {
        row.iter_mut().for_each(|x| *x /= sum);
    }
}

fn l2(row: &mut [f32]) {
    let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    row.iter_mut().for_each(|x| *x /= norm);
}

impl Backend for PostStep {
    fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }

    fn infer(&mut self, batch: &[&[Tensor]]) -> Result<Vec<Tensor>> {
        // Each request is processed on its own and the results stacked:
        // rows of different requests may differ in their second dimension.
        let mut parts: Vec<Vec<Tensor>> = Vec::with_capacity(batch.len());
        for request in batch {
            parts.push(self.one(request)?);
        }
        stack(parts)
    }
}

impl PostStep {
    fn one(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        match self.op {
            Op::Classify | Op::TopK(_) | Op::Threshold(_) => {
                let (mut v, shape) = floats(inputs.first(), "scores")?;
                let (rows, classes) = (dim(shape, 0), dim(shape, 1).max(1));
                if v.len() != rows * classes {
                    return Err(Error::invalid("input 'scores' must be [rows, classes]"));
                }
                if self.softmax && !matches!(self.op, Op::Threshold(_)) {
                    v.chunks_mut(classes).for_each(softmax);
                }
                match self.op {
                    Op::TopK(k) => self.top_k(&v, rows, classes, k.min(classes)),
                    Op::Threshold(t) => {
                        let mut labels = Vec::with_capacity(rows);
                        let mut scores = Vec::with_capacity(rows);
                        for row in v.chunks(classes) {
                            let s = row.last().copied().unwrap_or(0.0);
                            labels.push(self.label(usize::from(s >= t)));
                            scores.push(s);
                        }
                        Ok(vec![
                            strings(vec![rows as i64], labels)?,
                            f32_tensor(vec![rows as i64], &scores)?,
                        ])
                    }
                    _ => {
                        let mut out = self.top_k(&v, rows, classes, 1)?;
                        for t in &mut out {
                            t.shape.truncate(1);
                        }
                        Ok(out)
                    }
                }
            }
            Op::MeanPool { normalize } => {
                let (v, shape) = floats(inputs.first(), "token_embeddings")?;
                let (rows, tokens, hidden) = (dim(shape, 0), dim(shape, 1), dim(shape, 2));
                let mask = inputs
                    .get(1)
                    .ok_or_else(|| Error::invalid("input 'attention_mask' is missing"))?;
                let mask: Vec<i64> = match &mask.data {
                    TensorData::Raw(b) if mask.dtype == DataType::I64 => read_all(b).collect(),
                    _ => return Err(Error::invalid("input 'attention_mask' must be INT64")),
                };
                if mask.len() != rows * tokens || v.len() != rows * tokens * hidden {
                    return Err(Error::invalid(
                        "inputs 'token_embeddings' [rows, tokens, hidden] and 'attention_mask' [rows, tokens] do not agree",
                    ));
                }
                let mut out = vec![0f32; rows * hidden];
                for (r, acc) in out.chunks_mut(hidden.max(1)).enumerate() {
                    let mut n = 0f32;
                    for t in 0..tokens {
                        if mask.get(r * tokens + t).copied().unwrap_or(0) == 0 {
                            continue;
                        }
                        n += 1.0;
                        let start = (r * tokens + t) * hidden;
                        if let Some(tok) = v.get(start..start + hidden) {
                            acc.iter_mut().zip(tok).for_each(|(a, x)| *a += x);
                        }
                    }
                    acc.iter_mut().for_each(|a| *a /= n.max(1e-9));
                    if normalize {
                        l2(acc);
                    }
                }
                Ok(vec![f32_tensor(vec![rows as i64, hidden as i64], &out)?])
            }
            Op::Normalize => {
                let (mut v, shape) = floats(inputs.first(), "input")?;
                let cols = dim(shape, 1).max(1);
                v.chunks_mut(cols).for_each(l2);
                Ok(vec![f32_tensor(shape.to_vec(), &v)?])
            }
        }
    }

    fn top_k(&self, v: &[f32], rows: usize, classes: usize, k: usize) -> Result<Vec<Tensor>> {
        let mut labels = Vec::with_capacity(rows * k);
        let mut scores = Vec::with_capacity(rows * k);
        for row in v.chunks(classes) {
            for c in crate::rank::top_k(row, k) {
                labels.push(self.label(c));
                scores.push(row.get(c).copied().unwrap_or(0.0));
            }
        }
        let shape = vec![rows as i64, k as i64];
        Ok(vec![
            strings(shape.clone(), labels)?,
            f32_tensor(shape, &scores)?,
        ])
    }
}

fn strings(shape: Vec<i64>, v: Vec<Bytes>) -> Result<Tensor> {
    Tensor::new(DataType::Bytes, shape, TensorData::Strings(v))
}

/// Stacks each output of every request along dim 0 (their other dims agree:
/// the scheduler batches only requests whose inputs do).
fn stack(parts: Vec<Vec<Tensor>>) -> Result<Vec<Tensor>> {
    let mut parts = parts.into_iter();
    let Some(mut out) = parts.next() else {
        return Ok(Vec::new());
    };
    for p in parts {
        for (acc, t) in out.iter_mut().zip(p) {
            let rows =
                acc.shape.first().copied().unwrap_or(0) + t.shape.first().copied().unwrap_or(0);
            let data = match (
                std::mem::replace(&mut acc.data, TensorData::Strings(Vec::new())),
                t.data,
            ) {
                (TensorData::Raw(a), TensorData::Raw(b)) => {
                    let mut v = Vec::with_capacity(a.len() + b.len());
                    v.extend_from_slice(&a);
                    v.extend_from_slice(&b);
                    TensorData::Raw(Bytes::from(v))
                }
                (TensorData::Strings(mut a), TensorData::Strings(b)) => {
                    a.extend(b);
                    TensorData::Strings(a)
                }
                _ => return Err(Error::internal("post-processing outputs of mixed kinds")),
            };
            acc.data = data;
            if let Some(d0) = acc.shape.first_mut() {
                *d0 = rows;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn step(params: &[(&str, &str)], labels: Option<&str>) -> PostStep {
        // A directory per call: tests run side by side in one process.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("hone-post-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = std::fs::remove_file(dir.join("labels.txt"));
        if let Some(l) = labels {
            std::fs::write(dir.join("labels.txt"), l).unwrap();
        }
        let map: BTreeMap<String, String> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PostStep::load(&dir, &Params::new(&map)).unwrap()
    }

    fn texts(t: &Tensor) -> Vec<String> {
        match &t.data {
            TensorData::Strings(v) => v
                .iter()
                .map(|b| String::from_utf8_lossy(b).into())
                .collect(),
            _ => panic!(),
        }
    }

    #[test]
    fn classify_top_k_and_threshold_name_their_labels() {
        let mut s = step(&[("softmax", "true")], Some("0\n180\n"));
        let a = Tensor::from_f32(vec![2, 2], &[0.1, 2.0, 3.0, -1.0]).unwrap();
        let b = Tensor::from_f32(vec![1, 2], &[5.0, 5.0]).unwrap();
        let out = s.infer(&[&[a], &[b]]).unwrap();
        assert_eq!(texts(&out[0]), ["180", "0", "0"]);
        assert_eq!(out[1].shape, vec![3]);
        let p: Vec<f32> = out[1]
            .to_f64s()
            .unwrap()
            .iter()
            .map(|&x| x as f32)
            .collect();
        assert!(
            (p[0] - 0.8699).abs() < 1e-3 && (p[2] - 0.5).abs() < 1e-6,
            "{p:?}"
        );

        let mut k = step(&[("op", "top_k"), ("k", "2")], None);
        let x = Tensor::from_f32(vec![1, 3], &[0.2, 0.7, 0.1]).unwrap();
        let out = k.infer(&[&[x]]).unwrap();
        assert_eq!(texts(&out[0]), ["1", "0"]);
        assert_eq!(out[1].shape, vec![1, 2]);

        let mut t = step(
            &[("op", "threshold"), ("threshold", "0.3")],
            Some("no\nyes\n"),
        );
        let x = Tensor::from_f32(vec![2, 1], &[0.2, 0.7]).unwrap();
        assert_eq!(texts(&t.infer(&[&[x]]).unwrap()[0]), ["no", "yes"]);
    }

    #[test]
    fn mean_pool_averages_unmasked_tokens_and_normalizes() {
        let mut s = step(&[("op", "mean_pool"), ("normalize", "false")], None);
        let emb = Tensor::from_f32(vec![1, 3, 2], &[1.0, 2.0, 3.0, 4.0, 100.0, 100.0]).unwrap();
        let mask = Tensor::new(
            DataType::I64,
            vec![1, 3],
            TensorData::Raw(Bytes::from(
                [1i64, 1, 0]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect::<Vec<u8>>(),
            )),
        )
        .unwrap();
        let out = s.infer(&[&[emb.clone(), mask.clone()]]).unwrap();
        assert_eq!(out[0].to_f64s().unwrap(), vec![2.0, 3.0]);
        let mut n = step(&[("op", "mean_pool")], None);
        let v = n.infer(&[&[emb, mask]]).unwrap()[0].to_f64s().unwrap();
        assert!(((v[0] * v[0] + v[1] * v[1]) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn a_bad_setting_names_its_parameter() {
        let dir = std::env::temp_dir();
        let map: BTreeMap<String, String> = [("op".to_string(), "argmax".to_string())].into();
        let e = PostStep::load(&dir, &Params::new(&map)).err().unwrap();
        assert!(e.message.contains("op") && e.message.contains("classify"));
    }
}
