//! CPU work moved off the async threads when it is large: decoding,
//! encoding and (de)compressing megabytes takes milliseconds.

use hone_core::Error;
use tokio::sync::Semaphore;

/// Bodies (and answers) larger than this are decoded, encoded and
/// (de)compressed on a blocking thread.
pub(crate) const OFF_THREAD_BYTES: usize = 256 << 10;

/// Runs `f` on a blocking thread when it is `big`, inline otherwise;
/// either way health checks and small requests keep their latency. Big
/// work takes a permit of `heavy` first (one fewer than the cores): it
/// never holds every core, so the I/O threads always have one.
pub(crate) async fn cpu<T: Send + 'static>(
    heavy: &Semaphore,
    big: bool,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    if !big {
        return Ok(f());
    }
    let _permit = heavy
        .acquire()
        .await
        .map_err(|_| Error::unavailable("the server is shutting down"))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("{what} panicked: {e}")))
}
