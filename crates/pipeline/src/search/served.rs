//! Feeding EVAL to a model the way `hone serve` will: one row per request
//! at batch 1, and the batches its batcher forms from such requests. With
//! dynamic int8 the activation scales are computed per engine call, so a
//! candidate's accuracy depends on the batch it runs in; judging only in
//! large padded batches misjudges what clients will get.
//!
//! Sequence models (an attention-mask input whose length the model leaves
//! dynamic) are fed each row at its own length, and the positions the mask
//! marks as padding are left out of sequence outputs in every pass.

use bytes::Bytes;
use hone_core::{Backend, ModelMetadata, Tensor, TensorData};
use hone_data::npy;
use hone_runtime::OrtBackend;

use crate::eval::Dataset;
use crate::{PipelineError, Result};

/// One way of running EVAL through a model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Pass {
    /// Each row alone, at its own length: one request at a time.
    Single,
    /// Batches of at most this many rows, of equal length: what the batcher
    /// forms from requests arriving together.
    Batched(usize),
    /// Consecutive rows as stored (padded to the data's length), this many
    /// at a time: how a bulk job runs.
    Padded(usize),
}

impl Pass {
    pub(crate) fn describe(self) -> String {
        match self {
            Pass::Single => "batch 1".into(),
            Pass::Batched(b) => format!("batches of ≤ {b}"),
            Pass::Padded(b) => format!("padded batches of {b}"),
        }
    }
}

/// Where a model's sequence axis is and where each row's tokens are.
#[derive(Debug, Clone)]
pub(crate) struct Seq {
    /// Which inputs carry the sequence axis (axis 1).
    carries: Vec<bool>,
    /// Per row: mask value per stored position (non-zero: a real token).
    mask: Vec<Vec<bool>>,
    /// Per row: the span from its first to its last real token.
    spans: Vec<(usize, usize)>,
    /// The model takes any length, so rows can be cut to their span.
    trim: bool,
    /// The length rows are stored (padded) at.
    stored: usize,
}

impl Seq {
    /// Finds an attention mask: an input named like one, of rank 2, whose
    /// second axis other inputs share.
    pub(crate) fn detect(meta: &ModelMetadata, ds: &Dataset) -> Option<Seq> {
        let (mi, spec) = meta
            .inputs
            .iter()
            .enumerate()
            .find(|(_, s)| s.name.to_ascii_lowercase().contains("mask") && s.dims.len() == 2)?;
        let t = ds.inputs.get(mi)?;
        let len = usize::try_from(*t.shape.get(1)?).ok()?;
        if t.shape.len() != 2 || len == 0 {
            return None;
        }
        let values = npy::to_f32(t)?;
        let mask: Vec<Vec<bool>> = values
            .chunks(len)
            .map(|r| r.iter().map(|&v| v != 0.0).collect())
            .collect();
        let spans = mask
            .iter()
            .map(
                |r| match (r.iter().position(|&m| m), r.iter().rposition(|&m| m)) {
                    (Some(a), Some(b)) => (a, b + 1),
                    _ => (0, 1),
                },
            )
            .collect();
        let carries = ds
            .inputs
            .iter()
            .zip(&meta.inputs)
            .map(|(t, s)| {
                t.shape.len() >= 2
                    && t.shape.get(1) == Some(&(len as i64))
                    && s.dims.get(1) == Some(&-1)
                    && matches!(t.data, TensorData::Raw(_))
            })
            .collect();
        Some(Seq {
            carries,
            mask,
            spans,
            trim: spec.dims.get(1) == Some(&-1),
            stored: len,
        })
    }

    /// The sequence is cut to each row's own length (the model allows it).
    pub(crate) fn trims(&self) -> bool {
        self.trim
    }
}

/// One output over every row; rows may differ in length (sequence outputs
/// keep only real tokens).
#[derive(Debug, Clone, Default)]
pub(crate) struct Rows {
    pub values: Vec<f32>,
    /// `rows + 1` offsets into `values`.
    pub offsets: Vec<usize>,
}

impl Rows {
    pub(crate) fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub(crate) fn row(&self, i: usize) -> &[f32] {
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => self.values.get(a..b).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// The common row width, when every row has the same.
    pub(crate) fn width(&self) -> Option<usize> {
        let w = self.row(0).len();
        (0..self.len()).all(|i| self.row(i).len() == w).then_some(w)
    }
}

/// Runs one output of the model over every row of `ds` in the given pass.
pub(crate) fn run(
    backend: &mut OrtBackend,
    ds: &Dataset,
    seq: Option<&Seq>,
    out_index: usize,
    pass: Pass,
) -> Result<Rows> {
    let meta = backend.metadata().clone();
    let out_spec = meta
        .outputs
        .get(out_index)
        .ok_or_else(|| PipelineError::Message(format!("no output {out_index}")))?;
    let name = out_spec.name.clone();
    let seq_out = out_spec.dims.len() >= 2 && out_spec.dims.get(1) == Some(&-1);
    let mut per_row: Vec<Vec<f32>> = vec![Vec::new(); ds.rows];
    for group in groups(ds.rows, seq, pass) {
        let (inputs, start, len) = gather(ds, seq, &group, pass)?;
        let outs = backend.infer(&[&inputs])?;
        let out = outs.get(out_index).ok_or_else(|| {
            PipelineError::Message(format!("the model returned no output {name:?}"))
        })?;
        let v = npy::to_f32(out).ok_or_else(|| {
            PipelineError::Message(format!(
                "output {name:?} is {}, not numeric",
                out.dtype.as_v2()
            ))
        })?;
        let n = group.len();
        let w = v.len().checked_div(n).unwrap_or(0);
        if w == 0 || w * n != v.len() {
            return Err(PipelineError::Message(format!(
                "output {name:?} has shape {:?}, which is not one row per example",
                out.shape
            )));
        }
        // A sequence output runs along the fed length; keep real tokens only.
        let along =
            seq.filter(|_| seq_out && len.is_some_and(|l| out.shape.get(1) == Some(&(l as i64))));
        for (k, &r) in group.iter().enumerate() {
            let vals = v.get(k * w..(k + 1) * w).unwrap_or(&[]);
            let kept = match (along, len) {
                (Some(s), Some(l)) => {
                    let inner = w / l.max(1);
                    let from = start.get(k).copied().unwrap_or(0);
                    let mask = s.mask.get(r).map(Vec::as_slice).unwrap_or(&[]);
                    vals.chunks(inner.max(1))
                        .enumerate()
                        .filter(|(p, _)| mask.get(from + p).copied().unwrap_or(false))
                        .flat_map(|(_, c)| c.iter().copied())
                        .collect()
                }
                _ => vals.to_vec(),
            };
            if let Some(slot) = per_row.get_mut(r) {
                *slot = kept;
            }
        }
    }
    let mut rows = Rows {
        values: Vec::new(),
        offsets: vec![0],
    };
    for r in per_row {
        rows.values.extend(r);
        rows.offsets.push(rows.values.len());
    }
    Ok(rows)
}

fn is_padded(pass: Pass) -> bool {
    matches!(pass, Pass::Padded(_))
}

/// The rows of each engine call, in order.
fn groups(rows: usize, seq: Option<&Seq>, pass: Pass) -> Vec<Vec<usize>> {
    let chunk = |ids: Vec<usize>, b: usize| -> Vec<Vec<usize>> {
        ids.chunks(b.max(1)).map(<[usize]>::to_vec).collect()
    };
    match pass {
        Pass::Single => (0..rows).map(|r| vec![r]).collect(),
        Pass::Padded(b) => chunk((0..rows).collect(), b),
        Pass::Batched(b) => match seq.filter(|s| s.trim) {
            // The batcher stacks only requests of one shape: group equal
            // lengths, in order of first appearance.
            Some(s) => {
                let mut by_len: Vec<(usize, Vec<usize>)> = Vec::new();
                for r in 0..rows {
                    let (a, e) = s.spans.get(r).copied().unwrap_or((0, 1));
                    match by_len.iter_mut().find(|(l, _)| *l == e - a) {
                        Some((_, v)) => v.push(r),
                        None => by_len.push((e - a, vec![r])),
                    }
                }
                by_len.into_iter().flat_map(|(_, v)| chunk(v, b)).collect()
            }
            None => chunk((0..rows).collect(), b),
        },
    }
}

/// The inputs of one engine call, with each row's span start and the fed
/// sequence length when the model has a sequence axis.
fn gather(
    ds: &Dataset,
    seq: Option<&Seq>,
    group: &[usize],
    pass: Pass,
) -> Result<(Vec<Tensor>, Vec<usize>, Option<usize>)> {
    let (Some(&first), Some(&last)) = (group.first(), group.last()) else {
        return Err(PipelineError::Message("an empty batch".into()));
    };
    let contiguous = last + 1 - first == group.len();
    let cut = seq.filter(|s| s.trim && !is_padded(pass));
    let Some(s) = cut else {
        // Rows as stored: a zero-copy slice when they are consecutive.
        let len = seq.map(|s| s.stored);
        let inputs = if contiguous {
            ds.slice(first, last + 1)
        } else {
            ds.inputs
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    if ds.is_whole(i) {
                        Ok(t.clone())
                    } else {
                        pick(t, group, None)
                    }
                })
                .collect::<Result<_>>()?
        };
        return Ok((inputs, vec![0; group.len()], len));
    };
    let spans: Vec<(usize, usize)> = group
        .iter()
        .map(|&r| s.spans.get(r).copied().unwrap_or((0, 1)))
        .collect();
    let len = spans.iter().map(|(a, e)| e - a).max().unwrap_or(1);
    let inputs = ds
        .inputs
        .iter()
        .zip(&s.carries)
        .map(|(t, &carries)| pick(t, group, carries.then_some((&spans, len))))
        .collect::<Result<_>>()?;
    Ok((inputs, spans.iter().map(|&(a, _)| a).collect(), Some(len)))
}

/// Copies the given rows of a tensor; with a span per row, only positions
/// `[start, start + len)` of axis 1.
fn pick(t: &Tensor, rows: &[usize], cut: Option<(&Vec<(usize, usize)>, usize)>) -> Result<Tensor> {
    let n = t.batch().max(1);
    let mut shape = t.shape.clone();
    if let Some(d0) = shape.first_mut() {
        *d0 = rows.len() as i64;
    }
    match &t.data {
        TensorData::Raw(b) => {
            let row = b.len() / n;
            let mut out = Vec::new();
            match cut {
                Some((spans, len)) => {
                    let stored = t.shape.get(1).map_or(1, |&l| l.max(1) as usize);
                    let pos = row / stored;
                    for (&r, &(a, _)) in rows.iter().zip(spans.iter()) {
                        let base = r * row + a * pos;
                        out.extend_from_slice(b.get(base..base + len * pos).ok_or_else(|| {
                            PipelineError::Message(format!("row {r} is shorter than its mask"))
                        })?);
                    }
                    if let Some(d1) = shape.get_mut(1) {
                        *d1 = len as i64;
                    }
                }
                None => {
                    for &r in rows {
                        out.extend_from_slice(b.get(r * row..(r + 1) * row).unwrap_or(&[]));
                    }
                }
            }
            Ok(Tensor::new(
                t.dtype,
                shape,
                TensorData::Raw(Bytes::from(out)),
            )?)
        }
        TensorData::Strings(v) => {
            let row = v.len() / n;
            let out = rows
                .iter()
                .flat_map(|&r| v.get(r * row..(r + 1) * row).unwrap_or(&[]).to_vec())
                .collect();
            Ok(Tensor::new(t.dtype, shape, TensorData::Strings(out))?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(spans: &[(usize, usize)]) -> Seq {
        Seq {
            carries: vec![true],
            mask: spans
                .iter()
                .map(|&(a, e)| (0..6).map(|p| p >= a && p < e).collect())
                .collect(),
            spans: spans.to_vec(),
            trim: true,
            stored: 6,
        }
    }

    #[test]
    fn the_batcher_stacks_only_equal_lengths() {
        let s = seq(&[(0, 3), (0, 5), (0, 3), (0, 3), (0, 5)]);
        assert_eq!(
            groups(5, Some(&s), Pass::Batched(2)),
            vec![vec![0, 2], vec![3], vec![1, 4]]
        );
        assert_eq!(
            groups(5, Some(&s), Pass::Padded(4)),
            vec![vec![0, 1, 2, 3], vec![4]]
        );
        assert_eq!(
            groups(3, None, Pass::Single),
            vec![vec![0], vec![1], vec![2]]
        );
    }

    #[test]
    fn rows_are_cut_to_their_span() {
        // Two rows of 6 positions × 2 values; row 1 is left-padded.
        let v: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let t = Tensor::from_f32(vec![2, 6, 2], &v).unwrap();
        let spans = vec![(2, 4)];
        let out = pick(&t, &[1], Some((&spans, 2))).unwrap();
        assert_eq!(out.shape, vec![1, 2, 2]);
        assert_eq!(npy::to_f32(&out).unwrap(), vec![16.0, 17.0, 18.0, 19.0]);
    }
}
