//! The gRPC messages and services, generated in `hone-proto`.

pub use hone_proto::*;
