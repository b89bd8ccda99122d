//! Tensors → TF Serving's answer JSON: `predictions` per instance (row
//! format) or `outputs` whole (columnar), NaN and ±Infinity as bare tokens,
//! bytes as strings or `{"b64": ...}`.

use hone_core::{Error, Tensor, TensorData};
use serde_json::Value as Json;

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

/// One element as TF Serving writes it (NaN and ±Infinity as bare tokens,
/// bytes as a string or `{"b64": ...}`).
fn write_elem(out: &mut Vec<u8>, t: &Tensor, i: usize) {
    match &t.data {
        TensorData::Strings(items) => {
            let b = items.get(i).map(|b| &b[..]).unwrap_or_default();
            match std::str::from_utf8(b) {
                Ok(s) => out.extend_from_slice(Json::String(s.to_string()).to_string().as_bytes()),
                Err(_) => {
                    out.extend_from_slice(b"{\"b64\":\"");
                    out.extend_from_slice(b64_encode(b).as_bytes());
                    out.extend_from_slice(b"\"}");
                }
            }
        }
        TensorData::Raw(_) => {
            if !t.write_json_element(i, out) {
                out.extend_from_slice(b"null");
            }
        }
    }
}

/// Elements `start..` of `t` laid out as nested lists of `shape`.
fn write_nested(out: &mut Vec<u8>, t: &Tensor, shape: &[i64], start: usize) {
    match shape.split_first() {
        None => write_elem(out, t, start),
        Some((&n, inner)) => {
            let step: usize = inner.iter().map(|&d| d.max(0) as usize).product();
            out.push(b'[');
            for k in 0..n.max(0) as usize {
                if k > 0 {
                    out.push(b',');
                }
                write_nested(out, t, inner, start + k * step);
            }
            out.push(b']');
        }
    }
}

pub(super) fn encode(named: &[(&str, &Tensor)], columnar: bool) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(
        64 + named
            .iter()
            .map(|(_, t)| t.element_count() * 10)
            .sum::<usize>(),
    );
    let key = |out: &mut Vec<u8>, k: &str| {
        out.extend_from_slice(Json::String(k.to_string()).to_string().as_bytes());
        out.push(b':');
    };
    if columnar {
        out.extend_from_slice(b"{\"outputs\":");
        if let [(_, t)] = named {
            write_nested(&mut out, t, &t.shape, 0);
        } else {
            out.push(b'{');
            for (i, (n, t)) in named.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                key(&mut out, n);
                write_nested(&mut out, t, &t.shape, 0);
            }
            out.push(b'}');
        }
        out.push(b'}');
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
    out.extend_from_slice(b"{\"predictions\":[");
    for r in 0..batch.max(0) as usize {
        if r > 0 {
            out.push(b',');
        }
        let row = |out: &mut Vec<u8>, t: &Tensor| {
            let inner = t.shape.get(1..).unwrap_or_default();
            let step: usize = inner.iter().map(|&d| d.max(0) as usize).product();
            write_nested(out, t, inner, r * step);
        };
        if let [(_, t)] = named {
            row(&mut out, t);
        } else {
            out.push(b'{');
            for (i, (n, t)) in named.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                key(&mut out, n);
                row(&mut out, t);
            }
            out.push(b'}');
        }
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}
