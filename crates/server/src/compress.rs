//! HTTP content codings: gzip and deflate request bodies (tritonclient's
//! `request_compression_algorithm`) decoded within the size limit, and
//! responses encoded when the client's `Accept-Encoding` asks.

use std::io::{Read, Write};

use axum::http::{HeaderMap, header};
use bytes::Bytes;
use hone_core::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    /// HTTP's "deflate" is the zlib format (RFC 9110), which is what
    /// tritonclient and curl send.
    Deflate,
}

impl Coding {
    fn parse(token: &str) -> Option<Coding> {
        match token.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Some(Coding::Identity),
            "gzip" | "x-gzip" => Some(Coding::Gzip),
            "deflate" => Some(Coding::Deflate),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
        }
    }
}

/// A `Content-Encoding` hone does not inflate (answered 415).
#[derive(Debug, thiserror::Error)]
#[error("Content-Encoding '{0}' is not supported: send gzip, deflate or identity")]
pub struct UnsupportedCoding(pub String);

/// The request body's coding; an unsupported one is an error naming it.
pub fn request_coding(headers: &HeaderMap) -> std::result::Result<Coding, UnsupportedCoding> {
    let Some(v) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(Coding::Identity);
    };
    let v = v.to_str().unwrap_or("?");
    // One coding at most: stacked codings are not something clients send.
    Coding::parse(v).ok_or_else(|| UnsupportedCoding(v.to_string()))
}

/// The coding to answer in: the first of gzip, deflate that the client
/// accepts with a non-zero weight.
pub fn response_coding(headers: &HeaderMap) -> Coding {
    let Some(v) = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
    else {
        return Coding::Identity;
    };
    let accepted: Vec<Coding> = v
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';');
            let coding = Coding::parse(parts.next()?)?;
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (!refused).then_some(coding)
        })
        .collect();
    [Coding::Gzip, Coding::Deflate]
        .into_iter()
        .find(|c| accepted.contains(c))
        .unwrap_or(Coding::Identity)
}

/// Decodes a body, refusing to inflate past `limit` bytes (a small gzip
/// body can expand without bound). `Ok(None)` means over the limit.
pub fn decode(coding: Coding, body: Bytes, limit: usize) -> Result<Option<Bytes>> {
    let reader: Box<dyn Read> = match coding {
        Coding::Identity => return Ok(Some(body)),
        Coding::Gzip => Box::new(flate2::read::GzDecoder::new(body.as_ref())),
        Coding::Deflate => Box::new(flate2::read::ZlibDecoder::new(body.as_ref())),
    };
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            Error::invalid(format!(
                "cannot decode the {} request body: {e}",
                coding.name()
            ))
        })?;
    Ok((out.len() <= limit).then(|| Bytes::from(out)))
}

/// Encodes a response body; returns the coding actually used (identity if
/// encoding failed, which writing into memory does not).
pub fn encode(coding: Coding, body: Vec<u8>) -> (Coding, Vec<u8>) {
    let fast = flate2::Compression::fast();
    let done = match coding {
        Coding::Identity => return (coding, body),
        Coding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), fast);
            e.write_all(&body).and_then(|_| e.finish())
        }
        Coding::Deflate => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), fast);
            e.write_all(&body).and_then(|_| e.finish())
        }
    };
    match done {
        Ok(b) => (coding, b),
        Err(_) => (Coding::Identity, body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codings_round_trip_and_bombs_stop_at_the_limit() {
        let body = b"{\"inputs\": []}".repeat(100);
        for c in [Coding::Identity, Coding::Gzip, Coding::Deflate] {
            let (used, enc) = encode(c, body.clone());
            assert_eq!(used, c);
            let dec = decode(c, Bytes::from(enc), 1 << 20).unwrap().unwrap();
            assert_eq!(&dec[..], &body[..], "{c:?}");
        }
        let (_, bomb) = encode(Coding::Gzip, vec![0; 4 << 20]);
        assert!(bomb.len() < 64 << 10);
        assert_eq!(
            decode(Coding::Gzip, Bytes::from(bomb), 1 << 20).unwrap(),
            None
        );
        assert!(decode(Coding::Gzip, Bytes::from_static(b"not gzip"), 100).is_err());
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            "br, deflate;q=0.5, gzip;q=0".parse().unwrap(),
        );
        assert_eq!(response_coding(&h), Coding::Deflate);
        h.insert(header::CONTENT_ENCODING, "br".parse().unwrap());
        assert!(request_coding(&h).unwrap_err().to_string().contains("'br'"));
    }
}
