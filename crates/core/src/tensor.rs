//! Tensors: a dtype, a shape, and packed little-endian bytes (or strings).

use bytes::Bytes;

use crate::{DataType, Error, Result};

/// Tensor payload. Fixed-size types are kept as packed little-endian bytes so a
/// binary request body can be handed to the engine without parsing elements.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// Packed little-endian elements; `len == element_count * dtype.size()`.
    Raw(Bytes),
    /// One entry per element of a BYTES tensor.
    Strings(Vec<Bytes>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub dtype: DataType,
    pub shape: Vec<i64>,
    pub data: TensorData,
}

/// Number of elements of `shape`, or an error for negative dimensions or an
/// element count that overflows.
pub fn element_count(shape: &[i64]) -> Result<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        let d = usize::try_from(d)
            .map_err(|_| Error::invalid(format!("shape {shape:?} has a negative dimension")))?;
        acc.checked_mul(d)
            .ok_or_else(|| Error::invalid(format!("shape {shape:?} has too many elements")))
    })
}

impl Tensor {
    /// Builds a tensor and checks that the payload matches shape and dtype.
    pub fn new(dtype: DataType, shape: Vec<i64>, data: TensorData) -> Result<Self> {
        let n = element_count(&shape)?;
        match (&data, dtype.size()) {
            (TensorData::Raw(b), Some(size)) => {
                let want = n
                    .checked_mul(size)
                    .ok_or_else(|| Error::invalid("tensor too large"))?;
                if b.len() != want {
                    return Err(Error::invalid(format!(
                        "{dtype} tensor of shape {shape:?} needs {want} bytes, got {}",
                        b.len()
                    )));
                }
            }
            (TensorData::Strings(v), None) => {
                if v.len() != n {
                    return Err(Error::invalid(format!(
                        "BYTES tensor of shape {shape:?} needs {n} elements, got {}",
                        v.len()
                    )));
                }
            }
            _ => {
                return Err(Error::invalid(format!(
                    "payload kind does not match datatype {dtype}"
                )));
            }
        }
        Ok(Self { dtype, shape, data })
    }

    /// Packs plain values into a raw tensor (used by tests and the JSON decoder).
    pub fn from_f32(shape: Vec<i64>, values: &[f32]) -> Result<Self> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::new(DataType::F32, shape, TensorData::Raw(Bytes::from(bytes)))
    }

    pub fn element_count(&self) -> usize {
        match &self.data {
            TensorData::Raw(b) => b.len() / self.dtype.size().unwrap_or(1),
            TensorData::Strings(v) => v.len(),
        }
    }

    /// Size of dim 0, the batch size when the model batches.
    pub fn batch(&self) -> usize {
        self.shape.first().map_or(1, |&d| d.max(0) as usize)
    }

    /// Rows `start..end` along dim 0, without copying raw data.
    pub fn slice_batch(&self, start: usize, end: usize) -> Tensor {
        let rows = self.batch().max(1);
        let mut shape = self.shape.clone();
        if let Some(d0) = shape.first_mut() {
            *d0 = (end - start) as i64;
        }
        let data = match &self.data {
            TensorData::Raw(b) => {
                let row = b.len() / rows;
                TensorData::Raw(b.slice(start * row..end * row))
            }
            TensorData::Strings(v) => {
                let row = v.len() / rows;
                TensorData::Strings(v[start * row..end * row].to_vec())
            }
        };
        Tensor {
            dtype: self.dtype,
            shape,
            data,
        }
    }

    /// The payload as the binary tensor extension lays it out: raw bytes, or
    /// for BYTES each element prefixed by its u32 little-endian length.
    pub fn to_wire_bytes(&self) -> Bytes {
        match &self.data {
            TensorData::Raw(b) => b.clone(),
            TensorData::Strings(v) => {
                let mut out = Vec::with_capacity(v.iter().map(|s| s.len() + 4).sum());
                for s in v {
                    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    out.extend_from_slice(s);
                }
                Bytes::from(out)
            }
        }
    }

    /// Parses the binary tensor extension layout (inverse of [`Self::to_wire_bytes`]).
    pub fn from_wire_bytes(dtype: DataType, shape: Vec<i64>, bytes: Bytes) -> Result<Self> {
        if dtype != DataType::Bytes {
            return Self::new(dtype, shape, TensorData::Raw(bytes));
        }
        let n = element_count(&shape)?;
        // Each element needs at least its 4-byte prefix, so a huge declared
        // shape with a small body is rejected before allocating.
        if n > bytes.len() / 4 {
            return Err(Error::invalid(format!(
                "BYTES tensor of shape {shape:?} needs {n} length-prefixed elements, body has {} bytes",
                bytes.len()
            )));
        }
        let mut items = Vec::with_capacity(n);
        let mut pos = 0usize;
        while pos < bytes.len() {
            let Some(prefix) = bytes.get(pos..pos + 4) else {
                return Err(Error::invalid(
                    "BYTES element has a truncated length prefix",
                ));
            };
            let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
            pos += 4;
            if pos + len > bytes.len() {
                return Err(Error::invalid(format!(
                    "BYTES element {} claims {len} bytes but only {} remain",
                    items.len(),
                    bytes.len() - pos
                )));
            }
            items.push(bytes.slice(pos..pos + len));
            pos += len;
        }
        Self::new(dtype, shape, TensorData::Strings(items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_size_is_checked() {
        assert!(
            Tensor::new(
                DataType::F32,
                vec![2, 2],
                TensorData::Raw(Bytes::from(vec![0u8; 16]))
            )
            .is_ok()
        );
        let e = Tensor::new(
            DataType::F32,
            vec![2, 2],
            TensorData::Raw(Bytes::from(vec![0u8; 12])),
        )
        .unwrap_err();
        assert!(e.message.contains("needs 16 bytes, got 12"), "{e}");
        assert!(element_count(&[-1, 3]).is_err());
        assert!(element_count(&[i64::MAX, i64::MAX]).is_err());
    }

    #[test]
    fn bytes_wire_round_trip_and_slicing() {
        let t = Tensor::new(
            DataType::Bytes,
            vec![3],
            TensorData::Strings(vec![Bytes::from("a"), Bytes::new(), Bytes::from("héllo")]),
        )
        .unwrap();
        let wire = t.to_wire_bytes();
        assert_eq!(wire.len(), 3 * 4 + 1 + 6);
        let back = Tensor::from_wire_bytes(DataType::Bytes, vec![3], wire.clone()).unwrap();
        assert_eq!(back, t);
        assert!(
            Tensor::from_wire_bytes(DataType::Bytes, vec![3], wire.slice(0..wire.len() - 1))
                .is_err()
        );
        assert!(Tensor::from_wire_bytes(DataType::Bytes, vec![1 << 40], wire).is_err());
        let s = t.slice_batch(1, 3);
        assert_eq!(s.shape, vec![2]);
        assert_eq!(
            s.data,
            TensorData::Strings(vec![Bytes::new(), Bytes::from("héllo")])
        );
    }

    #[test]
    fn raw_slicing_shares_rows() {
        let t = Tensor::from_f32(vec![3, 2], &[1., 2., 3., 4., 5., 6.]).unwrap();
        let s = t.slice_batch(1, 2);
        assert_eq!(s.shape, vec![1, 2]);
        let TensorData::Raw(b) = &s.data else {
            panic!()
        };
        assert_eq!(
            &b[..],
            &[3f32.to_le_bytes(), 4f32.to_le_bytes()].concat()[..]
        );
    }
}
