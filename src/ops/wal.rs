//! `wal push` and `wal fetch`: the `archive_command` and `restore_command` of a workspace's
//! cluster. The workspace may be omitted when the config has exactly one.

use std::path::Path;

use super::Core;
use crate::error::{Error, ErrorKind, Result};
use crate::wal::archive::{self, Pushed};

/// Archives one WAL file; succeeds only once it is durable in the repository.
pub async fn push(core: &Core, workspace: Option<&str>, path: &Path) -> Result<Pushed> {
    let workspace = core.workspace_or_only(workspace)?;
    archive::push(&core.repo, core.recipients()?, &workspace, path).await
}

/// Restores one archived WAL file to `dest`.
pub async fn fetch(core: &Core, workspace: Option<&str>, name: &str, dest: &Path) -> Result<u64> {
    let workspace = core.workspace_or_only(workspace)?;
    archive::fetch(&core.repo, &core.identities()?, &workspace, name, dest).await
}

/// How `wal fetch` reports a failure on its stderr (the server log), so that whoever
/// started the server can tell why recovery stopped: [`fetch_failure_in`] reads it back.
pub fn fetch_failure_line(e: &Error) -> String {
    format!("tidemark wal fetch failed ({}): {}", e.kind().name(), e.report())
}

/// The kind of the first `wal fetch` failure in a server log, if any.
pub fn fetch_failure_in(log: &str) -> Option<ErrorKind> {
    log.lines().find_map(|line| {
        let (_, rest) = line.split_once("tidemark wal fetch failed (")?;
        let (name, _) = rest.split_once(')')?;
        ErrorKind::ALL.into_iter().find(|k| k.name() == name)
    })
}

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
#[derive(Debug, Clone, Default)]
pub struct StreamOptions {
    pub workspace: String,
    /// Default: `tidemark_<workspace>`.
    pub slot: Option<String>,
    /// Default: `wal-spool/<workspace>` beside the config (it holds WAL not yet shipped:
    /// keep it on durable storage, not in a cache or tmpfs).
    pub spool: Option<std::path::PathBuf>,
}

/// Streams WAL until `shutdown`. Errors: those of [`crate::wal::stream::stream`].
pub async fn stream(
    core: &Core,
    opts: &StreamOptions,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<crate::wal::stream::StreamReport> {
    use crate::wal::stream::{StreamSettings, default_slot};
    let ws = core.config.workspace(&opts.workspace)?;
    let spec = crate::pg::ConnSpec::parse(&ws.database_url, ws.password.as_ref())?;
    let settings = StreamSettings {
        workspace: opts.workspace.clone(),
        slot: opts.slot.clone().unwrap_or_else(|| default_slot(&opts.workspace)),
        spool: opts
            .spool
            .clone()
            .unwrap_or_else(|| core.config.resolve_path(Path::new("wal-spool")).join(&opts.workspace)),
        poll: std::time::Duration::from_millis(500),
        report_every: std::time::Duration::from_secs(30),
        partial_every: std::time::Duration::from_secs(1),
    };
    crate::wal::stream::stream(&core.repo, core.recipients()?, &spec, core.pg_bin_dir().as_deref(), &settings, shutdown)
        .await
        .map_err(|e| e.context(format!("streaming WAL of workspace {}", opts.workspace)))
}
