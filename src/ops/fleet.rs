//! `fleet`: the tidemark processes that share the catalog (daemons, API servers, command
//! lines holding a workspace), their heartbeats and what each holds, for `tidemark fleet`
//! and `GET /v1/fleet`; and [`while_holding`], how a daemon runs what one daemon of the
//! fleet must run (a workspace's WAL stream, the freshness watch).

use std::future::Future;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::Core;
use crate::actor::Actor;
use crate::catalog::fleet::Member;
use crate::error::{Error, ErrorKind, Result};

/// How long a stopped member stays in the listing.
pub const STOPPED_SHOWN: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The fleet as `tidemark fleet` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FleetReport {
    /// The catalog (its URL without a password, or its file).
    pub catalog: String,
    /// A member silent for this long is dead (seconds).
    pub lease_timeout_seconds: u64,
    /// Daemons alive now.
    pub daemons_alive: usize,
    /// API servers alive now (`serve --api-only`; a daemon with `[api] listen` serves it too).
    pub api_servers_alive: usize,
    /// Alive, and those stopped in the last day (newest last).
    #[schema(value_type = Vec<Object>)]
    pub members: Vec<Member>,
}

/// The fleet sharing this catalog.
///
/// Errors: `Forbidden` without `read-fleet` (admin, auditor); `Unavailable` for the catalog.
pub async fn fleet(core: &Core, actor: &Actor) -> Result<FleetReport> {
    crate::access::check(&actor.grant(), crate::access::Action::ReadFleet, None)?;
    let catalog = core.catalog().await?;
    let members = catalog.members(STOPPED_SHOWN).await?;
    let alive = |role: &str| members.iter().filter(|m| m.alive && m.role == role).count();
    Ok(FleetReport {
        catalog: catalog.name().to_string(),
        lease_timeout_seconds: catalog.lease_timeout().as_secs(),
        daemons_alive: alive("daemon"),
        api_servers_alive: alive("api"),
        members,
    })
}

/// Runs `work` while this daemon holds the fleet lease `name` (`wal-stream shop`,
/// `health-watch`): with a SQLite catalog at once (the only daemon); with a shared one,
/// after taking the lease, looking again every third of the lease timeout while another
/// daemon holds it. The work's stop token is cancelled at `shutdown`, or when the lease is
/// lost (this daemon was paused or cut off past the timeout): then `Refused`, so the caller
/// takes it again. `Ok(None)`: shut down before the lease came.
///
/// Errors: those of the work; `Unavailable` for the catalog; `Refused` when the lease was lost.
pub async fn while_holding<T, F, Fut>(
    core: &Core,
    name: &str,
    shutdown: &CancellationToken,
    work: F,
) -> Result<Option<T>>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    if matches!(core.config.catalog_location(), crate::config::CatalogLocation::File(_)) {
        return work(shutdown.clone()).await.map(Some);
    }
    let catalog = core.catalog().await?;
    let holder = serde_json::json!({"operation": name, "pid": std::process::id()}).to_string();
    let every = catalog.lease_timeout() / 3;
    let lease = loop {
        match catalog.take_lease(crate::catalog::fleet::Role::Daemon, name, &holder).await? {
            Ok(lease) => break lease,
            Err(_) => tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.cancelled() => return Ok(None),
            },
        }
    };
    tracing::info!(lease = name, generation = lease.generation, "this daemon holds it for the fleet");
    let lost = shutdown.child_token();
    let watch = {
        let (catalog, lease, lost) = (catalog.clone(), lease.clone(), lost.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = lost.cancelled() => return,
                }
                // A catalog that cannot answer is asked again; a lease that is gone is gone.
                if let Ok(false) = catalog.still_holds(&lease).await {
                    tracing::error!(lease = %lease.name, "lost the lease (paused or cut off past the lease timeout): stopping");
                    lost.cancel();
                    return;
                }
            }
        })
    };
    let done = work(lost.clone()).await;
    let was_lost = lost.is_cancelled() && !shutdown.is_cancelled();
    lost.cancel();
    let _ = watch.await;
    let _ = catalog.release_lease(&lease).await;
    match was_lost {
        true => Err(Error::new(ErrorKind::Refused, format!("{name}: this daemon lost its lease"))),
        false => done.map(Some),
    }
}
