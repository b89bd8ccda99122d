//! The op taxonomy static quantization works from: which ops get QDQ pairs
//! around their float tensors, and which of a node's inputs carry
//! activations. Calibration and the QDQ pass both read it.

use hone_onnx::proto::NodeProto;

/// Ops whose float tensors the pass quantizes.
pub fn is_quantizable(op: &str) -> bool {
    matches!(
        op,
        "Conv"
            | "Gemm"
            | "MatMul"
            | "Add"
            | "MaxPool"
            | "AveragePool"
            | "GlobalAveragePool"
            | "Relu"
            | "Clip"
            | "Flatten"
            | "Reshape"
            | "Transpose"
            | "Concat"
            | "Squeeze"
            | "Unsqueeze"
    )
}

/// The inputs of a node that carry activations (not shapes, axes or bounds).
pub fn data_inputs(n: &NodeProto) -> Vec<&str> {
    let k = match n.op_type.as_str() {
        "Conv" | "Gemm" | "MatMul" | "Add" => 2,
        "Concat" => n.input.len(),
        _ => 1,
    };
    n.input
        .iter()
        .take(k)
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect()
}
