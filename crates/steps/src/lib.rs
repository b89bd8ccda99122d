//! hone's built-in processing steps: a Hugging Face tokenizer, image
//! decoding and post-processing, each served as a model (`backend:
//! "hone_tokenizer"` and so on in `config.pbtxt`) so that an ensemble can
//! put them before and after an ONNX model with no code and no Python.

mod image;
mod params;
mod postprocess;
mod rank;
mod tokenizer;

use std::collections::BTreeMap;
use std::path::Path;

use hone_core::{Backend, Result};

pub use params::Params;
pub use rank::top_k;

/// The built-in steps, by their `backend` name in `config.pbtxt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text (BYTES) → token ids, attention mask and type ids (INT64).
    Tokenizer,
    /// Encoded images (BYTES) → decoded, resized, normalised FP32 pixels.
    Image,
    /// Scores → softmax, top-k labels, pooling, normalisation, thresholds.
    Postprocess,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Tokenizer, Kind::Image, Kind::Postprocess];

    pub fn backend(self) -> &'static str {
        match self {
            Kind::Tokenizer => "hone_tokenizer",
            Kind::Image => "hone_image",
            Kind::Postprocess => "hone_postprocess",
        }
    }

    pub fn from_backend(name: &str) -> Option<Kind> {
        Self::ALL.into_iter().find(|k| k.backend() == name)
    }
}

/// One instance of a step, from its version directory (where its files,
/// such as `tokenizer.json` or a labels file, live) and the model's config
/// parameters.
pub fn load(
    kind: Kind,
    dir: &Path,
    parameters: &BTreeMap<String, String>,
) -> Result<Box<dyn Backend>> {
    let p = Params::new(parameters);
    Ok(match kind {
        Kind::Tokenizer => Box::new(tokenizer::TokenizerStep::load(dir, &p)?),
        Kind::Image => Box::new(image::ImageStep::load(dir, &p)?),
        Kind::Postprocess => Box::new(postprocess::PostStep::load(dir, &p)?),
    })
}
