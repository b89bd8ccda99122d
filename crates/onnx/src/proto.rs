//! The generated ONNX protobuf types. Generated code: no hand edits.

#![allow(clippy::all, missing_docs)]
include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
