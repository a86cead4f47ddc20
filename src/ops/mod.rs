//! The operations: one module per operation, each orchestrating the engines below it. The
//! front ends (CLI, API, scheduler) turn their input into the same `*Options` structs, call
//! these functions with an `Actor` and render the report. Every operation runs in one
//! [`Core`] (`context`). No file here is longer than ~300 lines, and no function longer than
//! ~100, without the reason written beside it (tests/it/architecture.rs checks).

pub mod alerts;
pub mod audit;
pub mod basebackup;
pub mod branch;
pub mod catalog;
pub mod check;
pub mod demo;
pub mod drill;
pub mod export;
pub mod health;
pub mod hold;
pub mod import;
pub mod init;
pub mod inplace;
pub mod job;
pub mod link;
pub mod metrics;
pub mod pitr;
pub mod prune;
pub mod restore;
pub mod serve;
pub mod signing;
pub mod snapshot;
pub mod stacks;
pub mod switch;
pub mod token;

pub mod wal;
pub mod workspace;

mod context;

pub use context::{Core, Workspace};

use crate::error::{Error, Result};

/// The most parallel connections any operation takes (`jobs`), from any front end: each
/// is a connection to the workspace's server, which the application shares.
pub const MAX_JOBS: usize = 32;

/// The most tables one restore or export picks.
pub const MAX_TABLES: usize = 100;

/// Refuses a `jobs` of 0 or above [`MAX_JOBS`] (none: one per core).
///
/// Errors: `Usage`.
pub fn check_jobs(jobs: Option<usize>) -> Result<()> {
    match jobs {
        Some(j) if j == 0 || j > MAX_JOBS => Err(Error::usage(format!(
            "jobs is 1 to {MAX_JOBS} (each is a connection to the workspace's server), not {j}"
        ))),
        _ => Ok(()),
    }
}

/// Refuses more than [`MAX_TABLES`] tables (or new names for them).
///
/// Errors: `Usage`.
pub fn check_tables(tables: &[String], what: &str) -> Result<()> {
    match tables.len() > MAX_TABLES {
        true => Err(Error::usage(format!("at most {MAX_TABLES} {what} at once, not {}", tables.len()))),
        false => Ok(()),
    }
}

/// Parallel jobs: the given number, or one per core.
pub fn jobs_or_default(jobs: Option<usize>) -> usize {
    jobs.filter(|j| *j > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(std::num::NonZero::get).unwrap_or(2))
}

/// A snapshot option as a request sends it: an id, `latest`, or left out or `null` (both:
/// the default, an empty id).
pub(crate) fn snapshot_or_empty<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    <Option<String> as serde::Deserialize>::deserialize(d).map(Option::unwrap_or_default)
}
