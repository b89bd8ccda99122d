//! Typed access to packed little-endian tensor elements, written once: the
//! dtype dispatch ([`with_numeric_type!`]), reading elements as their Rust
//! type or as f64, and writing them as JSON numbers (with the NaN and
//! Infinity tokens TF Serving and Python's json module use). Codecs, drift,
//! shadow comparisons and the load generator read tensors through this.

use crate::{Tensor, TensorData};

/// Runs `$body` with `$T` the Rust type of `$dtype`'s elements (`bool` for
/// BOOL, `half::f16` for FP16); `$other` for BYTES.
#[macro_export]
macro_rules! with_numeric_type {
    ($dtype:expr, |$T:ident| $body:expr, bytes => $other:expr) => {
        match $dtype {
            $crate::DataType::Bool => {
                type $T = bool;
                $body
            }
            $crate::DataType::U8 => {
                type $T = u8;
                $body
            }
            $crate::DataType::U16 => {
                type $T = u16;
                $body
            }
            $crate::DataType::U32 => {
                type $T = u32;
                $body
            }
            $crate::DataType::U64 => {
                type $T = u64;
                $body
            }
            $crate::DataType::I8 => {
                type $T = i8;
                $body
            }
            $crate::DataType::I16 => {
                type $T = i16;
                $body
            }
            $crate::DataType::I32 => {
                type $T = i32;
                $body
            }
            $crate::DataType::I64 => {
                type $T = i64;
                $body
            }
            $crate::DataType::F16 => {
                type $T = $crate::element::F16;
                $body
            }
            $crate::DataType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DataType::F64 => {
                type $T = f64;
                $body
            }
            $crate::DataType::Bytes => $other,
        }
    };
}

pub use half::f16 as F16;

/// A fixed-size element type of a packed tensor.
pub trait Element: Copy + 'static {
    const SIZE: usize;
    /// From `SIZE` little-endian bytes (shorter input reads as zero).
    fn read(le: &[u8]) -> Self;
    fn to_f64(self) -> f64;
    /// Appends the element as JSON: integers exactly, floats as the
    /// shortest text that reads back the same, non-finite floats as the
    /// `NaN` / `Infinity` / `-Infinity` tokens, booleans as `true`/`false`.
    fn write_json(self, out: &mut Vec<u8>);
}

macro_rules! int_element {
    ($($t:ty),*) => {$(
        impl Element for $t {
            const SIZE: usize = size_of::<$t>();
            fn read(le: &[u8]) -> Self {
                le.get(..Self::SIZE)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, <$t>::from_le_bytes)
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn write_json(self, out: &mut Vec<u8>) {
                out.extend_from_slice(itoa::Buffer::new().format(self).as_bytes());
            }
        }
    )*};
}
int_element!(u8, u16, u32, u64, i8, i16, i32, i64);

impl Element for bool {
    const SIZE: usize = 1;
    fn read(le: &[u8]) -> Self {
        le.first().is_some_and(|&b| b != 0)
    }
    fn to_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
    fn write_json(self, out: &mut Vec<u8>) {
        out.extend_from_slice(if self { b"true" } else { b"false" });
    }
}

impl Element for f32 {
    const SIZE: usize = 4;
    fn read(le: &[u8]) -> Self {
        le.get(..4)
            .and_then(|b| b.try_into().ok())
            .map_or(0.0, f32::from_le_bytes)
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn write_json(self, out: &mut Vec<u8>) {
        // Shortest f32 text, so the client's float32 is exact.
        match self.is_finite() {
            true => out.extend_from_slice(ryu::Buffer::new().format_finite(self).as_bytes()),
            false => write_json_f64(out, f64::from(self)),
        }
    }
}

impl Element for f64 {
    const SIZE: usize = 8;
    fn read(le: &[u8]) -> Self {
        le.get(..8)
            .and_then(|b| b.try_into().ok())
            .map_or(0.0, f64::from_le_bytes)
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn write_json(self, out: &mut Vec<u8>) {
        write_json_f64(out, self);
    }
}

impl Element for F16 {
    const SIZE: usize = 2;
    fn read(le: &[u8]) -> Self {
        le.get(..2)
            .and_then(|b| b.try_into().ok())
            .map_or(F16::ZERO, F16::from_le_bytes)
    }
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    fn write_json(self, out: &mut Vec<u8>) {
        write_json_f64(out, self.to_f64());
    }
}

/// A float as JSON: shortest round-trip text, or a non-finite token.
pub fn write_json_f64(out: &mut Vec<u8>, x: f64) {
    if x.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if x.is_infinite() {
        out.extend_from_slice(if x > 0.0 { b"Infinity" } else { b"-Infinity" });
    } else {
        out.extend_from_slice(ryu::Buffer::new().format_finite(x).as_bytes());
    }
}

/// The elements of packed bytes as `T`.
pub fn read_all<T: Element>(bytes: &[u8]) -> impl Iterator<Item = T> + '_ {
    bytes.chunks_exact(T::SIZE).map(T::read)
}

impl Tensor {
    /// The elements as f64 (numeric and BOOL tensors; None for BYTES).
    pub fn to_f64s(&self) -> Option<Vec<f64>> {
        let TensorData::Raw(b) = &self.data else {
            return None;
        };
        with_numeric_type!(self.dtype, |T| Some(
            read_all::<T>(b).map(Element::to_f64).collect()
        ), bytes => None)
    }

    /// Element `i` as JSON (numbers and booleans; BYTES and out-of-range
    /// indices write nothing and return false).
    pub fn write_json_element(&self, i: usize, out: &mut Vec<u8>) -> bool {
        let TensorData::Raw(b) = &self.data else {
            return false;
        };
        with_numeric_type!(self.dtype, |T| {
            match b.get(i * T::SIZE..(i + 1) * T::SIZE) {
                Some(c) => {
                    T::read(c).write_json(out);
                    true
                }
                None => false,
            }
        }, bytes => false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataType;

    fn json<T: Element>(v: T) -> String {
        let mut out = Vec::new();
        v.write_json(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_dtype_reads_and_writes_through_one_dispatch() {
        assert_eq!(json(0.1f32), "0.1");
        assert_eq!(json(f32::NAN), "NaN");
        assert_eq!(json(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(json(F16::from_f32(1.5)), "1.5");
        assert_eq!(json(-7i8), "-7");
        assert_eq!(json(u64::MAX), "18446744073709551615");
        assert_eq!(json(true), "true");
        let t = Tensor::new(
            DataType::I16,
            vec![3],
            TensorData::Raw(bytes::Bytes::from(
                [1i16, -2, 300]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect::<Vec<u8>>(),
            )),
        );
        let t = t.unwrap();
        assert_eq!(t.to_f64s(), Some(vec![1.0, -2.0, 300.0]));
        let mut out = Vec::new();
        assert!(t.write_json_element(2, &mut out));
        assert!(!t.write_json_element(3, &mut out));
        assert_eq!(out, b"300");
    }
}
