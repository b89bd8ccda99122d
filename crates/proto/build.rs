// Generates the gRPC servers and clients for proto/inference.proto,
// proto/hone_admin.proto and proto/model-runtime.proto (KServe ModelMesh's
// runtime API, unchanged from kserve/modelmesh)
// with a vendored protoc,
// so building needs no system protobuf compiler.
// Setting PROTOC is unsafe under edition 2024; a build script runs one thread.
#![allow(unsafe_code)]

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/inference.proto");
    println!("cargo:rerun-if-changed=proto/hone_admin.proto");
    println!("cargo:rerun-if-changed=proto/model-runtime.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .bytes(".inference.ModelInferResponse.raw_output_contents")
        .compile_protos(
            &[
                "proto/inference.proto",
                "proto/hone_admin.proto",
                "proto/model-runtime.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
