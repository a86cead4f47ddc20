//! Freshness alerts: the daemon evaluates every workspace's health ([`super::health`]) every
//! minute on its clock (`ops::alerts::watch`), keeps the result for `/metrics` ([`Monitor`]),
//! and sends a webhook event once per transition ([`Transitions`]): `workspace.stale` when a workspace becomes
//! late in one respect (snapshot, drill, WAL), `workspace.recovered` when that ends. A
//! workspace that stays stale is not announced again every minute; one that is stale when
//! the daemon starts is announced once.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::health::{HealthReport, Problem, ProblemKind};
use crate::schedule::webhook::Event;

/// How often the daemon evaluates.
pub const EVERY: Duration = Duration::from_secs(60);

/// A staleness transition, as the webhook receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkspaceEvent {
    /// `workspace.stale` or `workspace.recovered`.
    pub event: &'static str,
    pub workspace: String,
    /// What became late (or is no longer): `snapshot-stale`, `drill-stale`, `wal-lag`.
    pub kind: ProblemKind,
    /// What is late and by how much; for a recovery, what it was.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late_by_seconds: Option<i64>,
    /// The evaluation's moment (the daemon's clock).
    pub at: DateTime<Utc>,
}

impl Event for WorkspaceEvent {
    fn name(&self) -> &str {
        self.event
    }

    fn workspace(&self) -> &str {
        &self.workspace
    }
}

/// The newest evaluation, shared by every clone of a [`Core`] (the daemon writes it, the
/// API's `/metrics` reads it).
#[derive(Debug, Clone, Default)]
pub struct Monitor {
    latest: Arc<RwLock<Option<HealthReport>>>,
}

impl Monitor {
    pub fn latest(&self) -> Option<HealthReport> {
        self.latest.read().expect("monitor lock").clone()
    }

    pub fn store(&self, report: HealthReport) {
        *self.latest.write().expect("monitor lock") = Some(report);
    }
}

/// The stale problems of the previous evaluation, to tell transitions from states.
#[derive(Debug, Default)]
pub struct Transitions {
    stale: BTreeMap<(String, ProblemKind), Problem>,
}

impl Transitions {
    /// The events between the previous evaluation and `report`: one `workspace.stale` per
    /// (workspace, kind) that is stale now and was not, one `workspace.recovered` per one
    /// that was and is not. Failing jobs and drills have their own `job.failed` events.
    pub fn between(&mut self, report: &HealthReport) -> Vec<WorkspaceEvent> {
        let mut now_stale = BTreeMap::new();
        for w in &report.workspaces {
            for p in w.problems.iter().filter(|p| p.kind.is_stale()) {
                now_stale.insert((w.workspace.clone(), p.kind), p.clone());
            }
        }
        // A workspace that could not be evaluated this time keeps what it was.
        for ((workspace, kind), p) in &self.stale {
            if report.unknown.iter().any(|u| &u.workspace == workspace) {
                now_stale.insert((workspace.clone(), *kind), p.clone());
            }
        }
        let mut events = Vec::new();
        for ((workspace, kind), p) in &now_stale {
            if !self.stale.contains_key(&(workspace.clone(), *kind)) {
                events.push(WorkspaceEvent {
                    event: "workspace.stale",
                    workspace: workspace.clone(),
                    kind: *kind,
                    message: p.message.clone(),
                    late_by_seconds: p.late_by_seconds,
                    at: report.at,
                });
            }
        }
        // A workspace that left the config is not "recovered": it is no longer watched.
        let watched: std::collections::BTreeSet<&str> =
            report.workspaces.iter().map(|w| w.workspace.as_str()).collect();
        for ((workspace, kind), p) in &self.stale {
            if !now_stale.contains_key(&(workspace.clone(), *kind)) && watched.contains(workspace.as_str()) {
                events.push(WorkspaceEvent {
                    event: "workspace.recovered",
                    workspace: workspace.clone(),
                    kind: *kind,
                    message: format!("no longer: {}", p.message),
                    late_by_seconds: None,
                    at: report.at,
                });
            }
        }
        self.stale = now_stale;
        events
    }
}
