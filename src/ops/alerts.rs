//! The daemon's watch over freshness: every [`EVERY`] it evaluates every workspace's health
//! and sends the transitions ([`crate::monitor::alerts`]) as webhook events.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Core;
use super::health::{HealthOptions, health_at};
use crate::actor::Actor;
pub use crate::monitor::alerts::*;
use crate::schedule::clock::Clock;
use crate::schedule::webhook::Notifier;

/// Evaluates once at `clock.now()`: stores the report in the core's monitor and returns
/// the transitions' events (also logged).
pub async fn evaluate_once(core: &Core, clock: &dyn Clock, transitions: &mut Transitions) -> Vec<WorkspaceEvent> {
    let actor = Actor::schedule("alerts");
    match health_at(core, &HealthOptions::default(), &actor, clock.now()).await {
        Ok(report) => {
            let events = transitions.between(&report);
            core.monitor.store(report);
            for e in &events {
                match e.event {
                    "workspace.stale" => {
                        tracing::warn!(workspace = %e.workspace, kind = e.kind.as_str(), "{}", e.message);
                    }
                    _ => tracing::info!(workspace = %e.workspace, kind = e.kind.as_str(), "{}", e.message),
                }
            }
            events
        }
        Err(e) => {
            tracing::error!(error = %e.report(), "evaluating the workspaces' health failed; trying again in a minute");
            Vec::new()
        }
    }
}

/// Evaluates every [`EVERY`] until `shutdown`, sending the transitions' events.
pub async fn watch(
    core: Core,
    clock: Arc<dyn Clock>,
    notifier: Option<Arc<Notifier<WorkspaceEvent>>>,
    shutdown: CancellationToken,
) {
    let mut transitions = Transitions::default();
    loop {
        for event in evaluate_once(&core, clock.as_ref(), &mut transitions).await {
            if let Some(n) = &notifier {
                n.send(event);
            }
        }
        let next = clock.now() + chrono::Duration::from_std(EVERY).expect("a minute");
        tokio::select! {
            () = clock.sleep_until(next) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
