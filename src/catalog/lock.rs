//! One operation per workspace, across every tidemark process of a host (the daemon, the
//! command line, the API): snapshot, prune, base backup, pin changes and restores into the
//! workspace's own database take the workspace's lock, a file lock beside the catalog. The
//! holder writes who it is into the file (operation, actor, pid, host, since), so a second
//! operation that finds it held can say who holds it. A file lock dies with its process: a
//! holder killed with SIGKILL leaves nothing to clean up, and the next operation takes the
//! lock over at once. With a PostgreSQL catalog the lock is a lease in it instead
//! ([`WorkspaceLock::acquire_shared`], [`super::fleet`]), so the rule holds across hosts: a
//! holder that stops renewing its heartbeat (killed, its host gone, cut off, paused) loses
//! it after the lease timeout, and checks that it still holds it ([`fence`]) right before
//! an irreversible step. Hosts that share a repository without sharing a catalog are
//! protected by prune's grace period and by the snapshot's last look at its objects before
//! it commits.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::fleet::Lease;
use crate::actor::Actor;
use crate::error::{Error, ErrorKind, Result};

/// Who holds a workspace's lock, as the holder wrote it into the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// "snapshot", "prune", "basebackup", "pin", "restore".
    pub operation: String,
    /// `cli:alice`, `schedule:nightly`.
    pub actor: String,
    pub pid: u32,
    pub host: String,
    pub since: DateTime<Utc>,
}

impl Holder {
    /// This process, about to run `operation` for `actor`.
    pub fn me(operation: &str, actor: &Actor) -> Holder {
        Holder {
            operation: operation.to_string(),
            actor: actor.to_string(),
            pid: std::process::id(),
            host: super::host_name(),
            since: Utc::now(),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a {} asked by {} (pid {} on {}, since {})",
            self.operation,
            self.actor,
            self.pid,
            self.host,
            self.since.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// How long to wait for a workspace that is busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Refuse at once (after a second's look: a child being spawned holds a copy of a
    /// lock this process has just let go of until its exec).
    No,
    /// Wait up to this long, then refuse.
    Up(Duration),
    /// Wait until the holder finishes (or the operation is stopped).
    Forever,
}

/// Held for as long as the operation runs.
#[derive(Debug)]
pub struct WorkspaceLock {
    _held: Held,
}

/// What keeps a lock (a workspace's, or the daemon's) for as long as it is alive: a file
/// lock, or a lease in a PostgreSQL catalog. Dropped, it lets go.
#[derive(Debug)]
pub(super) enum Held {
    File(#[allow(dead_code)] std::fs::File),
    Lease(#[allow(dead_code)] LeaseGuard),
}

/// An operation waiting for a busy workspace, either kind of lock: how long it looks
/// before it refuses (as `wait` says), and what it says meanwhile.
struct Waiting<'a> {
    workspace: &'a str,
    me: &'a Holder,
    wait: Wait,
    stop: &'a CancellationToken,
    started: Instant,
    logged: bool,
}

impl<'a> Waiting<'a> {
    fn new(workspace: &'a str, me: &'a Holder, wait: Wait, stop: &'a CancellationToken) -> Waiting<'a> {
        Waiting { workspace, me, wait, stop, started: Instant::now(), logged: false }
    }

    /// After a look that found the lock held by `holder`: `Busy` once patience is over,
    /// else a moment's pause before the next look (`Interrupted` when stopped meanwhile).
    async fn again(&mut self, holder: Option<Holder>) -> Result<()> {
        let patience = match self.wait {
            Wait::No => Some(Duration::from_secs(1)),
            Wait::Up(d) => Some(d.max(Duration::from_secs(1))),
            Wait::Forever => None,
        };
        if patience.is_some_and(|p| self.started.elapsed() >= p) {
            return Err(busy(self.workspace, self.me, holder.as_ref(), self.wait));
        }
        if !self.logged && self.wait != Wait::No {
            let holder = holder.map(|h| h.to_string()).unwrap_or_else(|| "another operation".into());
            tracing::info!(workspace = self.workspace, "waiting for {holder} to finish");
            self.logged = true;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => Ok(()),
            () = self.stop.cancelled() => Err(Error::new(
                ErrorKind::Interrupted,
                format!("stopped while waiting for workspace {} to be free", self.workspace),
            )),
        }
    }
}

/// The lock file of a workspace: `<catalog>.locks/<workspace>.lock`.
pub fn lock_path(catalog: &Path, workspace: &str) -> PathBuf {
    catalog.with_extension("locks").join(format!("{workspace}.lock"))
}

/// Who holds the lock now, if it says (`None`: free, or a holder that wrote nothing yet).
pub fn holder(catalog: &Path, workspace: &str) -> Option<Holder> {
    let text = fs_err::read_to_string(lock_path(catalog, workspace)).ok()?;
    serde_json::from_str(&text).ok()
}

impl WorkspaceLock {
    /// Takes the workspace's lock for `me`, waiting as `wait` says while another process
    /// (or another operation of this one) holds it.
    ///
    /// Errors: `Busy` naming the holder when it is still held (`Interrupted` when `stop`
    /// is cancelled while waiting); `Unavailable` when the lock file cannot be created.
    pub async fn acquire(
        catalog: &Path,
        workspace: &str,
        me: &Holder,
        wait: Wait,
        stop: &CancellationToken,
    ) -> Result<WorkspaceLock> {
        crate::config::validate_workspace_name(workspace)?;
        let path = lock_path(catalog, workspace);
        let unavailable = |e: std::io::Error| {
            Error::new(ErrorKind::Unavailable, format!("cannot use the workspace lock {}: {e}", path.display()))
        };
        if let Some(dir) = path.parent() {
            fs_err::create_dir_all(dir).map_err(unavailable)?;
        }
        let mut file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(unavailable)?;
        let mut waiting = Waiting::new(workspace, me, wait, stop);
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::Error(e)) => return Err(unavailable(e)),
                Err(std::fs::TryLockError::WouldBlock) => {}
            }
            let holder = read_holder(&mut file);
            waiting.again(holder).await?;
        }
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(serde_json::to_string(me).expect("a holder serializes").as_bytes()))
            .and_then(|()| file.flush());
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot record who holds the workspace lock");
        }
        Ok(WorkspaceLock { _held: Held::File(file) })
    }

    /// Takes the workspace's lock in a PostgreSQL catalog: the lease `workspace NAME` (see
    /// [`super::fleet`]), held until the lock is dropped, or until this process stops
    /// renewing its heartbeat for the lease timeout (killed, its host gone, cut off,
    /// paused), waiting as `wait` says. Falls back to the file lock beside a SQLite catalog.
    /// Before an irreversible step, its holder asks [`fence`].
    ///
    /// Errors: as [`WorkspaceLock::acquire`]; `Unavailable` naming the catalog when it
    /// cannot be reached.
    pub async fn acquire_shared(
        catalog: &super::Catalog,
        workspace: &str,
        me: &Holder,
        wait: Wait,
        stop: &CancellationToken,
    ) -> Result<WorkspaceLock> {
        if !catalog.is_shared() {
            return WorkspaceLock::acquire(catalog.path(), workspace, me, wait, stop).await;
        }
        crate::config::validate_workspace_name(workspace)?;
        let name = lease_name(workspace);
        let text = serde_json::to_string(me).expect("a holder serializes");
        let mut waiting = Waiting::new(workspace, me, wait, stop);
        let lease = loop {
            match catalog.take_lease(super::fleet::Role::Cli, &name, &text).await? {
                Ok(lease) => break lease,
                Err(holder) => {
                    let holder = holder.and_then(|text| serde_json::from_str::<Holder>(&text).ok());
                    waiting.again(holder).await?;
                }
            }
        };
        held_leases().insert(workspace.to_string(), (catalog.clone(), lease.clone()));
        Ok(WorkspaceLock {
            _held: Held::Lease(LeaseGuard { catalog: catalog.clone(), workspace: workspace.into(), lease }),
        })
    }
}

/// The lease of a workspace's lock in a PostgreSQL catalog.
pub fn lease_name(workspace: &str) -> String {
    format!("workspace {workspace}")
}

/// The workspace leases this process holds now, for [`fence`].
fn held_leases() -> std::sync::MutexGuard<'static, std::collections::HashMap<String, (super::Catalog, Lease)>> {
    static HELD: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, (super::Catalog, Lease)>>> =
        std::sync::LazyLock::new(Default::default);
    HELD.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The fencing check before an irreversible step of an operation on `workspace` (`what`:
/// "committing snapshot X"): with a PostgreSQL catalog, whether this process still holds
/// the workspace's lease (and, if so, its heartbeat renewed); with a file lock, which its
/// holder cannot lose while it runs, nothing to check.
///
/// Errors: `Refused` when the lease was lost (this process was paused or cut off past its
/// lease timeout and another may have taken the workspace) or the catalog cannot confirm it.
pub async fn fence(workspace: &str, what: &str) -> Result<()> {
    let held = held_leases().get(workspace).cloned();
    match held {
        Some((catalog, lease)) => catalog.fence(&lease, what).await,
        None => Ok(()),
    }
}

/// Frees a lease when its lock is dropped: at once when the runtime can (a task tracked
/// until [`finish_releases`]); if not, the lease expires with this process's heartbeat.
#[derive(Debug)]
pub(super) struct LeaseGuard {
    catalog: super::Catalog,
    workspace: String,
    lease: Lease,
}

static RELEASES: std::sync::LazyLock<tokio_util::task::TaskTracker> =
    std::sync::LazyLock::new(tokio_util::task::TaskTracker::new);

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        {
            let mut held = held_leases();
            if held.get(&self.workspace).is_some_and(|(_, l)| *l == self.lease) {
                held.remove(&self.workspace);
            }
        }
        let (catalog, lease) = (self.catalog.clone(), self.lease.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            RELEASES.spawn_on(
                async move {
                    if let Err(e) = catalog.release_lease(&lease).await {
                        tracing::warn!(lease = %lease.name, error = %e.report(),
                            "cannot free a lease; it expires with this process's heartbeat");
                    }
                },
                &runtime,
            );
        }
    }
}

/// Waits for the leases dropped so far to be freed (see [`super::fleet::finish`]).
pub(super) async fn finish_releases() {
    RELEASES.close();
    RELEASES.wait().await;
}

fn read_holder(file: &mut std::fs::File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

fn busy(workspace: &str, me: &Holder, holder: Option<&Holder>, wait: Wait) -> Error {
    let who = holder.map(std::string::ToString::to_string).unwrap_or_else(|| "another tidemark operation".into());
    let waited = match wait {
        Wait::Up(d) => format!(" (waited {})", humantime::format_duration(Duration::from_secs(d.as_secs()))),
        _ => String::new(),
    };
    Error::new(
        ErrorKind::Busy,
        format!(
            "workspace {workspace} is busy: {who} is running{waited}; one operation per workspace at a time. \
             Run the {} again with --wait to wait for it, or when it has finished",
            me.operation
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::ActorKind;

    fn me(operation: &str, name: &str) -> Holder {
        Holder::me(operation, &Actor::new(ActorKind::Cli, name))
    }

    #[tokio::test]
    async fn one_operation_per_workspace_and_the_refusal_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = dir.path().join("tidemark-catalog.sqlite");
        let stop = CancellationToken::new();
        let first = WorkspaceLock::acquire(&catalog, "shop", &me("snapshot", "ana"), Wait::No, &stop).await.unwrap();
        assert_eq!(holder(&catalog, "shop").unwrap().actor, "cli:ana");
        let e = WorkspaceLock::acquire(&catalog, "shop", &me("prune", "bo"), Wait::No, &stop).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Busy);
        let text = e.message();
        assert!(text.contains("a snapshot asked by cli:ana") && text.contains(&format!("pid {}", std::process::id())));
        assert!(text.contains("--wait"), "{text}");
        // Another workspace is not affected.
        WorkspaceLock::acquire(&catalog, "blog", &me("prune", "bo"), Wait::No, &stop).await.unwrap();
        // A waiting operation gets the lock once the holder is done.
        let later = tokio::spawn({
            let (catalog, stop) = (catalog.clone(), stop.clone());
            async move { WorkspaceLock::acquire(&catalog, "shop", &me("prune", "bo"), Wait::Forever, &stop).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!later.is_finished());
        drop(first);
        let held = later.await.unwrap().unwrap();
        // Stopping a waiter interrupts it.
        let stop_waiting = CancellationToken::new();
        let waiting = tokio::spawn({
            let (catalog, stop) = (catalog.clone(), stop_waiting.clone());
            async move { WorkspaceLock::acquire(&catalog, "shop", &me("prune", "cy"), Wait::Forever, &stop).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop_waiting.cancel();
        assert_eq!(waiting.await.unwrap().unwrap_err().kind(), ErrorKind::Interrupted);
        drop(held);
    }

    /// With a PostgreSQL catalog the lock holds for every process that shares it (two
    /// catalogs opened apart stand for two hosts): the second is refused naming the first,
    /// and gets it once the first lets go.
    #[tokio::test]
    async fn one_operation_per_workspace_across_hosts_with_a_shared_catalog() {
        let engines = crate::catalog::testing::Engines::start().await;
        let location = engines.locations().pop().unwrap();
        let a = crate::catalog::Catalog::open_at(&location).await.unwrap();
        let b = crate::catalog::Catalog::open_at(&location).await.unwrap();
        let stop = CancellationToken::new();
        let first = WorkspaceLock::acquire_shared(&a, "shop", &me("snapshot", "ana"), Wait::No, &stop).await.unwrap();
        let e = WorkspaceLock::acquire_shared(&b, "shop", &me("prune", "bo"), Wait::No, &stop).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Busy);
        assert!(e.message().contains("a snapshot asked by cli:ana"), "{}", e.message());
        WorkspaceLock::acquire_shared(&b, "blog", &me("prune", "bo"), Wait::No, &stop).await.unwrap();
        let later = tokio::spawn({
            let (b, stop) = (b.clone(), stop.clone());
            async move { WorkspaceLock::acquire_shared(&b, "shop", &me("prune", "bo"), Wait::Forever, &stop).await }
        });
        drop(first);
        later.await.unwrap().expect("the lock is free once its holder lets go");
        // No file lock was involved: nothing beside the catalog's side path.
        assert!(!lock_path(a.path(), "shop").exists());
    }
}
