//! The model repository: Triton's `<repo>/<model>/<version>/model.onnx`
//! layout, turned into ready-to-serve model versions.
//!
//! - `repo`: the [`Repository`] and opening it;
//! - `registry`: what each model became, and every lookup of it;
//! - `lifecycle`: load, reload, unload and poll while serving;
//! - `loader`: one directory's files → config → engines → scheduler;
//! - `stamp`: the fingerprint that tells whether a directory changed;
//! - `memory`: the memory budget's figures (sizes, residency, loads);
//! - `residency`: eviction, and loads on a request, under that budget.

mod lifecycle;
mod loader;
pub(crate) mod memory;
mod registry;
mod repo;
mod residency;
mod stamp;

pub use lifecycle::{Change, check_load_parameters};
pub use memory::Footprint;
pub use registry::{Dormant, IndexEntry, ModelEntry, Registry, VersionState};
pub use repo::Repository;
pub use stamp::DirStamp;
