//! The PITR drill: recover a base backup and WAL into a throwaway cluster, check that
//! recovery reached the target, run the assertions.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::drill::deep;
use std::collections::HashMap;

/// The PITR drill's work: recover into a throwaway cluster, check, run the assertions.
pub(super) async fn pitr(ctx: &Context<'_>, target: &Target, done: &mut Progressed) -> Result<()> {
    let pgdata = ctx.scratch.join("pgdata");
    let opts = PitrRestoreOptions {
        workspace: ctx.opts.workspace.clone(),
        pgdata: pgdata.clone(),
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
            done.checks.extend(deep::amcheck_skipped("the point-in-time restore failed"));
            done.checks.push(Check::skipped(deep::DATA_CHECKSUMS, "the point-in-time restore failed"));
            return Ok(());
        }
    };
    done.source.clone_from(&report.base_backup);
    done.target.clone_from(&report.target);
    (done.stored_bytes, done.plain_bytes) = (report.stored_bytes, report.plain_bytes);
    let port = report.port.unwrap_or_default();
    done.restored_into = format!("throwaway cluster on 127.0.0.1:{port}");
    let verified = match report.chain.is_empty() {
        true => format!("base backup {}: pg_verifybackup found every file as its manifest says", report.base_backup),
        false => format!(
            "incremental base backup {} on {}: every link matched its manifest's SHA-256 as it was applied",
            report.base_backup,
            report.chain.join(" <- ")
        ),
    };
    done.checks.push(Check::new("base-backup", Ok(verified), 0));
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
    // Whether its pages carry checksums, and which relation each file is (to name a page
    // pg_checksums finds damaged once the server is stopped).
    let (mut checksummed, mut files) = (false, HashMap::new());
    match spec.connect().await {
        Ok(mut conn) => {
            done.checks.push(Check::new("connect", Ok(format!("connected to {}", spec.display())), ms(clock)));
            let timeout = ctx.core.config.config.drill.assertion_timeout;
            done.checks.extend(checks::run_assertions(&mut conn, ctx.assertions, &[], timeout).await);
            checksummed = sqlx::query_scalar::<_, String>("SHOW data_checksums")
                .fetch_one(&mut conn)
                .await
                .is_ok_and(|on| on == "on");
            files = relation_files(&mut conn).await.unwrap_or_default();
            ConnSpec::close(conn).await;
            let bin_dir = ctx.core.pg_bin_dir();
            done.checks.extend(deep::amcheck(bin_dir.as_deref(), &spec, ctx.opts.heapallindexed).await);
        }
        Err(e) => {
            done.checks.push(Check::new("connect", Err(e.report()), ms(clock)));
            done.checks.extend(deep::amcheck_skipped("the restored server could not be reached"));
        }
    }
    done.checks.push(checksums_when_stopped(ctx, &pgdata, checksummed, &files).await);
    done.timings.checks_ms = ms(clock);
    Ok(())
}

/// The `data-checksums` check: the recovered server stopped (pg_checksums reads a stopped
/// data directory), then every page read.
async fn checksums_when_stopped(
    ctx: &Context<'_>,
    pgdata: &std::path::Path,
    checksummed: bool,
    files: &HashMap<String, String>,
) -> Check {
    let (bin_dir, data) = (ctx.core.pg_bin_dir(), pgdata.to_path_buf());
    let stopped = tokio::task::spawn_blocking(move || crate::pgcluster::stop_data_dir(bin_dir.as_deref(), &data))
        .await
        .map_err(|e| Error::internal(format!("server stop task: {e}")))
        .and_then(|r| r);
    match stopped {
        Ok(()) => deep::checksums(ctx.core.pg_bin_dir(), pgdata, checksummed, files).await,
        Err(e) => Check::new(deep::DATA_CHECKSUMS, Err(format!("the restored server did not stop: {}", e.report())), 0),
    }
}

/// Each relation's main file (relative to the data directory) and name, of the database
/// `conn` is in.
///
/// Errors: `Database`.
async fn relation_files(conn: &mut sqlx::PgConnection) -> Result<HashMap<String, String>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT pg_relation_filepath(c.oid)::text, c.oid::regclass::text FROM pg_class c \
         WHERE pg_relation_filepath(c.oid) IS NOT NULL",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}
