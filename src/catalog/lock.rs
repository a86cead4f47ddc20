//! Per-workspace file locks beside the catalog, so that work which must not overlap does
//! not, across every tidemark process of one host (the daemon, the command line): a
//! snapshot holds its workspace's lock shared (snapshots may run side by side), `prune`
//! holds it exclusively (it deletes objects nothing has committed yet, which a running
//! snapshot's are). A file lock dies with its process, so a killed snapshot never blocks
//! prune. Hosts that share a repository are protected by prune's grace period and by the
//! snapshot's last look at its objects before it commits.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};

/// Shared (snapshots) or exclusive (prune).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// Held for as long as the work runs.
#[derive(Debug)]
pub struct WorkspaceLock {
    _file: std::fs::File,
}

/// The lock file of a workspace: `<catalog>.locks/<workspace>.lock`.
pub fn lock_path(catalog: &Path, workspace: &str) -> PathBuf {
    catalog.with_extension("locks").join(format!("{workspace}.lock"))
}

impl WorkspaceLock {
    /// Takes the lock, waiting up to `wait` while another process holds it in a mode that
    /// excludes this one (at least a second: a child being spawned holds a copy of a lock
    /// this process has just let go of until its exec). `holder` says what holds it, for
    /// the message (e.g. "a snapshot").
    ///
    /// Errors: `Unavailable` (temporary: try again later) when it is still held after
    /// `wait`, or the lock file cannot be created.
    pub async fn acquire(
        catalog: &Path,
        workspace: &str,
        mode: LockMode,
        wait: Duration,
        holder: &str,
    ) -> Result<WorkspaceLock> {
        crate::config::validate_workspace_name(workspace)?;
        let path = lock_path(catalog, workspace);
        let unavailable = |e: std::io::Error| {
            Error::new(ErrorKind::Unavailable, format!("cannot create the workspace lock {}: {e}", path.display()))
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(unavailable)?;
        }
        let file =
            std::fs::File::options().create(true).truncate(false).write(true).open(&path).map_err(unavailable)?;
        let deadline = Instant::now() + wait.max(Duration::from_secs(1));
        let mut logged = false;
        loop {
            let tried = match mode {
                LockMode::Shared => file.try_lock_shared(),
                LockMode::Exclusive => file.try_lock(),
            };
            match tried {
                Ok(()) => return Ok(WorkspaceLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    if !logged && wait > Duration::from_secs(1) {
                        tracing::info!(workspace, "waiting for {holder} of this workspace to finish");
                        logged = true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        format!(
                            "{holder} of workspace {workspace} is running in another tidemark process (lock {}); \
                             try again when it has finished",
                            path.display()
                        ),
                    ));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(unavailable(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn snapshots_share_the_lock_and_prune_excludes_them() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = dir.path().join("tidemark-catalog.sqlite");
        let short = Duration::from_millis(10);
        let first = WorkspaceLock::acquire(&catalog, "shop", LockMode::Shared, short, "a prune").await.unwrap();
        let second = WorkspaceLock::acquire(&catalog, "shop", LockMode::Shared, short, "a prune").await.unwrap();
        let refused = WorkspaceLock::acquire(&catalog, "shop", LockMode::Exclusive, short, "a snapshot").await;
        let e = refused.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.message().contains("a snapshot of workspace shop"), "{}", e.message());
        // Another workspace is not affected.
        WorkspaceLock::acquire(&catalog, "blog", LockMode::Exclusive, short, "a snapshot").await.unwrap();
        drop((first, second));
        let prune = WorkspaceLock::acquire(&catalog, "shop", LockMode::Exclusive, short, "a snapshot").await.unwrap();
        let waiting = WorkspaceLock::acquire(&catalog, "shop", LockMode::Shared, short, "a prune").await;
        assert_eq!(waiting.unwrap_err().kind(), ErrorKind::Unavailable);
        // A snapshot that waits long enough gets the lock once prune is done.
        let later = tokio::spawn(async move {
            WorkspaceLock::acquire(&catalog, "shop", LockMode::Shared, Duration::from_secs(20), "a prune").await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(prune);
        later.await.unwrap().unwrap();
    }
}
