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
            | "Sigmoid"
            | "Mul"
            | "Resize"
            | "Split"
            | "Slice"
    )
}

/// Ops that only move or select values: their outputs take the input's
/// scale and zero point, so ONNX Runtime drops their Q/DQ pairs and runs
/// them on int8 directly (onnxruntime's quantizer shares them the same way).
pub fn moves_only(op: &str) -> bool {
    matches!(
        op,
        "MaxPool"
            | "Reshape"
            | "Flatten"
            | "Transpose"
            | "Squeeze"
            | "Unsqueeze"
            | "Resize"
            | "Split"
            | "Slice"
    )
}

/// The outputs of `n` that are quantized: every part of a Split, the first
/// output of anything else (MaxPool's indices are not values).
pub fn value_outputs(n: &NodeProto) -> &[String] {
    if n.op_type == "Split" {
        &n.output
    } else {
        n.output.get(..1).unwrap_or(&[])
    }
}

/// Whether static quantization puts QDQ pairs around node `n`, given which
/// tensors are constants. Mul only when both factors are activations (as
/// in SiLU, `x · sigmoid(x)`): ONNX Runtime fuses DQ → Mul → Q into
/// QLinearMul only then, and with a float constant factor the pairs would
/// be pure overhead around a float Mul.
pub fn quantizes(n: &NodeProto, is_const: impl Fn(&str) -> bool) -> bool {
    if !n.domain.is_empty() || !is_quantizable(&n.op_type) {
        return false;
    }
    n.op_type != "Mul"
        || n.input
            .iter()
            .take(2)
            .all(|i| !i.is_empty() && !is_const(i))
}

/// The inputs of a node that carry activations (not shapes, axes or bounds).
pub fn data_inputs(n: &NodeProto) -> Vec<&str> {
    let k = match n.op_type.as_str() {
        "Conv" | "Gemm" | "MatMul" | "Add" | "Mul" => 2,
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
