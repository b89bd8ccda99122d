//! Typed access to packed little-endian tensor elements, written once: the
//! dtype dispatch ([`with_numeric_type!`]), reading elements as their Rust
//! type or as f64, taking a JSON number into a dtype (range-checked), and
//! writing elements as JSON numbers (non-finite floats as the NaN and
//! Infinity tokens TF Serving and Python's json module use, or as null for
//! KServe V2). Codecs, drift, shadow comparisons and the load generator
//! read and write tensors through this.

use crate::{Tensor, TensorData};

/// Runs `$body` with `$T` the Rust type of `$dtype`'s elements (`bool` for
/// BOOL, `half::f16` for FP16, `half::bf16` for BF16); `$other` for BYTES.
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
            $crate::DataType::Bf16 => {
                type $T = $crate::element::BF16;
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

pub use half::bf16 as BF16;
pub use half::f16 as F16;

/// A JSON number (or boolean) as a parser read it, before it meets a dtype.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JsonNumber {
    U(u64),
    I(i64),
    F(f64),
    B(bool),
}

impl std::fmt::Display for JsonNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonNumber::U(v) => write!(f, "{v}"),
            JsonNumber::I(v) => write!(f, "{v}"),
            JsonNumber::F(v) => write!(f, "{v}"),
            JsonNumber::B(v) => write!(f, "{v}"),
        }
    }
}

impl JsonNumber {
    /// As a float, for the float dtypes (booleans are not numbers).
    fn float(self) -> Option<f64> {
        match self {
            JsonNumber::U(u) => Some(u as f64),
            JsonNumber::I(i) => Some(i as f64),
            JsonNumber::F(f) => Some(f),
            JsonNumber::B(_) => None,
        }
    }
}

/// How a non-finite float is written as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonFinite {
    /// `NaN`, `Infinity`, `-Infinity` (TF Serving, Python's json).
    Tokens,
    /// `null` (KServe V2: JSON has no such numbers).
    Null,
}

/// A fixed-size element type of a packed tensor.
pub trait Element: Copy + 'static {
    const SIZE: usize;
    /// From `SIZE` little-endian bytes (shorter input reads as zero).
    fn read(le: &[u8]) -> Self;
    /// Appends the `SIZE` little-endian bytes.
    fn write_le(self, out: &mut Vec<u8>);
    fn to_f64(self) -> f64;
    /// The value of a JSON number as this type: an integer type takes a
    /// whole number in its range, a float type any number (rounded), BOOL
    /// only `true`/`false`; None otherwise.
    fn from_json(n: JsonNumber) -> Option<Self>;
    /// Appends the element as JSON: integers exactly, floats as the
    /// shortest text that reads back the same, non-finite floats as the
    /// `NaN` / `Infinity` / `-Infinity` tokens, booleans as `true`/`false`.
    fn write_json(self, out: &mut Vec<u8>) {
        self.write_json_as(out, NonFinite::Tokens);
    }
    /// [`Element::write_json`] with non-finite floats written as asked.
    fn write_json_as(self, out: &mut Vec<u8>, non_finite: NonFinite);
}

/// Appends `n` to packed `dtype` bytes; false (nothing appended) when it
/// does not fit the dtype, or the dtype is BYTES.
pub fn push_json_number(dtype: crate::DataType, n: JsonNumber, out: &mut Vec<u8>) -> bool {
    with_numeric_type!(dtype, |T| match T::from_json(n) {
        Some(x) => {
            x.write_le(out);
            true
        }
        None => false,
    }, bytes => false)
}

/// Appends the elements of packed `dtype` bytes as JSON values separated by
/// commas (the inside of a list). BYTES writes nothing.
pub fn write_json_list(
    dtype: crate::DataType,
    le: &[u8],
    non_finite: NonFinite,
    out: &mut Vec<u8>,
) {
    with_numeric_type!(dtype, |T| {
        for (i, x) in read_all::<T>(le).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            x.write_json_as(out, non_finite);
        }
    }, bytes => {})
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
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn from_json(n: JsonNumber) -> Option<Self> {
                match n {
                    JsonNumber::U(u) => <$t>::try_from(u).ok(),
                    JsonNumber::I(i) => <$t>::try_from(i).ok(),
                    // A whole float in range (1.0 for an int64 input).
                    JsonNumber::F(f)
                        if f.fract() == 0.0 && f >= <$t>::MIN as f64 && f <= <$t>::MAX as f64 =>
                    {
                        Some(f as $t)
                    }
                    _ => None,
                }
            }
            fn write_json_as(self, out: &mut Vec<u8>, _: NonFinite) {
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
    fn write_le(self, out: &mut Vec<u8>) {
        out.push(u8::from(self));
    }
    fn to_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
    fn from_json(n: JsonNumber) -> Option<Self> {
        match n {
            JsonNumber::B(b) => Some(b),
            _ => None,
        }
    }
    fn write_json_as(self, out: &mut Vec<u8>, _: NonFinite) {
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
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_json(n: JsonNumber) -> Option<Self> {
        n.float().map(|f| f as f32)
    }
    fn write_json_as(self, out: &mut Vec<u8>, non_finite: NonFinite) {
        // Shortest f32 text, so the client's float32 is exact.
        match self.is_finite() {
            true => out.extend_from_slice(ryu::Buffer::new().format_finite(self).as_bytes()),
            false => write_json_f64_as(out, f64::from(self), non_finite),
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
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn from_json(n: JsonNumber) -> Option<Self> {
        n.float()
    }
    fn write_json_as(self, out: &mut Vec<u8>, non_finite: NonFinite) {
        write_json_f64_as(out, self, non_finite);
    }
}

impl Element for F16 {
    const SIZE: usize = 2;
    fn read(le: &[u8]) -> Self {
        le.get(..2)
            .and_then(|b| b.try_into().ok())
            .map_or(F16::ZERO, F16::from_le_bytes)
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    fn from_json(n: JsonNumber) -> Option<Self> {
        n.float().map(F16::from_f64)
    }
    fn write_json_as(self, out: &mut Vec<u8>, non_finite: NonFinite) {
        write_json_f64_as(out, self.to_f64(), non_finite);
    }
}

impl Element for BF16 {
    const SIZE: usize = 2;
    fn read(le: &[u8]) -> Self {
        le.get(..2)
            .and_then(|b| b.try_into().ok())
            .map_or(BF16::ZERO, BF16::from_le_bytes)
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    fn from_json(n: JsonNumber) -> Option<Self> {
        n.float().map(BF16::from_f64)
    }
    fn write_json_as(self, out: &mut Vec<u8>, non_finite: NonFinite) {
        write_json_f64_as(out, self.to_f64(), non_finite);
    }
}

/// A float as JSON: shortest round-trip text, or a non-finite token.
pub fn write_json_f64(out: &mut Vec<u8>, x: f64) {
    write_json_f64_as(out, x, NonFinite::Tokens);
}

/// [`write_json_f64`] with non-finite floats written as asked.
pub fn write_json_f64_as(out: &mut Vec<u8>, x: f64, non_finite: NonFinite) {
    if !x.is_finite() && non_finite == NonFinite::Null {
        out.extend_from_slice(b"null");
    } else if x.is_nan() {
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
        assert_eq!(json(BF16::from_f32(-2.5)), "-2.5");
        assert_eq!(BF16::read(&BF16::from_f32(3.0).to_le_bytes()).to_f64(), 3.0);
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

    #[test]
    fn json_numbers_meet_their_dtype_once() {
        use JsonNumber::*;
        let push = |d, n| {
            let mut out = Vec::new();
            push_json_number(d, n, &mut out).then_some(out)
        };
        assert_eq!(push(DataType::U8, U(255)), Some(vec![255]));
        assert_eq!(push(DataType::U8, U(256)), None);
        assert_eq!(push(DataType::I8, I(-129)), None);
        assert_eq!(
            push(DataType::I64, F(3.0)),
            Some(3i64.to_le_bytes().to_vec())
        );
        assert_eq!(push(DataType::I32, F(1.5)), None);
        assert_eq!(push(DataType::Bool, B(true)), Some(vec![1]));
        assert_eq!(push(DataType::Bool, U(1)), None);
        assert_eq!(push(DataType::F32, B(true)), None);
        assert_eq!(
            push(DataType::F16, F(0.5)),
            Some(F16::from_f32(0.5).to_le_bytes().to_vec())
        );
        assert_eq!(
            push(DataType::Bf16, F(0.5)),
            Some(BF16::from_f32(0.5).to_le_bytes().to_vec())
        );
        assert_eq!(push(DataType::Bytes, U(1)), None);
        let le: Vec<u8> = [1.5f32, f32::NAN, f32::INFINITY]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let list = |nf| {
            let mut out = Vec::new();
            write_json_list(DataType::F32, &le, nf, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(list(NonFinite::Null), "1.5,null,null");
        assert_eq!(list(NonFinite::Tokens), "1.5,NaN,Infinity");
    }
}
