//! TF Serving request JSON → tensors: the row and columnar formats, the
//! NaN/Infinity tokens, `{"b64": ...}` bytes, shapes from list nesting.

use bytes::Bytes;
use hone_core::element::{JsonNumber, push_json_number};
use hone_core::{DataType, Error, NamedTensor, Tensor, TensorData, TensorSpec};
use serde_json::Value as Json;

use super::types::{SIGNATURE, dtype};

/// TF Serving's JSON allows the bare tokens NaN, Infinity and -Infinity;
/// they become strings here, which float inputs read back.
fn quote_tokens(b: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !b.iter().any(|&c| c == b'N' || c == b'I') {
        return std::borrow::Cow::Borrowed(b);
    }
    let mut out = Vec::with_capacity(b.len() + 16);
    let (mut i, mut in_str) = (0, false);
    while let Some(&c) = b.get(i) {
        if in_str {
            out.push(c);
            if c == b'\\' {
                if let Some(&n) = b.get(i + 1) {
                    out.push(n);
                }
                i += 1;
            } else if c == b'"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        let rest = b.get(i..).unwrap_or_default();
        let tok = [&b"-Infinity"[..], b"Infinity", b"NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t));
        match tok {
            Some(t) => {
                out.push(b'"');
                out.extend_from_slice(t);
                out.push(b'"');
                i += t.len();
            }
            None => {
                in_str = c == b'"';
                out.push(c);
                i += 1;
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::invalid(msg)
}

/// The request's tensors, in the model's input order, and whether it was
/// columnar.
/// `features`: a hone-trained model's features as inputs (one value per
/// row), used when the request names them instead of the model's inputs.
pub(super) fn decode(
    body: &[u8],
    specs: &[TensorSpec],
    features: Option<&[TensorSpec]>,
) -> Result<(Vec<NamedTensor>, bool), Error> {
    let v: Json = serde_json::from_slice(&quote_tokens(body))
        .map_err(|e| invalid(format!("JSON Parse error: {e}")))?;
    let o = v
        .as_object()
        .ok_or_else(|| invalid("the request body must be a JSON object"))?;
    match o.get("signature_name").and_then(Json::as_str) {
        None | Some("" | SIGNATURE) => {}
        Some(n) => {
            return Err(invalid(format!(
                "Serving signature name: \"{n}\" not found in signature def"
            )));
        }
    }
    // Named features: the keys of the first row object (or of the
    // columnar map) are all features and not the model's own inputs.
    let keys = match (o.get("instances"), o.get("inputs")) {
        (Some(Json::Array(rows)), None) => rows.first().and_then(Json::as_object),
        (None, Some(Json::Object(map))) => Some(map),
        _ => None,
    };
    let specs = match (features, keys) {
        (Some(f), Some(keys))
            if !keys.is_empty()
                && keys.keys().all(|k| f.iter().any(|s| s.name == *k))
                && !keys.keys().any(|k| specs.iter().any(|s| s.name == *k)) =>
        {
            f
        }
        _ => specs,
    };
    let one = |name: &str| specs.iter().find(|s| s.name == name);
    match (o.get("instances"), o.get("inputs")) {
        (Some(_), Some(_)) => Err(invalid(
            "a request has either 'instances' (row format) or 'inputs' (columnar format), not both",
        )),
        (None, None) => Err(invalid("Missing 'inputs' or 'instances' key")),
        (Some(inst), None) => {
            let rows = inst
                .as_array()
                .ok_or_else(|| invalid("'instances' must be a list"))?;
            if rows.is_empty() {
                return Err(invalid("'instances' is empty"));
            }
            let named = specs.len() > 1
                || rows.first().is_some_and(|r| {
                    r.as_object().is_some_and(|o| {
                        o.keys().all(|k| one(k).is_some()) && !o.contains_key("b64")
                    })
                });
            let mut out = Vec::new();
            for s in specs {
                let col: Vec<&Json> = rows
                    .iter()
                    .map(|r| {
                        if named {
                            r.get(&s.name).ok_or_else(|| {
                                invalid(format!("instance is missing input '{}'", s.name))
                            })
                        } else {
                            Ok(r)
                        }
                    })
                    .collect::<Result<_, _>>()?;
                out.push((s.name.clone(), stack(&col, s)?));
            }
            Ok((out, false))
        }
        (None, Some(inputs)) => {
            let mut out = Vec::new();
            match inputs.as_object().filter(|o| !o.contains_key("b64")) {
                Some(map) => {
                    if let Some(k) = map.keys().find(|k| one(k).is_none()) {
                        return Err(invalid(format!("unknown input '{k}'")));
                    }
                    for s in specs {
                        let v = map
                            .get(&s.name)
                            .ok_or_else(|| invalid(format!("missing input '{}'", s.name)))?;
                        out.push((s.name.clone(), tensor(v, s)?));
                    }
                }
                None => {
                    let [s] = specs else {
                        return Err(invalid(
                            "the model has several inputs: 'inputs' must be an object naming each",
                        ));
                    };
                    out.push((s.name.clone(), tensor(inputs, s)?));
                }
            }
            Ok((out, true))
        }
    }
}

/// Rows of one input stacked on a new first dimension; every row must
/// have the same shape.
fn stack(rows: &[&Json], s: &TensorSpec) -> Result<Tensor, Error> {
    let mut shape: Option<Vec<i64>> = None;
    let mut leaves = Vec::new();
    for r in rows {
        let mut sh = Vec::new();
        flatten(r, 0, &mut sh, &mut leaves)?;
        match &shape {
            None => shape = Some(sh),
            Some(first) if *first != sh => {
                return Err(invalid(format!(
                    "The shapes of all instances must match: input '{}' has {first:?} and {sh:?}",
                    s.name
                )));
            }
            Some(_) => {}
        }
    }
    let mut full = vec![rows.len() as i64];
    full.extend(shape.unwrap_or_default());
    build(s, full, &leaves)
}

fn tensor(v: &Json, s: &TensorSpec) -> Result<Tensor, Error> {
    let (mut shape, mut leaves) = (Vec::new(), Vec::new());
    flatten(v, 0, &mut shape, &mut leaves)?;
    build(s, shape, &leaves)
}

/// Depth-first leaves of a nested list, checking it is rectangular.
fn flatten<'a>(
    v: &'a Json,
    depth: usize,
    shape: &mut Vec<i64>,
    leaves: &mut Vec<&'a Json>,
) -> Result<(), Error> {
    match v.as_array() {
        Some(items) => {
            match shape.get(depth) {
                None => shape.push(items.len() as i64),
                Some(&n) if n != items.len() as i64 => {
                    return Err(invalid(
                        "a nested list is ragged: every list at one depth must have the same length",
                    ));
                }
                Some(_) => {}
            }
            for i in items {
                flatten(i, depth + 1, shape, leaves)?;
            }
            Ok(())
        }
        None if shape.len() > depth => {
            Err(invalid("a nested list mixes lists and values at one depth"))
        }
        None => {
            leaves.push(v);
            Ok(())
        }
    }
}

fn build(s: &TensorSpec, shape: Vec<i64>, leaves: &[&Json]) -> Result<Tensor, Error> {
    let bad = |v: &Json| {
        invalid(format!(
            "input '{}' ({}): cannot read {v} as {}",
            s.name,
            dtype(s.dtype),
            s.dtype.as_v2()
        ))
    };
    if s.dtype == DataType::Bytes {
        let items = leaves
            .iter()
            .map(|v| match v {
                Json::String(t) => Ok(Bytes::copy_from_slice(t.as_bytes())),
                Json::Object(o) => o
                    .get("b64")
                    .and_then(Json::as_str)
                    .and_then(b64_decode)
                    .map(Bytes::from)
                    .ok_or_else(|| bad(v)),
                _ => Err(bad(v)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Tensor::new(DataType::Bytes, shape, TensorData::Strings(items));
    }
    // TF Serving's reading: the NaN/Infinity strings as floats, 0/1 as
    // booleans and booleans as integers; the rest is core's one reader.
    let number = |v: &Json| -> Option<JsonNumber> {
        let n = match v {
            Json::Number(n) => n
                .as_u64()
                .map(JsonNumber::U)
                .or_else(|| n.as_i64().map(JsonNumber::I))
                .or_else(|| n.as_f64().map(JsonNumber::F))?,
            Json::Bool(b) => JsonNumber::B(*b),
            Json::String(t) => JsonNumber::F(match t.as_str() {
                "NaN" => f64::NAN,
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                _ => return None,
            }),
            _ => return None,
        };
        Some(match (s.dtype, n) {
            (DataType::Bool, JsonNumber::U(u)) => JsonNumber::B(u != 0),
            (DataType::Bool, JsonNumber::I(i)) => JsonNumber::B(i != 0),
            (DataType::Bool, n) => n,
            (d, JsonNumber::B(_)) if d.is_float() => return None,
            (_, JsonNumber::B(b)) => JsonNumber::U(u64::from(b)),
            (_, n) => n,
        })
    };
    let mut out: Vec<u8> = Vec::with_capacity(leaves.len() * s.dtype.size().unwrap_or(8));
    for v in leaves {
        let fits = number(v).is_some_and(|n| push_json_number(s.dtype, n, &mut out));
        if !fits {
            return Err(bad(v));
        }
    }
    Tensor::new(s.dtype, shape, TensorData::Raw(Bytes::from(out)))
}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    };
    let t = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(t.len() * 3 / 4);
    for chunk in t.chunks(4) {
        let v: Vec<u8> = chunk.iter().map(|&c| val(c)).collect::<Option<_>>()?;
        let n = v.iter().fold(0u32, |a, &x| a << 6 | u32::from(x)) << (6 * (4 - v.len()));
        let bytes = n.to_be_bytes();
        match v.len() {
            4 => out.extend_from_slice(bytes.get(1..4)?),
            3 => out.extend_from_slice(bytes.get(1..3)?),
            2 => out.extend_from_slice(bytes.get(1..2)?),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_and_base64() {
        let q = quote_tokens(br#"{"a":[NaN,-Infinity,Infinity],"s":"NaN \" Infinity"}"#);
        let v: Json = serde_json::from_slice(&q).unwrap();
        assert_eq!(v["a"], json!(["NaN", "-Infinity", "Infinity"]));
        assert_eq!(v["s"], "NaN \" Infinity");
        for s in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\xff\x00\x10"] {
            assert_eq!(b64_decode(&super::super::encode::b64_encode(s)).unwrap(), s);
        }
        assert_eq!(super::super::encode::b64_encode(b"foobar"), "Zm9vYmFy");
        assert!(b64_decode("a$==").is_none());
    }
}
