//! `.npy` files (NumPy format, little-endian, C order) as hone tensors.

use std::path::Path;

use bytes::Bytes;
use hone_core::{DataType, Tensor};

use crate::error::at;
use crate::{DataError, Result};

fn le_bytes<T: Copy, const N: usize>(v: Vec<T>, f: impl Fn(T) -> [u8; N]) -> Bytes {
    let mut out = Vec::with_capacity(v.len() * N);
    for x in v {
        out.extend_from_slice(&f(x));
    }
    out.into()
}

pub fn read(path: &Path) -> Result<Tensor> {
    let here = path.display();
    let bytes = std::fs::read(path).map_err(at(&here))?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(at(&here))?;
    if npy.order() != npyz::Order::C {
        return Err(DataError::Invalid(format!(
            "{here}: Fortran-order arrays are not supported; save with C order"
        )));
    }
    let shape: Vec<i64> = npy.shape().iter().map(|&d| d as i64).collect();
    let descr = npy.dtype().descr();
    let (dtype, data) = match descr.as_str() {
        "'<f4'" => (
            DataType::F32,
            le_bytes(npy.into_vec::<f32>().map_err(at(&here))?, f32::to_le_bytes),
        ),
        "'<f8'" => (
            DataType::F64,
            le_bytes(npy.into_vec::<f64>().map_err(at(&here))?, f64::to_le_bytes),
        ),
        "'<i8'" => (
            DataType::I64,
            le_bytes(npy.into_vec::<i64>().map_err(at(&here))?, i64::to_le_bytes),
        ),
        "'<i4'" => (
            DataType::I32,
            le_bytes(npy.into_vec::<i32>().map_err(at(&here))?, i32::to_le_bytes),
        ),
        "'|u1'" => (
            DataType::U8,
            le_bytes(npy.into_vec::<u8>().map_err(at(&here))?, u8::to_le_bytes),
        ),
        "'|i1'" => (
            DataType::I8,
            le_bytes(npy.into_vec::<i8>().map_err(at(&here))?, i8::to_le_bytes),
        ),
        "'|b1'" => (
            DataType::Bool,
            le_bytes(npy.into_vec::<bool>().map_err(at(&here))?, |b| [b as u8]),
        ),
        other => {
            return Err(DataError::Invalid(format!(
                "{here}: element type {other} is not supported (float32/64, int8/32/64, uint8, bool are)"
            )));
        }
    };
    Tensor::from_wire_bytes(dtype, shape, data).map_err(at(&here))
}

/// The values of a numeric tensor as f32 (labels and float outputs).
pub fn to_f32(t: &Tensor) -> Option<Vec<f32>> {
    t.to_f64s()
        .map(|v| v.into_iter().map(|x| x as f32).collect())
}
