//! The catalog: tidemark's own state in SQLite (sqlx, migrations/catalog): the job history
//! and the schedules' last runs. It is a cache plus history, never the truth about
//! backups: the repository is. `ops::catalog::rebuild` recreates what it can from the
//! repository, and commands that only need the repository never open it.

pub mod audit;
pub mod branches;
mod drills;
mod jobs;
pub mod lock;
mod replaced;
mod schedules;
mod snapshots;
pub mod stats;
pub mod switches;
pub mod tokens;

pub use drills::{DrillRecord, DrillRow};
pub use jobs::{Job, JobEnd, JobProgress, JobStatus, NewJob, Trigger};

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::error::{Error, ErrorKind, Result};
use crate::migrations::Embedded;

const CATALOG_MIGRATIONS: Embedded = Embedded(&[
    (1, "jobs", include_str!("../../migrations/catalog/0001_jobs.sql")),
    (2, "drills", include_str!("../../migrations/catalog/0002_drills.sql")),
    (3, "job_owner", include_str!("../../migrations/catalog/0003_job_owner.sql")),
    (4, "actor_progress", include_str!("../../migrations/catalog/0004_actor_progress.sql")),
    (5, "audit", include_str!("../../migrations/catalog/0005_audit.sql")),
    (6, "tokens", include_str!("../../migrations/catalog/0006_tokens.sql")),
    (7, "jobs_by_snapshot", include_str!("../../migrations/catalog/0007_jobs_by_snapshot.sql")),
    (8, "snapshot_index", include_str!("../../migrations/catalog/0008_snapshot_index.sql")),
    (9, "replaced_databases", include_str!("../../migrations/catalog/0009_replaced_databases.sql")),
    (10, "switches", include_str!("../../migrations/catalog/0010_switches.sql")),
    (11, "job_refused", include_str!("../../migrations/catalog/0011_job_refused.sql")),
    (12, "job_result", include_str!("../../migrations/catalog/0012_job_result.sql")),
    (13, "branches", include_str!("../../migrations/catalog/0013_branches.sql")),
]);

pub use crate::config::DEFAULT_CATALOG_FILE;

/// The catalog database.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub(crate) pool: SqlitePool,
    path: PathBuf,
}

pub(crate) fn catalog_error(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Unavailable, format!("catalog {}: {what}: {e}", path.display()))
}

/// A file that is not an SQLite database or is corrupt (`SQLITE_NOTADB`, `SQLITE_CORRUPT`)
/// is `Integrity`, with what to do; anything else as [`catalog_error`].
fn damaged_or(path: &Path, what: &str, e: sqlx::Error) -> Error {
    let code = e.as_database_error().and_then(sqlx::error::DatabaseError::code).map(std::borrow::Cow::into_owned);
    if matches!(code.as_deref(), Some("26" | "11")) {
        return Error::integrity(format!(
            "the catalog {} is damaged ({e}). It is only a cache plus history: `tidemark catalog rebuild \
             --replace` moves it aside and rebuilds it from the repository (the job history of what the \
             repository does not keep is lost)",
            path.display()
        ));
    }
    catalog_error(path, what, e)
}

/// This machine's name, recorded with the jobs it runs.
pub(crate) fn host_name() -> String {
    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Whether a process with this id exists here (a process of another user counts).
pub(crate) fn process_alive(pid: i64) -> bool {
    // An id that cannot be a process's is never ours: leave its job alone.
    let Some(pid) = i32::try_from(pid).ok().filter(|p| *p > 0) else { return true };
    !matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None), Err(nix::errno::Errno::ESRCH))
}

/// Held by the one `serve` that uses a catalog, for as long as it runs (a file lock: it
/// dies with the process).
#[derive(Debug)]
pub struct DaemonLock {
    _file: std::fs::File,
}

impl Catalog {
    /// Makes this process the catalog's only daemon. A second `serve` on the same catalog
    /// would take every scheduled snapshot twice and record the first daemon's running
    /// jobs as aborted.
    ///
    /// Errors: `Refused` naming the process that holds the catalog; `Unavailable` when the
    /// lock file beside the catalog cannot be written.
    pub fn lock_for_daemon(&self) -> Result<DaemonLock> {
        use std::io::Write;
        let path = self.path.with_extension("serve.lock");
        let mut file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| catalog_error(&self.path, "cannot create the daemon lock", e))?;
        // A lock that looks held may be a copy of a descriptor this process has just let go
        // of (a daemon stopped and started again in one process, as in tests): a child being
        // spawned at that moment holds copies of every descriptor until its exec closes
        // them. Look again for a second before refusing.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        let locked = loop {
            match file.try_lock() {
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => break other,
            }
        };
        match locked {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = fs_err::read_to_string(&path).unwrap_or_default();
                let holder = if holder.trim().is_empty() { "its pid is not recorded" } else { holder.trim() };
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "another `tidemark serve` is running with the catalog {} ({holder}); stop it \
                         first, or give this daemon its own config and catalog",
                        self.path.display()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(catalog_error(&self.path, "cannot take the daemon lock", e));
            }
        }
        let recorded = file.set_len(0).and_then(|()| write!(file, "pid {} on {}", std::process::id(), host_name()));
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "cannot record the daemon's pid beside the catalog");
        }
        Ok(DaemonLock { _file: file })
    }

    /// Opens the catalog file, creating it (and its folder) if missing, and brings its
    /// schema up to date.
    ///
    /// Errors: `Unavailable` when the file cannot be created, opened or migrated (the
    /// message names the file).
    pub async fn open(path: &Path) -> Result<Catalog> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs_err::create_dir_all(parent).map_err(|e| catalog_error(path, "cannot create its folder", e))?;
        }
        // Creating a catalog (switching it to WAL, creating its tables) must not race with
        // another process opening it at the same moment (the daemon starting while an
        // operator runs `tidemark jobs`): SQLite answers "database is locked" and sqlx takes
        // no lock when migrating. A file lock beside the catalog serialises opening.
        let lock_path = path.with_extension("lock");
        let lock = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::options().create(true).truncate(false).write(true).open(&lock_path)?;
            file.lock()?;
            Ok::<_, std::io::Error>(file)
        })
        .await
        .map_err(|e| Error::internal(format!("catalog lock task: {e}")))?
        .map_err(|e| catalog_error(path, "cannot lock it while opening", e))?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| damaged_or(path, "cannot open", e))?;
        let migrator = Migrator::new(CATALOG_MIGRATIONS)
            .await
            .map_err(|e| Error::internal(format!("embedded catalog migrations: {e}")))?;
        let migrated = migrator.run(&pool).await;
        drop(lock);
        migrated.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => damaged_or(path, "cannot bring its schema up to date", e),
            other => catalog_error(path, "cannot bring its schema up to date", other),
        })?;
        Ok(Catalog { pool, path: path.to_path_buf() })
    }

    /// Moves a damaged catalog (and its `-wal`/`-shm` files) aside as
    /// `<file>.damaged-<time>`, so that a new one can be built; returns the new name.
    ///
    /// Errors: `Unavailable` when it cannot be renamed.
    pub fn move_aside(path: &Path) -> Result<PathBuf> {
        let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
        let aside = PathBuf::from(format!("{}.damaged-{stamp}", path.display()));
        fs_err::rename(path, &aside).map_err(|e| catalog_error(path, "cannot move it aside", e))?;
        for suffix in ["-wal", "-shm"] {
            let side = PathBuf::from(format!("{}{suffix}", path.display()));
            if side.exists() {
                let _ = fs_err::rename(&side, format!("{}{suffix}", aside.display()));
            }
        }
        Ok(aside)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn err(&self, what: &str, e: sqlx::Error) -> Error {
        catalog_error(&self.path, what, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_damaged_catalog_is_named_and_can_be_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        fs_err::write(&path, vec![b'x'; 8192]).unwrap();
        let e = Catalog::open(&path).await.map(|_| ()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Integrity, "{}", e.report());
        let aside = Catalog::move_aside(&path).unwrap();
        assert!(aside.exists() && !path.exists());
        Catalog::open(&path).await.unwrap();
    }

    /// Migration 11 makes the jobs table again (a CHECK constraint cannot change in
    /// place): the history and the schedules' references to it survive, and a refused job
    /// can be recorded.
    #[tokio::test]
    async fn an_older_catalog_keeps_its_jobs_through_the_refused_status_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        let options = SqliteConnectOptions::new().filename(&path).create_if_missing(true).foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
        let before = Embedded(&CATALOG_MIGRATIONS.0[..10]);
        Migrator::new(before).await.unwrap().run(&pool).await.unwrap();
        for sql in [
            "INSERT INTO jobs (workspace, operation, trigger, started_at, status) VALUES ('shop', 'snapshot', 'cli', '2026-12-01T00:00:00Z', 'succeeded')",
            "INSERT INTO schedule_runs (workspace, policy, last_slot, last_status, last_job) VALUES ('shop', 'daily', '2026-12-01T00:00:00Z', 'succeeded', 1)",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
        }
        pool.close().await;
        let catalog = Catalog::open(&path).await.unwrap();
        assert_eq!(catalog.job(1).await.unwrap().status(), JobStatus::Succeeded);
        let referred: i64 =
            sqlx::query_scalar("SELECT last_job FROM schedule_runs").fetch_one(&catalog.pool).await.unwrap();
        assert_eq!(referred, 1);
        let fk: Vec<(String, i64, String, i64)> =
            sqlx::query_as("PRAGMA foreign_key_check").fetch_all(&catalog.pool).await.unwrap();
        assert!(fk.is_empty(), "{fk:?}");
        let job = NewJob {
            workspace: "shop".into(),
            operation: "snapshot".into(),
            kind: None,
            trigger: Trigger::Cli,
            policy: None,
            scheduled_for: None,
            started_at: Utc::now(),
            actor: None,
        };
        let id = catalog.start_job(&job).await.unwrap();
        assert_eq!(id, 2, "ids go on from the history");
        catalog.finish_job(id, JobStatus::Refused, &JobEnd::default()).await.unwrap();
        assert_eq!(catalog.job(id).await.unwrap().status(), JobStatus::Refused);
    }

    fn at(s: &str) -> chrono::DateTime<Utc> {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[tokio::test]
    async fn jobs_are_recorded_listed_and_orphans_aborted() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("sub/catalog.sqlite")).await.unwrap();
        let new = |ws: &str, trigger, started: &str| NewJob {
            workspace: ws.into(),
            operation: "snapshot".into(),
            kind: Some("automatic".into()),
            trigger,
            policy: Some("daily".into()),
            scheduled_for: None,
            started_at: at(started),
            actor: Some(format!("{}:nightly", trigger.as_str())),
        };
        let a = catalog.start_job(&new("shop", Trigger::Schedule, "2026-11-01T02:00:00Z")).await.unwrap();
        let b = catalog.start_job(&new("shop", Trigger::Cli, "2026-11-02T02:00:00Z")).await.unwrap();
        let c = catalog.start_job(&new("blog", Trigger::Schedule, "2026-11-03T02:00:00Z")).await.unwrap();
        catalog.record_attempt(c, 2, "database unreachable").await.unwrap();
        let end = JobEnd { snapshot_id: Some("s1".into()), bytes: Some(42), ..Default::default() };
        catalog.finish_job(c, JobStatus::Succeeded, &end).await.unwrap();

        // Restores and drills of that snapshot record their ends too, twice over.
        for operation in ["restore", "drill", "restore"] {
            let of_it = catalog
                .start_job(&NewJob {
                    workspace: "blog".into(),
                    operation: operation.into(),
                    ..new("blog", Trigger::Api, "2026-11-03T03:00:00Z")
                })
                .await
                .unwrap();
            catalog.finish_job(of_it, JobStatus::Succeeded, &end).await.unwrap();
            assert_eq!(catalog.job(of_it).await.unwrap().status(), JobStatus::Succeeded, "{operation}");
        }

        let shop = catalog.jobs(Some("shop"), 10).await.unwrap();
        assert_eq!(shop.iter().map(|j| j.id).collect::<Vec<_>>(), vec![b, a], "newest first, one workspace");
        let blog = catalog.job(c).await.unwrap();
        assert_eq!((blog.status(), blog.attempts, blog.bytes), (JobStatus::Succeeded, 2, Some(42)));
        assert_eq!(blog.actor.as_deref(), Some("schedule:nightly"));
        assert_eq!(blog.progress, None, "no progress was recorded");
        // A running job's progress, as a second front end polls it.
        let progress = JobProgress {
            phase: "snapshot shop: tables 3/12".into(),
            bytes_done: 1 << 20,
            bytes_total: Some(4 << 20),
            tables_done: 3,
            tables_total: Some(12),
            updated_at: at("2026-11-02T02:00:05Z"),
        };
        catalog.record_progress(b, &progress).await.unwrap();
        assert_eq!(catalog.job(b).await.unwrap().progress, Some(progress));
        assert_eq!(blog.error.as_deref(), Some("database unreachable"), "the last attempt's error stays");

        // A restarted daemon aborts its own orphans, never a CLI job.
        assert_eq!(catalog.abort_orphaned_daemon_jobs(Utc::now(), "test").await.unwrap(), 1);
        assert_eq!(catalog.job(a).await.unwrap().status(), JobStatus::Aborted);
        assert_eq!(catalog.job(b).await.unwrap().status(), JobStatus::Running);

        // Reopening keeps everything (migrations are not re-applied).
        drop(catalog);
        let catalog = Catalog::open(&dir.path().join("sub/catalog.sqlite")).await.unwrap();
        assert_eq!(catalog.jobs(None, 10).await.unwrap().len(), 6);
    }

    #[tokio::test]
    async fn jobs_of_dead_processes_are_aborted_and_others_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("c.sqlite")).await.unwrap();
        let job = NewJob {
            workspace: "shop".into(),
            operation: "snapshot".into(),
            kind: Some("manual".into()),
            trigger: Trigger::Cli,
            policy: None,
            scheduled_for: None,
            started_at: Utc::now(),
            actor: None,
        };
        let ours = catalog.start_job(&job).await.unwrap();
        let killed = catalog.start_job(&job).await.unwrap();
        let elsewhere = catalog.start_job(&job).await.unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let set = |sql: &'static str, value: String, id: i64| {
            let pool = catalog.pool.clone();
            async move { sqlx::query(sql).bind(value).bind(id).execute(&pool).await.unwrap() }
        };
        set("UPDATE jobs SET pid = ? WHERE id = ?", dead_pid.to_string(), killed).await;
        set("UPDATE jobs SET pid = ? WHERE id = ?", dead_pid.to_string(), elsewhere).await;
        set("UPDATE jobs SET host = ? WHERE id = ?", "another-machine".into(), elsewhere).await;

        assert_eq!(catalog.abort_jobs_of_dead_processes(Utc::now()).await.unwrap(), 1);
        let aborted = catalog.job(killed).await.unwrap();
        assert_eq!(aborted.status(), JobStatus::Aborted);
        assert!(aborted.error.unwrap().contains(&format!("pid {dead_pid}")));
        assert!(aborted.finished_at.is_some());
        assert_eq!(catalog.job(ours).await.unwrap().status(), JobStatus::Running, "this process is alive");
        assert_eq!(catalog.job(elsewhere).await.unwrap().status(), JobStatus::Running, "not this host's process");
        assert_eq!(catalog.abort_jobs_of_dead_processes(Utc::now()).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn one_daemon_per_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let first = Catalog::open(&path).await.unwrap();
        let second = Catalog::open(&path).await.unwrap();
        let lock = first.lock_for_daemon().unwrap();
        let refused = second.lock_for_daemon().unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Refused);
        let message = refused.message();
        assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        drop(lock);
        // At once, even while another test of this binary spawns a child holding a copy of
        // the lock's descriptor for a moment.
        second.lock_for_daemon().expect("the lock is free once the first daemon is gone");
    }

    #[tokio::test]
    async fn last_slots_move_forward_only() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("c.sqlite")).await.unwrap();
        assert_eq!(catalog.last_slot("shop", "daily").await.unwrap(), None);
        catalog.set_last_slot("shop", "daily", at("2026-11-05T02:00:00Z"), "succeeded", None).await.unwrap();
        catalog.set_last_slot("shop", "daily", at("2026-11-03T02:00:00Z"), "rebuilt", None).await.unwrap();
        assert_eq!(catalog.last_slot("shop", "daily").await.unwrap(), Some(at("2026-11-05T02:00:00Z")));
        catalog.set_last_slot("shop", "daily", at("2026-11-06T02:00:00Z"), "failed", None).await.unwrap();
        assert_eq!(catalog.last_slot("shop", "daily").await.unwrap(), Some(at("2026-11-06T02:00:00Z")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_catalog_opened_by_two_at_once_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let (a, b) = tokio::join!(Catalog::open(&path), Catalog::open(&path));
        let (a, b) = (a.unwrap(), b.unwrap());
        let now = Utc::now();
        a.set_last_slot("shop", "daily", now, "registered", None).await.unwrap();
        assert!(b.last_slot("shop", "daily").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn an_unusable_path_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("file"), "x").unwrap();
        let err = Catalog::open(&dir.path().join("file/catalog.sqlite")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(err.message().contains("catalog.sqlite"), "{}", err.message());
    }
}
