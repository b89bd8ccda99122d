// Generates Rust types for the ONNX protobuf schema with a vendored protoc,
// so building needs no system protobuf compiler.
// Setting PROTOC is unsafe under edition 2024; a build script runs one thread.
#![allow(unsafe_code)]

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    prost_build::Config::new()
        // Weights can be large: keep them as reference-counted bytes, not Vec copies.
        .bytes([".onnx.TensorProto.raw_data"])
        .compile_protos(&["proto/onnx.proto"], &["proto"])?;
    Ok(())
}
