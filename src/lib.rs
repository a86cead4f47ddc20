//! tidemark: backup, versioning and disaster recovery for Postgres-backed application
//! workspaces.
//!
//! The main types:
//! - [`config::LoadedConfig`]: `tidemark.toml` (repository, keys, workspaces).
//! - [`repo::Repository`]: where backups live; [`repo::manifest::Manifest`] makes a snapshot exist.
//! - [`ops`]: one module per operation; every front end calls `op(core, &Options, &Actor)`
//!   with the one context [`ops::Core`] and an [`actor::Actor`] saying who asked (docs/architecture.md
//!   has the layers and what each may import).
//! - [`stacks`]: function stacks, versioned in the workspace database.
//! - [`schedule`]: policies (cron, zone, retention), the pure retention selection, and the
//!   daemon loop of `serve` ([`schedule::daemon::Daemon`], driven by a [`schedule::clock::Clock`]).
//! - [`catalog::Catalog`]: tidemark's own SQLite state (job history, schedules' last runs),
//!   rebuildable from the repository.
//! - [`repo::pipeline`]: the streaming stages (BLAKE3 -> zstd -> age -> SHA-256 -> upload, and
//!   back); [`repo`] is the only module that talks to object storage.
//! - [`error::Error`]: one error type with a stable [`error::ErrorKind`] table (exit codes,
//!   HTTP statuses, retryable or not).
//! - [`pgcluster::Cluster`]: throwaway Postgres clusters for the demo, drills and tests.

pub mod access;
pub mod actor;
pub mod api;
pub mod bundle;
pub mod catalog;
pub mod config;
pub mod copies;
pub mod drill;
pub mod error;
pub mod faults;
pub mod keys;
pub mod migrations;
pub mod monitor;
pub mod operation;
pub mod ops;
pub mod pg;
pub mod pgcluster;
pub mod progress;
pub mod repo;
pub mod restore;
pub mod schedule;
pub mod secret;
pub mod service;
pub mod signing;
pub mod source;
pub mod stacks;
pub mod wal;
pub mod wal_name;

pub use error::{Error, ErrorKind, Result};
