//! The model repository: Triton's `<repo>/<model>/<version>/model.onnx`
//! layout, turned into ready-to-serve model versions.
//!
//! - `repo`: the [`Repository`] and opening it;
//! - `registry`: what each model became, and every lookup of it;
//! - `lifecycle`: load, reload, unload and poll while serving;
//! - `loader`: one directory's files → config → engines → scheduler;
//! - `stamp`: the fingerprint that tells whether a directory changed.

mod lifecycle;
mod loader;
mod registry;
mod repo;
mod stamp;

pub use lifecycle::{Change, check_load_parameters};
pub use registry::{IndexEntry, ModelEntry, Registry, VersionState};
pub use repo::Repository;
pub use stamp::DirStamp;
