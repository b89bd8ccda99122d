//! Tensors → TF Serving's answer JSON: `predictions` per instance (row
//! format) or `outputs` whole (columnar), NaN and ±Infinity as bare tokens,
//! bytes as strings or `{"b64": ...}`.

use hone_core::{DataType, Error, Tensor, TensorData};
use serde_json::Value as Json;

use crate::model::LoadedModel;

pub(super) fn b64_encode(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = c.iter().fold(0u32, |a, &x| a << 8 | u32::from(x)) << (8 * (3 - c.len()));
        for i in 0..4 {
            if i <= c.len() {
                let idx = (n >> (18 - 6 * i)) & 63;
                s.push(char::from(A.get(idx as usize).copied().unwrap_or(b'A')));
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// One element as TF Serving writes it (NaN and ±Infinity as bare tokens).
fn write_elem(out: &mut String, t: &Tensor, i: usize) {
    use std::fmt::Write;
    let f = |out: &mut String, x: f64| {
        if x.is_nan() {
            out.push_str("NaN");
        } else if x.is_infinite() {
            out.push_str(if x > 0.0 { "Infinity" } else { "-Infinity" });
        } else {
            out.push_str(ryu::Buffer::new().format_finite(x));
        }
    };
    match &t.data {
        TensorData::Strings(items) => {
            let b = items.get(i).map(|b| &b[..]).unwrap_or_default();
            match std::str::from_utf8(b) {
                Ok(s) => out.push_str(&Json::String(s.to_string()).to_string()),
                Err(_) => {
                    let _ = write!(out, "{{\"b64\":\"{}\"}}", b64_encode(b));
                }
            }
        }
        TensorData::Raw(b) => {
            let n = t.dtype.size().unwrap_or(1);
            let c = b.get(i * n..(i + 1) * n).unwrap_or_default();
            macro_rules! le {
                ($ty:ty) => {
                    <$ty>::from_le_bytes(c.try_into().unwrap_or_default())
                };
            }
            match t.dtype {
                DataType::F32 => {
                    // Shortest text that reads back as the same float32.
                    let x = le!(f32);
                    if x.is_finite() {
                        out.push_str(ryu::Buffer::new().format_finite(x));
                    } else {
                        f(out, f64::from(x));
                    }
                }
                DataType::F64 => f(out, le!(f64)),
                DataType::F16 => f(
                    out,
                    half::f16::from_le_bytes(c.try_into().unwrap_or_default()).to_f64(),
                ),
                DataType::Bool => out.push_str(if c.first().copied().unwrap_or(0) != 0 {
                    "true"
                } else {
                    "false"
                }),
                DataType::I8 => {
                    let _ = write!(out, "{}", le!(i8));
                }
                DataType::I16 => {
                    let _ = write!(out, "{}", le!(i16));
                }
                DataType::I32 => {
                    let _ = write!(out, "{}", le!(i32));
                }
                DataType::I64 => {
                    let _ = write!(out, "{}", le!(i64));
                }
                DataType::U8 => {
                    let _ = write!(out, "{}", le!(u8));
                }
                DataType::U16 => {
                    let _ = write!(out, "{}", le!(u16));
                }
                DataType::U32 => {
                    let _ = write!(out, "{}", le!(u32));
                }
                DataType::U64 => {
                    let _ = write!(out, "{}", le!(u64));
                }
                DataType::Bytes => out.push_str("null"),
            }
        }
    }
}

/// Elements `start..` of `t` laid out as nested lists of `shape`.
fn write_nested(out: &mut String, t: &Tensor, shape: &[i64], start: usize) {
    match shape.split_first() {
        None => write_elem(out, t, start),
        Some((&n, inner)) => {
            let step: usize = inner.iter().map(|&d| d.max(0) as usize).product();
            out.push('[');
            for k in 0..n.max(0) as usize {
                if k > 0 {
                    out.push(',');
                }
                write_nested(out, t, inner, start + k * step);
            }
            out.push(']');
        }
    }
}

pub(super) fn encode(m: &LoadedModel, outputs: &[Tensor], columnar: bool) -> Result<String, Error> {
    let named: Vec<(&str, &Tensor)> = m
        .metadata
        .outputs
        .iter()
        .map(|s| s.name.as_str())
        .zip(outputs)
        .collect();
    let mut out = String::with_capacity(
        64 + outputs
            .iter()
            .map(|t| t.element_count() * 10)
            .sum::<usize>(),
    );
    let key = |out: &mut String, k: &str| {
        out.push_str(&Json::String(k.to_string()).to_string());
        out.push(':');
    };
    if columnar {
        out.push_str("{\"outputs\":");
        if let [(_, t)] = named.as_slice() {
            write_nested(&mut out, t, &t.shape, 0);
        } else {
            out.push('{');
            for (i, (n, t)) in named.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                key(&mut out, n);
                write_nested(&mut out, t, &t.shape, 0);
            }
            out.push('}');
        }
        out.push('}');
        return Ok(out);
    }
    let batch = named
        .first()
        .and_then(|(_, t)| t.shape.first())
        .copied()
        .unwrap_or(0);
    if let Some((n, _)) = named.iter().find(|(_, t)| t.shape.first() != Some(&batch)) {
        return Err(Error::internal(format!(
            "output '{n}' has no batch dimension matching the instances; ask in the columnar format ('inputs')"
        )));
    }
    out.push_str("{\"predictions\":[");
    for r in 0..batch.max(0) as usize {
        if r > 0 {
            out.push(',');
        }
        let row = |out: &mut String, t: &Tensor| {
            let inner = t.shape.get(1..).unwrap_or_default();
            let step: usize = inner.iter().map(|&d| d.max(0) as usize).product();
            write_nested(out, t, inner, r * step);
        };
        if let [(_, t)] = named.as_slice() {
            row(&mut out, t);
        } else {
            out.push('{');
            for (i, (n, t)) in named.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                key(&mut out, n);
                row(&mut out, t);
            }
            out.push('}');
        }
    }
    out.push_str("]}");
    Ok(out)
}
