//! `drill`: prove a backup restores. A logical drill restores a snapshot into a throwaway
//! database (a cluster tidemark starts itself, or a configured scratch server); a PITR
//! drill recovers a base backup and WAL into a throwaway cluster. Then it checks what came
//! back (object hashes, every table's rows and content digest, the schema fingerprint,
//! sequences, function stacks, media, and the restore-tests assertions), times every
//! phase, records the report in the catalog, and removes the throwaway: also on failure,
//! timeout or Ctrl-C. Nothing of a drill touches the source database.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;

use super::Core;
use super::pitr::{DEFAULT_PREFETCH, PitrRestoreOptions, restore as pitr_restore};
use super::restore::{RestoreOptions, restore};
use crate::catalog::{Catalog, Trigger};
use crate::config::WorkspaceConfig;
use crate::drill::assertions::{self, Assertion};
use crate::drill::throwaway::{ScratchDatabase, ScratchDir, database_name, remove_leftover_databases};
use crate::drill::{Check, CheckStatus, DrillKind, DrillReport, DrillTimings};
use crate::error::{Error, ErrorKind, Result};
use crate::pg::{ConnSpec, quote_ident};
use crate::pgcluster::{Cluster, ClusterOptions};
use crate::progress::Progress;
use crate::repo::layout;
use crate::repo::manifest::Manifest;
use crate::wal::window::Target;

/// What to drill.
#[derive(Debug, Clone)]
pub enum DrillSource {
    /// A snapshot by id; `None`: the workspace's newest.
    Snapshot(Option<String>),
    /// A point-in-time recovery to this target.
    Pitr(Target),
}

#[derive(Debug, Clone)]
pub struct DrillOptions {
    pub workspace: String,
    pub source: DrillSource,
    /// What started it, as the catalog records it.
    pub trigger: Trigger,
    /// How the recovered server calls `tidemark wal fetch` (PITR; default: this binary).
    pub tidemark_command: Option<String>,
    /// Record the report in the catalog (the default; off for the demo).
    pub record: bool,
    /// Show the restore's and the checks' progress on a terminal (the CLI without `--json`).
    pub progress: bool,
}

impl DrillOptions {
    pub fn new(workspace: &str, source: DrillSource) -> DrillOptions {
        DrillOptions {
            workspace: workspace.to_string(),
            source,
            trigger: Trigger::Cli,
            tidemark_command: None,
            record: true,
            progress: false,
        }
    }
}

/// Where a drill restored; removed at the end.
enum Place {
    /// A throwaway cluster being started: even when the drill is cut short (timeout,
    /// Ctrl-C), the start runs to its end, and cleanup waits for it and stops the cluster.
    Starting(tokio::task::JoinHandle<Result<Cluster>>),
    Cluster(Cluster),
    Server(ScratchDatabase),
}

/// What the drill's work fills in; read back even when the work was cut short.
struct Progressed {
    checks: Vec<Check>,
    timings: DrillTimings,
    restored_into: String,
    database: String,
    source: String,
    target: String,
    stored_bytes: u64,
    plain_bytes: u64,
    place: Option<Place>,
}

/// Runs a drill to its end and returns its report (`passed` says whether every check
/// held). The throwaway is removed before this returns, whatever happened.
///
/// Errors: `Config` for bad restore-tests files or drill settings; `NotFound` for an
/// unknown snapshot; `Unavailable`/`Config` when the throwaway cannot be set up;
/// `Interrupted` when `cancel` fires. A restore or check that fails is a failed check in
/// the report, not an error.
pub async fn drill(core: &Core, opts: &DrillOptions, cancel: &CancellationToken) -> Result<DrillReport> {
    let started_at = Utc::now();
    let clock = Instant::now();
    let ws = core.config.workspace(&opts.workspace)?.clone();
    let settings = core.config.config.drill.clone();
    let user_assertions = load_assertions(core, &ws)?;
    let root = match &settings.scratch_dir {
        Some(dir) => core.config.resolve_path(dir),
        None => std::env::temp_dir(),
    };
    let bin_dir = core.pg_bin_dir();
    let scratch_server = match &settings.scratch_server {
        Some(url) if matches!(opts.source, DrillSource::Snapshot(_)) => Some(
            ConnSpec::parse(url, settings.scratch_password.as_ref()).map_err(|e| e.context("drill.scratch-server"))?,
        ),
        _ => None,
    };

    let mut leftovers = {
        let (root, bin_dir) = (root.clone(), bin_dir.clone());
        tokio::task::spawn_blocking(move || crate::drill::throwaway::remove_leftover_dirs(&root, bin_dir.as_deref()))
            .await
            .map_err(|e| Error::internal(format!("drill cleanup task: {e}")))?
    };
    if let Some(server) = &scratch_server {
        leftovers.extend(remove_leftover_databases(server).await?);
    }

    let (kind, manifest) = match &opts.source {
        DrillSource::Snapshot(id) => (DrillKind::Logical, Some(snapshot_to_drill(core, &opts.workspace, id).await?)),
        DrillSource::Pitr(_) => (DrillKind::Pitr, None),
    };
    let scratch = ScratchDir::create(&root, &opts.workspace)?;
    let mut done = Progressed {
        checks: Vec::new(),
        timings: DrillTimings::default(),
        restored_into: String::new(),
        database: String::new(),
        source: String::new(),
        target: String::new(),
        stored_bytes: 0,
        plain_bytes: 0,
        place: None,
    };
    let ctx = Context { core, opts, ws: &ws, scratch: scratch.path(), assertions: &user_assertions };
    let ended: Result<()> = {
        let work = async {
            match (&opts.source, &manifest) {
                (DrillSource::Snapshot(_), Some(manifest)) => {
                    logical(&ctx, manifest, scratch_server.as_ref(), &mut done).await
                }
                (DrillSource::Pitr(target), _) => pitr(&ctx, target, &mut done).await,
                (DrillSource::Snapshot(_), None) => unreachable!("a logical drill has its manifest"),
            }
        };
        let timed_out = tokio::select! {
            r = tokio::time::timeout(settings.timeout, work) => match r {
                Ok(r) => r.map(|()| false),
                Err(_) => Ok(true),
            },
            _ = cancel.cancelled() => Err(Error::new(
                ErrorKind::Interrupted,
                "the drill was interrupted; its throwaway was removed",
            )),
        };
        if let Ok(true) = timed_out {
            done.checks.push(Check::new(
                "timeout",
                Err(format!(
                    "the drill did not finish within {} (drill.timeout)",
                    humantime::format_duration(settings.timeout)
                )),
                settings.timeout.as_millis() as u64,
            ));
        }
        timed_out.map(|_| ())
    };

    let cleanup_clock = Instant::now();
    let cleanup_error = remove(done.place.take(), scratch, bin_dir).await.err().map(|e| e.report());
    if let Some(e) = &cleanup_error {
        tracing::error!(error = %e, "the drill's throwaway could not be removed");
    }
    done.timings.cleanup_ms = cleanup_clock.elapsed().as_millis() as u64;
    ended?;

    done.timings.total_ms = clock.elapsed().as_millis() as u64;
    let report = DrillReport {
        workspace: opts.workspace.clone(),
        kind,
        source: done.source,
        target: done.target,
        restored_into: done.restored_into,
        database: done.database,
        started_at,
        finished_at: Utc::now(),
        // A skipped check is one that does not apply (no media) or could not run because
        // another failed; only failures decide.
        passed: done.checks.iter().any(|c| c.status == CheckStatus::Pass)
            && done.checks.iter().all(|c| c.status != CheckStatus::Fail)
            && cleanup_error.is_none(),
        checks: done.checks,
        timings: done.timings,
        stored_bytes: done.stored_bytes,
        plain_bytes: done.plain_bytes,
        leftovers_removed: leftovers,
        cleanup_error,
    };
    if opts.record {
        record(core, &report, opts.trigger).await;
    }
    Ok(report)
}

/// A drill's report as the repository keeps it, encrypted (a failed assertion's details
/// may show data): `workspaces/<ws>/drills/<id>.json.age`.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredDrill {
    pub trigger: Trigger,
    pub report: DrillReport,
}

/// Records the report in the catalog (`drill history`) and in the repository (the truth,
/// from which `catalog rebuild` brings the history back). Failures are logged: the drill
/// itself happened either way.
async fn record(core: &Core, report: &DrillReport, trigger: Trigger) {
    let catalogued = async { Catalog::open(&core.config.catalog_path()).await?.record_drill(report, trigger).await };
    if let Err(e) = catalogued.await {
        tracing::warn!(error = %e.report(), "the drill's report could not be recorded in the catalog");
    }
    let stored = async {
        let key = layout::drill_report(&report.workspace, &layout::new_snapshot_id(report.started_at));
        core.repo.put_sealed(&key, &StoredDrill { trigger, report: report.clone() }, core.recipients()?).await
    };
    if let Err(e) = stored.await {
        tracing::warn!(error = %e.report(), "the drill's report could not be stored in the repository");
    }
}

/// Every drill report the repository holds for a workspace, oldest first. An unreadable
/// one is skipped with a warning.
///
/// Errors: `Unavailable` for the store, `Key` without an identity.
pub async fn stored_reports(core: &Core, workspace: &str) -> Result<Vec<StoredDrill>> {
    let identities = core.identities()?;
    let mut listed = core.repo.list(&layout::drill_reports(workspace)).await?;
    listed.sort_by(|a, b| a.key.cmp(&b.key));
    let mut out = Vec::with_capacity(listed.len());
    for object in listed {
        let what = format!("drill report {}", object.key);
        match core.repo.read_sealed::<StoredDrill>(&object.key, &identities, &what).await {
            Ok(Some(stored)) => out.push(stored),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(object = %object.key, error = %e.report(), "skipping an unreadable drill report")
            }
        }
    }
    Ok(out)
}

/// The drills the catalog recorded, newest first.
///
/// Errors: `Unavailable` when the catalog cannot be opened.
pub async fn history(core: &Core, workspace: Option<&str>, limit: u32) -> Result<Vec<crate::catalog::DrillRecord>> {
    Catalog::open(&core.config.catalog_path()).await?.drills(workspace, limit).await
}

struct Context<'a> {
    core: &'a Core,
    opts: &'a DrillOptions,
    ws: &'a WorkspaceConfig,
    scratch: &'a Path,
    assertions: &'a [Assertion],
}

/// The restore-tests assertions of the workspace: the shared folder's (or the built-in
/// generic ones), then the workspace's own folder's.
fn load_assertions(core: &Core, ws: &WorkspaceConfig) -> Result<Vec<Assertion>> {
    let mut out = Vec::new();
    for dir in core.config.restore_test_dirs(ws) {
        match dir {
            Some(dir) => out.extend(assertions::load_dirs(std::slice::from_ref(&dir))?),
            None => out.extend(assertions::parse("generic.sql (built in)", assertions::BUILT_IN)?),
        }
    }
    Ok(out)
}

/// The snapshot named, or the newest one whose manifest can be read ("latest"): a damaged
/// newer manifest is logged (`check` reports it as a problem) and the drill proves the
/// newest snapshot that can restore.
async fn snapshot_to_drill(core: &Core, workspace: &str, id: &Option<String>) -> Result<Manifest> {
    if let Some(id) = id.as_deref().filter(|id| *id != "latest") {
        return super::snapshot::show(core, id, Some(workspace)).await;
    }
    // Like `snapshot::resolve("latest")`, and a damaged newer manifest is logged.
    let read = core.repo.read_manifests(workspace, &core.identities()?).await?;
    let newest = read.items.into_iter().max_by(|a, b| a.id.cmp(&b.id)).ok_or_else(|| {
        let damaged = if read.damaged.is_empty() {
            String::new()
        } else {
            format!(" that can be read ({} damaged: `tidemark check --workspace {workspace}`)", read.damaged.len())
        };
        Error::not_found(format!(
            "workspace {workspace} has no snapshot{damaged} to drill; take one with `tidemark snapshot create`"
        ))
    })?;
    for d in read.damaged.iter().filter(|d| d.id > newest.id) {
        tracing::warn!(workspace, snapshot = %d.id, problem = %d.problem, "a newer snapshot's manifest cannot be read; drilling {}", newest.id);
    }
    Ok(newest)
}

/// Stops and removes the throwaway.
async fn remove(place: Option<Place>, scratch: ScratchDir, bin_dir: Option<PathBuf>) -> Result<()> {
    let place = match place {
        // A cluster still starting is waited for, then stopped like a running one.
        Some(Place::Starting(handle)) => handle.await.ok().and_then(Result::ok).map(Place::Cluster),
        other => other,
    };
    let dropped = match place {
        Some(Place::Server(db)) => db.remove().await,
        Some(Place::Cluster(cluster)) => tokio::task::spawn_blocking(move || drop(cluster))
            .await
            .map_err(|e| Error::internal(format!("cluster stop task: {e}"))),
        Some(Place::Starting(_)) | None => Ok(()),
    };
    let removed = tokio::task::spawn_blocking(move || scratch.remove(bin_dir.as_deref()))
        .await
        .map_err(|e| Error::internal(format!("drill cleanup task: {e}")))?;
    dropped.and(removed)
}

fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

/// The logical drill's work: throwaway database, restore, checks.
async fn logical(
    ctx: &Context<'_>,
    manifest: &Manifest,
    scratch_server: Option<&ConnSpec>,
    done: &mut Progressed,
) -> Result<()> {
    done.source = manifest.id.clone();
    done.target = manifest.finished_at.to_rfc3339();
    done.stored_bytes = manifest.stored_bytes();
    done.database = database_name(&ctx.opts.workspace, &manifest.id);
    let clock = Instant::now();
    let target = match scratch_server {
        Some(server) => {
            done.place = Some(Place::Server(ScratchDatabase::claim(server, &done.database).await?));
            done.restored_into = format!("scratch server {}", crate::pg::redact_url(&server.display()));
            server.with_database(&done.database)
        }
        None => {
            let opts = ClusterOptions {
                bin_dir: ctx.core.pg_bin_dir(),
                parent: Some(ctx.scratch.to_path_buf()),
                ..Default::default()
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
            create_roles(&admin, &manifest.roles).await?;
            target
        }
    };
    done.timings.target_ms = ms(clock);

    let media_dir = ctx.scratch.join("media");
    let restore_opts = RestoreOptions {
        snapshot: manifest.id.clone(),
        workspace: Some(ctx.opts.workspace.clone()),
        target: target.display(),
        jobs: None,
        media_target: manifest.media.as_ref().map(|_| media_dir.display().to_string()),
        no_media: manifest.media.is_none(),
        target_password: ctx.core.config.config.drill.scratch_password.clone().filter(|_| scratch_server.is_some()),
    };
    let clock = Instant::now();
    let restored = restore(ctx.core, &restore_opts, &Progress::new(ctx.opts.progress)).await;
    let restore_ms = ms(clock);
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
            for name in ["tables", "schema-fingerprint", "sequences", "function-stacks", "media-hashes"] {
                done.checks.push(Check::skipped(name, "the restore failed"));
            }
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

    let checks_clock = Instant::now();
    let progress = Progress::new(ctx.opts.progress);
    progress.set_prefix(format!("drill {}", ctx.opts.workspace));
    progress.set_message(format!("checking {} tables against the snapshot", manifest.tables.len()));
    check_contents(manifest, &target, done).await;
    progress.set_message("checking media");
    check_media(manifest, &media_dir, done).await;
    progress.set_message(format!("running {} restore-test assertions", ctx.assertions.len()));
    match target.connect().await {
        Ok(mut conn) => {
            let tables: Vec<(String, String, i64)> =
                manifest.tables.iter().map(|t| (t.schema.clone(), t.name.clone(), t.rows as i64)).collect();
            run_assertions(ctx, &mut conn, &tables, done).await;
            ConnSpec::close(conn).await;
        }
        Err(e) => done.checks.push(Check::new("restore-tests", Err(e.report()), 0)),
    }
    progress.finish();
    done.timings.checks_ms = ms(checks_clock);
    Ok(())
}

/// Creates the roles the snapshot's objects refer to, so owners and grants load.
async fn create_roles(admin: &ConnSpec, roles: &[String]) -> Result<()> {
    if roles.is_empty() {
        return Ok(());
    }
    let mut conn = admin.connect().await?;
    let existing: Vec<String> = sqlx::query_scalar("SELECT rolname::text FROM pg_roles").fetch_all(&mut conn).await?;
    for role in roles.iter().filter(|r| !existing.contains(r)) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE ROLE {} NOLOGIN", quote_ident(role))))
            .execute(&mut conn)
            .await
            .map_err(|e| Error::from(e).context(format!("creating role {role} in the throwaway cluster")))?;
    }
    ConnSpec::close(conn).await;
    Ok(())
}

/// Tables, sequences, schema fingerprint and function stacks against the manifest.
async fn check_contents(manifest: &Manifest, target: &ConnSpec, done: &mut Progressed) {
    let clock = Instant::now();
    match super::verify::verify_database(target, manifest).await {
        Ok(verified) => {
            for t in &verified.tables {
                let outcome = if t.ok {
                    Ok(format!("{} rows, content digest {}", t.actual_rows, t.actual_digest))
                } else {
                    Err(format!(
                        "expected {} rows with digest {}, found {} rows with digest {}",
                        t.expected_rows, t.expected_digest, t.actual_rows, t.actual_digest
                    ))
                };
                done.checks.push(Check::new(format!("table {}.{}", t.schema, t.name), outcome, 0));
            }
            let wrong: Vec<String> = verified
                .sequences
                .iter()
                .filter(|s| !s.ok)
                .map(|s| format!("{}.{} expected {:?}, found {:?}", s.schema, s.name, s.expected, s.actual))
                .collect();
            let outcome = if wrong.is_empty() {
                Ok(format!("{} sequences at their snapshot values", verified.sequences.len()))
            } else {
                Err(wrong.join("; "))
            };
            done.checks.push(Check::new("sequences", outcome, 0));
        }
        Err(e) => {
            done.checks.push(Check::new("tables", Err(e.report()), ms(clock)));
            done.checks.push(Check::skipped("sequences", "the tables could not be read"));
        }
    }
    let tables_ms = ms(clock);
    if let Some(first) = done.checks.iter_mut().find(|c| c.name.starts_with("table ")) {
        first.duration_ms = tables_ms; // one pass read them all
    }

    let clock = Instant::now();
    let fingerprint = async {
        let mut conn = target.connect().await?;
        let actual = crate::source::fingerprint::schema_fingerprint(&mut conn).await;
        let stacks = crate::stacks::log::list_if_installed(&mut conn).await;
        ConnSpec::close(conn).await;
        Ok::<_, Error>((actual?, stacks?))
    }
    .await;
    match fingerprint {
        Ok((actual, stacks)) => {
            let outcome = if manifest.schema_fingerprint.is_empty() {
                None
            } else {
                let differs =
                    crate::source::fingerprint::fingerprint_differences(&manifest.schema_fingerprint, &actual);
                Some(if differs.is_empty() {
                    Ok(format!("{} kinds of schema objects identical", actual.len()))
                } else {
                    Err(format!("these kinds of schema objects differ from the snapshot: {}", differs.join(", ")))
                })
            };
            match outcome {
                Some(outcome) => done.checks.push(Check::new("schema-fingerprint", outcome, ms(clock))),
                None => done.checks.push(Check::skipped(
                    "schema-fingerprint",
                    "the snapshot predates schema fingerprints (taken by an older tidemark)",
                )),
            }
            let outcome = if stacks == manifest.stacks {
                Ok(format!("{} stacks with their change counts, live states and versions", stacks.len()))
            } else {
                let describe = |s: &[crate::stacks::log::StackSummary]| {
                    s.iter()
                        .map(|s| format!("{} (changes {}, version {:?})", s.stack, s.changes, s.latest_version))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                Err(format!("snapshot: [{}]; restored: [{}]", describe(&manifest.stacks), describe(&stacks)))
            };
            done.checks.push(Check::new("function-stacks", outcome, 0));
        }
        Err(e) => {
            done.checks.push(Check::new("schema-fingerprint", Err(e.report()), ms(clock)));
            done.checks.push(Check::skipped("function-stacks", "the restored database could not be read"));
        }
    }
}

/// Every media file of the snapshot in the restored folder, with its size and SHA-256.
async fn check_media(manifest: &Manifest, dir: &Path, done: &mut Progressed) {
    let Some(media) = &manifest.media else {
        done.checks.push(Check::skipped("media-hashes", "the snapshot has no media"));
        return;
    };
    let clock = Instant::now();
    let (files, dir) = (media.files.clone(), dir.to_path_buf());
    let problems = tokio::task::spawn_blocking(move || {
        use sha2::{Digest, Sha256};
        let mut problems = Vec::new();
        for f in &files {
            let path = dir.join(&f.path);
            let hashed = std::fs::File::open(&path).and_then(|mut file| {
                let mut hash = Sha256::new();
                let size = std::io::copy(&mut file, &mut hash)?;
                Ok((size, hex::encode(hash.finalize())))
            });
            match hashed {
                Ok((size, sha)) if size == f.size && sha == f.sha256 => {}
                Ok((size, sha)) => {
                    problems.push(format!("{}: {size} bytes sha256 {sha}, expected {}", f.path, f.sha256))
                }
                Err(e) => problems.push(format!("{}: {e}", f.path)),
            }
        }
        problems
    })
    .await
    .unwrap_or_else(|e| vec![format!("media check task: {e}")]);
    let outcome = if problems.is_empty() {
        Ok(format!("{} files, {} bytes, every SHA-256 as recorded", media.files.len(), media.bytes))
    } else {
        Err(problems.join("; "))
    };
    done.checks.push(Check::new("media-hashes", outcome, ms(clock)));
}

/// Runs the restore-tests assertions, one check each, with the snapshot's tables (and
/// their row counts at backup) in `pg_temp.tidemark_snapshot_tables`.
async fn run_assertions(
    ctx: &Context<'_>,
    conn: &mut PgConnection,
    tables: &[(String, String, i64)],
    done: &mut Progressed,
) {
    let setup = async {
        sqlx::raw_sql(
            "CREATE TEMP TABLE tidemark_snapshot_tables (schema_name text, table_name text, \"rows\" bigint)",
        )
        .execute(&mut *conn)
        .await?;
        for (schema, name, rows) in tables {
            sqlx::query("INSERT INTO pg_temp.tidemark_snapshot_tables VALUES ($1, $2, $3)")
                .bind(schema)
                .bind(name)
                .bind(rows)
                .execute(&mut *conn)
                .await?;
        }
        Ok::<_, sqlx::Error>(())
    };
    if let Err(e) = setup.await {
        done.checks.push(Check::new("restore-tests", Err(Error::from(e).report()), 0));
        return;
    }
    let timeout = ctx.core.config.config.drill.assertion_timeout;
    for assertion in ctx.assertions {
        let clock = Instant::now();
        let outcome = assertions::run(conn, assertion, timeout).await;
        done.checks.push(Check::new(
            format!("restore-test {}: {}", assertion.file, assertion.name),
            outcome,
            ms(clock),
        ));
    }
}

/// The PITR drill's work: recover into a throwaway cluster, check, run the assertions.
async fn pitr(ctx: &Context<'_>, target: &Target, done: &mut Progressed) -> Result<()> {
    let pgdata = ctx.scratch.join("pgdata");
    let opts = PitrRestoreOptions {
        workspace: ctx.opts.workspace.clone(),
        pgdata,
        target: target.clone(),
        start: true,
        port: None,
        tidemark_command: ctx.opts.tidemark_command.clone(),
        prefetch: DEFAULT_PREFETCH,
    };
    done.source = "base backup".into(); // until the restore says which
    done.target = target.describe();
    let clock = Instant::now();
    let recovered = pitr_restore(ctx.core, &opts, &Progress::new(ctx.opts.progress)).await;
    done.timings.restore_ms = ms(clock);
    let report = match recovered {
        Ok(report) => report,
        Err(e) => {
            let replaying = e.context_lines().iter().any(|c| c.starts_with(super::pitr::RECOVERY_CONTEXT));
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
    done.source = report.base_backup.clone();
    done.target = report.target.clone();
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
    let spec = ConnSpec::parse(&ctx.ws.database_url, ctx.ws.password.as_ref())?.with_host_port("127.0.0.1", port)?;
    done.database = spec.database().unwrap_or_default();
    match spec.connect().await {
        Ok(mut conn) => {
            done.checks.push(Check::new("connect", Ok(format!("connected to {}", spec.display())), ms(clock)));
            run_assertions(ctx, &mut conn, &[], done).await;
            ConnSpec::close(conn).await;
        }
        Err(e) => done.checks.push(Check::new("connect", Err(e.report()), ms(clock))),
    }
    done.timings.checks_ms = ms(clock);
    Ok(())
}
