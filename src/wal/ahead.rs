//! Archiving ahead (`wal push --async`). Postgres runs one archive_command at a time and
//! waits for each, so a backlog drains at the speed of one `wal push` process per segment
//! (start, config, repository, keys, hash, compress, encrypt, store). With `--async` a
//! detached `wal push-ahead` process pushes every file Postgres has marked ready
//! (`pg_wal/archive_status/*.ready`), several at once from one process, and records each
//! one it stored as `<name>.ok` in a spool folder: the SHA-256 of what it stored and the
//! file it read it from (device, inode, size, modification time, the same before and
//! after the read). The archive_command then only looks at its file's metadata and
//! compares (pgBackRest's asynchronous archive-push works the same way, without the
//! comparison).
//!
//! The guarantee is `wal push`'s: the archive_command exits 0 only when the repository
//! holds this file, durably. A `.ok` is written only after the push returned, and one for
//! another file (a spool copied along with a data directory: other device or inode; a file
//! written since: other size or time) counts for nothing. Nothing in the spool is needed for correctness:
//! when it cannot be used, or the pusher does not answer in time, the archive_command
//! pushes the file itself. One pusher at a time holds `push.lock`; it stops after a while
//! with nothing to do and the next archive_command starts it again.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::WalFile;
use super::archive::Pushed;
use crate::error::{Error, ErrorKind, Result};

const LOCK_FILE: &str = "push.lock";

/// The spool folder of an asynchronous archive_command.
#[derive(Debug, Clone)]
pub struct PushSpool {
    dir: PathBuf,
}

/// What the archive_command learns from the spool about its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Stored, with this content.
    Stored,
    /// The pusher failed on it (its message); the next archive_command tries again.
    Failed(String),
    /// Not yet (or a `.ok` for other content).
    Pending,
}

impl PushSpool {
    pub fn new(dir: impl Into<PathBuf>) -> PushSpool {
        PushSpool { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The default spool of a cluster whose WAL folder is `pg_wal`: `tidemark-push-spool`
    /// beside it, in the data directory (the server's user can always write there).
    pub fn beside(pg_wal: &Path) -> PushSpool {
        let data = pg_wal.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        PushSpool::new(data.join("tidemark-push-spool"))
    }

    /// What the spool says about the file `name` at `path`. A failure is reported once
    /// (its file is removed); a `.ok` for another file is removed (the pusher skips names it
    /// has a `.ok` for, so it then pushes this file on its next round).
    pub fn answer(&self, name: &str, path: &Path) -> Answer {
        let ok = self.dir.join(format!("{name}.ok"));
        if let Ok(text) = fs_err::read_to_string(&ok) {
            let record = text.split_once(' ').map(|(_, file)| file.trim());
            if record.is_some() && record == FileId::of(path).ok().map(|id| id.0).as_deref() {
                return Answer::Stored;
            }
            let _ = fs_err::remove_file(&ok);
        }
        let failed = self.dir.join(format!("{name}.error"));
        match fs_err::read_to_string(&failed) {
            Ok(message) => {
                let _ = fs_err::remove_file(&failed);
                Answer::Failed(message)
            }
            Err(_) => Answer::Pending,
        }
    }

    /// The SHA-256 a `.ok` records (what the pusher stored).
    pub fn stored_sha256(&self, name: &str) -> Option<String> {
        let text = fs_err::read_to_string(self.dir.join(format!("{name}.ok"))).ok()?;
        text.split_once(' ').map(|(sha, _)| sha.to_string())
    }

    /// Creates the spool if needed; `true` when no pusher runs (the caller starts one).
    ///
    /// Errors: the folder or its lock cannot be written.
    pub fn needs_pusher(&self) -> std::io::Result<bool> {
        Ok(self.lock_file()?.try_lock().is_ok())
    }

    /// The lock file, in a spool created if needed (only the server's user reads it).
    fn lock_file(&self) -> std::io::Result<File> {
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        File::options().create(true).truncate(false).write(true).open(self.dir.join(LOCK_FILE))
    }

    fn record(&self, name: &str, suffix: &str, text: &str) -> std::io::Result<()> {
        let tmp = self.dir.join(format!(".{name}.{suffix}.tmp"));
        fs_err::write(&tmp, text)?;
        fs_err::rename(&tmp, self.dir.join(format!("{name}.{suffix}")))
    }

    /// Removes what the spool says about files that are no longer waiting (archived, so
    /// Postgres marked them done).
    fn sweep(&self, waiting: &BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let name = file.strip_suffix(".ok").or_else(|| file.strip_suffix(".error"));
            if let Some(name) = name
                && !waiting.contains(name)
            {
                let _ = fs_err::remove_file(entry.path());
            }
        }
    }

    /// Pushes every file of `pg_wal` that waits for archiving, `parallel` at a time,
    /// oldest first, recording each outcome as soon as it is known; until nothing has
    /// waited for `idle`. Returns how many files it stored; at once when another pusher
    /// runs.
    ///
    /// Errors: only when the spool itself cannot be used (a failed push is recorded for
    /// its archive_command and tried again after a pause).
    pub async fn run<F, Fut>(&self, pg_wal: &Path, parallel: usize, idle: Duration, push: F) -> Result<usize>
    where
        F: Fn(PathBuf) -> Fut,
        Fut: std::future::Future<Output = Result<Pushed>>,
    {
        let lock = self.lock_file()?;
        if lock.try_lock().is_err() {
            return Ok(0);
        }
        let mut stored = 0;
        let mut quiet_since = Instant::now();
        let mut failed_at: std::collections::HashMap<String, Instant> = std::collections::HashMap::new();
        let mut queue: std::collections::VecDeque<String> = std::collections::VecDeque::new();
        let mut in_flight = futures::stream::FuturesUnordered::new();
        let mut busy: BTreeSet<String> = BTreeSet::new();
        loop {
            if queue.is_empty() && in_flight.len() < parallel.max(1) {
                let waiting = waiting_files(pg_wal)?;
                self.sweep(&waiting);
                // A failed file is tried again after a pause, not in a tight loop.
                failed_at.retain(|name, at| waiting.contains(name) && at.elapsed() < Duration::from_secs(5));
                queue.extend(
                    waiting
                        .into_iter()
                        .filter(|n| !busy.contains(n) && !failed_at.contains_key(n))
                        .filter(|n| !self.dir.join(format!("{n}.ok")).exists()),
                );
            }
            while in_flight.len() < parallel.max(1)
                && let Some(name) = queue.pop_front()
            {
                busy.insert(name.clone());
                let path = pg_wal.join(&name);
                // Before the push reads it (the push may start at once, on another thread).
                let before = FileId::of(&path);
                let pushed = push(path.clone());
                in_flight.push(async move {
                    let outcome = pushed.await;
                    let after = FileId::of(&path);
                    let outcome = match (outcome, before, after) {
                        (Ok(p), Ok(before), Ok(after)) if before == after => Ok((p, before)),
                        (Ok(_), _, _) => {
                            Err(Error::new(ErrorKind::Unavailable, format!("{name} changed while it was archived")))
                        }
                        (Err(e), _, _) => Err(e),
                    };
                    (name, outcome)
                });
            }
            let Some((name, outcome)) = in_flight.next().await else {
                if quiet_since.elapsed() >= idle {
                    return Ok(stored);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
                continue;
            };
            busy.remove(&name);
            quiet_since = Instant::now();
            match outcome {
                Ok((pushed, file)) => {
                    stored += usize::from(pushed.stored);
                    self.record(&name, "ok", &format!("{} {}", pushed.sha256, file.0))?;
                }
                Err(e) => {
                    tracing::warn!(file = %name, error = %e.report(), "pushing ahead failed; the archive_command will say so");
                    self.record(&name, "error", &e.report())?;
                    failed_at.insert(name, Instant::now());
                }
            }
        }
    }
}

/// Which file a path is, and in which state: device, inode, size and modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileId(String);

impl FileId {
    fn of(path: &Path) -> std::io::Result<FileId> {
        use std::os::unix::fs::MetadataExt;
        let m = fs_err::metadata(path)?;
        Ok(FileId(format!("{}:{}:{}:{}.{}", m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec())))
    }
}

/// The files of `pg_wal` that Postgres has marked ready for archiving, oldest first
/// (history files before the segments of their timeline).
///
/// Errors: `archive_status` cannot be read.
pub fn waiting_files(pg_wal: &Path) -> Result<BTreeSet<String>> {
    let status = pg_wal.join("archive_status");
    let entries = std::fs::read_dir(&status).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("cannot read {}: {e} (is {} a pg_wal folder?)", status.display(), pg_wal.display()),
        )
    })?;
    Ok(entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|f| f.strip_suffix(".ready")).map(str::to_string))
        .filter(|name| WalFile::parse(name).is_ok())
        .collect())
}

/// Whether `path` is a file Postgres waits to archive (its `.ready` is there): only such a
/// file is left to the pusher; anything else is pushed by the archive_command itself.
pub fn is_waiting(path: &Path) -> bool {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else { return false };
    WalFile::parse(name).is_ok() && dir.join("archive_status").join(format!("{name}.ready")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed(name: &str, sha: &str) -> Pushed {
        Pushed { name: name.into(), sha256: sha.into(), bytes: 16, stored: true, reach: None }
    }

    #[tokio::test]
    async fn the_pusher_pushes_what_waits_and_records_exactly_what_it_stored() {
        let dir = tempfile::tempdir().unwrap();
        let pg_wal = dir.path().join("pg_wal");
        fs_err::create_dir_all(pg_wal.join("archive_status")).unwrap();
        let names = ["000000010000000000000003", "000000010000000000000001", "00000002.history"];
        for n in names {
            fs_err::write(pg_wal.join(n), n).unwrap();
            fs_err::write(pg_wal.join("archive_status").join(format!("{n}.ready")), "").unwrap();
        }
        // Done already, and not a WAL file: neither is pushed.
        fs_err::write(pg_wal.join("archive_status").join("000000010000000000000000.done"), "").unwrap();
        fs_err::write(pg_wal.join("archive_status").join("notwal.ready"), "").unwrap();
        let spool = PushSpool::beside(&pg_wal);
        assert_eq!(spool.dir(), dir.path().join("tidemark-push-spool"));
        assert!(spool.needs_pusher().unwrap());
        let seen = std::sync::Mutex::new(Vec::new());
        let stored = spool
            .run(&pg_wal, 2, Duration::from_millis(100), |path| {
                let name = path.file_name().unwrap().to_str().unwrap().to_string();
                seen.lock().unwrap().push(name.clone());
                async move {
                    if name.ends_with("03") {
                        Err(Error::new(ErrorKind::Unavailable, "the store is down"))
                    } else {
                        Ok(pushed(&name, &format!("sha-of-{name}")))
                    }
                }
            })
            .await
            .unwrap();
        let at = |name: &str| pg_wal.join(name);
        assert_eq!(stored, 2);
        let seen = seen.into_inner().unwrap();
        assert!(seen.iter().all(|n| names.contains(&n.as_str())), "{seen:?}");
        assert_eq!(seen.iter().filter(|n| n.ends_with("01")).count(), 1, "a stored file is pushed once: {seen:?}");
        assert!(seen.iter().filter(|n| n.ends_with("03")).count() >= 1);
        // The answer holds for the file that was read, unchanged.
        let one = "000000010000000000000001";
        assert_eq!(spool.answer(one, &at(one)), Answer::Stored);
        assert_eq!(spool.stored_sha256(one).as_deref(), Some("sha-of-000000010000000000000001"));
        assert_eq!(spool.answer("00000002.history", &at("00000002.history")), Answer::Stored);
        // Another file of the same name (a copied data directory: another inode): no.
        let copy = dir.path().join("copy");
        fs_err::copy(at(one), &copy).unwrap();
        assert_eq!(spool.answer(one, &copy), Answer::Pending);
        assert!(!spool.dir().join(format!("{one}.ok")).exists(), "a stale record is dropped");
        // Written since (another size): no.
        spool.record(one, "ok", &format!("sha {}", FileId::of(&at(one)).unwrap().0)).unwrap();
        assert_eq!(spool.answer(one, &at(one)), Answer::Stored);
        fs_err::write(at(one), "rewritten, and longer").unwrap();
        assert_eq!(spool.answer(one, &at(one)), Answer::Pending);
        match spool.answer("000000010000000000000003", &at("000000010000000000000003")) {
            Answer::Failed(m) => assert!(m.contains("the store is down"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            spool.answer("000000010000000000000003", &at("000000010000000000000003")),
            Answer::Pending,
            "a failure is told once"
        );
        spool.record(one, "ok", "sha x").unwrap();

        // Once Postgres marks a file done, its record goes; what still waits keeps its own.
        fs_err::rename(
            pg_wal.join("archive_status/000000010000000000000001.ready"),
            pg_wal.join("archive_status/000000010000000000000001.done"),
        )
        .unwrap();
        spool.record("00000002.history", "ok", "sha x").unwrap();
        spool.sweep(&waiting_files(&pg_wal).unwrap());
        assert!(!spool.dir().join("000000010000000000000001.ok").exists());
        assert!(spool.dir().join("00000002.history.ok").exists());
    }

    #[tokio::test]
    async fn one_pusher_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let pg_wal = dir.path().join("pg_wal");
        fs_err::create_dir_all(pg_wal.join("archive_status")).unwrap();
        let spool = PushSpool::beside(&pg_wal);
        assert!(spool.needs_pusher().unwrap());
        let held = spool.lock_file().unwrap();
        held.try_lock().unwrap();
        assert!(!spool.needs_pusher().unwrap(), "a running pusher holds the lock");
        let ran = spool
            .run(&pg_wal, 1, Duration::from_secs(60), |_| async { Err(Error::internal("never called")) })
            .await
            .unwrap();
        assert_eq!(ran, 0, "a second pusher returns at once");
    }

    #[tokio::test]
    async fn a_file_written_while_it_is_pushed_is_not_recorded_as_stored() {
        let dir = tempfile::tempdir().unwrap();
        let pg_wal = dir.path().join("pg_wal");
        fs_err::create_dir_all(pg_wal.join("archive_status")).unwrap();
        let name = "000000010000000000000001";
        fs_err::write(pg_wal.join(name), "first").unwrap();
        fs_err::write(pg_wal.join("archive_status").join(format!("{name}.ready")), "").unwrap();
        let spool = PushSpool::beside(&pg_wal);
        let stored = spool
            .run(&pg_wal, 1, Duration::from_millis(50), |path| async move {
                fs_err::write(&path, "first, then more").unwrap();
                Ok(pushed(name, "sha of the first version"))
            })
            .await
            .unwrap();
        assert_eq!(stored, 0);
        match spool.answer(name, &pg_wal.join(name)) {
            Answer::Failed(m) => assert!(m.contains("changed while it was archived"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_a_waiting_wal_file_is_left_to_the_pusher() {
        let dir = tempfile::tempdir().unwrap();
        let pg_wal = dir.path().join("pg_wal");
        fs_err::create_dir_all(pg_wal.join("archive_status")).unwrap();
        let seg = pg_wal.join("000000010000000000000001");
        fs_err::write(&seg, "x").unwrap();
        assert!(!is_waiting(&seg), "no .ready");
        fs_err::write(pg_wal.join("archive_status/000000010000000000000001.ready"), "").unwrap();
        assert!(is_waiting(&seg));
        assert!(!is_waiting(&dir.path().join("elsewhere/000000010000000000000001")));
        assert!(!is_waiting(&pg_wal.join("archive_status")));
    }
}
