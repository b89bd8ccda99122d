//! Access control: API keys for inference and read routes, an admin key for
//! routes that change what the server serves. Keys come as
//! `Authorization: Bearer KEY` over HTTP and the same `authorization`
//! metadata over gRPC. Health routes stay open for probes.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hone_core::{Error, Result};
use sha2::{Digest, Sha256};

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Liveness and readiness: open to probes.
    Health,
    /// Inference, metadata, config, statistics, the repository index.
    Read,
    /// Repository load and unload, and every future control route.
    Admin,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No key, or a key that is not valid: 401.
    Unauthenticated(&'static str),
    /// A valid inference key on an admin route: 403.
    Forbidden,
    /// A valid key over its request rate (`KEY rate=N` in the key file):
    /// 429, retry after this many seconds.
    RateLimited(u64),
}

impl Denied {
    pub fn message(&self) -> &'static str {
        match self {
            Denied::Unauthenticated(why) => why,
            Denied::Forbidden => {
                "this route needs the admin key; the key given is an inference key"
            }
            Denied::RateLimited(_) => {
                "this key is over its request rate (rate= in the key file); retry after Retry-After seconds"
            }
        }
    }
}

/// The configured keys, kept as SHA-256 digests so every comparison runs
/// over 32 bytes whatever the key's length; an API key may carry a rate.
#[derive(Clone, Default)]
pub struct Keys {
    api: Vec<[u8; 32]>,
    /// Per API key (same order), its rate limit if the key file gives one.
    rates: Vec<Option<Arc<Rate>>>,
    admin: Vec<[u8; 32]>,
}

/// A token bucket: `per_sec` requests a second, bursts of one second's worth.
pub struct Rate {
    per_sec: f64,
    bucket: Mutex<(f64, Instant)>,
}

impl Rate {
    fn new(per_sec: f64) -> Arc<Rate> {
        Arc::new(Rate {
            per_sec,
            bucket: Mutex::new((per_sec.max(1.0), Instant::now())),
        })
    }

    /// Takes one request's token, or the whole seconds until one is back.
    fn take(&self) -> std::result::Result<(), u64> {
        let Ok(mut b) = self.bucket.lock() else {
            return Ok(());
        };
        let now = Instant::now();
        let burst = self.per_sec.max(1.0);
        let tokens = (b.0 + now.duration_since(b.1).as_secs_f64() * self.per_sec).min(burst);
        if tokens >= 1.0 {
            *b = (tokens - 1.0, now);
            Ok(())
        } else {
            *b = (tokens, now);
            Err(((1.0 - tokens) / self.per_sec).ceil().max(1.0) as u64)
        }
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        write!(
            f,
            "Keys {{ api: {}, admin: {} }}",
            self.api.len(),
            self.admin.len()
        )
    }
}

fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

/// Equal in time independent of where the inputs differ.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Which of `keys` matches, checking every one so the time does not tell.
fn find(keys: &[[u8; 32]], given: &[u8; 32]) -> Option<usize> {
    keys.iter().enumerate().fold(
        None,
        |hit, (i, k)| if ct_eq(k, given) { Some(i) } else { hit },
    )
}

/// Reads a key file: one key per line, optionally followed by `rate=N`
/// (requests a second for that key); blank lines and `#` comments skipped.
fn read_keys(path: &Path, what: &str) -> Result<Vec<([u8; 32], Option<f64>)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid(format!("{what} {}: {e}", path.display())))?;
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut words = line.split_whitespace();
        let Some(key) = words.next().filter(|k| !k.starts_with('#')) else {
            continue;
        };
        let mut rate = None;
        for w in words {
            rate = Some(
                w.strip_prefix("rate=")
                    .and_then(|r| r.parse::<f64>().ok())
                    .filter(|r| r.is_finite() && *r > 0.0)
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "{what} {} line {}: expected `KEY` or `KEY rate=N` (N requests a second > 0), found '{w}'",
                            path.display(),
                            n + 1
                        ))
                    })?,
            );
        }
        keys.push((digest(key.as_bytes()), rate));
    }
    if keys.is_empty() {
        return Err(Error::invalid(format!(
            "{what} {} holds no key (one per line)",
            path.display()
        )));
    }
    Ok(keys)
}

impl Keys {
    pub fn from_files(api: Option<&Path>, admin: Option<&Path>) -> Result<Keys> {
        let api = api
            .map(|p| read_keys(p, "--api-key-file"))
            .transpose()?
            .unwrap_or_default();
        let admin = admin
            .map(|p| read_keys(p, "--admin-key-file"))
            .transpose()?
            .unwrap_or_default();
        Ok(Keys {
            rates: api.iter().map(|(_, r)| r.map(Rate::new)).collect(),
            api: api.into_iter().map(|(k, _)| k).collect(),
            // The admin key is never rate limited: it is how an operator
            // gets in while clients are throttled.
            admin: admin.into_iter().map(|(k, _)| k).collect(),
        })
    }

    /// Keys given directly (tests, embedding).
    pub fn new(api: &[&str], admin: &[&str]) -> Keys {
        Keys {
            api: api.iter().map(|k| digest(k.as_bytes())).collect(),
            rates: vec![None; api.len()],
            admin: admin.iter().map(|k| digest(k.as_bytes())).collect(),
        }
    }

    /// No key configured: every route is open.
    pub fn is_open(&self) -> bool {
        self.api.is_empty() && self.admin.is_empty()
    }

    pub fn admin_protected(&self) -> bool {
        !self.admin.is_empty() || !self.api.is_empty()
    }

    /// Checks the `Authorization` header value (if any) against what the
    /// route needs. The admin key opens every route. Without an admin key
    /// configured, admin routes need what read routes need; without any key
    /// configured, everything is open.
    pub fn check(
        &self,
        need: Access,
        authorization: Option<&[u8]>,
    ) -> std::result::Result<(), Denied> {
        if need == Access::Health {
            return Ok(());
        }
        let guarded = match need {
            Access::Admin => self.admin_protected(),
            _ => !self.api.is_empty(),
        };
        if !guarded {
            return Ok(());
        }
        let Some(header) = authorization else {
            return Err(Denied::Unauthenticated(
                "this route needs a key: send 'Authorization: Bearer KEY'",
            ));
        };
        let token = header
            .strip_prefix(b"Bearer ")
            .or_else(|| header.strip_prefix(b"bearer "))
            .map(<[u8]>::trim_ascii)
            .ok_or(Denied::Unauthenticated(
                "the Authorization header must be 'Bearer KEY'",
            ))?;
        let given = digest(token);
        if find(&self.admin, &given).is_some() {
            return Ok(());
        }
        let api = find(&self.api, &given);
        if let Some(rate) = api.and_then(|i| self.rates.get(i)?.as_ref()) {
            rate.take().map_err(Denied::RateLimited)?;
        }
        let api_ok = api.is_some();
        match need {
            Access::Read if api_ok => Ok(()),
            Access::Admin if api_ok && !self.admin.is_empty() => Err(Denied::Forbidden),
            Access::Admin if api_ok => Ok(()),
            _ => Err(Denied::Unauthenticated("the key is not valid")),
        }
    }
}

/// What an HTTP route needs, by path.
pub fn http_access(path: &str) -> Access {
    if path.starts_with("/v2/health/") {
        Access::Health
    } else if path == "/dashboard.json"
        || path.starts_with("/v2/models/")
            && (path.ends_with("/traffic") || path.contains("/rollout"))
        || path.starts_with("/v2/repository/models/")
            && (path.ends_with("/load") || path.ends_with("/unload"))
    {
        Access::Admin
    } else {
        Access::Read
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashboard_data_is_an_admin_route_and_its_page_a_read_route() {
        assert_eq!(http_access("/dashboard.json"), Access::Admin);
        assert_eq!(http_access("/v2/models/m/traffic"), Access::Admin);
        assert_eq!(http_access("/v2/models/m/rollout/promote"), Access::Admin);
        assert_eq!(http_access("/dashboard"), Access::Read);
    }

    #[test]
    fn the_access_matrix() {
        let k = Keys::new(&["inf"], &["adm"]);
        let h = |s: &'static str| Some(s.as_bytes());
        for need in [Access::Health, Access::Read, Access::Admin] {
            assert_eq!(k.check(Access::Health, None), Ok(()));
            assert!(k.check(need, h("Bearer adm")).is_ok(), "{need:?}");
        }
        assert!(matches!(
            k.check(Access::Read, None),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            k.check(Access::Read, h("Bearer nope")),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            k.check(Access::Read, h("Basic aW5m")),
            Err(Denied::Unauthenticated(_))
        ));
        assert_eq!(k.check(Access::Read, h("Bearer inf")), Ok(()));
        assert_eq!(
            k.check(Access::Admin, h("Bearer inf")),
            Err(Denied::Forbidden)
        );
        // A key that is a prefix of a real one is not that key.
        assert!(k.check(Access::Read, h("Bearer in")).is_err());
        // No keys: open. Only an API key: admin routes need it too.
        assert_eq!(Keys::default().check(Access::Admin, None), Ok(()));
        let only_api = Keys::new(&["inf"], &[]);
        assert!(only_api.check(Access::Admin, None).is_err());
        assert_eq!(only_api.check(Access::Admin, h("Bearer inf")), Ok(()));
        // Only an admin key: reads stay open, admin routes need it.
        let only_admin = Keys::new(&[], &["adm"]);
        assert_eq!(only_admin.check(Access::Read, None), Ok(()));
        assert!(only_admin.check(Access::Admin, h("Bearer x")).is_err());
    }
}
