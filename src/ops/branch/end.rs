//! Ending a branch: made live (`set-live`) or dropped (`delete`), each after taking it
//! from the catalog so no second caller ends it too.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Takes branch `name` of `workspace` for work that ends it (set-live, delete): the
/// branch's lock, then its row moves from `ready` to `deleting`; with its connection and
/// the lock, held until the work ends. A row a process that died left `deleting` is taken
/// as it is (the work is done again: the database dropped if it is still there, a switch
/// finished or undone first); one left `creating` is cleared away.
///
/// Errors: `NotFound` for an unknown branch (or one left half made, now cleared); `Busy`
/// for one another caller is making or ending; `Refused` for one declared in tidemark.toml
/// (the operator's file: tidemark does not change it).
pub(super) async fn take(
    core: &Core,
    workspace: &str,
    name: &str,
    operation: Operation,
    actor: &Actor,
) -> Result<(BranchRow, ConnSpec, crate::catalog::lock::WorkspaceLock)> {
    let entry = entry_name(workspace, name)?;
    if core.config.config.workspaces.get(&entry).is_some_and(|w| w.branch_of.as_deref() == Some(workspace)) {
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "branch {name} is declared in the config ([workspaces.{entry}], written by an earlier version); \
                 tidemark does not change that file: drop its database and remove the entry by hand"
            ),
        ));
    }
    let lock = super::lock(core, workspace, name, operation, actor).await?;
    let catalog = core.catalog().await?;
    let missing = || Error::not_found(format!("workspace {workspace} has no branch {name} (`branch list` shows them)"));
    let row = catalog.branch(workspace, name).await?.ok_or_else(missing)?;
    match row.state {
        BranchState::Ready => {
            if !catalog.move_branch(workspace, name, BranchState::Ready, BranchState::Deleting).await? {
                return Err(Error::new(ErrorKind::Busy, format!("branch {name} is being ended by another caller")));
            }
        }
        BranchState::Deleting => {}
        BranchState::Creating => {
            super::clear_unfinished(core, &row).await?;
            return Err(Error::not_found(format!(
                "branch {name} of {workspace} was never finished (its maker stopped); what it left was removed"
            )));
        }
    }
    let ws = core.workspace(workspace)?;
    let spec = ConnSpec::parse(&as_workspace(workspace, &ws.config, &row)?.database_url, ws.config.password.as_ref())?;
    Ok((row, spec, lock))
}

/// Gives a taken branch back (what ended it failed), or forgets it (it ended).
pub(super) async fn give_back(core: &Core, row: &BranchRow, ended: bool) -> Result<()> {
    let catalog = core.catalog().await?;
    if !ended {
        catalog.move_branch(&row.workspace, &row.name, BranchState::Deleting, BranchState::Ready).await?;
        return Ok(());
    }
    catalog.forget_branch(&row.workspace, &row.name).await?;
    core.forget_branch(&row.workspace, &row.name);
    if let Err(e) = core.repo.delete(&crate::repo::layout::branch(&row.workspace, &row.name)).await {
        tracing::warn!(error = %e.report(), branch = %row.name, "the branch's record stays in the repository");
    }
    Ok(())
}

/// Makes branch `name` the workspace's live database: a pre-restore snapshot of the live
/// one, then the guarded switch (the live database moves aside as
/// `<database>_before_branch_<name>`, which `restore undo` swaps back); the branch is no
/// longer one, since its database is the workspace's now.
///
/// Errors: `Usage` without the confirmation; `NotFound` for an unknown branch; `Usage` for
/// a branch on another server; those of the snapshot and the switch (which puts back what
/// it did; the branch stays).
pub async fn set_live(core: &Core, opts: &SetLiveOptions, actor: &Actor) -> Result<SetLiveReport> {
    super::super::inplace::confirmed(&opts.workspace, &opts.confirm)?;
    let done = async {
        let (row, branch, _lock) = take(core, &opts.workspace, &opts.name, Operation::BranchSetLive, actor).await?;
        let switched = switch_to(core, opts, &branch, actor).await;
        give_back(core, &row, switched.is_ok()).await?;
        switched
    }
    .await;
    let details = serde_json::json!({ "branch": opts.name, "drop_previous": opts.drop_previous });
    super::super::audit::record(core, actor, Operation::BranchSetLive, &opts.workspace, &done, details).await;
    done
}

pub(super) async fn switch_to(
    core: &Core,
    opts: &SetLiveOptions,
    branch: &ConnSpec,
    actor: &Actor,
) -> Result<SetLiveReport> {
    let workspace = core.workspace(&opts.workspace)?;
    let live = workspace.restorer()?;
    let db = live.database().ok_or_else(|| Error::config("the workspace's URL names no database"))?;
    let incoming = branch.database().unwrap_or_default();
    let aside = super::super::inplace::beside(&db, super::super::inplace::BEFORE, &format!("branch_{}", opts.name))?;
    database::check_may_replace(&live, &db, &opts.workspace).await?;
    let note = format!("before making branch {} live", opts.name);
    let safety = super::super::inplace::safety_snapshot(core, &opts.workspace, &note, (None, opts.wait), actor).await?;
    let _lock =
        super::super::switch::take_for_switch(core, &opts.workspace, Operation::BranchSetLive, actor, opts.wait)
            .await?;
    let plan = super::super::switch::Plan {
        workspace: &opts.workspace,
        kind: crate::catalog::switches::SwitchKind::SetLive,
        live: &db,
        incoming: &incoming,
        aside: &aside,
        media: None,
    };
    let switched = super::super::switch::switch(core, &live, &plan, actor)
        .await
        .map_err(|e| e.context(format!("switching to branch {} (pre-restore snapshot {})", opts.name, safety)))?;
    let previous = super::super::inplace::keep_or_drop(
        core,
        &opts.workspace,
        &live,
        (aside, switched.aside_oid),
        opts.drop_previous,
    )
    .await?;
    Ok(SetLiveReport {
        workspace: opts.workspace.clone(),
        branch: opts.name.clone(),
        safety_snapshot: safety,
        database: db,
        previous_database: previous,
        switch_ms: switched.window.as_millis() as u64,
    })
}

/// Drops a branch's database and forgets the branch.
///
/// Errors: `Usage` when `confirm` does not repeat the branch's name; `NotFound` for an
/// unknown branch; `Busy` for one another caller is making or ending; `Database` when the
/// database cannot be dropped (the branch then stays).
pub async fn delete(core: &Core, opts: &BranchDeleteOptions, actor: &Actor) -> Result<BranchInfo> {
    let done = async {
        if opts.confirm != opts.name {
            return Err(Error::usage(format!(
                "this drops the database of branch {}: confirm with the branch's name ({}) to go ahead",
                opts.name, opts.name
            )));
        }
        let (row, branch, _lock) = take(core, &opts.workspace, &opts.name, Operation::BranchDelete, actor).await?;
        // Dropped as the workspace's restore role, where one is set.
        let dropper = match core.workspace(&opts.workspace)?.restorer() {
            Ok(restorer) if restorer.same_server(&branch) => restorer.with_database(&row.database),
            _ => branch.clone(),
        };
        let size = database_size(&branch, &row.database).await;
        let dropped = database::drop_database(&dropper).await;
        give_back(core, &row, dropped.is_ok()).await?;
        dropped.map(|()| info_of(&row, BranchState::Deleting, size))
    }
    .await;
    let details = serde_json::json!({ "branch": opts.name });
    super::super::audit::record(core, actor, Operation::BranchDelete, &opts.workspace, &done, details).await;
    done
}
