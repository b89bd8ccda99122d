//! The server-wide budget of request bytes in flight (`--max-inflight-bytes`):
//! taken before a body is read, held until the answer is ready.
//!
//! Per-model queues bound work, not memory: hundreds of clients each sending
//! a large body could still exhaust RAM while their bodies are read and
//! decoded. A request whose bytes do not fit the budget is refused at once
//! (503 with `Retry-After`, gRPC UNAVAILABLE) before anything is buffered.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::body::Bytes;
use axum::http;
use hyper::body::{Body, Frame, SizeHint};

/// Seconds a refused client is told to wait (`Retry-After`).
pub const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
}

/// Bytes that did not fit: what the client is told.
#[derive(Debug, Clone)]
pub struct Overloaded(pub String);

impl std::fmt::Display for Overloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Overloaded {}

impl Budget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held right now (a gauge for tests and metrics).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// A ticket holding `n` bytes, or the reason they do not fit.
    pub fn take(self: &Arc<Self>, n: usize) -> Result<Ticket, Overloaded> {
        let mut t = Ticket {
            budget: self.clone(),
            held: 0,
        };
        t.grow(n)?;
        Ok(t)
    }

    fn reserve(&self, n: usize) -> Result<(), Overloaded> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.saturating_add(n);
            if next > self.limit {
                return Err(Overloaded(format!(
                    "server busy: {used} bytes of requests in flight, and {n} more would pass --max-inflight-bytes {}; retry shortly",
                    self.limit
                )));
            }
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }
}

/// Bytes of one request, given back when the ticket drops.
#[derive(Debug)]
pub struct Ticket {
    budget: Arc<Budget>,
    held: usize,
}

impl Ticket {
    /// Holds `n` more bytes (a body bigger than declared, a decoded form).
    pub fn grow(&mut self, n: usize) -> Result<(), Overloaded> {
        self.budget.reserve(n)?;
        self.held += n;
        Ok(())
    }

    pub fn held(&self) -> usize {
        self.held
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.held, Ordering::AcqRel);
    }
}

/// The budget as the memory this process may use: a quarter of the
/// machine's RAM or of the container's memory limit, whichever is smaller,
/// and never less than one largest request.
pub fn default_limit(max_request_bytes: usize) -> usize {
    let ram = memory_limit().unwrap_or(4 << 30);
    (ram / 4).max(max_request_bytes)
}

/// Physical memory, capped by a cgroup (v2, then v1) limit when one is set:
/// in Kubernetes the pod's limit is what the OOM killer enforces.
pub(crate) fn memory_limit() -> Option<usize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total_kib: usize = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let total = total_kib.saturating_mul(1024);
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|p| {
        std::fs::read_to_string(p)
            .ok()?
            .trim()
            .parse::<usize>()
            .ok()
    });
    Some(cgroup.map_or(total, |c| c.min(total)))
}

/// A gRPC request body that takes budget for each frame as it arrives; the
/// ticket is shared with the call, which holds it until the answer.
pub struct Metered<B> {
    inner: B,
    ticket: Arc<std::sync::Mutex<Ticket>>,
}

impl<B> Metered<B> {
    pub fn new(inner: B, ticket: Arc<std::sync::Mutex<Ticket>>) -> Self {
        Self { inner, ticket }
    }
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => f,
            Poll::Ready(Some(Err(e))) => {
                return Poll::Ready(Some(Err(tonic::Status::from_error(e.into()))));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            let taken = match self.ticket.lock() {
                Ok(mut t) => t.grow(data.len()),
                Err(_) => Err(Overloaded("budget lock poisoned".into())),
            };
            if let Err(e) = taken {
                return Poll::Ready(Some(Err(tonic::Status::unavailable(e.0))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The tower layer that meters every gRPC request body.
#[derive(Clone)]
pub struct GrpcBudget(pub Arc<Budget>);

impl<S> tower_layer::Layer<S> for GrpcBudget {
    type Service = GrpcBudgeted<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcBudgeted {
            inner,
            budget: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GrpcBudgeted<S> {
    inner: S,
    budget: Arc<Budget>,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S> tower_service::Service<http::Request<tonic::body::Body>> for GrpcBudgeted<S>
where
    S: tower_service::Service<http::Request<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        // An empty ticket cannot fail; bytes are taken frame by frame.
        let ticket = self
            .budget
            .take(0)
            .map(|t| Arc::new(std::sync::Mutex::new(t)));
        let req = match &ticket {
            Ok(t) => {
                let t = t.clone();
                req.map(|b| tonic::body::Body::new(Metered::new(b, t)))
            }
            Err(_) => req,
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            // Held through decode, queue and engine: released with the answer.
            drop(ticket);
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_fit_the_limit_and_give_back_on_drop() {
        let b = Budget::new(100);
        let mut a = b.take(60).unwrap();
        assert!(b.take(41).is_err());
        let c = b.take(40).unwrap();
        assert_eq!(b.used(), 100);
        assert!(a.grow(1).is_err());
        drop(c);
        a.grow(30).unwrap();
        assert_eq!((a.held(), b.used()), (90, 90));
        drop(a);
        assert_eq!(b.used(), 0);
    }
}
