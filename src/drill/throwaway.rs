//! Where a drill restores, and how it is always removed.
//!
//! Every drill works below a folder `tidemark-drill-<workspace>-XXXX` in the scratch folder
//! (the system temp folder by default) and holds an exclusive lock on its `drill.lock`
//! for as long as it runs. The lock dies with the process, so a folder whose lock can be
//! taken belongs to a drill that crashed or was killed: the next drill stops any server
//! still running below it (`pg_ctl stop -m immediate`) and deletes it. On a scratch
//! server, a drill's database `tidemark_drill_...` is guarded the same way by a
//! session-level advisory lock held by the drill; a leftover database whose lock can be
//! taken is dropped.

use std::fs::File;
use std::path::{Path, PathBuf};

use sqlx::PgConnection;

use crate::error::{Error, ErrorKind, Result};
use crate::pg::{ConnSpec, quote_ident};
use crate::pgcluster::Cluster;

const DIR_PREFIX: &str = "tidemark-drill-";
const LOCK_FILE: &str = "drill.lock";
/// Databases of drills on a scratch server start with this.
pub const DATABASE_PREFIX: &str = "tidemark_drill_";

/// A drill's own folder, locked while the drill runs.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
    _lock: File,
}

impl ScratchDir {
    /// Creates and locks a new folder for a drill of `label` below `root`.
    ///
    /// Errors: the file system's kinds naming the folder when it cannot be created; `Busy`
    /// when it cannot be locked.
    pub fn create(root: &Path, label: &str) -> Result<ScratchDir> {
        fs_err::create_dir_all(root)
            .map_err(|e| Error::from(e).context(format!("creating the scratch folder {}", root.display())))?;
        let path = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", sanitize(label)))
            .tempdir_in(root)
            .map_err(|e| Error::from(e).context(format!("creating a drill folder in {}", root.display())))?
            .keep();
        // The server user (when tidemark is root) must reach the cluster folders inside.
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o711))?;
        // Locked before it gets its name: another drill looking for leftovers never finds
        // `drill.lock` unlocked in a folder that is just being set up.
        let unnamed = path.join(format!(".{LOCK_FILE}"));
        let lock = File::create(&unnamed)?;
        lock.try_lock().map_err(|e| Error::new(ErrorKind::Busy, format!("cannot lock {}: {e}", path.display())))?;
        fs_err::rename(&unnamed, path.join(LOCK_FILE))?;
        Ok(ScratchDir { path, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops any server still running below the folder and deletes it.
    ///
    /// Errors: the file system's kind naming the folder when it cannot be deleted.
    pub fn remove(self, bin_dir: Option<&Path>) -> Result<()> {
        stop_everything_below(&self.path, bin_dir);
        fs_err::remove_dir_all(&self.path).map_err(|e| {
            Error::from(e).context(format!("removing the drill folder {} (delete it by hand)", self.path.display()))
        })
    }
}

/// Removes the folders of drills that are no longer running (their lock is free), with the
/// servers still running in them. Returns what was removed; problems are logged.
pub fn remove_leftover_dirs(root: &Path, bin_dir: Option<&Path>) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root) else { return Vec::new() };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let is_drill = entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) && path.is_dir();
        if !is_drill {
            continue;
        }
        match File::open(path.join(LOCK_FILE)) {
            Ok(lock) => {
                if lock.try_lock().is_err() {
                    continue; // a drill is running there
                }
            }
            // A folder is created a moment before its lock file: only an old one is a leftover.
            Err(_) if !older_than(&path, std::time::Duration::from_secs(60)) => continue,
            Err(_) => {}
        }
        stop_everything_below(&path, bin_dir);
        match fs_err::remove_dir_all(&path) {
            Ok(()) => {
                tracing::info!(folder = %path.display(), "removed the leftover of a crashed drill");
                removed.push(path.display().to_string());
            }
            Err(e) => tracing::warn!(folder = %path.display(), error = %e, "cannot remove a crashed drill's folder"),
        }
    }
    removed
}

fn older_than(path: &Path, age: std::time::Duration) -> bool {
    fs_err::metadata(path).and_then(|m| m.modified()).map(|t| t.elapsed().unwrap_or_default() > age).unwrap_or(true)
}

/// Stops every server below `dir`, and waits (up to a minute) until no process works in it
/// any more: a `pg_ctl start` that a cut-short drill left running may start its server a
/// moment after the first stop, so the stop is repeated until nothing is left.
fn stop_everything_below(dir: &Path, bin_dir: Option<&Path>) {
    for _ in 0..120 {
        stop_servers_below(dir, bin_dir);
        if processes_in(dir).is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    tracing::warn!(folder = %dir.display(), pids = ?processes_in(dir), "processes still work in a drill folder");
}

/// The processes whose command line names something inside `dir` (Linux `/proc`;
/// elsewhere none are seen).
fn processes_in(dir: &Path) -> Vec<u32> {
    // With the separator, `/tmp/a` does not match a process of `/tmp/ab`.
    let mut needle = dir.as_os_str().as_encoded_bytes().to_vec();
    needle.push(b'/');
    let own = std::process::id();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| *pid != own)
        .filter(|pid| {
            fs_err::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| cmd.windows(needle.len()).any(|w| w == needle.as_slice()))
        })
        .collect()
}

/// Stops (immediately: it is thrown away) every server whose data directory is at most
/// three levels below `dir`.
fn stop_servers_below(dir: &Path, bin_dir: Option<&Path>) {
    fn visit(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
        if dir.join("postmaster.pid").exists() {
            found.push(dir.to_path_buf());
            return;
        }
        if depth == 0 {
            return;
        }
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                visit(&path, depth - 1, found);
            }
        }
    }
    let mut data_dirs = Vec::new();
    visit(dir, 3, &mut data_dirs);
    for data in data_dirs {
        if let Err(e) = crate::pgcluster::stop_data_dir_now(bin_dir, &data) {
            tracing::debug!(data = %data.display(), error = %e.report(), "no server to stop");
        }
    }
}

/// `tidemark_drill_<workspace>_<snapshot>` in the characters an unquoted identifier allows,
/// at most 63 bytes (Postgres' limit).
pub fn database_name(workspace: &str, snapshot: &str) -> String {
    let mut name = format!("{DATABASE_PREFIX}{}_{}", sanitize(workspace), sanitize(snapshot));
    name.truncate(63);
    name
}

fn sanitize(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

/// A drill's database on a scratch server, guarded by an advisory lock the drill holds.
pub struct ScratchDatabase {
    admin: PgConnection,
    name: String,
}

fn lock_key(name: &str) -> String {
    format!("tidemark drill {name}")
}

impl ScratchDatabase {
    /// Takes the database name for this drill on the scratch server `server` (a URL to its
    /// maintenance database); a leftover of the same name is dropped first. The restore
    /// creates the database itself.
    ///
    /// Errors: `Unavailable` when the server cannot be reached, `Refused` when a drill of
    /// the same snapshot is running right now.
    pub async fn claim(server: &ConnSpec, name: &str) -> Result<ScratchDatabase> {
        let mut admin = server.connect().await.map_err(|e| e.context("connecting to the drill scratch server"))?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(lock_key(name))
            .fetch_one(&mut admin)
            .await?;
        if !locked {
            return Err(Error::new(
                ErrorKind::Refused,
                format!("a drill into {name} is running on the scratch server right now; wait for it to end"),
            ));
        }
        let mut db = ScratchDatabase { admin, name: name.to_string() };
        db.drop_database().await?;
        Ok(db)
    }

    async fn drop_database(&mut self) -> Result<()> {
        drop_database(&mut self.admin, &self.name)
            .await
            .map_err(|e| e.context(format!("dropping the drill database {}", self.name)))
    }

    /// Drops the database and releases the lock.
    ///
    /// Errors: `Database` naming the database when it cannot be dropped.
    pub async fn remove(mut self) -> Result<()> {
        let dropped = self.drop_database().await;
        ConnSpec::close(self.admin).await; // ends the session: the advisory lock goes with it
        dropped
    }
}

/// `DROP DATABASE ... WITH (FORCE)`: a throwaway's leftover sessions are ended with it.
async fn drop_database(admin: &mut PgConnection, name: &str) -> Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name))))
        .execute(admin)
        .await?;
    Ok(())
}

/// Drops the drill databases on the scratch server that no running drill holds.
///
/// Errors: `Unavailable` when the server cannot be reached.
pub async fn remove_leftover_databases(server: &ConnSpec) -> Result<Vec<String>> {
    let mut admin = server.connect().await.map_err(|e| e.context("connecting to the drill scratch server"))?;
    let names: Vec<String> = sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE $1")
        .bind(format!("{}%", DATABASE_PREFIX.replace('_', "\\_")))
        .fetch_all(&mut admin)
        .await?;
    let mut removed = Vec::new();
    for name in names {
        let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(lock_key(&name))
            .fetch_one(&mut admin)
            .await?;
        if !free {
            continue;
        }
        let dropped = drop_database(&mut admin, &name).await;
        let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))").bind(lock_key(&name)).execute(&mut admin).await;
        match dropped {
            Ok(()) => {
                tracing::info!(database = %name, "dropped the leftover database of a crashed drill");
                removed.push(name);
            }
            Err(e) => tracing::warn!(database = %name, error = %e.report(), "cannot drop a leftover"),
        }
    }
    ConnSpec::close(admin).await;
    Ok(removed)
}

/// Where a drill restored; removed at the end.
pub enum Place {
    /// A throwaway cluster being started: even when the drill is cut short (timeout,
    /// Ctrl-C), the start runs to its end, and cleanup waits for it and stops the cluster.
    Starting(tokio::task::JoinHandle<Result<Cluster>>),
    Cluster(Cluster),
    Server(ScratchDatabase),
}

/// Stops and removes the throwaway.
pub async fn remove(place: Option<Place>, scratch: ScratchDir, bin_dir: Option<PathBuf>) -> Result<()> {
    let place = match place {
        // A cluster still starting is waited for, then stopped like a running one.
        Some(Place::Starting(handle)) => handle.await.ok().and_then(Result::ok).map(Place::Cluster),
        other => other,
    };
    let dropped = match place {
        Some(Place::Server(db)) => db.remove().await,
        Some(Place::Cluster(cluster)) => tokio::task::spawn_blocking(move || cluster.discard())
            .await
            .map_err(|e| Error::internal(format!("cluster stop task: {e}"))),
        Some(Place::Starting(_)) | None => Ok(()),
    };
    let removed = tokio::task::spawn_blocking(move || scratch.remove(bin_dir.as_deref()))
        .await
        .map_err(|e| Error::internal(format!("drill cleanup task: {e}")))?;
    dropped.and(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_plain_identifiers_within_the_limit() {
        assert_eq!(database_name("shop", "20261123T120000Z-ab12"), "tidemark_drill_shop_20261123t120000z_ab12");
        let long = database_name(&"w".repeat(80), "x");
        assert_eq!(long.len(), 63);
        assert!(database_name("Shöp-1", "a").chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
    }

    #[test]
    fn processes_working_in_a_folder_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep").arg("30").current_dir(dir.path()).spawn().unwrap();
        assert!(processes_in(dir.path()).is_empty(), "only the command line counts, not the working folder");
        child.kill().unwrap();
        child.wait().unwrap();
        // A process that keeps its command line: `sh -c "sleep 30" sh FILE` does not, as the
        // shell may exec sleep in its place.
        let marker = dir.path().join("x");
        fs_err::write(&marker, "").unwrap();
        let mut child = std::process::Command::new("tail").arg("-f").arg(&marker).spawn().unwrap();
        // spawn() returns when the child has begun its exec, and its new command line may
        // still be unset for a moment on a busy machine.
        let cmdline = format!("/proc/{}/cmdline", child.id());
        for _ in 0..500 {
            if fs_err::read(&cmdline).is_ok_and(|c| c.starts_with(b"tail")) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(processes_in(dir.path()), vec![child.id()]);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(processes_in(dir.path()).is_empty());
    }

    #[test]
    fn a_locked_folder_is_kept_and_a_released_one_is_removed() {
        let root = tempfile::tempdir().unwrap();
        let running = ScratchDir::create(root.path(), "shop").unwrap();
        let crashed = ScratchDir::create(root.path(), "shop").unwrap();
        let crashed_path = crashed.path().to_path_buf();
        fs_err::write(crashed_path.join("restored.txt"), "x").unwrap();
        drop(crashed); // its lock is released, as when the process dies
        // A child that another test is forking at this moment holds a copy of the lock's
        // descriptor until its exec closes it: give that moment time to pass.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let removed = loop {
            let removed = remove_leftover_dirs(root.path(), None);
            if !removed.is_empty() || std::time::Instant::now() > deadline {
                break removed;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(removed, vec![crashed_path.display().to_string()]);
        assert!(!crashed_path.exists());
        assert!(running.path().exists(), "a running drill's folder is never touched");
        let path = running.path().to_path_buf();
        running.remove(None).unwrap();
        assert!(!path.exists());
    }
}
