//! The ONNX crate's error: a model that cannot be read, written or taken
//! apart, with its cause.

/// Why a model could not be read, written or taken apart.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The bytes are not an ONNX protobuf.
    #[error("not a valid ONNX model: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("not a valid ONNX model: it has no graph")]
    NoGraph,
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A model file that is not a valid model.
    #[error("{}: {source}", path.display())]
    File {
        path: std::path::PathBuf,
        #[source]
        source: Box<OnnxError>,
    },
    /// A tensor or graph hone cannot read as asked (wrong type, external
    /// data, a size that does not match its dims).
    #[error("{0}")]
    Unsupported(String),
}

pub type Result<T> = std::result::Result<T, OnnxError>;
