//! `fleet`: the tidemark processes that share the catalog (daemons, API servers, command
//! lines holding a workspace), their heartbeats and what each holds, for `tidemark fleet`
//! and `GET /v1/fleet`.

use serde::Serialize;

use super::Core;
use crate::actor::Actor;
use crate::catalog::fleet::Member;
use crate::error::Result;

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
