//! A small YAML writer for manifests: block style, every string quoted
//! (JSON's quoting is valid YAML, so no value is ever misread as a number,
//! a boolean or a null).

use serde_json::Value;

pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    block(v, 0, &mut out);
    out
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        Value::String(s) => serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()),
        other => other.to_string(),
    }
}

fn key(k: &str) -> String {
    let plain = !k.is_empty()
        && k.chars().all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c))
        && k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        // YAML 1.1 readers take these as booleans or null.
        && !["y", "n", "yes", "no", "on", "off", "true", "false", "null"]
            .contains(&k.to_ascii_lowercase().as_str());
    if plain {
        k.into()
    } else {
        scalar(&Value::String(k.into()))
    }
}

fn pad(n: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn block(v: &Value, ind: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                pad(ind, out);
                out.push_str(&key(k));
                out.push(':');
                child(x, ind, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for x in a {
                pad(ind, out);
                out.push('-');
                item(x, ind, out);
            }
        }
        _ => {
            pad(ind, out);
            out.push_str(&scalar(v));
            out.push('\n');
        }
    }
}

/// What follows `key:`.
fn child(x: &Value, ind: usize, out: &mut String) {
    if is_block(x) {
        out.push('\n');
        block(x, ind + 2, out);
    } else {
        out.push(' ');
        out.push_str(&scalar(x));
        out.push('\n');
    }
}

/// What follows `-`: a mapping starts on the dash's line.
fn item(x: &Value, ind: usize, out: &mut String) {
    match x {
        Value::Object(m) if !m.is_empty() => {
            for (i, (k, y)) in m.iter().enumerate() {
                if i == 0 {
                    out.push(' ');
                } else {
                    pad(ind + 2, out);
                }
                out.push_str(&key(k));
                out.push(':');
                child(y, ind + 2, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            block(x, ind + 2, out);
        }
        _ => {
            out.push(' ');
            out.push_str(&scalar(x));
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_maps_and_lists() {
        let v = serde_json::json!({
            "a": {"b": 1, "c": ["x", {"d": true, "e": []}]},
            "on": "yes", "z": {}, "9k": null
        });
        assert_eq!(
            to_yaml(&v),
            "\"9k\": null\na:\n  b: 1\n  c:\n    - \"x\"\n    - d: true\n      e: []\n\"on\": \"yes\"\nz: {}\n"
        );
    }
}
