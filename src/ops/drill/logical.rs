//! The logical drill: a throwaway database (a cluster of its own, or a scratch server),
//! the restore into it, then every check of the restored copy.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The logical drill's work: throwaway database, restore, checks.
// Longer than ~100 lines: the logical drill's sequence (throwaway, restore with each table checked as it lands, fingerprints, privileges, the record), with its cleanup on every path.
pub(super) async fn logical(
    ctx: &Context<'_>,
    manifest: &Manifest,
    scratch_server: Option<&ConnSpec>,
    done: &mut Progressed,
) -> Result<()> {
    done.source.clone_from(&manifest.id);
    done.target = manifest.finished_at.to_rfc3339();
    done.stored_bytes = manifest.stored_bytes();
    done.database = database_name(&ctx.opts.workspace, &manifest.id);
    let clock = Instant::now();
    // The restore's connection (as the role the workspace's restores run as, where that is
    // not a superuser), and the checks' (a superuser's where there is one: a check reads
    // every table).
    let (mut restoring_role, mut restore_note) = (None, None);
    let (target, restore_target) = match scratch_server {
        Some(server) => {
            done.place = Some(Place::Server(ScratchDatabase::claim(server, &done.database).await?));
            done.restored_into = format!("scratch server {}", crate::pg::redact_url(&server.display()));
            let target = server.with_database(&done.database);
            (target.clone(), target)
        }
        None => {
            let opts = ClusterOptions {
                bin_dir: ctx.core.pg_bin_dir(),
                parent: Some(ctx.scratch.to_path_buf()),
                // Nothing replicates or archives a throwaway: tables loaded in the
                // transaction that truncates them write no WAL.
                settings: vec![("wal_level".into(), "minimal".into()), ("max_wal_senders".into(), "0".into())],
                // A page damaged on its way back fails its checksum when read.
                data_checksums: true,
            };
            let starting =
                done.place.insert(Place::Starting(tokio::task::spawn_blocking(move || Cluster::start(&opts))));
            let Place::Starting(handle) = starting else { unreachable!("just inserted") };
            let started = handle.await;
            done.place = None;
            let cluster = started.map_err(|e| Error::internal(format!("cluster start task: {e}")))??;
            done.restored_into = format!("throwaway cluster on 127.0.0.1:{}", cluster.port());
            let admin = ConnSpec::parse(&cluster.url("postgres"), None)?;
            let target = ConnSpec::parse(&cluster.url(&done.database), None)?;
            done.place = Some(Place::Cluster(cluster));
            checks::create_roles(&admin, &manifest.roles).await?;
            let (role, note) = restore_role(ctx, manifest).await;
            restore_note = note;
            let role = role.filter(|r| !r.superuser && r.name != "postgres");
            match role {
                Some(role) => {
                    let locale = crate::restore::database::Locale::of(&manifest.source);
                    let as_role = checks::restoring_role(
                        &admin,
                        &role,
                        manifest.database_owner.as_deref(),
                        &done.database,
                        &locale,
                    )
                    .await?;
                    done.restored_into.push_str(&format!(" as role {}", role.name));
                    restoring_role = Some(role.name.clone());
                    (target, as_role)
                }
                None => (target.clone(), target),
            }
        }
    };
    done.timings.target_ms = ms(clock);

    let media_dir = ctx.scratch.join("media");
    let (loaded_tx, loaded_rx) = tokio::sync::mpsc::unbounded_channel();
    let jobs = crate::ops::jobs_or_default(None);
    // As the restoring role, or as the throwaway's owner (a scratch server's configured
    // password).
    let restore_conn = match &restoring_role {
        Some(_) => restore_target.clone(),
        None => {
            let password = ctx.core.config.config.drill.scratch_password.as_ref().filter(|_| scratch_server.is_some());
            ConnSpec::parse(&restore_target.display(), password)?
        }
    };
    let restore_opts = RestoreOptions {
        snapshot: manifest.id.clone(),
        workspace: Some(ctx.opts.workspace.clone()),
        target: crate::restore::RestoreTarget::Resolved { conn: restore_conn, reserved: false },
        jobs: None,
        media_target: manifest.media.as_ref().map(|_| media_dir.display().to_string()),
        no_media: manifest.media.is_none(),
        table_loaded: Some(loaded_tx),
        ..Default::default()
    };
    let clock = Instant::now();
    // Each table is read back for its digest as soon as it is committed, while the
    // restore builds indexes and loads the rest.
    let restoring = async {
        let restored = restore(ctx.core, &restore_opts, ctx.actor).await;
        drop(restore_opts);
        (restored, Instant::now())
    };
    let ((restored, restored_at), checked) =
        tokio::join!(restoring, crate::drill::verify::verify_tables_as_loaded(manifest, &target, jobs, loaded_rx));
    let restore_ms = restored_at.duration_since(clock).as_millis() as u64;
    done.timings.restore_ms = restore_ms;
    let report = match restored {
        Ok(report) => report,
        Err(e) => {
            let (failed, skipped) = if matches!(e.kind(), ErrorKind::Integrity | ErrorKind::Key) {
                ("object-hashes", "restore")
            } else {
                ("restore", "object-hashes")
            };
            done.checks.push(Check::new(failed, Err(e.report()), restore_ms));
            done.checks.push(Check::skipped(skipped, "the restore failed"));
            for name in ["privileges", "tables", "schema-fingerprint", "sequences", "function-stacks", "media-hashes"] {
                done.checks.push(Check::skipped(name, "the restore failed"));
            }
            done.checks.extend(crate::drill::deep::amcheck_skipped("the restore failed"));
            return Ok(());
        }
    };
    let t = &report.timings;
    (done.timings.preflight_ms, done.timings.schema_ms, done.timings.data_ms) = (t.check_ms, t.pre_data_ms, t.data_ms);
    (done.timings.indexes_ms, done.timings.finish_ms, done.timings.media_ms) =
        (t.post_data_ms, t.finish_ms, t.media_ms);
    done.plain_bytes = report.plain_bytes;
    let objects = manifest.objects().count();
    done.checks.push(Check::new(
        "object-hashes",
        Ok(format!(
            "{objects} objects ({} stored bytes) and {} media files authenticated (age) and matched their SHA-256 \
             while restoring",
            report.stored_bytes, report.media_files
        )),
        0,
    ));
    done.checks.push(Check::new(
        "restore",
        Ok(format!("{} tables, {} rows in {} ms", report.tables, report.rows, restore_ms)),
        restore_ms,
    ));
    done.checks.push(checks::privileges_check(
        restoring_role.as_deref(),
        restore_note.as_deref(),
        &report.skipped_privileges,
    ));

    // The checks' time counts from the end of the restore: the tables still being read
    // back then are part of it.
    let checks_clock = restored_at;
    let progress = ctx.core.progress();
    progress.set_prefix(format!("drill {}", ctx.opts.workspace));
    progress.set_message(format!("checking {} tables against the snapshot", manifest.tables.len()));
    done.checks.extend(checks::check_contents(manifest, &target, checked).await);
    progress.set_message("checking media");
    done.checks.push(checks::check_media(manifest, &media_dir).await);
    progress.set_message(format!("running {} restore-test assertions", ctx.assertions.len()));
    match target.connect().await {
        Ok(mut conn) => {
            let tables: Vec<(String, String, i64)> =
                manifest.tables.iter().map(|t| (t.schema.clone(), t.name.clone(), t.rows as i64)).collect();
            let timeout = ctx.core.config.config.drill.assertion_timeout;
            done.checks.extend(checks::run_assertions(&mut conn, ctx.assertions, &tables, timeout).await);
            ConnSpec::close(conn).await;
        }
        Err(e) => done.checks.push(Check::new("restore-tests", Err(e.report()), 0)),
    }
    progress.set_message("pg_amcheck: tables and indexes");
    let bin_dir = ctx.core.pg_bin_dir();
    done.checks.extend(crate::drill::deep::amcheck(bin_dir.as_deref(), &target, ctx.opts.heapallindexed).await);
    progress.finish();
    done.timings.checks_ms = ms(checks_clock);
    Ok(())
}

/// The role the workspace's own restores run as, as the drill recreates it:
/// `restore-database-url`'s (its privileges read from the server) where one is set, else
/// the role the snapshot was taken as (recorded in it). `None` (a superuser's restore) for
/// snapshots of earlier versions, or when the restore role's privileges cannot be read
/// (the note says why).
async fn restore_role(
    ctx: &Context<'_>,
    manifest: &Manifest,
) -> (Option<crate::repo::manifest::RoleInfo>, Option<String>) {
    let Ok(workspace) = ctx.core.workspace(&ctx.opts.workspace) else { return (manifest.taken_as.clone(), None) };
    if workspace.config.restore_database_url.is_none() {
        return (manifest.taken_as.clone(), None);
    }
    let read = async {
        let mut conn = workspace.restorer()?.connect().await?;
        let role = crate::source::fingerprint::connected_role(&mut conn, &manifest.roles).await;
        ConnSpec::close(conn).await;
        role
    };
    match read.await {
        Ok(role) => (Some(role), None),
        Err(e) => (None, Some(format!("the restore role's privileges could not be read ({})", e.message()))),
    }
}
