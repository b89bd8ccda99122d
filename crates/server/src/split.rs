//! A model's traffic split: weights between versions, labels, the sticky
//! header; parsed from config `parameters` (`traffic: "1:90,2:10"`,
//! `labels: "stable:1,canary:2"`, `sticky_header: "x-user-id"`) or from the
//! admin route's JSON, and the pick of one request's version.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use hone_core::{Error, Result};
use serde_json::{Value, Value as Json, json};

/// How a model's unversioned requests are shared out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Split {
    /// Version → weight. Empty: the newest ready version takes everything.
    pub weights: BTreeMap<i64, u32>,
    pub labels: BTreeMap<String, i64>,
    /// Requests with the same value of this header go to the same version.
    pub sticky_header: Option<String>,
    /// A share of answered requests also sent to this version, whose
    /// answers are compared and never returned.
    pub shadow: Option<ShadowTarget>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShadowTarget {
    pub version: i64,
    /// 0..=1 of the requests the other versions answer.
    pub share: f64,
}

fn shadow_target(key: &str, version: &str, share: f64) -> Result<ShadowTarget> {
    if !(0.0..=1.0).contains(&share) {
        return Err(Error::invalid(format!(
            "{key}: share {share} is not between 0 and 1"
        )));
    }
    Ok(ShadowTarget {
        version: version_number(key, version)?,
        share,
    })
}

fn pairs<T: std::str::FromStr>(key: &str, text: &str) -> Result<Vec<(String, T)>> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (a, b) = p.split_once(':').ok_or_else(|| {
                Error::invalid(format!("config parameter {key}: {p:?} is not NAME:VALUE"))
            })?;
            let v = b.trim().parse::<T>().map_err(|_| {
                Error::invalid(format!(
                    "config parameter {key}: {:?} is not a valid number",
                    b.trim()
                ))
            })?;
            Ok((a.trim().to_string(), v))
        })
        .collect()
}

fn version_number(key: &str, v: &str) -> Result<i64> {
    v.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Error::invalid(format!("{key}: {v:?} is not a version number")))
}

impl Split {
    /// From config parameters; None when none of them is set.
    pub fn from_parameters(p: &BTreeMap<String, String>) -> Result<Option<Split>> {
        let (t, l, s) = (p.get("traffic"), p.get("labels"), p.get("sticky_header"));
        let sh = p.get("shadow");
        if t.is_none() && l.is_none() && s.is_none() && sh.is_none() {
            return Ok(None);
        }
        let mut split = Split::default();
        for (v, w) in pairs::<u32>("traffic", t.map_or("", String::as_str))? {
            split.weights.insert(version_number("traffic", &v)?, w);
        }
        for (name, v) in pairs::<i64>("labels", l.map_or("", String::as_str))? {
            version_number("labels", &v.to_string())?;
            split.labels.insert(name, v);
        }
        split.sticky_header = s
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty());
        if let Some(sh) = sh {
            let p = pairs::<f64>("shadow", sh)?;
            let [(v, share)] = p.as_slice() else {
                return Err(Error::invalid(
                    "config parameter shadow: expected VERSION:SHARE, e.g. 2:0.1",
                ));
            };
            split.shadow = Some(shadow_target("shadow", v, *share)?);
        }
        Ok(Some(split))
    }

    /// From the admin route's JSON: `{"weights": {"1": 90, "2": 10},
    /// "labels": {"stable": 1}, "sticky_header": "x-user-id"}`.
    pub fn from_json(v: &Value) -> Result<Split> {
        let o = v
            .as_object()
            .ok_or_else(|| Error::invalid("the traffic body must be a JSON object"))?;
        if let Some(k) = o.keys().find(|k| {
            !matches!(
                k.as_str(),
                "weights" | "labels" | "sticky_header" | "shadow"
            )
        }) {
            return Err(Error::invalid(format!(
                "unknown field {k:?}: expected weights, labels, sticky_header, shadow"
            )));
        }
        let mut split = Split::default();
        if let Some(sh) = o.get("shadow").filter(|s| !s.is_null()) {
            let v = sh
                .get("version")
                .and_then(|v| {
                    v.as_i64()
                        .map(|n| n.to_string())
                        .or_else(|| v.as_str().map(str::to_string))
                })
                .ok_or_else(|| Error::invalid("shadow.version: a version number"))?;
            let share = sh
                .get("share")
                .and_then(Json::as_f64)
                .ok_or_else(|| Error::invalid("shadow.share: a number between 0 and 1"))?;
            split.shadow = Some(shadow_target("shadow", &v, share)?);
        }
        if let Some(w) = o.get("weights").filter(|w| !w.is_null()) {
            for (k, n) in w
                .as_object()
                .ok_or_else(|| Error::invalid("weights must be an object {\"VERSION\": WEIGHT}"))?
            {
                let n = n
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        Error::invalid(format!("weight of version {k}: not a non-negative integer"))
                    })?;
                split.weights.insert(version_number("weights", k)?, n);
            }
        }
        if let Some(l) = o.get("labels").filter(|l| !l.is_null()) {
            for (k, n) in l
                .as_object()
                .ok_or_else(|| Error::invalid("labels must be an object {\"LABEL\": VERSION}"))?
            {
                let v = n
                    .as_i64()
                    .or_else(|| n.as_str().and_then(|s| s.parse().ok()))
                    .ok_or_else(|| Error::invalid(format!("label {k}: not a version number")))?;
                split
                    .labels
                    .insert(k.clone(), version_number("labels", &v.to_string())?);
            }
        }
        split.sticky_header = match o.get("sticky_header") {
            None | Some(Value::Null) => None,
            Some(Value::String(h)) if !h.trim().is_empty() => Some(h.trim().to_ascii_lowercase()),
            Some(_) => return Err(Error::invalid("sticky_header must be a header name")),
        };
        Ok(split)
    }

    pub fn to_json(&self) -> Value {
        let weights: serde_json::Map<String, Value> = self
            .weights
            .iter()
            .map(|(v, w)| (v.to_string(), json!(w)))
            .collect();
        let labels: serde_json::Map<String, Value> = self
            .labels
            .iter()
            .map(|(l, v)| (l.clone(), json!(v.to_string())))
            .collect();
        let shadow = self
            .shadow
            .map(|s| json!({"version": s.version.to_string(), "share": s.share}));
        json!({"weights": weights, "labels": labels, "sticky_header": self.sticky_header, "shadow": shadow})
    }

    /// The version for one request among `ready` (ascending), or None for
    /// "the newest ready". A sticky key hashes to a fixed point of the
    /// weights; without one the point is random. Versions that are not
    /// ready get no traffic: their share goes to the others.
    pub fn pick(&self, ready: &[i64], key: Option<&[u8]>) -> Option<i64> {
        let live: Vec<(i64, u64)> = self
            .weights
            .iter()
            .filter(|(v, w)| **w > 0 && ready.contains(v))
            .map(|(v, w)| (*v, u64::from(*w)))
            .collect();
        let total: u64 = live.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return None;
        }
        let point = match key {
            Some(k) => {
                // SipHash with fixed keys: the same value lands on the same
                // version in every process and after restarts.
                let mut h = std::hash::DefaultHasher::new();
                k.hash(&mut h);
                h.finish() % total
            }
            None => (crate::observe::context::unit() * total as f64) as u64 % total,
        };
        let mut acc = 0;
        live.into_iter().find_map(|(v, w)| {
            acc += w;
            (point < acc).then_some(v)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_and_json_forms() {
        let p: BTreeMap<String, String> = [
            ("traffic".to_string(), "1:90, 2:10".to_string()),
            ("labels".into(), "stable:1,canary:2".into()),
            ("sticky_header".into(), "X-User".into()),
            ("shadow".into(), "2:0.25".into()),
        ]
        .into();
        let s = Split::from_parameters(&p).unwrap().unwrap();
        assert_eq!(s.weights, [(1, 90), (2, 10)].into());
        assert_eq!(s.labels["canary"], 2);
        assert_eq!(s.sticky_header.as_deref(), Some("x-user"));
        assert_eq!(
            s.shadow,
            Some(ShadowTarget {
                version: 2,
                share: 0.25
            })
        );
        assert_eq!(Split::from_json(&s.to_json()).unwrap(), s);
        assert!(Split::from_parameters(&BTreeMap::new()).unwrap().is_none());
        let bad: BTreeMap<String, String> = [("traffic".to_string(), "1=90".to_string())].into();
        assert!(
            Split::from_parameters(&bad)
                .unwrap_err()
                .message
                .contains("NAME:VALUE")
        );
        assert!(Split::from_json(&json!({"weights": {"x": 1}})).is_err());
        assert!(Split::from_json(&json!({"weights": {"1": -1}})).is_err());
        assert!(
            Split::from_json(&json!({"wieghts": {}}))
                .unwrap_err()
                .message
                .contains("unknown field")
        );
    }

    #[test]
    fn picks_follow_the_weights_and_stick() {
        let s = Split {
            weights: [(1, 90), (2, 10), (3, 50)].into(),
            ..Split::default()
        };
        // Version 3 is not ready: 1 and 2 share 90:10.
        let mut n2 = 0;
        for _ in 0..20_000 {
            if s.pick(&[1, 2], None) == Some(2) {
                n2 += 1;
            }
        }
        assert!((1600..2400).contains(&n2), "{n2}");
        let a = s.pick(&[1, 2], Some(b"user-7"));
        assert!((0..100).all(|_| s.pick(&[1, 2], Some(b"user-7")) == a));
        assert_eq!(s.pick(&[4], None), None);
        let zero = Split {
            weights: [(1, 0)].into(),
            ..Split::default()
        };
        assert_eq!(zero.pick(&[1], None), None);
    }
}
