//! `restore undo`: the newest in-place restore (or branch set-live) swapped back.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Swaps back the newest in-place restore of a workspace: the database it moved aside
/// becomes live again, and the restored one is moved aside as `<name>_undone_<id>`.
///
/// Errors: `Usage` without the confirmation; `NotFound` when no replaced database is left
/// (none was restored in place, or it was dropped); those of the switch.
pub async fn undo(core: &Core, opts: &UndoOptions, actor: &Actor) -> Result<UndoReport> {
    confirmed(&opts.workspace, &opts.confirm)?;
    let done = async {
        let live = core.workspace(&opts.workspace)?.restorer()?;
        let db = live.database().ok_or_else(|| Error::config("the workspace's URL names no database"))?;
        database::check_may_replace(&live, &db, &opts.workspace).await?;
        let _lock =
            super::super::switch::take_for_switch(core, &opts.workspace, Operation::RestoreUndo, actor, opts.wait)
                .await?;
        let prefix = format!("{db}{BEFORE}");
        // Exactly the database the newest switch moved aside, as the catalog recorded it
        // (name and oid): never a database that only has a name like it.
        let nothing = || {
            Error::not_found(format!(
                "no database of workspace {} is recorded as moved aside: nothing was restored in place (or made \
                 live from a branch), or the replaced database was dropped",
                opts.workspace
            ))
        };
        let (newest, recorded_oid) =
            core.catalog().await?.newest_replaced(&opts.workspace, &prefix).await?.ok_or_else(nothing)?;
        let found_oid = database::database_oid(&live, &newest).await?;
        match (found_oid, recorded_oid) {
            (None, _) => return Err(nothing().context(format!("database {newest:?} is gone"))),
            (Some(found), Some(recorded)) if found != recorded => {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "database {newest:?} is not the one the in-place restore moved aside (oid {found}, recorded \
                         {recorded}): it was dropped and made again; nothing was switched"
                    ),
                ));
            }
            (Some(_), None) => {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "database {newest:?} was moved aside by an older version, which did not record which \
                         database it was: swap it back by hand (ALTER DATABASE ... RENAME) after checking it"
                    ),
                ));
            }
            (Some(_), Some(_)) => {}
        }
        let id = newest.strip_prefix(&prefix).unwrap_or_default().to_string();
        let undone = format!("{db}{UNDONE}{id}");
        // The media go back with it, when the in-place restore swapped them.
        let mut media = media_beside(core, &opts.workspace, &id).ok().flatten();
        if let Some(m) = &media
            && !m.swapped().await.map_err(|e| e.context("finding the media the in-place restore moved aside"))?
        {
            media = None;
        }
        let plan = super::super::switch::Plan {
            workspace: &opts.workspace,
            kind: SwitchKind::Undo,
            live: &db,
            incoming: &newest,
            aside: &undone,
            media: media.as_ref().map(|m| (m, id.clone())),
        };
        let switched = super::super::switch::switch(core, &live, &plan, actor).await?;
        super::super::switch::note_replaced(core, &opts.workspace, Some((&undone, switched.aside_oid)), Some(&newest))
            .await;
        Ok(UndoReport {
            workspace: opts.workspace.clone(),
            database: db,
            restored_from: newest,
            replaced_moved_to: undone,
            switch_ms: switched.window.as_millis() as u64,
        })
    }
    .await;
    super::super::audit::record(core, actor, Operation::RestoreUndo, &opts.workspace, &done, serde_json::json!({}))
        .await;
    done
}

/// The places beside the workspace's media store for an in-place restore tagged `id`
/// (`None` without a media store).
///
/// Errors: those of [`MediaSwap::beside`].
pub(super) fn media_beside(core: &Core, workspace: &str, id: &str) -> Result<Option<MediaSwap>> {
    let ws = core.workspace(workspace)?;
    MediaSwap::beside(ws.config.media.as_deref(), &core.config.config.repository, id)
}
