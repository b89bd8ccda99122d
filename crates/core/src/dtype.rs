//! Element types as the KServe V2 protocol and Triton's config name them.

use std::fmt;

/// Element types of the KServe V2 protocol (and of ONNX tensors hone serves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    /// bfloat16: FP32's exponent range with an 8-bit mantissa.
    Bf16,
    F32,
    F64,
    /// Variable-length byte strings (ONNX `string`).
    Bytes,
}

impl DataType {
    pub const ALL: [DataType; 14] = [
        DataType::Bool,
        DataType::U8,
        DataType::U16,
        DataType::U32,
        DataType::U64,
        DataType::I8,
        DataType::I16,
        DataType::I32,
        DataType::I64,
        DataType::F16,
        DataType::Bf16,
        DataType::F32,
        DataType::F64,
        DataType::Bytes,
    ];

    /// Bytes per element, `None` for variable-length BYTES.
    pub fn size(self) -> Option<usize> {
        Some(match self {
            DataType::Bool | DataType::U8 | DataType::I8 => 1,
            DataType::U16 | DataType::I16 | DataType::F16 | DataType::Bf16 => 2,
            DataType::U32 | DataType::I32 | DataType::F32 => 4,
            DataType::U64 | DataType::I64 | DataType::F64 => 8,
            DataType::Bytes => return None,
        })
    }

    /// The V2 protocol name (`FP32`, `BYTES`, ...).
    pub fn as_v2(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::U8 => "UINT8",
            DataType::U16 => "UINT16",
            DataType::U32 => "UINT32",
            DataType::U64 => "UINT64",
            DataType::I8 => "INT8",
            DataType::I16 => "INT16",
            DataType::I32 => "INT32",
            DataType::I64 => "INT64",
            DataType::F16 => "FP16",
            DataType::Bf16 => "BF16",
            DataType::F32 => "FP32",
            DataType::F64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    /// FP16, BF16, FP32 or FP64.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            DataType::F16 | DataType::Bf16 | DataType::F32 | DataType::F64
        )
    }

    pub fn from_v2(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_v2() == s)
    }

    /// The Triton model-configuration name (`TYPE_FP32`, `TYPE_STRING`, ...).
    pub fn as_triton(self) -> &'static str {
        match self {
            DataType::Bytes => "TYPE_STRING",
            DataType::Bool => "TYPE_BOOL",
            DataType::U8 => "TYPE_UINT8",
            DataType::U16 => "TYPE_UINT16",
            DataType::U32 => "TYPE_UINT32",
            DataType::U64 => "TYPE_UINT64",
            DataType::I8 => "TYPE_INT8",
            DataType::I16 => "TYPE_INT16",
            DataType::I32 => "TYPE_INT32",
            DataType::I64 => "TYPE_INT64",
            DataType::F16 => "TYPE_FP16",
            DataType::Bf16 => "TYPE_BF16",
            DataType::F32 => "TYPE_FP32",
            DataType::F64 => "TYPE_FP64",
        }
    }

    pub fn from_triton(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_triton() == s)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_v2())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DataType::ALL {
            assert_eq!(DataType::from_v2(d.as_v2()), Some(d));
            assert_eq!(DataType::from_triton(d.as_triton()), Some(d));
        }
        assert_eq!(DataType::from_v2("FLOAT"), None);
        assert_eq!(DataType::from_triton("TYPE_BF16"), Some(DataType::Bf16));
        assert_eq!(DataType::from_v2("BF16").and_then(DataType::size), Some(2));
        assert!(DataType::Bf16.is_float() && !DataType::I64.is_float());
    }
}
