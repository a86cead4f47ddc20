//! A restore of some tables: into a new database, or into the live one beside the live
//! tables under new names.

#[allow(clippy::wildcard_imports)]
use super::*;

/// `restore --table`: the picked tables into a new or empty database (`target`), or into
/// the live one under new names (`into-live`, which takes the workspace).
pub(super) async fn restore_tables(
    core: &Core,
    opts: &RestoreOptions,
    actor: &Actor,
    workspace: &str,
    from: &RestoreFrom,
    clock: Instant,
) -> Result<RestoreReport> {
    let picks = table_picks(opts)?;
    let (target, into) = match opts.target.is_live() {
        true => (core.workspace(workspace)?.conn()?.clone(), TablesInto::Existing),
        false => (target_of(core, opts, workspace, actor).await?, TablesInto::NewDatabase),
    };
    let _lock = match opts.target.is_live() {
        true => Some(
            super::super::job::take_workspace(core, workspace, operation_of(opts).lock_label(), actor, opts.wait)
                .await?,
        ),
        false => None,
    };
    let progress = core.progress();
    let bin_dir = core.pg_bin_dir();
    let load = async |from: TablesFrom<'_>| {
        let work = tables::restore_tables(from, &target, &picks, into, bin_dir.as_deref(), progress);
        let outcome = tokio::select! {
            r = work => r,
            () = core.stop().cancelled() => Err(Error::new(ErrorKind::Interrupted, "the restore was interrupted")),
        };
        progress.finish();
        outcome
    };
    let (snapshot, time, outcome, plain_bytes, point_in_time) = match from {
        RestoreFrom::Snapshot(id) => {
            let manifest = core.repo.read_manifest(workspace, id, &core.identities()?).await?;
            progress.set_prefix(format!("restore {} (tables)", manifest.id));
            let source = SnapshotSource::new(&core.repo, &core.identities()?, &manifest);
            let outcome = load(TablesFrom::Snapshot(&source)).await;
            let plain: u64 = manifest
                .tables
                .iter()
                .filter(|t| picks.iter().any(|p| (&p.from.0, &p.from.1) == (&t.schema, &t.name)))
                .flat_map(|t| &t.parts)
                .map(|p| p.plain_size)
                .sum();
            (manifest.id.clone(), None, outcome, plain, None)
        }
        RestoreFrom::Time(time) => {
            let moment = crate::wal::window::Target::Time(*time);
            let past =
                super::super::pitr::past::recover(core, workspace, &moment, opts.tidemark_command.clone(), actor)
                    .await?;
            progress.set_prefix(format!("restore {workspace} as of {time} (tables)"));
            let outcome = load(TablesFrom::Database(&past.spec)).await;
            let recovery = past.report.clone();
            if let Err(e) = past.remove(core).await {
                tracing::warn!(error = %e.report(), "the throwaway cluster of a point-in-time restore could not be removed");
            }
            (String::new(), Some(*time), outcome, recovery.plain_bytes, Some(recovery))
        }
    };
    let what = match time {
        Some(t) => format!("workspace {workspace} as of {t}"),
        None => format!("snapshot {snapshot}"),
    };
    let outcome = outcome.map_err(|e| e.context(format!("restoring tables of {what} into {}", target.display())))?;
    Ok(RestoreReport {
        snapshot,
        workspace: workspace.to_string(),
        target: target.display(),
        created_database: outcome.created_database,
        tables: outcome.tables.len(),
        rows: outcome.tables.iter().map(|t| t.rows).sum(),
        plain_bytes,
        stored_bytes: point_in_time.as_ref().map_or(outcome.bytes_read, |p| p.stored_bytes),
        media_files: 0,
        timings: RestoreTimings { total_ms: clock.elapsed().as_millis() as u64, ..Default::default() },
        table_restore: Some(outcome),
        time,
        point_in_time,
        skipped_privileges: Vec::new(),
    })
}

/// The tables asked for, paired with their new names (what every front end's tables and
/// new names become, checked before any work).
///
/// Errors: `Usage` for new names or the live database without tables, a new name missing
/// for the live database, counts that differ, or a name that is not a table's.
pub(super) fn table_picks(opts: &RestoreOptions) -> Result<Vec<TablePick>> {
    let (tables, rename_to) = (&opts.tables, &opts.rename_to);
    if tables.is_empty() {
        return Err(Error::usage(
            "new table names and a restore into the live database go with the tables to restore: name them",
        ));
    }
    if opts.target.is_live() && rename_to.len() != tables.len() {
        return Err(Error::usage(
            "a restore into the live database needs a new name for each table, in the order of the tables: \
             a restore never goes over the live table",
        ));
    }
    if !rename_to.is_empty() && rename_to.len() != tables.len() {
        return Err(Error::usage(format!(
            "{} tables and {} new names: give one new name per table, in the same order, or none",
            tables.len(),
            rename_to.len()
        )));
    }
    tables
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let from = crate::pg::parse_table_name(t)?;
            let to = match rename_to.get(i) {
                Some(n) => crate::pg::parse_table_name(n)?,
                None => from.clone(),
            };
            Ok(TablePick { from, to })
        })
        .collect()
}
