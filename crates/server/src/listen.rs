//! The HTTP listener: accepts connections and serves each with hyper under
//! the limits a server exposed to real clients needs: a header-read timeout
//! (which also closes idle keep-alive connections, so slow-loris clients
//! cannot pile up), HTTP/1.1 and HTTP/2 on one port (h2c in the clear, ALPN
//! over TLS), and a graceful stop that lets requests in flight finish.

use std::pin::pin;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// Per-connection read buffer (also the largest request head accepted).
const MAX_BUF: usize = 64 << 10;

/// Connection-level limits of the HTTP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time a client has to send a request's headers, counted from when the
    /// connection starts waiting for them (so it also bounds an idle
    /// keep-alive connection).
    pub header_read: Duration,
    /// Time a client has to send a request's body once its headers are in.
    pub body_read: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(60),
        }
    }
}

/// Serves `app` on `listener` until `stop` turns true; then stops accepting,
/// asks every connection to finish what it is doing, and returns once they
/// have.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    // Each connection holds a receiver; `closed` resolves when all are gone.
    let (open_tx, open_rx) = watch::channel(());
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!("HTTP accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = TowerToHyperService::new(app.clone());
        let (stop, open, tls) = (stop.clone(), open_rx.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => connection(stream, svc, limits, stop).await,
                Some(acceptor) => {
                    // The handshake counts against the header-read time.
                    match tokio::time::timeout(limits.header_read, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => connection(s, svc, limits, stop).await,
                        Ok(Err(e)) => tracing::debug!("TLS handshake: {e}"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
            drop(open);
        });
    }
    drop(listener);
    drop(open_rx);
    open_tx.closed().await;
}

/// Serves one connection until it closes; on `stop`, asks it to finish.
async fn connection<I>(
    io: I,
    svc: TowerToHyperService<Router>,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        // hyper's read buffer grows to ~400 KiB on a fast upload; capped,
        // hundreds of connections cost megabytes, not a gigabyte.
        .max_buf_size(MAX_BUF)
        .keep_alive(true);
    b.http2().timer(TokioTimer::new());
    let mut conn = pin!(b.serve_connection_with_upgrades(TokioIo::new(io), svc));
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("HTTP connection: {e}");
                }
                break;
            }
            _ = stopped(&mut stop), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone). The guard
/// `wait_for` returns is dropped here, before any await of the caller.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
