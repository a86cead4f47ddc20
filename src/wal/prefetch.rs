//! Reading WAL ahead during recovery. Postgres runs one `restore_command` at a time and
//! waits for each; with prefetching, a detached `wal prefetch` process downloads the next
//! segments into a spool folder while the server replays, so most `wal fetch` calls only
//! move a verified file into place (pgBackRest's asynchronous archive-get works the same
//! way).
//!
//! The spool holds only complete, verified files (each written under a temporary name,
//! synced, then renamed); `requested` names the newest file Postgres asked for; one
//! prefetcher at a time holds `prefetch.lock`. Nothing in the spool is needed for
//! correctness: a file that is not there, or a spool that cannot be used, only means that
//! `wal fetch` downloads the file itself.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::archive::fetch_archived;
use super::{Segment, WalFile};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::Identities;
use crate::repo::Repository;

const LOCK_FILE: &str = "prefetch.lock";
const REQUESTED_FILE: &str = "requested";
/// Downloads in flight at once (each one streams: memory stays a few MiB per download).
const CONCURRENCY: usize = 3;

/// A recovery's prefetch folder.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    pub fn new(dir: impl Into<PathBuf>) -> Spool {
        Spool { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Moves the prefetched `name` to `dest`. `false` when it was not prefetched (or the
    /// spool cannot be used): the caller downloads it.
    pub fn take(&self, name: &str, dest: &Path) -> bool {
        // Only WAL file names are looked up: a name is never a path.
        if WalFile::parse(name).is_err() {
            return false;
        }
        let prefetched = self.dir.join(name);
        match fs_err::rename(&prefetched, dest) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                tracing::warn!(file = name, error = %e, "cannot use the prefetched WAL file; downloading it");
                let _ = fs_err::remove_file(&prefetched);
                false
            }
        }
    }

    /// Records that Postgres asked for `name`, so a prefetcher reads ahead of it. Returns
    /// whether no prefetcher is running (the caller starts one).
    ///
    /// Errors: the spool folder or its files cannot be written.
    pub fn request(&self, name: &str) -> std::io::Result<bool> {
        use std::os::unix::fs::DirBuilderExt;
        // Not its parents: a data directory moved after `pitr restore` must not be recreated
        // at its old place (the read-ahead is then off, with a warning).
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let tmp = self.dir.join(format!(".{REQUESTED_FILE}-{}", std::process::id()));
        fs_err::write(&tmp, name)?;
        fs_err::rename(&tmp, self.dir.join(REQUESTED_FILE))?;
        let lock = self.lock_file()?;
        Ok(lock.try_lock().is_ok())
    }

    fn lock_file(&self) -> std::io::Result<File> {
        File::options().create(true).truncate(false).write(true).open(self.dir.join(LOCK_FILE))
    }

    fn requested(&self) -> Option<String> {
        fs_err::read_to_string(self.dir.join(REQUESTED_FILE)).ok().map(|s| s.trim().to_string())
    }

    /// Downloads the `depth` archived segments that follow the newest requested one (on
    /// its timeline), and again whenever Postgres has asked for a newer one meanwhile.
    /// Returns how many files it downloaded: when nothing new was requested, at once when
    /// another prefetcher runs. A file that is not archived (the end of the archive, a
    /// gap) or cannot be read is skipped: `wal fetch` reports it when Postgres asks.
    ///
    /// Errors: only when the spool itself cannot be used.
    pub async fn fill(
        &self,
        repo: &Repository,
        identities: &Identities,
        workspace: &str,
        depth: u32,
        segment_size: u64,
    ) -> Result<usize> {
        let mut downloaded = 0;
        let mut served = None;
        loop {
            let lock = match self.lock_file() {
                Ok(lock) => lock,
                // The end of recovery removed the spool: nothing is left to read ahead for
                // (not an error in the server's log).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(downloaded),
                Err(e) => return Err(e.into()),
            };
            if lock.try_lock().is_err() {
                return Ok(downloaded);
            }
            self.remove_unfinished();
            while let Some(requested) = self.requested().filter(|r| Some(r) != served.as_ref()) {
                // A history file or a partial segment: nothing to read ahead of.
                let Ok(current) = Segment::parse(&requested, segment_size) else {
                    served = Some(requested);
                    continue;
                };
                self.forget_up_to(current, segment_size);
                let wanted: Vec<String> = (1..=u64::from(depth))
                    .map(|i| Segment { timeline: current.timeline, number: current.number + i }.name(segment_size))
                    .filter(|name| !self.dir.join(name).exists())
                    .collect();
                let mut results = futures::stream::iter(wanted)
                    .map(|name| async move {
                        let fetched = fetch_archived(repo, identities, workspace, &name, &self.dir.join(&name)).await;
                        (name, fetched)
                    })
                    .buffered(CONCURRENCY);
                while let Some((name, fetched)) = results.next().await {
                    match fetched {
                        Ok(_) => downloaded += 1,
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        // Recovery ended and its spool went with it.
                        Err(_) if !self.dir.exists() => return Ok(downloaded),
                        Err(e) => tracing::warn!(file = %name, error = %e.report(), "prefetching a WAL file failed"),
                    }
                }
                served = Some(requested);
            }
            drop(lock);
            // A request made while the lock was held, just before it was released, found a
            // prefetcher running and started none: serve it too.
            if self.requested() == served {
                return Ok(downloaded);
            }
        }
    }

    /// Removes prefetched segments Postgres has gone past (or of another timeline).
    fn forget_up_to(&self, current: Segment, segment_size: u64) {
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Ok(segment) = Segment::parse(&name, segment_size)
                && (segment.timeline != current.timeline || segment.number <= current.number)
            {
                let _ = fs_err::remove_file(entry.path());
            }
        }
    }

    /// Removes temporary files a killed prefetcher left.
    fn remove_unfinished(&self) {
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().contains(".tidemark-") {
                let _ = fs_err::remove_file(entry.path());
            }
        }
    }

    /// Removes the spool at the end of recovery (the `recovery_end_command`), after a
    /// running prefetcher has finished (waiting at most `wait`).
    ///
    /// Errors: `Internal` naming the folder when it cannot be removed.
    pub fn remove(&self, wait: Duration) -> Result<()> {
        if !self.dir.exists() {
            return Ok(());
        }
        let deadline = Instant::now() + wait;
        while let Ok(lock) = self.lock_file() {
            if lock.try_lock().is_ok() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        fs_err::remove_dir_all(&self.dir)
            .map_err(|e| Error::from(e).context(format!("removing the WAL prefetch folder {}", self.dir.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: u64 = 16 << 20;

    #[test]
    fn taking_moves_only_prefetched_wal_files() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("spool"));
        assert!(spool.request("000000010000000000000003").unwrap(), "no prefetcher runs yet");
        fs_err::write(spool.dir().join("000000010000000000000004"), "wal").unwrap();
        let dest = dir.path().join("RECOVERYXLOG");
        assert!(!spool.take("000000010000000000000005", &dest), "not prefetched");
        assert!(!spool.take("../requested", &dest), "never a path");
        assert!(spool.take("000000010000000000000004", &dest));
        assert_eq!(fs_err::read_to_string(&dest).unwrap(), "wal");
        assert!(!spool.dir().join("000000010000000000000004").exists());
        assert_eq!(spool.requested().as_deref(), Some("000000010000000000000003"));
    }

    #[test]
    fn segments_already_replayed_and_unfinished_files_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        for name in [
            "000000010000000000000002",
            "000000010000000000000003",
            "000000010000000000000004",
            "000000020000000000000005",
            ".000000010000000000000006.tidemark-77",
        ] {
            fs_err::write(dir.path().join(name), "").unwrap();
        }
        spool.forget_up_to(Segment::parse("000000010000000000000003", SIZE).unwrap(), SIZE);
        spool.remove_unfinished();
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, vec!["000000010000000000000004"]);
    }

    #[test]
    fn a_running_prefetcher_is_seen_and_removal_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("spool"));
        assert!(spool.request("000000010000000000000003").unwrap());
        let held = spool.lock_file().unwrap();
        held.lock().unwrap();
        assert!(!spool.request("000000010000000000000004").unwrap(), "a prefetcher holds the lock");
        let started = Instant::now();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        spool.remove(Duration::from_secs(30)).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300), "removal waited for the prefetcher");
        assert!(!spool.dir().exists());
        releaser.join().unwrap();
        spool.remove(Duration::from_secs(1)).expect("removing twice is fine");
    }
}
