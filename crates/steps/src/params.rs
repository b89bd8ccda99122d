//! A step's settings, read from the model's config `parameters` with an
//! error that names the parameter and what it should be.

use std::collections::BTreeMap;
use std::str::FromStr;

use hone_core::{Error, Result};

pub struct Params<'a>(&'a BTreeMap<String, String>);

impl<'a> Params<'a> {
    pub fn new(map: &'a BTreeMap<String, String>) -> Self {
        Self(map)
    }

    pub fn text(&self, key: &str) -> Option<&'a str> {
        self.0.get(key).map(String::as_str)
    }

    /// A number, or `default` when the parameter is absent.
    pub fn number<T: FromStr>(&self, key: &str, default: T, what: &str) -> Result<T> {
        match self.text(key) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| {
                Error::invalid(format!("config parameter {key} is '{v}': give {what}"))
            }),
        }
    }

    pub fn flag(&self, key: &str, default: bool) -> Result<bool> {
        match self.text(key).map(str::trim) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(Error::invalid(format!(
                "config parameter {key} is '{v}': give \"true\" or \"false\""
            ))),
        }
    }

    /// A comma-separated list of numbers (`mean: "0.5,0.5,0.5"`).
    pub fn numbers(&self, key: &str, default: &[f32]) -> Result<Vec<f32>> {
        match self.text(key) {
            None => Ok(default.to_vec()),
            Some(v) => v
                .split(',')
                .map(|x| x.trim().parse::<f32>())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| {
                    Error::invalid(format!(
                        "config parameter {key} is '{v}': give numbers separated by commas"
                    ))
                }),
        }
    }

    /// One of `choices`, or the first when absent.
    pub fn choice(&self, key: &str, choices: &[&'static str]) -> Result<&'static str> {
        let Some(v) = self.text(key).map(str::trim) else {
            return choices
                .first()
                .copied()
                .ok_or_else(|| Error::internal("no choices"));
        };
        choices.iter().copied().find(|c| *c == v).ok_or_else(|| {
            Error::invalid(format!(
                "config parameter {key} is '{v}': give one of {}",
                choices.join(", ")
            ))
        })
    }
}
