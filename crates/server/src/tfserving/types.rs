//! TF Serving's names for what ONNX models have: the one signature and
//! the `DT_*` dtypes.

use hone_core::DataType;

pub(super) const SIGNATURE: &str = "serving_default";

pub(super) fn dtype(d: DataType) -> &'static str {
    match d {
        DataType::Bool => "DT_BOOL",
        DataType::U8 => "DT_UINT8",
        DataType::U16 => "DT_UINT16",
        DataType::U32 => "DT_UINT32",
        DataType::U64 => "DT_UINT64",
        DataType::I8 => "DT_INT8",
        DataType::I16 => "DT_INT16",
        DataType::I32 => "DT_INT32",
        DataType::I64 => "DT_INT64",
        DataType::F16 => "DT_HALF",
        DataType::Bf16 => "DT_BFLOAT16",
        DataType::F32 => "DT_FLOAT",
        DataType::F64 => "DT_DOUBLE",
        DataType::Bytes => "DT_STRING",
    }
}
