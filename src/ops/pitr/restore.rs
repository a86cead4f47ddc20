//! `pitr restore`: a data directory restored to a moment, from a base backup and the WAL
//! after it (recovery settings and the server's start live in `wal::recovery`).

#[allow(clippy::wildcard_imports)]
use super::*;

/// Builds a data directory restored to the target (the base backup checked with
/// `pg_verifybackup` before recovery is configured), and optionally starts it.
///
/// Errors: `Refused` for a target outside the window (before anything is written) or a
/// non-empty `pgdata`; `Integrity`/`Key` for the base backup; `Integrity` when recovery
/// ended before the target or the end of the archived WAL (naming what was not replayed),
/// or a WAL file failed verification; `Internal` with the server log when recovery fails
/// otherwise. A failed restore stops the server it started and removes what it wrote (the
/// data directory, when this call created it).
pub async fn restore(core: &Core, opts: &PitrRestoreOptions, _actor: &Actor) -> Result<PitrRestoreReport> {
    let core = &core.on_repository(opts.repository.as_deref()).await?;
    let progress = core.progress();
    progress.set_prefix(format!("pitr restore {}", opts.workspace));
    let restored = restore_with(core, opts, progress).await;
    progress.finish();
    restored
}

// Longer than ~100 lines: a point-in-time restore's sequence (base backup, WAL source, recovery, promotion, verification) with its cleanup on every path.
async fn restore_with(core: &Core, opts: &PitrRestoreOptions, progress: &Progress) -> Result<PitrRestoreReport> {
    let clock = Instant::now();
    core.config.workspace(&opts.workspace)?;
    // How the server runs tidemark: as given, else the copy `wal setup` finds it can run.
    let mut tidemark_command = opts.tidemark_command.clone();
    if opts.start {
        // The server runs `tidemark wal fetch` as its own OS user: check, as that user,
        // that it can (before anything is written), and say what to run if not.
        let command = opts.tidemark_command.as_deref().filter(|c| Path::new(c).is_file());
        let setup = crate::ops::wal::setup(core, Some(&opts.workspace), true, command).await?;
        if !setup.ok {
            return Err(Error::config(format!(
                "the restored server could not fetch WAL: {}. Fix it (as root) with:\n  {}\n(`tidemark wal setup \
                 --restore` checks again)",
                setup.problems.join("; "),
                setup.fixes.join("\n  ")
            )));
        }
        // Another copy than this one, when this one is out of the server's reach.
        if std::env::current_exe().ok().is_none_or(|this| this.display().to_string() != setup.command) {
            tidemark_command.get_or_insert(setup.command);
        }
    }
    let identities = core.identities()?;
    let physical = Physical::load(core, &identities, &opts.workspace).await?;
    let window = physical.window();
    let target = match &opts.target {
        Target::Name(name, None) => {
            Target::Name(name.clone(), recorded_point(core, &opts.workspace, name).await?.map(|p| p.lsn))
        }
        other => other.clone(),
    };
    let chosen = match window::choose(&window, &physical.bases, &target) {
        Ok(chosen) => chosen.clone(),
        // Out of reach because a base backup that would serve is damaged: that is the
        // repository's integrity, not the target's.
        Err(e) if !physical.damaged.is_empty() => {
            let named: Vec<String> = physical.damaged.iter().map(|(id, why)| format!("{id} ({why})")).collect();
            return Err(Error::integrity(format!(
                "{}; base backups whose manifests cannot be read were left out: {}. `tidemark check` names them",
                e.message(),
                named.join("; ")
            )));
        }
        Err(e) => return Err(e),
    };
    let legs = physical.path(&chosen);

    // What the base backup is restored from (an incremental one: its whole chain, checked
    // before anything is written).
    let chain = crate::wal::chain::chain_of(&chosen, &physical.bases)?;
    // The links before the chosen one (none for a full one).
    let links = &chain[..chain.len() - 1];
    let pgdata = std::path::absolute(&opts.pgdata)?;
    if pgdata.exists() && fs_err::read_dir(&pgdata)?.next().is_some() {
        return Err(Error::new(
            ErrorKind::Refused,
            format!("{} is not empty; pitr restore writes a new data directory", pgdata.display()),
        ));
    }
    let created = !pgdata.exists();
    fs_err::create_dir_all(&pgdata)?;
    let ws_streams = core.workspace(&opts.workspace)?.config.wal_stream.is_on();
    let mut from_spool = Vec::new();
    let built: Result<()> = async {
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(&pgdata, std::fs::Permissions::from_mode(0o700))?;
        progress.set_message(format!("base backup {}: extracting", chosen.id));
        let bin_dir = core.pg_bin_dir();
        crate::wal::chain::extract_verified(&core.repo, &identities, &chain, &pgdata, progress, bin_dir.as_deref())
            .await?;
        let timeline = legs.last().expect("a path has the base backup's timeline").timeline;
        if ws_streams && !opts.repository_only {
            let spool = crate::ops::wal::stream_spool(core, &opts.workspace)?;
            let timelines: Vec<u32> = legs.iter().map(|l| l.timeline).collect();
            let from = crate::wal::Segment::of(chosen.timeline, chosen.start_lsn, chosen.wal_segment_size).number;
            from_spool = recovery::copy_streamed(&spool, &pgdata, &timelines, from, chosen.wal_segment_size)?;
        }
        let settings = recovery::Recovery {
            workspace: &opts.workspace,
            config: &core.config.path,
            tidemark_command: tidemark_command.as_deref(),
            prefetch: opts.prefetch,
            target: &target,
            timeline,
            segment_size: chosen.wal_segment_size,
            allow_unsigned: core.repo.signing().trust.allow_unsigned,
            streamed: !from_spool.is_empty(),
        };
        recovery::write_recovery_settings(&pgdata, &settings)?;
        crate::pgcluster::hand_over(&pgdata)
    }
    .await;
    if let Err(e) = built {
        recovery::discard(core.pg_bin_dir(), &pgdata, created).await;
        return Err(e.context(format!("restoring workspace {} into {}", opts.workspace, pgdata.display())));
    }

    let mut report = PitrRestoreReport {
        workspace: opts.workspace.clone(),
        pgdata: pgdata.display().to_string(),
        base_backup: chosen.id.clone(),
        chain: links.iter().map(|b| b.id.clone()).collect(),
        target: target.describe(),
        window: window.describe(),
        port: None,
        reached: None,
        from_spool,
        note: None,
        restore_ms: 0,
        stored_bytes: 0,
        plain_bytes: 0,
    };
    if opts.start {
        let recovered = recover(core, opts, &target, &pgdata, &window, &chosen, &legs, &mut report).await;
        if let Err(e) = recovered {
            // Nothing half-recovered is left to be taken for the restore: the server is
            // stopped (if it promoted) and the directory this call made is removed.
            recovery::discard(core.pg_bin_dir(), &pgdata, created).await;
            return Err(e.context(format!(
                "{RECOVERY_CONTEXT} of workspace {} from base backup {}",
                opts.workspace, chosen.id
            )));
        }
    }
    if opts.start && !report.from_spool.is_empty() {
        // Recovery is over: the copies are not the server's and would go into its backups.
        let _ = fs_err::remove_dir_all(pgdata.join(recovery::STREAMED_DIR));
    }
    let replayed_to = match &report.reached {
        Some(r) => r.lsn.parse()?,
        None => chosen.end_lsn,
    };
    (report.stored_bytes, report.plain_bytes) = recovery::bytes_read(&chosen, &legs, &physical.archived, replayed_to);
    for link in links {
        report.stored_bytes += link.tar.stored_size;
        report.plain_bytes += link.tar.plain_size;
    }
    report.restore_ms = clock.elapsed().as_millis() as u64;
    Ok(report)
}

/// The context line of errors that happen while the restored server replays WAL (after
/// the base backup was extracted and verified).
pub const RECOVERY_CONTEXT: &str = "replaying WAL";

/// Starts the restored server, waits until it has recovered to the target, and checks
/// that it got there: recovery that ends early (a segment that is not what its name says,
/// a segment Postgres could not read) promotes silently at the last record it could read.
#[allow(clippy::too_many_arguments)]
async fn recover(
    core: &Core,
    opts: &PitrRestoreOptions,
    target: &Target,
    pgdata: &Path,
    window: &Window,
    chosen: &base::BaseManifest,
    legs: &[Leg],
    report: &mut PitrRestoreReport,
) -> Result<()> {
    let ws = core.workspace(&opts.workspace)?;
    let port = match opts.port {
        Some(p) => p,
        None => crate::pgcluster::free_port()?,
    };
    recovery::append_setting(pgdata, "port", &port.to_string())?;
    let log = pgdata.join("tidemark-recovery.log");
    let spec = ws.conn()?.with_host_port("127.0.0.1", port)?;
    report.port = Some(port);
    let mut to_the_end = matches!(target, Target::Latest);
    let reached = match recovery::start_and_wait(
        core.pg_bin_dir(),
        recovery::restore_command_env(&core.config.config, core.copy_name()),
        pgdata,
        &spec,
        &log,
    )
    .await
    {
        Ok(reached) => reached,
        // A time or LSN past the last transaction in the archive: Postgres stops with
        // "recovery ended before configured recovery target was reached". Nothing
        // committed after the target is archived, so everything archived is exactly
        // the state at the target: recover to the end instead (checked below to get there).
        Err(e)
            if matches!(target, Target::Time(_) | Target::Lsn(_))
                && fs_err::read_to_string(&log).is_ok_and(|l| l.contains("before configured recovery target")) =>
        {
            tracing::info!(error = %e.report(), "no transaction after the target is archived; recovering to the end");
            let setting =
                if matches!(target, Target::Time(_)) { "recovery_target_time" } else { "recovery_target_lsn" };
            recovery::append_setting(pgdata, setting, "")?;
            report.note = Some(
                "no transaction committed after the target is in the repository: recovered everything \
                 archived, which is the state at the target"
                    .into(),
            );
            to_the_end = true;
            recovery::start_and_wait(
                core.pg_bin_dir(),
                recovery::restore_command_env(&core.config.config, core.copy_name()),
                pgdata,
                &spec,
                &log,
            )
            .await?
        }
        Err(e) => return Err(e),
    };
    let lsn: Lsn = reached.lsn.parse()?;
    report.reached = Some(reached);
    let range = window.base_backups.iter().find(|r| r.id == chosen.id).expect("the chosen base backup has a range");
    let size = chosen.wal_segment_size;
    let wanted = match target {
        // Where a streamed partial segment reaches, recovery must get to; at the end of a
        // whole segment, into that segment.
        _ if to_the_end => range.to.as_ref().map(|to| match to.lsn.0 % size {
            0 => Lsn(to.lsn.0.saturating_sub(size) + 1),
            _ => to.lsn,
        }),
        Target::Lsn(l) | Target::Name(_, Some(l)) => Some(*l),
        _ => None,
    };
    match wanted {
        Some(wanted) if lsn < wanted => Err(recovery::ended_early(lsn, wanted, range, legs, chosen.wal_segment_size)),
        _ => Ok(()),
    }
}
