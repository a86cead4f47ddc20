//! `wal push` and `wal fetch`: the `archive_command` and `restore_command` of a workspace's
//! cluster. The workspace may be omitted when the config has exactly one.

use std::path::Path;

use super::Core;
use crate::error::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

use crate::wal::archive::{self, Pushed};

mod setup;

pub use setup::*;

/// Archives one WAL file; succeeds only once it is durable in the repository.
pub async fn push(core: &Core, workspace: Option<&str>, path: &Path) -> Result<Pushed> {
    let workspace = core.workspace_or_only(workspace)?;
    let core = &super::hold::locking(core, super::hold::pitr_until(core, &workspace)?);
    archive::push(&core.repo, core.recipients()?, &workspace, path).await
}

/// Archives one WAL file through the pusher of `spool` (`wal push --async`, see
/// [`crate::wal::ahead`]): answers from the spool once the pusher has stored exactly this
/// file, starting the pusher (`start_pusher`, `false` when it could not) when none runs. A
/// file Postgres does not wait for, a spool that cannot be used, a pusher that cannot be
/// started, or no answer within `wait` and the file is pushed here,
/// as `wal push` does: either way this returns only once the file is durable in the
/// repository.
///
/// Errors: those of [`push`]; `Unavailable` with the pusher's message when it failed on
/// this file (Postgres runs the archive_command again).
pub async fn push_async(
    core: &Core,
    workspace: Option<&str>,
    path: &Path,
    spool: &crate::wal::ahead::PushSpool,
    wait: std::time::Duration,
    start_pusher: impl Fn() -> bool,
) -> Result<Pushed> {
    use crate::wal::ahead::Answer;
    let workspace = core.workspace_or_only(workspace)?;
    if !crate::wal::ahead::is_waiting(path) {
        return push(core, Some(&workspace), path).await;
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    let deadline = std::time::Instant::now() + wait;
    let mut started: Option<std::time::Instant> = None;
    loop {
        match spool.answer(&name, path) {
            Answer::Stored => {
                let sha256 = spool.stored_sha256(&name).unwrap_or_default();
                let bytes = fs_err::metadata(path).map(|m| m.len()).unwrap_or(0);
                return Ok(Pushed { name, sha256, bytes, stored: true, reach: None });
            }
            Answer::Failed(message) => {
                return Err(Error::new(ErrorKind::Unavailable, format!("archiving {name} ahead failed: {message}")));
            }
            Answer::Pending => {}
        }
        match spool.needs_pusher() {
            // A pusher just started takes a moment to take its lock.
            Ok(true) if started.is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(2)) => {
                if !start_pusher() {
                    return push(core, Some(&workspace), path).await;
                }
                started = Some(std::time::Instant::now());
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(spool = %spool.dir().display(), error = %e, "cannot use the push spool; pushing here");
                return push(core, Some(&workspace), path).await;
            }
        }
        if std::time::Instant::now() >= deadline {
            tracing::warn!(file = %name, "the pusher did not answer in time; pushing here");
            return push(core, Some(&workspace), path).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The pusher of `wal push --async`: pushes every file waiting in `pg_wal`, `parallel` at
/// a time, until nothing has waited for `idle`. Returns how many it stored.
///
/// Errors: the spool or `pg_wal` cannot be used; the workspace's config.
pub async fn push_ahead(
    core: &Core,
    workspace: Option<&str>,
    pg_wal: &Path,
    spool: &crate::wal::ahead::PushSpool,
    parallel: usize,
    idle: std::time::Duration,
) -> Result<usize> {
    let workspace = core.workspace_or_only(workspace)?;
    let core = &super::hold::locking(core, super::hold::pitr_until(core, &workspace)?);
    let (repo, recipients) = (core.repo.clone(), core.recipients()?.clone());
    // At most `parallel` segment buffers, reused from push to push.
    let buffers = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    spool
        .run(pg_wal, parallel, idle, |path| {
            let (repo, recipients, workspace) = (repo.clone(), recipients.clone(), workspace.clone());
            let buffers = buffers.clone();
            // A task of its own: compressing and encrypting runs on every core.
            let pushed = tokio::spawn(async move {
                let mut buffer = buffers.lock().expect("buffer pool").pop().unwrap_or_default();
                let pushed = archive::push_with(&repo, &recipients, &workspace, &path, &mut buffer).await;
                buffers.lock().expect("buffer pool").push(buffer);
                pushed
            });
            async move { pushed.await.unwrap_or_else(|e| Err(Error::internal(format!("a push task failed: {e}")))) }
        })
        .await
}

/// Restores one archived WAL file to `dest`; with `streamed` (a copy of the WAL stream's
/// spool), a segment not archived whole may come from there (see
/// [`archive::fetch_with_streamed`]).
pub async fn fetch(
    core: &Core,
    workspace: Option<&str>,
    name: &str,
    dest: &Path,
    streamed: Option<&Path>,
) -> Result<u64> {
    let workspace = core.workspace_or_only(workspace)?;
    match streamed {
        Some(dir) => archive::fetch_with_streamed(&core.repo, &core.identities()?, &workspace, name, dest, dir).await,
        None => archive::fetch(&core.repo, &core.identities()?, &workspace, name, dest).await,
    }
}

pub use crate::wal::recovery::{fetch_failure_in, fetch_failure_line};

/// Reads WAL ahead into `spool` for a recovery (see [`crate::wal::prefetch`]); returns how
/// many files it downloaded.
pub async fn prefetch(
    core: &Core,
    workspace: Option<&str>,
    spool: &crate::wal::prefetch::Spool,
    depth: u32,
    segment_size: u64,
) -> Result<usize> {
    let workspace = core.workspace_or_only(workspace)?;
    spool.fill(&core.repo, &core.identities()?, &workspace, depth, segment_size).await
}

/// What `wal stream` takes.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct StreamOptions {
    pub workspace: String,
    /// Default: `tidemark_<workspace>`.
    pub slot: Option<String>,
    /// Default: the workspace's `wal-spool`, else `wal-spool/<workspace>` beside the config
    /// (it holds WAL not yet shipped: keep it on durable storage, not in a cache or tmpfs).
    pub spool: Option<std::path::PathBuf>,
}

/// Where a workspace's WAL stream keeps what it has not shipped yet: its `wal-spool`, else
/// `wal-spool/<workspace>` beside the config.
///
/// Errors: `Config` for an unknown workspace.
pub fn stream_spool(core: &Core, workspace: &str) -> Result<std::path::PathBuf> {
    let ws = core.workspace(workspace)?;
    Ok(match &ws.config.wal_spool {
        Some(dir) => core.config.resolve_path(dir),
        None => core.config.resolve_path(Path::new("wal-spool")).join(workspace),
    })
}

/// Streams WAL until `shutdown`. Errors: those of [`crate::wal::stream::stream`].
pub async fn stream(
    core: &Core,
    opts: &StreamOptions,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<crate::wal::stream::StreamReport> {
    use crate::wal::stream::{StreamSettings, default_slot};
    let ws = core.workspace(&opts.workspace)?;
    let spec = ws.conn()?.clone();
    let settings = StreamSettings {
        workspace: opts.workspace.clone(),
        slot: opts.slot.clone().unwrap_or_else(|| default_slot(&opts.workspace)),
        spool: match &opts.spool {
            Some(dir) => dir.clone(),
            None => stream_spool(core, &opts.workspace)?,
        },
        poll: std::time::Duration::from_millis(500),
        report_every: std::time::Duration::from_secs(30),
        partial_every: std::time::Duration::from_secs(1),
        lag_sink: Some({
            let (metrics, workspace) = (core.metrics.clone(), opts.workspace.clone());
            std::sync::Arc::new(move |progress| metrics.stream_progress(&workspace, progress))
        }),
        synchronous: ws.config.wal_stream == crate::config::WalStream::Synchronous,
    };
    crate::wal::stream::stream(&core.repo, core.recipients()?, &spec, core.pg_bin_dir().as_deref(), &settings, shutdown)
        .await
        .map_err(|e| e.context(format!("streaming WAL of workspace {}", opts.workspace)))
}
