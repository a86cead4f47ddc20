//! The one integration-test binary. Every test starts its own real parts (Postgres cluster,
//! repository, S3 server) through `support`.

mod api;
mod architecture;
mod attacks;
mod audit;
mod bad_input;
mod branch;
mod bundle;
mod catalog_postgres;
mod cli;
mod console;
mod copies;
mod daemon;
mod deep_verification;
mod drill;
mod fixture;
mod fleet;
mod front_ends;
mod incremental;
mod inplace;
mod media;
mod metrics;
mod no_lock_in;
mod object_lock;
mod one_operation;
mod pitr;
mod prune;
mod repository;
mod signing;
mod snapshot_restore;
mod stacks;
mod storage;
mod support;
mod tables;
mod tokens;
