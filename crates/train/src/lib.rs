//! Training hone's reference model: an MLP (Dense 64 relu → Dense 64 relu →
//! head) on tabular data, with candle doing the tensor work and autograd.
//!
//! The trained model keeps everything the exported graph needs: the feature
//! encoding, the standardisation learned from the training rows, the weights
//! and, for regression, the target scale. [`Mlp::predict`] runs the same
//! computation in Rust that [`Mlp::to_onnx`] writes as a graph, which is how
//! the export is checked.

mod card;
pub mod export;
mod mlp;

pub use card::{CardInput, HONE_VERSION, ModelCard, card_for, sha256_hex};
pub use mlp::{EpochLog, Init, Layer, Mlp, TrainConfig, TrainError, train};
