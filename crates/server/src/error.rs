//! The one error a request can end in, whatever its protocol: each front
//! end maps it to its wire once (`rest` to an HTTP status and JSON, `grpc`
//! to a `tonic::Status`).

use axum::http::StatusCode;
use hone_core::{Error, ErrorKind};

use crate::budget::Overloaded;

/// Why a request was not answered with outputs.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The model, the request or the engine said no; the kind picks the
    /// status.
    #[error(transparent)]
    Model(#[from] Error),
    /// Over the server's in-flight byte budget: the client may retry.
    #[error(transparent)]
    Overloaded(#[from] Overloaded),
    /// Refused at the transport before decoding, with a status the kind
    /// alone does not say: too large (413), too slow (408), an unknown
    /// content encoding (415), the wrong method (405), a verb hone does not
    /// serve (501).
    #[error("{message}")]
    Refused { status: StatusCode, message: String },
}

impl ServeError {
    pub(crate) fn refused(status: StatusCode, message: impl Into<String>) -> Self {
        Self::Refused {
            status,
            message: message.into(),
        }
    }

    /// What went wrong, coarsely: the gRPC code and the HTTP status
    /// follow from it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Model(e) => e.kind,
            Self::Overloaded(_) => ErrorKind::Unavailable,
            Self::Refused { .. } => ErrorKind::InvalidInput,
        }
    }

    /// The HTTP status of this error.
    pub fn http_status(&self) -> StatusCode {
        match self {
            Self::Refused { status, .. } => *status,
            Self::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Model(e) => match e.kind {
                ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
                ErrorKind::NotFound => StatusCode::NOT_FOUND,
                ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    /// The gRPC status of this error.
    pub fn grpc_status(&self) -> tonic::Status {
        let m = self.to_string();
        match self {
            Self::Overloaded(_) => tonic::Status::resource_exhausted(m),
            Self::Refused { status, .. } if *status == StatusCode::PAYLOAD_TOO_LARGE => {
                tonic::Status::resource_exhausted(m)
            }
            Self::Refused { status, .. } if *status == StatusCode::REQUEST_TIMEOUT => {
                tonic::Status::deadline_exceeded(m)
            }
            Self::Refused { status, .. } if *status == StatusCode::NOT_IMPLEMENTED => {
                tonic::Status::unimplemented(m)
            }
            _ => match self.kind() {
                ErrorKind::InvalidInput => tonic::Status::invalid_argument(m),
                ErrorKind::NotFound => tonic::Status::not_found(m),
                ErrorKind::Unavailable => tonic::Status::unavailable(m),
                ErrorKind::Internal => tonic::Status::internal(m),
            },
        }
    }

    /// Whether the client should retry after a pause (`Retry-After`).
    pub fn retry(&self) -> bool {
        matches!(self, Self::Overloaded(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mapping_for_both_wires() {
        let e = ServeError::from(Error::not_found("no model 'x'"));
        assert_eq!(e.http_status(), StatusCode::NOT_FOUND);
        assert_eq!(e.grpc_status().code(), tonic::Code::NotFound);
        let e = ServeError::from(Overloaded("over budget".into()));
        assert_eq!(e.http_status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.grpc_status().code(), tonic::Code::ResourceExhausted);
        assert!(e.retry());
        let e = ServeError::refused(StatusCode::PAYLOAD_TOO_LARGE, "too big");
        assert_eq!(e.grpc_status().code(), tonic::Code::ResourceExhausted);
        assert_eq!(e.to_string(), "too big");
    }
}

/// Why a part of the server could not start or read its settings: an
/// observer, an exporter, a drift profile or a config parameter.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A setting or file that is not what it must be, worded for the user.
    #[error("{0}")]
    Invalid(String),
    /// A file, directory or thread the part needs; the context names it.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl SetupError {
    /// `map_err` for an I/O failure while doing what `context` says.
    pub fn io(context: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> SetupError {
        let context = context.to_string();
        move |source| SetupError::Io { context, source }
    }
}

impl From<SetupError> for Error {
    fn from(e: SetupError) -> Self {
        Error::invalid(e.to_string())
    }
}
