//! Helpers shared by the pass tests.
#![allow(dead_code)]

use hone_core::{Backend, Tensor};
use hone_data::npy;
use hone_onnx::proto::ModelProto;
use hone_runtime::{OrtBackend, SessionConfig};

/// The model's first output on `input`, in ONNX Runtime.
pub fn run(model: &ModelProto, input: &Tensor) -> Vec<f32> {
    hone_runtime::init().unwrap();
    let mut b =
        OrtBackend::from_bytes(&hone_onnx::encode(model), &SessionConfig::default()).unwrap();
    let out = b.infer(&[std::slice::from_ref(input)]).unwrap();
    npy::to_f32(&out[0]).unwrap()
}
