//! Schedules and retention: policies (`schedules/*.toml`, one per file) say when snapshots
//! are taken (a 5-field cron line in a time zone) and how long each kind is kept; the
//! retention selection is a pure function over snapshot times, kinds and pins; the daemon
//! loop runs each schedule's jobs on time (against a clock tests can drive).

pub mod clock;
pub mod daemon;
pub mod policy;
pub mod retention;
pub mod webhook;
