//! OTLP/HTTP export of finished spans (the JSON encoding, `POST
//! {endpoint}/v1/traces`), batched on one thread of its own: a request only
//! hands its spans to a bounded queue and never waits for the collector.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::context::hex;
use crate::error::SetupError;

/// Requests' span sets waiting for export; past this, new ones are dropped
/// and counted.
const QUEUE: usize = 2048;
const BATCH: usize = 512;
const FLUSH_EVERY: Duration = Duration::from_secs(1);
const NET_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub enum Attr {
    Str(String),
    Int(i64),
}

/// One finished span, times in nanoseconds since the Unix epoch.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub name: String,
    /// OTLP SpanKind: 1 internal, 2 server.
    pub kind: u8,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attrs: Vec<(&'static str, Attr)>,
    /// Set on a failed request: the span's status is ERROR with it.
    pub error: Option<String>,
}

/// Where spans go: `http://host:port[/path]`; a bare host gets the
/// standard `/v1/traces` path.
#[derive(Debug, Clone)]
struct Endpoint {
    authority: String,
    path: String,
}

fn endpoint(url: &str) -> Result<Endpoint, SetupError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        if url.starts_with("https://") {
            SetupError::Invalid(format!("--otlp-endpoint {url}: only plain http:// is supported; export to a collector on the node or in the pod (an OpenTelemetry Collector agent or sidecar), which forwards over TLS"))
        } else {
            SetupError::Invalid(format!("--otlp-endpoint {url}: expected http://HOST:PORT (an OTLP/HTTP receiver, usually port 4318)"))
        }
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(SetupError::Invalid(format!(
            "--otlp-endpoint {url}: no host"
        )));
    }
    let authority = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let path = match path.trim_end_matches('/') {
        "" => "/v1/traces".to_string(),
        p if p.ends_with("/v1/traces") => p.to_string(),
        p => format!("{p}/v1/traces"),
    };
    Ok(Endpoint { authority, path })
}

/// Counters the metrics page shows.
#[derive(Debug, Default)]
pub struct ExportStats {
    pub exported: AtomicU64,
    pub dropped: AtomicU64,
    pub failed: AtomicU64,
}

pub struct Exporter {
    tx: Option<flume::Sender<Vec<Span>>>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<ExportStats>,
}

impl Exporter {
    pub fn start(url: &str) -> Result<Exporter, SetupError> {
        let ep = endpoint(url)?;
        let (tx, rx) = flume::bounded::<Vec<Span>>(QUEUE);
        let stats = Arc::new(ExportStats::default());
        let st = stats.clone();
        let thread = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || run(&ep, &rx, &st))
            .map_err(SetupError::io("cannot start the OTLP export thread"))?;
        Ok(Exporter {
            tx: Some(tx),
            thread: Some(thread),
            stats,
        })
    }

    /// Hands one request's spans over without waiting (one channel
    /// operation); a full queue drops them.
    pub fn send(&self, spans: Vec<Span>) {
        let Some(tx) = &self.tx else { return };
        if let Err(e) = tx.try_send(spans) {
            let n = e.into_inner().len() as u64;
            self.stats.dropped.fetch_add(n, Relaxed);
        }
    }
}

impl Drop for Exporter {
    /// Flushes what is queued (the thread sends its last batch on disconnect).
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(ep: &Endpoint, rx: &flume::Receiver<Vec<Span>>, stats: &ExportStats) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut warned = false;
    loop {
        let first = rx.recv();
        let Ok(first) = first else { return };
        batch.extend(first);
        let until = Instant::now() + FLUSH_EVERY;
        let mut open = true;
        while batch.len() < BATCH {
            match rx.recv_deadline(until) {
                Ok(s) => batch.extend(s),
                Err(flume::RecvTimeoutError::Timeout) => break,
                Err(flume::RecvTimeoutError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let n = batch.len() as u64;
        let body = encode(&batch);
        batch.clear();
        match post(ep, &body) {
            Ok(()) => {
                stats.exported.fetch_add(n, Relaxed);
                warned = false;
            }
            Err(e) => {
                stats.failed.fetch_add(n, Relaxed);
                // One line per outage, not one per batch.
                if !warned {
                    tracing::warn!(
                        "OTLP export to http://{}{} failed: {e}",
                        ep.authority,
                        ep.path
                    );
                    warned = true;
                }
            }
        }
        if !open {
            return;
        }
    }
}

/// The OTLP JSON form: ids in hex, 64-bit integers as strings. Written
/// straight to bytes: at full sampling this runs for every request.
pub fn encode(spans: &[Span]) -> Vec<u8> {
    let mut o = Vec::with_capacity(256 + spans.len() * 400);
    let s = |o: &mut Vec<u8>, x: &str| {
        let _ = serde_json::to_writer(&mut *o, x);
    };
    o.extend_from_slice(br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"hone"}},{"key":"service.version","value":{"stringValue":""#);
    o.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
    o.extend_from_slice(br#""}}]},"scopeSpans":[{"scope":{"name":"hone-server"},"spans":["#);
    for (i, sp) in spans.iter().enumerate() {
        if i > 0 {
            o.push(b',');
        }
        o.extend_from_slice(br#"{"traceId":""#);
        o.extend_from_slice(hex(&sp.trace_id).as_bytes());
        o.extend_from_slice(br#"","spanId":""#);
        o.extend_from_slice(hex(&sp.span_id).as_bytes());
        if let Some(p) = sp.parent {
            o.extend_from_slice(br#"","parentSpanId":""#);
            o.extend_from_slice(hex(&p).as_bytes());
        }
        o.extend_from_slice(br#"","name":"#);
        s(&mut o, &sp.name);
        o.extend_from_slice(
            format!(
                r#","kind":{},"startTimeUnixNano":"{}","endTimeUnixNano":"{}","attributes":["#,
                sp.kind, sp.start_ns, sp.end_ns
            )
            .as_bytes(),
        );
        for (j, (k, v)) in sp.attrs.iter().enumerate() {
            if j > 0 {
                o.push(b',');
            }
            o.extend_from_slice(br#"{"key":"#);
            s(&mut o, k);
            match v {
                Attr::Str(x) => {
                    o.extend_from_slice(br#","value":{"stringValue":"#);
                    s(&mut o, x);
                    o.extend_from_slice(b"}}");
                }
                Attr::Int(x) => {
                    o.extend_from_slice(format!(r#","value":{{"intValue":"{x}"}}}}"#).as_bytes());
                }
            }
        }
        o.extend_from_slice(br#"],"status":"#);
        match &sp.error {
            Some(m) => {
                o.extend_from_slice(br#"{"code":2,"message":"#);
                s(&mut o, m);
                o.extend_from_slice(b"}}");
            }
            None => o.extend_from_slice(br#"{"code":0}}"#),
        }
    }
    o.extend_from_slice(b"]}]}]}");
    o
}

/// One HTTP/1.1 POST on a fresh connection: export runs at most once a
/// second per batch, so a connection per batch costs nothing that matters.
fn post(ep: &Endpoint, body: &[u8]) -> std::io::Result<()> {
    let addr = ep
        .authority
        .to_socket_addrs()
        .map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot resolve {}: {e}", ep.authority))
        })?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{} resolves to no address", ep.authority)))?;
    let mut c = TcpStream::connect_timeout(&addr, NET_TIMEOUT)?;
    c.set_read_timeout(Some(NET_TIMEOUT))?;
    c.set_write_timeout(Some(NET_TIMEOUT))?;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        ep.path,
        ep.authority,
        body.len()
    );
    c.write_all(head.as_bytes())?;
    c.write_all(body)?;
    let mut reply = Vec::new();
    let _ = c.take(64 << 10).read_to_end(&mut reply);
    let line = reply.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let code = line.split(' ').nth(1).and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(c) if (200..300).contains(&c) => Ok(()),
        Some(_) => Err(std::io::Error::other(format!(
            "the collector answered {line}"
        ))),
        None => Err(std::io::Error::other("no HTTP answer from the collector")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = endpoint("http://otel:4318").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.path.as_str()),
            ("otel:4318", "/v1/traces")
        );
        let e = endpoint("http://otel/v1/traces").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.path.as_str()),
            ("otel:80", "/v1/traces")
        );
        let e = endpoint("http://[::1]:4318/custom/").unwrap();
        assert_eq!(
            (e.authority.as_str(), e.path.as_str()),
            ("[::1]:4318", "/custom/v1/traces")
        );
        assert!(
            endpoint("https://otel:4318")
                .unwrap_err()
                .to_string()
                .contains("plain http")
        );
        assert!(endpoint("otel:4318").is_err());
    }

    #[test]
    fn encodes_valid_otlp_json() {
        let span = Span {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent: Some([3; 8]),
            name: "infer \"m\"".into(),
            kind: 2,
            start_ns: 10,
            end_ns: 20,
            attrs: vec![("a", Attr::Str("x".into())), ("b", Attr::Int(-4))],
            error: Some("bad".into()),
        };
        let plain = Span {
            parent: None,
            error: None,
            attrs: Vec::new(),
            ..span.clone()
        };
        let v: serde_json::Value = serde_json::from_slice(&encode(&[span, plain])).unwrap();
        let s = &v["resourceSpans"][0]["scopeSpans"][0]["spans"];
        assert_eq!(s[0]["name"], "infer \"m\"");
        assert_eq!(s[0]["parentSpanId"], "0303030303030303");
        assert_eq!(s[0]["traceId"], "01".repeat(16));
        assert_eq!(s[0]["attributes"][1]["value"]["intValue"], "-4");
        assert_eq!(s[0]["status"]["message"], "bad");
        assert_eq!(s[0]["endTimeUnixNano"], "20");
        assert!(s[1].get("parentSpanId").is_none());
        assert_eq!(s[1]["status"]["code"], 0);
        assert_eq!(
            v["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "hone"
        );
    }
}
