//! A restore of a moment: the workspace recovered in a throwaway cluster, its database
//! copied out and compared.

#[allow(clippy::wildcard_imports)]
use super::*;

/// What [`copy_of_moment`] did.
pub(in crate::ops) struct MomentCopy {
    /// Tables and sequences compared with the recovered database.
    pub compared: usize,
    /// Rows copied.
    pub rows: u64,
    pub state: TargetState,
    pub recovery: PitrRestoreReport,
}

/// The workspace recovered to `time` in a throwaway cluster, its database copied into
/// `target` (new or empty), every table (rows, content digest) and sequence of the copy
/// compared with the recovered database, and the throwaway removed. A copy that fails or
/// differs is dropped again (when it was created here).
///
/// Errors: those of `pitr restore` (`Refused` for a moment outside the window, before
/// anything is written); `Refused` for a target that is not empty; `Integrity` when the
/// copy differs; `Database` from pg_dump or psql.
pub(in crate::ops) async fn copy_of_moment(
    core: &Core,
    workspace: &str,
    time: DateTime<Utc>,
    tidemark_command: Option<String>,
    target: &ConnSpec,
    actor: &Actor,
) -> Result<MomentCopy> {
    let moment = crate::wal::window::Target::Time(time);
    let past = super::super::pitr::past::recover(core, workspace, &moment, tidemark_command, actor).await?;
    let copied = async {
        let state = database::copy_database(core.pg_bin_dir().as_deref(), &past.spec, target).await?;
        let compared = crate::drill::verify::compare_databases(&past.spec, target).await;
        match compared {
            Ok(c) if c.differences.is_empty() => Ok((c.compared, c.rows, state)),
            other => {
                if state == TargetState::Created {
                    let _ = database::drop_database(target).await;
                }
                Err(match other {
                    Ok(c) => Error::integrity(format!(
                        "the copy differs from the recovered database: {}; it was dropped",
                        c.differences.join("; ")
                    )),
                    Err(e) => e.context("comparing the copy with the recovered database".to_string()),
                })
            }
        }
    }
    .await;
    let recovery = past.report.clone();
    if let Err(e) = past.remove(core).await {
        tracing::warn!(error = %e.report(), "the throwaway cluster of a point-in-time restore could not be removed");
    }
    copied.map(|(compared, rows, state)| MomentCopy { compared, rows, state, recovery })
}

/// `restore --time T --target URL`: the workspace's database as it was at `time`.
pub(super) async fn restore_moment(
    core: &Core,
    opts: &RestoreOptions,
    actor: &Actor,
    workspace: &str,
    time: DateTime<Utc>,
    clock: Instant,
) -> Result<RestoreReport> {
    let target = target_of(core, opts, workspace, actor).await?;
    let own = core.workspace(workspace)?.conn().is_ok_and(|spec| spec.same_database(&target));
    let _lock = match own {
        true => Some(
            super::super::job::take_workspace(core, workspace, operation_of(opts).lock_label(), actor, opts.wait)
                .await?,
        ),
        false => None,
    };
    let copy = copy_of_moment(core, workspace, time, opts.tidemark_command.clone(), &target, actor);
    let copied = tokio::select! {
        r = copy => r,
        () = core.stop().cancelled() => Err(Error::new(ErrorKind::Interrupted, "the restore was interrupted")),
    };
    let copied = copied
        .map_err(|e| e.context(format!("restoring workspace {workspace} as of {time} into {}", target.display())))?;
    Ok(RestoreReport {
        snapshot: String::new(),
        workspace: workspace.to_string(),
        target: target.display(),
        created_database: copied.state == TargetState::Created,
        tables: copied.compared,
        rows: copied.rows,
        plain_bytes: copied.recovery.plain_bytes,
        stored_bytes: copied.recovery.stored_bytes,
        media_files: 0,
        timings: RestoreTimings { total_ms: clock.elapsed().as_millis() as u64, ..Default::default() },
        table_restore: None,
        time: Some(time),
        point_in_time: Some(copied.recovery),
        skipped_privileges: Vec::new(),
    })
}
