//! `hone bench`'s engine: drives any KServe V2 server (hone, Triton, ...)
//! over HTTP JSON, HTTP binary or gRPC, closed-loop at a fixed concurrency
//! or open-loop at a fixed request rate, and reports what the client saw
//! (throughput, latency percentiles, errors by status) beside what the
//! server says it did (queue and compute time, mean batch size), read from
//! its statistics extension before and after each step.
//!
//! `target` learns the model's inputs and builds requests, `pool` fills the
//! request pool from the data (random, CSV positional or by feature name,
//! `.npy`, text lines, files),
//! `conn` sends one request per protocol, `driver` runs the load steps,
//! `report` turns the samples into figures.

pub mod conn;
pub mod driver;
pub mod pool;
pub mod report;
pub mod target;

pub use driver::{Load, Plan, Progress, Protocol, run};
pub use report::{Report, ServerSplit, Step};
pub use target::Data;
