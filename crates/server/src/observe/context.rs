//! W3C Trace Context: the `traceparent` header read and written, and the
//! random ids of new traces and spans.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

/// The trace a request belongs to and this server's span in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The caller's span, when a valid `traceparent` came with the request.
    pub parent: Option<[u8; 8]>,
    /// The server span of this request.
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl TraceContext {
    /// Continues the caller's trace when `header` is a valid `traceparent`
    /// (its sampled flag decides), else starts a new one sampled with
    /// probability `ratio`. An invalid header is ignored, as the spec asks.
    pub fn from_header(header: Option<&[u8]>, ratio: f64) -> Self {
        match header.and_then(parse) {
            Some((trace_id, parent, flags)) => Self {
                trace_id,
                parent: Some(parent),
                span_id: new_id(),
                sampled: flags & 1 == 1,
            },
            None => {
                let a: [u8; 8] = new_id();
                let b: [u8; 8] = new_id();
                let mut trace_id = [0u8; 16];
                trace_id[..8].copy_from_slice(&a);
                trace_id[8..].copy_from_slice(&b);
                Self {
                    trace_id,
                    parent: None,
                    span_id: new_id(),
                    sampled: ratio >= 1.0 || (ratio > 0.0 && unit() < ratio),
                }
            }
        }
    }

    /// The `traceparent` a response (or a downstream call) carries: this
    /// server's span as the parent.
    pub fn header(&self) -> String {
        format!(
            "00-{}-{}-{}",
            hex(&self.trace_id),
            hex(&self.span_id),
            if self.sampled { "01" } else { "00" }
        )
    }

    pub fn trace_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

/// `version-traceid-parentid-flags`. Version 00 is exactly 55 characters;
/// a later version may append fields after a dash. Upper-case hex, version
/// ff and all-zero ids are invalid.
pub fn parse(h: &[u8]) -> Option<([u8; 16], [u8; 8], u8)> {
    let h = h.trim_ascii();
    if h.len() < 55 || (h.len() > 55 && (h.get(..2) == Some(b"00") || h.get(55) != Some(&b'-'))) {
        return None;
    }
    if h.get(2) != Some(&b'-') || h.get(35) != Some(&b'-') || h.get(52) != Some(&b'-') {
        return None;
    }
    let version = unhex::<1>(h.get(0..2)?)?;
    if version == [0xff] {
        return None;
    }
    let trace = unhex::<16>(h.get(3..35)?)?;
    let parent = unhex::<8>(h.get(36..52)?)?;
    let flags = unhex::<1>(h.get(53..55)?)?;
    if trace == [0; 16] || parent == [0; 8] {
        return None;
    }
    Some((trace, parent, flags[0]))
}

fn unhex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        *o = digit(*hi)? << 4 | digit(*lo)?;
    }
    Some(out)
}

pub fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        for d in [x >> 4, x & 15] {
            s.push(char::from_digit(u32::from(d), 16).unwrap_or('0'));
        }
    }
    s
}

thread_local! {
    // splitmix64, seeded per thread from std's random hash keys: ids must be
    // unique, not secret.
    static STATE: Cell<u64> = Cell::new(std::collections::hash_map::RandomState::new().build_hasher().finish() | 1);
}

fn next() -> u64 {
    STATE.with(|s| {
        let x = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        s.set(x);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

/// A random non-zero id.
pub fn new_id() -> [u8; 8] {
    loop {
        let v = next();
        if v != 0 {
            return v.to_be_bytes();
        }
    }
}

/// Uniform in [0, 1).
pub fn unit() -> f64 {
    (next() >> 11) as f64 / (1u64 << 53) as f64
}

/// A short random request id (16 hex digits) for requests that bring none.
pub fn request_id() -> String {
    hex(&new_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_spec_examples_and_refuses_bad_ones() {
        let ok = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let (t, p, f) = parse(ok).unwrap();
        assert_eq!(hex(&t), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(hex(&p), "b7ad6b7169203331");
        assert_eq!(f, 1);
        for bad in [
            &b"00-00000000000000000000000000000000-b7ad6b7169203331-01"[..],
            b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
            b"garbage",
        ] {
            assert!(parse(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
        // A later version may carry more fields.
        assert!(parse(b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-ab").is_some());
        let c = TraceContext::from_header(Some(ok), 0.0);
        assert!(c.sampled);
        assert_eq!(c.parent, Some(p));
        assert!(
            c.header()
                .starts_with("00-0af7651916cd43dd8448eb211c80319c-")
        );
        let fresh = TraceContext::from_header(Some(b"nonsense"), 0.0);
        assert!(!fresh.sampled && fresh.parent.is_none());
        assert!(TraceContext::from_header(None, 1.0).sampled);
    }
}
