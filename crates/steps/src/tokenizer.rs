//! The tokenizer step: a Hugging Face `tokenizer.json` (the `tokenizers`
//! crate) turns one sentence per row into token ids, attention mask and
//! token type ids, padded to the longest row of the batch.

use std::path::Path;

use bytes::Bytes;
use hone_core::{Backend, DataType, Error, ModelMetadata, Result, Tensor, TensorData, TensorSpec};
use tokenizers::{Tokenizer, TruncationParams};

use crate::Params;

/// The input's name, and the outputs' in the order the step returns them.
pub const INPUT: &str = "text";
pub const OUTPUTS: [&str; 3] = ["input_ids", "attention_mask", "token_type_ids"];

pub struct TokenizerStep {
    tokenizer: Tokenizer,
    meta: ModelMetadata,
    max_length: usize,
    truncate: bool,
    /// Pads each batch to a multiple of this: requests then more often share
    /// a length, which is what lets the next model batch them together.
    multiple: usize,
    pad_id: i64,
    special: bool,
}

impl TokenizerStep {
    pub fn load(dir: &Path, p: &Params) -> Result<Self> {
        let file = p.text("tokenizer_file").unwrap_or("tokenizer.json");
        if file.contains(['/', '\\']) || file.starts_with('.') {
            return Err(Error::invalid(format!(
                "config parameter tokenizer_file '{file}' must be a plain file name in the version directory"
            )));
        }
        let path = dir.join(file);
        if !path.is_file() {
            return Err(Error::invalid(format!(
                "the tokenizer step needs {file} in its version directory (a Hugging Face tokenizer.json)"
            )));
        }
        let mut tokenizer = Tokenizer::from_file(&path)
            .map_err(|e| Error::invalid(format!("cannot read {file}: {e}")))?;
        let from_file = tokenizer.get_truncation().map_or(512, |t| t.max_length);
        let pad_id = tokenizer.get_padding().map_or(0, |p| i64::from(p.pad_id));
        let max_length = p.number("max_length", from_file, "a number of tokens")?;
        if max_length == 0 {
            return Err(Error::invalid(
                "config parameter max_length must be above 0",
            ));
        }
        // Special tokens must leave room for text (the tokenizers crate
        // would subtract past zero).
        let special_count = tokenizer
            .get_post_processor()
            .map_or(0, |pp| tokenizers::PostProcessor::added_tokens(pp, false));
        if max_length <= special_count {
            return Err(Error::invalid(format!(
                "config parameter max_length is {max_length}: the tokenizer adds {special_count} special tokens, so give more"
            )));
        }
        let truncate = p.flag("truncation", true)?;
        let multiple = p.number("pad_to_multiple_of", 1usize, "a number of tokens")?;
        if multiple > max_length {
            return Err(Error::invalid(format!(
                "config parameter pad_to_multiple_of is {multiple}, over max_length {max_length}"
            )));
        }
        let special = p.flag("add_special_tokens", true)?;
        // Padding is done here, into the output buffers; truncation by the
        // tokenizer when asked, else a long row is refused below.
        tokenizer.with_padding(None);
        let trunc = truncate.then(|| TruncationParams {
            max_length,
            ..Default::default()
        });
        tokenizer
            .with_truncation(trunc)
            .map_err(|e| Error::invalid(format!("tokenizer truncation: {e}")))?;
        let ids = |name: &str| TensorSpec {
            name: name.to_string(),
            dtype: DataType::I64,
            dims: vec![-1, -1],
        };
        let meta = ModelMetadata {
            inputs: vec![TensorSpec {
                name: INPUT.to_string(),
                dtype: DataType::Bytes,
                dims: vec![-1],
            }],
            outputs: OUTPUTS.iter().map(|n| ids(n)).collect(),
        };
        Ok(Self {
            tokenizer,
            meta,
            max_length,
            truncate,
            multiple: multiple.max(1),
            pad_id,
            special,
        })
    }
}

impl Backend for TokenizerStep {
    fn metadata(&self) -> &ModelMetadata {
        &self.meta
    }

    fn infer(&mut self, batch: &[&[Tensor]]) -> Result<Vec<Tensor>> {
        let mut encodings = Vec::new();
        for request in batch {
            let Some(t) = request.first() else {
                return Err(Error::invalid(format!("input '{INPUT}' is missing")));
            };
            let TensorData::Strings(rows) = &t.data else {
                return Err(Error::invalid(format!("input '{INPUT}' must be BYTES")));
            };
            for (r, row) in rows.iter().enumerate() {
                let text = std::str::from_utf8(row).map_err(|_| {
                    Error::invalid(format!("input '{INPUT}' row {r} is not UTF-8 text"))
                })?;
                let e = self
                    .tokenizer
                    .encode_fast(text, self.special)
                    .map_err(|e| Error::invalid(format!("input '{INPUT}' row {r}: {e}")))?;
                if !self.truncate && e.len() > self.max_length {
                    return Err(Error::invalid(format!(
                        "input '{INPUT}' row {r} is {} tokens, over the {} this model takes (config parameter max_length; truncation is off)",
                        e.len(),
                        self.max_length
                    )));
                }
                encodings.push(e);
            }
        }
        let longest = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
        let width = longest.div_ceil(self.multiple) * self.multiple;
        let n = encodings.len();
        let mut out = [
            Vec::with_capacity(n * width * 8),
            Vec::with_capacity(n * width * 8),
            Vec::with_capacity(n * width * 8),
        ];
        for e in &encodings {
            let pad = width - e.len();
            let [ids, mask, types] = &mut out;
            write(
                ids,
                e.get_ids().iter().map(|&v| i64::from(v)),
                pad,
                self.pad_id,
            );
            write(
                mask,
                e.get_attention_mask().iter().map(|&v| i64::from(v)),
                pad,
                0,
            );
            write(
                types,
                e.get_type_ids().iter().map(|&v| i64::from(v)),
                pad,
                0,
            );
        }
        let shape = vec![n as i64, width as i64];
        out.into_iter()
            .map(|b| {
                Tensor::new(
                    DataType::I64,
                    shape.clone(),
                    TensorData::Raw(Bytes::from(b)),
                )
            })
            .collect()
    }
}

/// One row's values, then `pad` copies of `fill`, as little-endian i64.
fn write(out: &mut Vec<u8>, values: impl Iterator<Item = i64>, pad: usize, fill: i64) {
    for v in values.chain(std::iter::repeat_n(fill, pad)) {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn minilm_dir() -> Option<std::path::PathBuf> {
        let d =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models/minilm/tokenizer");
        d.join("tokenizer.json").is_file().then_some(d)
    }

    fn strings(rows: &[&str]) -> Tensor {
        let v = rows.iter().map(|s| Bytes::from(s.to_string())).collect();
        Tensor::new(
            DataType::Bytes,
            vec![rows.len() as i64],
            TensorData::Strings(v),
        )
        .unwrap()
    }

    fn i64s(t: &Tensor) -> Vec<i64> {
        match &t.data {
            TensorData::Raw(b) => b
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            TensorData::Strings(_) => panic!("not raw"),
        }
    }

    #[test]
    fn pads_a_batch_to_its_longest_row_and_refuses_long_text_without_truncation() {
        let Some(dir) = minilm_dir() else {
            println!("SKIPPED: ../shared/models/minilm/tokenizer is not here");
            return;
        };
        let mut params = BTreeMap::new();
        let mut step = TokenizerStep::load(&dir, &Params::new(&params)).unwrap();
        let a = strings(&[
            "Hello world.",
            "A much longer sentence than the first one is.",
        ]);
        let b = strings(&["Hi"]);
        let out = step.infer(&[&[a], &[b]]).unwrap();
        assert_eq!(out[0].shape, vec![3, 12]);
        let ids = i64s(&out[0]);
        // [CLS] hello world . [SEP], then padding.
        assert_eq!(&ids[..5], &[101, 7592, 2088, 1012, 102]);
        assert!(ids[5..12].iter().all(|&v| v == 0));
        let mask = i64s(&out[1]);
        assert_eq!(mask[..12].iter().sum::<i64>(), 5);
        assert_eq!(mask[24..].iter().sum::<i64>(), 3);

        let mut tiny = params.clone();
        tiny.insert("max_length".into(), "2".into());
        let e = TokenizerStep::load(&dir, &Params::new(&tiny))
            .err()
            .unwrap();
        assert!(e.message.contains("special tokens"), "{}", e.message);
        params.insert("truncation".into(), "false".into());
        params.insert("max_length".into(), "8".into());
        params.insert("pad_to_multiple_of".into(), "8".into());
        let mut strict = TokenizerStep::load(&dir, &Params::new(&params)).unwrap();
        let ok = strict.infer(&[&[strings(&["Hi"])]]).unwrap();
        assert_eq!(ok[0].shape, vec![1, 8]);
        let e = strict.infer(&[&[strings(&["Hi", "one two three four five six seven"])]]);
        let msg = e.unwrap_err().message;
        assert!(msg.contains("row 1") && msg.contains("max_length"), "{msg}");
        let bad = Tensor::new(
            DataType::Bytes,
            vec![1],
            TensorData::Strings(vec![Bytes::from_static(b"\xff\xfe")]),
        )
        .unwrap();
        assert!(
            strict
                .infer(&[&[bad]])
                .unwrap_err()
                .message
                .contains("UTF-8")
        );
    }

    #[test]
    fn a_missing_tokenizer_file_is_named() {
        let dir = std::env::temp_dir().join("hone-steps-no-tokenizer");
        std::fs::create_dir_all(&dir).unwrap();
        let params = BTreeMap::new();
        let e = TokenizerStep::load(&dir, &Params::new(&params))
            .err()
            .unwrap();
        assert!(e.message.contains("tokenizer.json"), "{}", e.message);
    }
}
