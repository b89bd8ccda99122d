//! What passes through the inference core: a request's [`Head`] and
//! [`Route`], its body as [`Read`], the decoded [`Call`] and the
//! [`Answer`].

use std::sync::Arc;
use std::time::Instant;

use axum::http::{HeaderMap, HeaderValue};
use hone_core::{NamedTensor, Tensor, TensorData};

use crate::budget::Ticket;
use crate::error::ServeError;
use crate::model::{Deadline, LoadedModel};

/// Which model version a request names: a version, a label, or neither
/// (the traffic split decides).
#[derive(Debug, Clone, Default)]
pub(crate) struct Route {
    pub model: String,
    pub version: Option<String>,
    pub label: Option<String>,
}

/// What a front end knows of a request before its body: where it goes and
/// its headers (gRPC metadata as headers).
pub(crate) struct Head {
    pub route: Route,
    pub headers: HeaderMap,
    /// Set when the front end already refuses the request (a malformed
    /// path, a verb it does not serve): the core answers it, observed like
    /// any other.
    pub refused: Option<ServeError>,
}

impl Head {
    pub(crate) fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name).map(HeaderValue::as_bytes)
    }

    /// The deadline a gRPC client set (`grpc-timeout: 100m`, ...), as an instant.
    pub(crate) fn client_deadline(&self) -> Option<Instant> {
        let v = self.headers.get("grpc-timeout")?.to_str().ok()?;
        let split = v.len().checked_sub(1)?;
        let (n, unit) = (v.get(..split)?, v.get(split..)?);
        let n: u64 = n.parse().ok()?;
        let d = match unit {
            "H" => std::time::Duration::from_secs(n.saturating_mul(3600)),
            "M" => std::time::Duration::from_secs(n.saturating_mul(60)),
            "S" => std::time::Duration::from_secs(n),
            "m" => std::time::Duration::from_millis(n),
            "u" => std::time::Duration::from_micros(n),
            "n" => std::time::Duration::from_nanos(n),
            _ => return None,
        };
        Instant::now().checked_add(d)
    }
}

/// The body as read, and the budget bytes it holds until the answer.
pub(crate) struct Read<R> {
    pub raw: R,
    pub ticket: Option<Ticket>,
}

/// One decoded inference call, whatever its protocol.
pub(crate) struct Call {
    pub inputs: Vec<NamedTensor>,
    /// Outputs asked for as their top k classes (Triton's classification
    /// extension).
    pub classify: Vec<(String, usize)>,
    /// Output names the client asked for (empty: all), checked against
    /// the model before anything runs.
    pub outputs: Vec<String>,
    pub deadline: Deadline,
    /// The request's own id (V2's `id`), under which its answer is kept
    /// for ground-truth labels.
    pub id: Option<String>,
    /// Bytes decoding allocated anew (JSON numbers; binary tensors are
    /// slices of the body): charged to the byte budget.
    pub fresh_bytes: usize,
}

impl Call {
    /// The bytes the tensors of `inputs` hold (strings with their
    /// allocation overhead).
    pub(crate) fn tensor_bytes(inputs: &[NamedTensor]) -> usize {
        inputs
            .iter()
            .map(|(_, t)| match &t.data {
                TensorData::Raw(b) => b.len(),
                TensorData::Strings(v) => v.iter().map(|b| b.len() + 24).sum(),
            })
            .sum()
    }
}

/// A call's outputs: all of them, in the model's order, then any hone adds
/// (a labelled answer's label and probability).
pub(crate) struct Answer {
    pub model: Arc<LoadedModel>,
    pub outputs: Vec<Tensor>,
    pub extra: Vec<(&'static str, Tensor)>,
    /// The id hone kept the answer under when the request brought none:
    /// answers that carry an id field give it back there.
    pub id: Option<String>,
}

impl Answer {
    /// `(name, tensor)` of each output, in the model's order.
    pub(crate) fn named(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        let names = self.model.metadata.outputs.iter().map(|o| o.name.as_str());
        let extra = self.extra.iter().map(|(n, t)| (*n, t));
        names.zip(&self.outputs).chain(extra)
    }

    /// Bytes of packed output data (strings counted at 16 a piece).
    pub(crate) fn bytes(&self) -> usize {
        self.named()
            .map(|(_, t)| t.element_count() * t.dtype.size().unwrap_or(16))
            .sum()
    }
}
