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

use super::Core;
use super::pitr::{DEFAULT_PREFETCH, PitrRestoreOptions, restore as pitr_restore};
use super::restore::{RestoreOptions, restore};
use crate::actor::Actor;
use crate::catalog::Trigger;
use crate::config::WorkspaceConfig;
use crate::drill::assertions::{self, Assertion};
use crate::drill::checks;
use crate::drill::throwaway::{ScratchDatabase, ScratchDir, database_name, remove_leftover_databases};
use crate::drill::{Check, CheckStatus, DrillKind, DrillReport, DrillTimings};
use crate::error::{Error, ErrorKind, Result};
use crate::pg::ConnSpec;
use crate::pgcluster::{Cluster, ClusterOptions};
use crate::repo::layout;
use crate::repo::manifest::Manifest;
use crate::wal::window::Target;

/// What to drill.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrillSource {
    /// A snapshot by id; `None`: the workspace's newest.
    Snapshot(Option<String>),
    /// A point-in-time recovery to this target.
    Pitr(Target),
}

/// What `drill` takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillOptions {
    pub workspace: String,
    pub source: DrillSource,
    /// What started it, as the catalog records it (`None`: what the actor's kind says; the
    /// daemon says `schedule` or `catch-up`).
    #[serde(default)]
    pub trigger: Option<Trigger>,
    /// How the recovered server calls `tidemark wal fetch` (PITR; default: this binary).
    #[serde(skip)]
    pub tidemark_command: Option<String>,
    /// Record the report in the catalog (the default; off for the demo).
    pub record: bool,
}

impl DrillOptions {
    pub fn new(workspace: &str, source: DrillSource) -> DrillOptions {
        DrillOptions { workspace: workspace.to_string(), source, trigger: None, tidemark_command: None, record: true }
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
/// `Interrupted` when the core's stop signal fires. A restore or check that fails is a
/// failed check in the report, not an error.
pub async fn drill(core: &Core, opts: &DrillOptions, actor: &Actor) -> Result<DrillReport> {
    let cancel = core.stop();
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
    let ctx = Context { core, opts, actor, ws: &ws, scratch: scratch.path(), assertions: &user_assertions };
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
        record(core, &report, opts.trigger.unwrap_or(Trigger::of(actor)), actor).await;
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
async fn record(core: &Core, report: &DrillReport, trigger: Trigger, actor: &Actor) {
    let who = actor.to_string();
    let catalogued = async { core.catalog().await?.record_drill(&report.row(), trigger, Some(&who)).await };
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
pub async fn history(core: &Core, workspace: Option<&str>, limit: u32) -> Result<Vec<DrillEntry>> {
    let records = core.catalog().await?.drills(workspace, limit).await?;
    records
        .into_iter()
        .map(|r| {
            let report = serde_json::from_value(r.report)
                .map_err(|e| Error::internal(format!("the catalog's drill {} has an unreadable report: {e}", r.id)))?;
            Ok(DrillEntry { id: r.id, trigger: r.trigger, actor: r.actor, report })
        })
        .collect()
}

/// A drill of `drill history`: the catalog's id, what started it, who asked, and the report.
#[derive(Debug, Clone, Serialize)]
pub struct DrillEntry {
    pub id: i64,
    pub trigger: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(flatten)]
    pub report: DrillReport,
}

struct Context<'a> {
    core: &'a Core,
    opts: &'a DrillOptions,
    actor: &'a Actor,
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
            checks::create_roles(&admin, &manifest.roles).await?;
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
        wait: Default::default(),
    };
    let clock = Instant::now();
    let restored = restore(ctx.core, &restore_opts, ctx.actor).await;
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
    let progress = ctx.core.progress();
    progress.set_prefix(format!("drill {}", ctx.opts.workspace));
    progress.set_message(format!("checking {} tables against the snapshot", manifest.tables.len()));
    done.checks.extend(checks::check_contents(manifest, &target).await);
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
    progress.finish();
    done.timings.checks_ms = ms(checks_clock);
    Ok(())
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
    let recovered = pitr_restore(ctx.core, &opts, ctx.actor).await;
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
            let timeout = ctx.core.config.config.drill.assertion_timeout;
            done.checks.extend(checks::run_assertions(&mut conn, ctx.assertions, &[], timeout).await);
            ConnSpec::close(conn).await;
        }
        Err(e) => done.checks.push(Check::new("connect", Err(e.report()), ms(clock))),
    }
    done.timings.checks_ms = ms(clock);
    Ok(())
}
