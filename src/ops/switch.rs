//! A switch of a workspace's live database (an in-place restore, its undo, a branch made
//! live) as one recorded change that a crash cannot leave half done:
//!
//! 1. the intent goes into the catalog before anything is renamed;
//! 2. the databases are switched in one transaction (`restore::database::swap_in`): the
//!    commit point;
//! 3. the media follow (`MediaSwap`), in steps each of which can be finished from where it
//!    stopped;
//! 4. the intent is removed.
//!
//! A process that dies anywhere leaves the intent. [`recover`] (run by `serve` when it
//! starts, and by every switch, undo and set-live of the workspace before its own) reads
//! the databases: switched, it finishes the media and records what was moved aside;
//! not switched, it drops an in-place restore's copy and its media. Either way the database
//! and the media are both the old ones or both the new ones.

use super::Core;
use crate::actor::Actor;
use crate::catalog::switches::{SwitchIntent, SwitchKind};
use crate::error::{Error, ErrorKind, Result};
use crate::pg::ConnSpec;
use crate::restore::database::{self, Switched};
use crate::restore::media_swap::MediaSwap;

/// A switch about to be made: `live` becomes `aside` and `incoming` becomes `live`.
pub(super) struct Plan<'a> {
    pub workspace: &'a str,
    pub kind: SwitchKind,
    pub live: &'a str,
    pub incoming: &'a str,
    pub aside: &'a str,
    /// The media beside the live ones and their tag (`None`: the database alone).
    pub media: Option<(&'a MediaSwap, String)>,
}

/// Makes the switch (see the module docs). A failure puts back what was done: the database
/// is switched back when the media could not follow.
///
/// Errors: `Unavailable` for the catalog (nothing switched: a switch that could not be
/// finished after a crash must not start); those of the database switch and the media.
pub(super) async fn switch(core: &Core, server: &ConnSpec, plan: &Plan<'_>, actor: &Actor) -> Result<Switched> {
    let catalog =
        core.catalog().await.map_err(|e| e.context("recording the switch before it is made; nothing switched"))?;
    let intent = SwitchIntent {
        workspace: plan.workspace.to_string(),
        kind: plan.kind,
        live: plan.live.to_string(),
        incoming: plan.incoming.to_string(),
        aside: plan.aside.to_string(),
        media_tag: plan.media.as_ref().map(|(_, tag)| tag.clone()),
        started_at: chrono::Utc::now(),
        actor: Some(actor.to_string()),
    };
    // A process paused past its lease must not switch what another may be switching.
    crate::catalog::lock::fence(plan.workspace, "switching the live database").await?;
    catalog.record_switch(&intent).await?;
    crate::faults::point("switch-intent-recorded");
    let switched = match database::swap_in(server, plan.live, plan.incoming, plan.aside).await {
        Ok(switched) => switched,
        Err(e) => {
            forget(core, plan.workspace).await;
            return Err(e);
        }
    };
    crate::faults::point("switch-database-switched");
    if let Some((media, _)) = &plan.media {
        let moved = match plan.kind {
            SwitchKind::Undo => media.switch_back().await,
            SwitchKind::InPlace | SwitchKind::SetLive => media.switch().await,
        };
        if let Err(e) = moved {
            // The media are as they were: the database goes back too.
            let back = database::swap_in(server, plan.live, plan.aside, plan.incoming).await;
            return Err(match back {
                Ok(_) => {
                    forget(core, plan.workspace).await;
                    e.context("moving the media; the database was switched back, nothing changed")
                }
                Err(b) => e.context(format!(
                    "moving the media, and switching the database back ({}); the switch is recorded and the \
                     workspace's next switch (or `serve`) finishes it",
                    b.message()
                )),
            });
        }
        if plan.kind == SwitchKind::Undo {
            media.finish_undo().await;
        }
    }
    crate::faults::point("switch-media-switched");
    forget(core, plan.workspace).await;
    Ok(switched)
}

/// Notes in the catalog that `aside` (a name and its oid) was moved aside now (prune drops
/// it once older than the workspace's keep-replaced; undo swaps back exactly it) and that
/// `live_again` is live again. A catalog that cannot be written costs the automatic drop
/// and the undo: it is logged, the switch stands.
pub(super) async fn note_replaced(core: &Core, workspace: &str, aside: Option<(&str, u32)>, live_again: Option<&str>) {
    let noted = async {
        let catalog = core.catalog().await?;
        if let Some(db) = live_again {
            catalog.forget_replaced(workspace, db).await?;
        }
        if let Some((db, oid)) = aside {
            catalog.record_replaced(workspace, db, oid, chrono::Utc::now()).await?;
        }
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = noted {
        tracing::warn!(workspace, error = %e.report(), "the replaced database was not recorded; prune will not drop it");
    }
}

/// A switch is over: its intent goes (a catalog that cannot be written leaves it for the
/// next recovery, which finds the switch done).
async fn forget(core: &Core, workspace: &str) {
    let forgotten = async { core.catalog().await?.forget_switch(workspace).await };
    if let Err(e) = forgotten.await {
        tracing::warn!(workspace, error = %e.report(), "a finished switch is still recorded as under way");
    }
}

/// [`recover`] under the workspace's lock (a switch under way in a live process holds it
/// for as long as it runs: only a dead one's switch is recovered). `serve` runs it for every
/// workspace when it starts.
///
/// Errors: `Refused` when another operation holds the workspace; those of [`recover`].
pub async fn recover_workspace(core: &Core, workspace: &str, actor: &Actor) -> Result<Option<Recovered>> {
    // Nothing recorded: nothing to take the workspace for (with many workspaces and several
    // daemons starting, most have none).
    if core.catalog().await?.switch_intent(workspace).await?.is_none() {
        return Ok(None);
    }
    let _lock = super::job::take_workspace(core, workspace, "switch recovery", actor, super::job::WaitFor::NO).await?;
    recover(core, workspace, actor).await
}

/// [`recover_workspace`] for every workspace, as `serve` starts: what a dead process left
/// is finished or undone before anything else runs. Logged, never fatal (a workspace that
/// another process holds is recovered by its next switch).
pub async fn recover_all(core: &Core) {
    let actor = Actor::new(crate::actor::ActorKind::Schedule, "recovery");
    for workspace in core.config.config.workspaces.keys() {
        if let Err(e) = recover_workspace(core, workspace, &actor).await {
            tracing::warn!(workspace, error = %e.report(), "a switch left by a dead process was not recovered at start");
        }
    }
}

/// What [`recover`] found and did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recovered {
    pub workspace: String,
    /// `in-place`, `undo` or `set-live`.
    pub kind: &'static str,
    /// The database had been switched, and the rest was finished; else it was undone.
    pub finished: bool,
    pub started_at: chrono::DateTime<chrono::Utc>,
}

/// The workspace's lock for a switch of its live database (`operation`: an in-place
/// restore, its undo, a branch made live), with any switch a dead process left finished or
/// undone first: what every switch starts with.
///
/// Errors: those of the lock (`Busy`) and of [`recover`].
pub async fn take_for_switch(
    core: &Core,
    workspace: &str,
    operation: crate::operation::Operation,
    actor: &Actor,
    wait: super::job::WaitFor,
) -> Result<crate::catalog::lock::WorkspaceLock> {
    let lock = super::job::take_workspace(core, workspace, operation.lock_label(), actor, wait).await?;
    recover(core, workspace, actor).await?;
    Ok(lock)
}

/// Finishes or undoes the switch of `workspace` a dead process left (see the module docs);
/// `None` when none is recorded. Audited as `switch.recover`. The caller holds the
/// workspace's lock.
///
/// Errors: `Refused` when the databases are in no state a switch leaves (both or neither
/// name there: a person looks; the intent stays); those of the catalog, the server and the
/// media.
pub async fn recover(core: &Core, workspace: &str, actor: &Actor) -> Result<Option<Recovered>> {
    let Some(intent) = core.catalog().await?.switch_intent(workspace).await? else { return Ok(None) };
    let done = recover_intent(core, &intent).await;
    let details = serde_json::json!({
        "kind": intent.kind.as_str(), "live": intent.live, "incoming": intent.incoming, "aside": intent.aside,
        "started_at": intent.started_at, "started_by": intent.actor,
        "finished": done.as_ref().ok().map(|r| r.finished),
    });
    super::audit::record(core, actor, crate::operation::Operation::SwitchRecover, workspace, &done, details).await;
    match &done {
        Ok(r) => tracing::warn!(
            workspace,
            kind = r.kind,
            finished = r.finished,
            "a switch a dead process left was recovered"
        ),
        Err(e) => {
            tracing::error!(workspace, error = %e.report(), "a switch a dead process left could not be recovered");
        }
    }
    done.map(Some)
}

async fn recover_intent(core: &Core, intent: &SwitchIntent) -> Result<Recovered> {
    let ws = &intent.workspace;
    let server = core.workspace(ws)?.conn()?.clone();
    let media = match &intent.media_tag {
        Some(tag) => {
            MediaSwap::beside(core.workspace(ws)?.config.media.as_deref(), &core.config.config.repository, tag)?
        }
        None => None,
    };
    let incoming = database::database_oid(&server, &intent.incoming).await?;
    let aside = database::database_oid(&server, &intent.aside).await?;
    let finished = match (incoming, aside) {
        // Switched: the media follow, and what was moved aside is recorded.
        (None, Some(aside_oid)) => {
            if let Some(m) = &media {
                match intent.kind {
                    SwitchKind::Undo => m.finish_switch_back().await?,
                    SwitchKind::InPlace | SwitchKind::SetLive => m.finish_switch().await?,
                }
            }
            let live_again = (intent.kind == SwitchKind::Undo).then_some(intent.incoming.as_str());
            note_replaced(core, ws, Some((&intent.aside, aside_oid)), live_again).await;
            true
        }
        // Not switched: the media were not touched (they follow the database); what an
        // in-place restore made beside the live ones goes.
        (Some(_), None) => {
            if intent.kind == SwitchKind::InPlace {
                if let Some(m) = &media {
                    m.discard_incoming().await;
                }
                database::drop_database(&server.with_database(&intent.incoming)).await?;
            }
            false
        }
        (Some(_), Some(_)) | (None, None) => {
            return Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "the switch of workspace {ws} recorded at {} finds databases {:?} and {:?} both {}: it cannot \
                     tell whether it was made. Look at the server, then remove the record (DELETE FROM \
                     switch_intents WHERE workspace = '{ws}' in the catalog)",
                    intent.started_at.to_rfc3339(),
                    intent.incoming,
                    intent.aside,
                    if incoming.is_some() { "there" } else { "missing" }
                ),
            ));
        }
    };
    core.catalog().await?.forget_switch(ws).await?;
    Ok(Recovered { workspace: ws.clone(), kind: intent.kind.as_str(), finished, started_at: intent.started_at })
}
