//! The catalog: tidemark's own state (jobs, schedules' last runs, drills, tokens, the audit
//! trail, the snapshot index, branches, ...) in SQLite (a file: the embedded default, one
//! host) or PostgreSQL (`catalog = "postgres://..."`: one catalog several tidemark
//! processes share). Both engines run the same queries (`$1`-style parameters, which both
//! read; [`on_pool!`] compiles each once per engine) and migrations of the same versions
//! (`migrations/catalog`, `migrations/catalog-postgres`). It is a cache plus history, never
//! the truth about backups: the repository is. `ops::catalog::rebuild` recreates what it
//! can from the repository, and commands that only need the repository never open it.

pub mod audit;
pub mod branches;
#[cfg(test)]
mod conformance;
mod copy;
pub mod copy_states;
mod drills;
pub mod fleet;
mod jobs;
pub mod lock;
mod replaced;
mod schedules;
pub mod sessions;
mod snapshots;
pub mod stats;
pub mod status;
pub mod switches;
pub mod tokens;

pub use drills::{DrillRecord, DrillRow};
pub use jobs::{Job, JobEnd, JobProgress, JobStatus, NewJob, Trigger};

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow};

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
    (14, "workspace_locks", include_str!("../../migrations/catalog/0014_workspace_locks.sql")),
    (15, "job_cancel", include_str!("../../migrations/catalog/0015_job_cancel.sql")),
    (16, "fleet", include_str!("../../migrations/catalog/0016_fleet.sql")),
    (17, "job_newest", include_str!("../../migrations/catalog/0017_job_newest.sql")),
    (18, "audit_checkpointed", include_str!("../../migrations/catalog/0018_audit_checkpointed.sql")),
    (19, "console_sessions", include_str!("../../migrations/catalog/0019_console_sessions.sql")),
    (20, "copy_states", include_str!("../../migrations/catalog/0020_copy_states.sql")),
]);

/// The same versions for PostgreSQL: what each SQLite migration made, in PostgreSQL's
/// types (`BIGINT`, `TIMESTAMPTZ`, `BOOLEAN`), so a catalog is at the same version on
/// either engine.
const POSTGRES_MIGRATIONS: Embedded = Embedded(&[
    (1, "jobs", include_str!("../../migrations/catalog-postgres/0001_jobs.sql")),
    (2, "drills", include_str!("../../migrations/catalog-postgres/0002_drills.sql")),
    (3, "job_owner", include_str!("../../migrations/catalog-postgres/0003_job_owner.sql")),
    (4, "actor_progress", include_str!("../../migrations/catalog-postgres/0004_actor_progress.sql")),
    (5, "audit", include_str!("../../migrations/catalog-postgres/0005_audit.sql")),
    (6, "tokens", include_str!("../../migrations/catalog-postgres/0006_tokens.sql")),
    (7, "jobs_by_snapshot", include_str!("../../migrations/catalog-postgres/0007_jobs_by_snapshot.sql")),
    (8, "snapshot_index", include_str!("../../migrations/catalog-postgres/0008_snapshot_index.sql")),
    (9, "replaced_databases", include_str!("../../migrations/catalog-postgres/0009_replaced_databases.sql")),
    (10, "switches", include_str!("../../migrations/catalog-postgres/0010_switches.sql")),
    (11, "job_refused", include_str!("../../migrations/catalog-postgres/0011_job_refused.sql")),
    (12, "job_result", include_str!("../../migrations/catalog-postgres/0012_job_result.sql")),
    (13, "branches", include_str!("../../migrations/catalog-postgres/0013_branches.sql")),
    (14, "workspace_locks", include_str!("../../migrations/catalog-postgres/0014_workspace_locks.sql")),
    (15, "job_cancel", include_str!("../../migrations/catalog-postgres/0015_job_cancel.sql")),
    (16, "fleet", include_str!("../../migrations/catalog-postgres/0016_fleet.sql")),
    (17, "job_newest", include_str!("../../migrations/catalog-postgres/0017_job_newest.sql")),
    (18, "audit_checkpointed", include_str!("../../migrations/catalog-postgres/0018_audit_checkpointed.sql")),
    (19, "console_sessions", include_str!("../../migrations/catalog-postgres/0019_console_sessions.sql")),
    (20, "copy_states", include_str!("../../migrations/catalog-postgres/0020_copy_states.sql")),
]);

pub use crate::config::DEFAULT_CATALOG_FILE;

pub use crate::config::CatalogLocation;

/// The catalog's engine and its pool.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the catalog's pool, compiled once per engine: the same
/// query text serves both (`$1`-style parameters; what differs is spelled per engine by
/// matching on the pool instead).
macro_rules! on_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            $crate::catalog::Pool::Sqlite($p) => $body,
            $crate::catalog::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use on_pool;

/// A transaction that writers of one table take one at a time, across processes: SQLite's
/// `BEGIN IMMEDIATE` (the whole file), PostgreSQL's lock on the table (readers go on).
pub(crate) trait BeginSerial {
    type Db: sqlx::Database;
    async fn begin_serial(
        &self,
        table: &'static str,
    ) -> std::result::Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>;
}

impl BeginSerial for SqlitePool {
    type Db = sqlx::Sqlite;
    async fn begin_serial(
        &self,
        _table: &'static str,
    ) -> std::result::Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginSerial for PgPool {
    type Db = sqlx::Postgres;
    async fn begin_serial(
        &self,
        table: &'static str,
    ) -> std::result::Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        let mut tx = self.begin().await?;
        let lock = format!("LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE");
        sqlx::query(sqlx::AssertSqlSafe(lock)).execute(&mut *tx).await?;
        Ok(tx)
    }
}

/// A value both engines store and read alike (text, integers, floats, booleans, times,
/// and `Option`s of them).
pub(crate) trait Both:
    for<'r> sqlx::Decode<'r, sqlx::Sqlite>
    + sqlx::Type<sqlx::Sqlite>
    + for<'r> sqlx::Decode<'r, sqlx::Postgres>
    + sqlx::Type<sqlx::Postgres>
{
}

impl<T> Both for T where
    T: for<'r> sqlx::Decode<'r, sqlx::Sqlite>
        + sqlx::Type<sqlx::Sqlite>
        + for<'r> sqlx::Decode<'r, sqlx::Postgres>
        + sqlx::Type<sqlx::Postgres>
{
}

/// A row of either engine, read by column name.
pub(crate) trait Get {
    fn get<T: Both>(&self, column: &str) -> std::result::Result<T, sqlx::Error>;
}

impl Get for SqliteRow {
    fn get<T: Both>(&self, column: &str) -> std::result::Result<T, sqlx::Error> {
        sqlx::Row::try_get(self, column)
    }
}

impl Get for PgRow {
    fn get<T: Both>(&self, column: &str) -> std::result::Result<T, sqlx::Error> {
        sqlx::Row::try_get(self, column)
    }
}

/// `FromRow` for both engines' rows, from one function over [`Get`].
macro_rules! from_row {
    ($ty:ty, $read:path) => {
        impl<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> for $ty {
            fn from_row(row: &'r sqlx::sqlite::SqliteRow) -> std::result::Result<Self, sqlx::Error> {
                $read(row)
            }
        }
        impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for $ty {
            fn from_row(row: &'r sqlx::postgres::PgRow) -> std::result::Result<Self, sqlx::Error> {
                $read(row)
            }
        }
    };
}
pub(crate) use from_row;

/// The catalog database.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub(crate) pool: Pool,
    /// The SQLite file, or (PostgreSQL) the host's path the file locks go beside.
    path: PathBuf,
    /// What messages call it: the file, or the URL without a password.
    name: String,
    /// This process's place in the fleet (shared by the handle's clones).
    pub(crate) fleet: std::sync::Arc<fleet::Membership>,
}

pub(crate) fn catalog_error(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    named_error(&path.display().to_string(), what, e)
}

fn named_error(name: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Unavailable, format!("catalog {name}: {what}: {e}"))
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

/// Held by the one `serve` that uses a SQLite catalog, for as long as it runs: a file lock
/// beside it, which dies with the process. A PostgreSQL catalog has none: the daemons that
/// share it are a fleet ([`fleet`]), claiming each scheduled slot once.
#[derive(Debug)]
pub struct DaemonLock {
    _held: Option<lock::Held>,
}

impl Catalog {
    /// Makes this process the only daemon of a SQLite catalog: a second `serve` on the same
    /// file would take every scheduled snapshot twice. With a PostgreSQL catalog, several
    /// daemons are welcome (each slot is claimed once; see [`fleet`]).
    ///
    /// Errors: `Refused` naming the process that holds the catalog; `Unavailable` when the
    /// lock file beside the catalog cannot be written.
    pub fn lock_for_daemon(&self) -> Result<DaemonLock> {
        match &self.pool {
            Pool::Sqlite(_) => self.lock_file_for_daemon(),
            Pool::Postgres(_) => Ok(DaemonLock { _held: None }),
        }
    }

    /// SQLite: a file lock beside the catalog, holding who took it.
    fn lock_file_for_daemon(&self) -> Result<DaemonLock> {
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
        Ok(DaemonLock { _held: Some(lock::Held::File(file)) })
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
        Ok(Catalog {
            pool: Pool::Sqlite(pool),
            path: path.to_path_buf(),
            name: path.display().to_string(),
            fleet: fleet::new_membership(),
        })
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

    /// What messages call the catalog: its file, or its URL without a password.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the catalog is a PostgreSQL database (shared), not a SQLite file.
    pub fn is_shared(&self) -> bool {
        matches!(self.pool, Pool::Postgres(_))
    }

    pub(crate) fn err(&self, what: &str, e: sqlx::Error) -> Error {
        named_error(&self.name, what, e)
    }

    /// Opens the catalog where the config says: a SQLite file ([`Catalog::open`]) or a
    /// PostgreSQL database ([`Catalog::open_postgres`]).
    ///
    /// Errors: those of either.
    pub async fn open_at(location: &CatalogLocation) -> Result<Catalog> {
        match location {
            CatalogLocation::File(path) => Catalog::open(path).await,
            CatalogLocation::Postgres { url, password, side } => {
                Catalog::open_postgres(url, password.as_ref(), side).await
            }
        }
    }

    /// Opens a PostgreSQL catalog and brings its schema up to date (sqlx's migrator takes
    /// an advisory lock, so several processes starting at once migrate it once).
    ///
    /// Errors: `Unavailable` naming the server (never its password) when it cannot be
    /// reached or migrated; `Config` for a URL that is not one or a password reference
    /// that cannot be read.
    pub async fn open_postgres(url: &str, password: Option<&crate::secret::Secret>, side: &Path) -> Result<Catalog> {
        let spec = crate::pg::ConnSpec::parse(url, password).map_err(|e| e.context("the catalog's URL"))?;
        let name = crate::pg::redact_url(url);
        let options = spec.connect_options().map_err(|e| e.context("the catalog's URL"))?;
        // One connection first, so that a server away is said as the server said it
        // (refused, unknown host, bad password), not as a pool's timeout.
        let first = tokio::time::timeout(Duration::from_secs(10), sqlx::ConnectOptions::connect(&options)).await;
        match first {
            Ok(Ok(conn)) => drop(sqlx::Connection::close(conn).await),
            Ok(Err(e)) => return Err(named_error(&name, "cannot connect", e)),
            Err(_) => return Err(named_error(&name, "cannot connect", "no answer within 10 s")),
        }
        let pool =
            PgPoolOptions::new().max_connections(4).acquire_timeout(Duration::from_secs(10)).connect_lazy_with(options);
        let migrator = Migrator::new(POSTGRES_MIGRATIONS)
            .await
            .map_err(|e| Error::internal(format!("embedded catalog migrations: {e}")))?;
        migrator.run(&pool).await.map_err(|e| named_error(&name, "cannot bring its schema up to date", e))?;
        Ok(Catalog { pool: Pool::Postgres(pool), path: side.to_path_buf(), name, fleet: fleet::new_membership() })
    }
}

/// The catalog on each engine, for the tests that must hold on both (one suite, as the
/// storage conformance suite is for stores).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::pgcluster::{Cluster, ClusterOptions};

    /// Where a test's catalogs live: a SQLite file, and a throwaway PostgreSQL cluster
    /// (stopped and removed when this is dropped).
    pub(crate) struct Engines {
        pub(crate) dir: tempfile::TempDir,
        _cluster: Cluster,
        url: String,
    }

    impl Engines {
        pub(crate) async fn start() -> Engines {
            let dir = tempfile::tempdir().unwrap();
            let cluster = tokio::task::spawn_blocking(|| Cluster::start(&ClusterOptions::default()))
                .await
                .unwrap()
                .expect("a throwaway postgres for the catalog");
            let url = cluster.url("postgres");
            Engines { dir, _cluster: cluster, url }
        }

        /// Where each engine's catalog is.
        pub(crate) fn locations(&self) -> Vec<CatalogLocation> {
            vec![
                CatalogLocation::File(self.dir.path().join("sub/catalog.sqlite")),
                CatalogLocation::Postgres { url: self.url.clone(), password: None, side: self.dir.path().join("pg") },
            ]
        }

        /// Restarts the PostgreSQL catalog's server: down for `down`, then up again on the
        /// same port (what a failover or an upgrade of the catalog looks like to tidemark).
        pub(crate) async fn restart_postgres(&self, down: std::time::Duration) {
            let data = self._cluster.data_dir().to_path_buf();
            let stopped = data.clone();
            tokio::task::spawn_blocking(move || crate::pgcluster::stop_data_dir(None, &stopped))
                .await
                .unwrap()
                .unwrap();
            tokio::time::sleep(down).await;
            let log = data.with_file_name("restarted.log");
            tokio::task::spawn_blocking(move || crate::pgcluster::start_data_dir(None, &data, &log, &[]))
                .await
                .unwrap()
                .unwrap();
        }

        /// A catalog on each engine.
        pub(crate) async fn catalogs(&self) -> Vec<Catalog> {
            let mut out = Vec::new();
            for location in self.locations() {
                out.push(Catalog::open_at(&location).await.unwrap());
            }
            out
        }
    }

    /// Runs SQL on a catalog as it is (tests that tamper with it).
    pub(crate) async fn exec(catalog: &Catalog, sql: &str) {
        on_pool!(&catalog.pool, |p| sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(p).await.map(drop))
            .unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Engines, exec};
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
        let Pool::Sqlite(sqlite) = &catalog.pool else { unreachable!("a file is SQLite") };
        let referred: i64 = sqlx::query_scalar("SELECT last_job FROM schedule_runs").fetch_one(sqlite).await.unwrap();
        assert_eq!(referred, 1);
        let fk: Vec<(String, i64, String, i64)> =
            sqlx::query_as("PRAGMA foreign_key_check").fetch_all(sqlite).await.unwrap();
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

    /// Migration 17 fills `job_newest` from the job history a catalog already has, on
    /// both engines (here: the history is written, the migration undone, and the catalog
    /// opened again).
    #[tokio::test]
    async fn the_newest_jobs_migration_fills_them_from_the_history() {
        let engines = Engines::start().await;
        for location in engines.locations() {
            let catalog = Catalog::open_at(&location).await.unwrap();
            let mut ids = Vec::new();
            for (started, status) in [
                ("2026-12-01T00:00:00Z", JobStatus::Succeeded),
                ("2026-12-02T00:00:00Z", JobStatus::Succeeded),
                ("2026-12-03T00:00:00Z", JobStatus::Failed),
                ("2026-12-04T00:00:00Z", JobStatus::Aborted),
            ] {
                let job = NewJob {
                    workspace: "shop".into(),
                    operation: "snapshot".into(),
                    kind: None,
                    trigger: Trigger::Cli,
                    policy: None,
                    scheduled_for: None,
                    started_at: at(started),
                    actor: None,
                };
                let id = catalog.start_job(&job).await.unwrap();
                catalog.finish_job(id, status, &JobEnd::default()).await.unwrap();
                ids.push(id);
            }
            exec(
                &catalog,
                "DROP TABLE job_newest; DROP INDEX jobs_running; DELETE FROM _sqlx_migrations WHERE version = 17",
            )
            .await;
            assert!(catalog.newest_jobs("shop").await.is_err(), "{}: the table is gone", catalog.name());
            drop(catalog);
            let catalog = Catalog::open_at(&location).await.unwrap();
            let mut newest: Vec<(i64, String)> =
                catalog.newest_jobs("shop").await.unwrap().into_iter().map(|j| (j.id, j.status)).collect();
            newest.sort();
            assert_eq!(newest, vec![(ids[1], "succeeded".into()), (ids[2], "failed".into())], "{}", catalog.name());
        }
    }

    #[tokio::test]
    async fn jobs_are_recorded_listed_and_orphans_aborted() {
        let engines = Engines::start().await;
        for location in engines.locations() {
            jobs_are_recorded_on(&location).await;
        }
    }

    async fn jobs_are_recorded_on(location: &CatalogLocation) {
        let catalog = Catalog::open_at(location).await.unwrap();
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
        let catalog = Catalog::open_at(location).await.unwrap();
        assert_eq!(catalog.jobs(None, 10).await.unwrap().len(), 6, "{}", catalog.name());
    }

    #[tokio::test]
    async fn jobs_of_dead_processes_are_aborted_and_others_left_alone() {
        let engines = Engines::start().await;
        for catalog in engines.catalogs().await {
            jobs_of_dead_processes_on(&catalog).await;
        }
    }

    async fn jobs_of_dead_processes_on(catalog: &Catalog) {
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
        for id in [killed, elsewhere] {
            exec(catalog, &format!("UPDATE jobs SET pid = {dead_pid} WHERE id = {id}")).await;
        }
        exec(catalog, &format!("UPDATE jobs SET host = 'another-machine' WHERE id = {elsewhere}")).await;

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
        let engines = Engines::start().await;
        for catalog in engines.catalogs().await {
            last_slots_move_forward_on(&catalog).await;
        }
    }

    async fn last_slots_move_forward_on(catalog: &Catalog) {
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
