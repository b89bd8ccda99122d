//! Calibration: run representative inputs through the fp32 model with every
//! activation the quantizer will touch exposed as an extra output, and turn
//! what flows through into a range per tensor.
//!
//! - MinMax: the observed minimum and maximum.
//! - Percentile: clip |x| at a percentile of its histogram (outliers get
//!   clipped so the bulk keeps more resolution).
//! - Entropy: the clipping threshold whose 128-level quantized histogram is
//!   closest in KL divergence to the original (TensorRT's method).

use std::collections::{HashMap, HashSet};

use hone_core::{Backend, DataType, Tensor, TensorData};
use hone_onnx::proto::{ModelProto, ValueInfoProto};
use hone_runtime::{OrtBackend, SessionConfig};

use crate::ops::{data_inputs, quantizes, value_outputs};
use crate::{OptError, Result, graph};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    MinMax,
    /// Percentile of |x| to keep, e.g. 99.999.
    Percentile(f64),
    Entropy,
}

impl Method {
    pub fn name(self) -> String {
        match self {
            Method::MinMax => "minmax".into(),
            Method::Percentile(p) => format!("percentile{p}"),
            Method::Entropy => "entropy".into(),
        }
    }
}

pub type Ranges = HashMap<String, (f32, f32)>;

const BINS: usize = 2048;

/// The activations static quantization needs ranges for: graph inputs and
/// the data inputs/outputs of quantizable nodes, minus constants.
pub fn activation_tensors(model: &ModelProto) -> Result<Vec<String>> {
    let g = graph::graph(model)?;
    let inits: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut add = |name: &str| {
        if !name.is_empty() && !inits.contains(name) && seen.insert(name.to_string()) {
            out.push(name.to_string());
        }
    };
    for n in &g.node {
        if !quantizes(n, |i| inits.contains(i)) {
            continue;
        }
        for i in data_inputs(n) {
            add(i);
        }
        for o in value_outputs(n) {
            add(o);
        }
    }
    Ok(out)
}

fn floats(t: &Tensor) -> Option<Vec<f32>> {
    if t.dtype != DataType::F32 {
        return None;
    }
    match &t.data {
        TensorData::Raw(b) => Some(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        TensorData::Strings(_) => None,
    }
}

/// Runs the batches through `model` with `tensors` exposed and returns a
/// range for each float tensor seen.
pub fn calibrate(
    model: &ModelProto,
    tensors: &[String],
    batches: &[Vec<Tensor>],
    method: Method,
    cfg: &SessionConfig,
) -> Result<Ranges> {
    if batches.is_empty() {
        return Err(OptError::Unsupported(
            "calibration needs at least one batch of inputs".into(),
        ));
    }
    let mut m = model.clone();
    let g = graph::graph_mut(&mut m)?;
    let existing: HashSet<String> = g.output.iter().map(|o| o.name.clone()).collect();
    for t in tensors {
        if !existing.contains(t) {
            // A name alone is enough: ONNX Runtime infers the type.
            g.output.push(ValueInfoProto {
                name: t.clone(),
                ..Default::default()
            });
        }
    }
    let mut backend = OrtBackend::from_bytes(&hone_onnx::encode(&m), cfg)?;
    let out_names: Vec<String> = backend
        .metadata()
        .outputs
        .iter()
        .map(|o| o.name.clone())
        .collect();
    let wanted: HashSet<&String> = tensors.iter().collect();

    // Pass 1: min and max.
    let mut minmax: HashMap<String, (f32, f32)> = HashMap::new();
    for b in batches {
        let outs = backend.infer(&[b.as_slice()])?;
        for (name, t) in out_names.iter().zip(&outs) {
            if !wanted.contains(name) {
                continue;
            }
            if let Some(v) = floats(t) {
                let e = minmax
                    .entry(name.clone())
                    .or_insert((f32::INFINITY, f32::NEG_INFINITY));
                for x in v {
                    if x.is_finite() {
                        e.0 = e.0.min(x);
                        e.1 = e.1.max(x);
                    }
                }
            }
        }
    }
    if method == Method::MinMax {
        return Ok(minmax);
    }
    // Pass 2: histograms of |x| over [0, max |x|].
    let mut hists: HashMap<String, Vec<f64>> = HashMap::new();
    for b in batches {
        let outs = backend.infer(&[b.as_slice()])?;
        for (name, t) in out_names.iter().zip(&outs) {
            let Some(&(lo, hi)) = minmax.get(name) else {
                continue;
            };
            let Some(v) = floats(t) else { continue };
            let amax = lo.abs().max(hi.abs());
            if amax <= 0.0 {
                continue;
            }
            let h = hists.entry(name.clone()).or_insert_with(|| vec![0.0; BINS]);
            let scale = BINS as f32 / amax;
            for x in v {
                let i = ((x.abs() * scale) as usize).min(BINS - 1);
                h[i] += 1.0;
            }
        }
    }
    let mut out = Ranges::new();
    for (name, (lo, hi)) in minmax {
        let amax = lo.abs().max(hi.abs());
        let t = match hists.get(&name) {
            None => amax,
            Some(h) => {
                let width = amax / BINS as f32;
                match method {
                    Method::Percentile(p) => percentile_threshold(h, p) as f32 * width,
                    _ => entropy_threshold(h) as f32 * width,
                }
            }
        };
        let t = t.min(amax).max(f32::MIN_POSITIVE);
        // Non-negative tensors (after Relu) keep a one-sided range.
        out.insert(name, if lo >= 0.0 { (0.0, t.min(hi)) } else { (-t, t) });
    }
    Ok(out)
}

/// Upper edge (in bins) below which `p` percent of the mass lies.
fn percentile_threshold(h: &[f64], p: f64) -> f64 {
    let total: f64 = h.iter().sum();
    let want = total * p / 100.0;
    let mut acc = 0.0;
    for (i, &c) in h.iter().enumerate() {
        acc += c;
        if acc >= want {
            return (i + 1) as f64;
        }
    }
    h.len() as f64
}

/// The number of bins to keep that minimises KL(P || Q), where P is the
/// histogram clipped at that many bins (outliers folded into the last one)
/// and Q is P squeezed into 128 levels and expanded back.
fn entropy_threshold(h: &[f64]) -> f64 {
    const LEVELS: usize = 128;
    let mut best = (f64::INFINITY, h.len());
    for i in (LEVELS..=h.len()).step_by(16) {
        let mut p: Vec<f64> = h[..i].to_vec();
        p[i - 1] += h[i..].iter().sum::<f64>();
        let total: f64 = p.iter().sum();
        if total <= 0.0 {
            continue;
        }
        // Q: merge i bins into LEVELS groups, spread each group's mass over its non-empty bins.
        let mut q = vec![0.0; i];
        let per = i as f64 / LEVELS as f64;
        for l in 0..LEVELS {
            let start = (l as f64 * per) as usize;
            let end = (((l + 1) as f64 * per) as usize).min(i).max(start + 1);
            let mass: f64 = h[start..end].iter().sum();
            let nonzero = h[start..end].iter().filter(|&&c| c > 0.0).count();
            if nonzero > 0 {
                for j in start..end {
                    if h[j] > 0.0 {
                        q[j] = mass / nonzero as f64;
                    }
                }
            }
        }
        let qt: f64 = q.iter().sum();
        let mut kl = 0.0;
        for j in 0..i {
            if p[j] > 0.0 {
                let pj = p[j] / total;
                let qj = if q[j] > 0.0 { q[j] / qt } else { 1e-12 };
                kl += pj * (pj / qj).ln();
            }
        }
        if kl < best.0 {
            best = (kl, i);
        }
    }
    best.1 as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        let mut h = vec![0.0; BINS];
        for (i, c) in h.iter_mut().enumerate().take(100) {
            *c = 100_000.0 - i as f64;
        }
        h[BINS - 1] = 1.0; // one far outlier
        assert!(percentile_threshold(&h, 99.999) <= 101.0);
        assert_eq!(percentile_threshold(&h, 100.0), BINS as f64);
        // A long exponential tail: entropy clips it rather than spend levels on it.
        let tail: Vec<f64> = (0..BINS)
            .map(|i| (1e9 * (-(i as f64) / 40.0).exp()).floor())
            .collect();
        let e = entropy_threshold(&tail);
        assert!(e < BINS as f64 / 2.0, "entropy kept the tail: {e}");
    }
}
