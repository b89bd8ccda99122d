//! Triton's classification extension: an output asked for with the
//! parameter `classification: k` is answered as its k highest values, each
//! the text `value:index` or `value:index:label` (BYTES), the labels from
//! the output's `label_filename`.

use bytes::Bytes;
use hone_core::{DataType, Error, Result, Tensor, TensorData};

/// The top `k` of each row of `t` (of the whole tensor when the model does
/// not batch), highest first; ties keep the lower index first.
pub(crate) fn classify(
    name: &str,
    t: &Tensor,
    k: usize,
    batched: bool,
    labels: Option<&[String]>,
) -> Result<Tensor> {
    let v = t.to_f64s().ok_or_else(|| {
        Error::invalid(format!(
            "output '{name}': classification needs numbers; it is {}",
            t.dtype
        ))
    })?;
    let rows = if batched { t.batch() } else { 1 };
    let width = v.len().checked_div(rows).unwrap_or(0);
    let k = k.min(width);
    let mut out = Vec::with_capacity(rows * k);
    for row in v.chunks(width.max(1)).take(rows) {
        for i in hone_steps::top_k(row, k) {
            let value = row.get(i).copied().unwrap_or(0.0);
            // Six decimals, as Triton writes them.
            let text = match labels.and_then(|l| l.get(i)) {
                Some(l) => format!("{value:.6}:{i}:{l}"),
                None => format!("{value:.6}:{i}"),
            };
            out.push(Bytes::from(text));
        }
    }
    let shape = if batched {
        vec![rows as i64, k as i64]
    } else {
        vec![k as i64]
    };
    Tensor::new(DataType::Bytes, shape, TensorData::Strings(out))
}

/// A requested output's `classification` parameter: a count above 0.
pub(crate) fn count(output: &str, value: Option<i64>) -> Result<Option<usize>> {
    match value {
        None => Ok(None),
        Some(k) if k > 0 => Ok(Some(k as usize)),
        Some(k) => Err(Error::invalid(format!(
            "output '{output}': parameter classification is {k}; give a number of classes above 0"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(t: &Tensor) -> Vec<String> {
        match &t.data {
            TensorData::Strings(v) => v
                .iter()
                .map(|b| String::from_utf8_lossy(b).into())
                .collect(),
            TensorData::Raw(_) => panic!("not BYTES"),
        }
    }

    #[test]
    fn top_k_per_row_with_and_without_labels() {
        let t = Tensor::from_f32(vec![2, 3], &[0.1, 0.7, 0.2, 0.5, 0.5, 0.0]).unwrap();
        let labels = ["cat".to_string(), "dog".into(), "fox".into()];
        let c = classify("p", &t, 2, true, Some(&labels)).unwrap();
        assert_eq!(c.shape, vec![2, 2]);
        let got = texts(&c);
        assert_eq!(got[0], "0.700000:1:dog");
        assert_eq!(got[1], "0.200000:2:fox");
        assert_eq!(got[2], "0.500000:0:cat");
        let one = classify("p", &t, 9, false, None).unwrap();
        assert_eq!(one.shape, vec![6]);
        assert_eq!(texts(&one)[0], "0.700000:1");
        assert!(count("p", Some(0)).is_err());
        assert_eq!(count("p", Some(3)).unwrap(), Some(3));
    }
}
