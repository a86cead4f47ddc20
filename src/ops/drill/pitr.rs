//! The PITR drill: recover a base backup and WAL into a throwaway cluster, check that
//! recovery reached the target, run the assertions.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The PITR drill's work: recover into a throwaway cluster, check, run the assertions.
pub(super) async fn pitr(ctx: &Context<'_>, target: &Target, done: &mut Progressed) -> Result<()> {
    let pgdata = ctx.scratch.join("pgdata");
    let opts = PitrRestoreOptions {
        workspace: ctx.opts.workspace.clone(),
        pgdata,
        target: target.clone(),
        start: true,
        port: None,
        tidemark_command: ctx.opts.tidemark_command.clone(),
        prefetch: DEFAULT_PREFETCH,
        // A drill proves what the repository holds.
        repository_only: true,
        repository: ctx.core.copy_name().map(str::to_string),
    };
    done.source = "base backup".into(); // until the restore says which
    done.target = target.describe();
    let clock = Instant::now();
    let recovered = pitr_restore(ctx.core, &opts, ctx.actor).await;
    done.timings.restore_ms = ms(clock);
    let report = match recovered {
        Ok(report) => report,
        Err(e) => {
            let replaying = e.context_lines().iter().any(|c| c.starts_with(crate::ops::pitr::RECOVERY_CONTEXT));
            let (failed, skipped) = if e.kind() == ErrorKind::Integrity && !replaying {
                ("base-backup", "recovery")
            } else {
                ("recovery", "base-backup")
            };
            done.checks.push(Check::new(failed, Err(e.report()), done.timings.restore_ms));
            done.checks.push(Check::skipped(skipped, "the point-in-time restore failed"));
            return Ok(());
        }
    };
    done.source.clone_from(&report.base_backup);
    done.target.clone_from(&report.target);
    (done.stored_bytes, done.plain_bytes) = (report.stored_bytes, report.plain_bytes);
    let port = report.port.unwrap_or_default();
    done.restored_into = format!("throwaway cluster on 127.0.0.1:{port}");
    done.checks.push(Check::new(
        "base-backup",
        Ok(format!("base backup {}: pg_verifybackup found every file as its manifest says", report.base_backup)),
        0,
    ));
    let reached = report.reached.clone();
    let outcome = match (&reached, target) {
        (None, _) => Err("the server did not report where recovery stopped".to_string()),
        (Some(r), Target::Time(t)) if r.last_commit.is_some_and(|c| c > *t) => Err(format!(
            "recovery replayed a transaction committed at {} , after the target {}",
            r.last_commit.map(|c| c.to_rfc3339()).unwrap_or_default(),
            t.to_rfc3339()
        )),
        (Some(r), _) => Ok(format!(
            "reached {} (last commit {}) in {} ms{}",
            r.lsn,
            r.last_commit.map(|c| c.to_rfc3339()).unwrap_or_else(|| "none replayed".into()),
            report.restore_ms,
            report.note.as_ref().map(|n| format!("; {n}")).unwrap_or_default()
        )),
    };
    done.checks.push(Check::new("recovery", outcome, report.restore_ms));

    let clock = Instant::now();
    let spec = ctx.core.workspace(&ctx.opts.workspace)?.conn()?.with_host_port("127.0.0.1", port)?;
    done.database = spec.database().unwrap_or_default();
    match spec.connect().await {
        Ok(mut conn) => {
            done.checks.push(Check::new("connect", Ok(format!("connected to {}", spec.display())), ms(clock)));
            let timeout = ctx.core.config.config.drill.assertion_timeout;
            done.checks.extend(checks::run_assertions(&mut conn, ctx.assertions, &[], timeout).await);
            ConnSpec::close(conn).await;
        }
        Err(e) => done.checks.push(Check::new("connect", Err(e.report()), ms(clock))),
    }
    done.timings.checks_ms = ms(clock);
    Ok(())
}
