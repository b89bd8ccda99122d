//! The rows a model is evaluated on: one tensor per input, and the labels.

use hone_core::Tensor;
use hone_data::Encoding;

/// Model inputs (one tensor per input, all rows) and, when the data has
/// them, labels.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub inputs: Vec<Tensor>,
    pub labels: Option<Vec<f32>>,
    pub rows: usize,
    pub encoding: Option<Encoding>,
    /// The first input's column names when the data names them (CSV).
    pub columns: Vec<String>,
    /// Per input: fed whole to every batch instead of sliced by rows (a
    /// fixed-shape input such as a recurrent model's initial state).
    /// Empty: every input is sliced.
    pub whole: Vec<bool>,
}

impl Dataset {
    /// Rows `[start, end)`, sharing the buffers.
    pub fn slice(&self, start: usize, end: usize) -> Vec<Tensor> {
        self.inputs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if self.is_whole(i) {
                    t.clone()
                } else {
                    t.slice_batch(start, end)
                }
            })
            .collect()
    }

    /// Whether input `i` is fed whole to every batch.
    pub fn is_whole(&self, i: usize) -> bool {
        self.whole.get(i).copied().unwrap_or(false)
    }
}
