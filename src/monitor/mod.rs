//! Monitoring, the engine: whether each workspace is as fresh as it should be
//! ([`health`], pure), the transitions the daemon announces ([`alerts`]), the metrics a
//! scrape reads ([`metrics`]), and the status they judge ([`status`]). `ops::health`,
//! `ops::alerts` and `ops::metrics` gather what these read and hand it over.

pub mod alerts;
pub mod health;
pub mod metrics;
pub mod status;
