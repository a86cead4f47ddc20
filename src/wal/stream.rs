//! Continuous WAL shipping: `pg_receivewal` streams the source's WAL over a replication
//! slot into a local spool folder, and every segment it completes is pushed to the
//! repository (the same push as archive_command: idempotent, never overwriting) and then
//! removed from the spool. The slot keeps the source from recycling WAL the spool has not
//! received; the spool keeps what the repository has not received; so a stream killed and
//! restarted resumes without a gap. The segment still being written (`.partial`) is never
//! published under its final name: it is shipped every second (when it changed) as a
//! partial version of its own, which recovery uses only while the segment itself is not
//! archived, so a crash of the source loses about a second of WAL, not a segment.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::WalFile;
use super::archive;
use crate::error::{Error, Result};
use crate::keys::Recipients;
use crate::pg::ConnSpec;
use crate::repo::Repository;

/// Told the lag (bytes) each time it is read.
pub type LagSink = std::sync::Arc<dyn Fn(i64) + Send + Sync>;

#[derive(Clone)]
pub struct StreamSettings {
    pub workspace: String,
    pub slot: String,
    pub spool: PathBuf,
    /// How often the spool is scanned for completed segments.
    pub poll: Duration,
    /// How often the lag is logged.
    pub report_every: Duration,
    /// How often the unfinished segment is shipped (when it changed): the RPO on a quiet
    /// database, where a segment can take hours to fill.
    pub partial_every: Duration,
    /// Where the lag goes besides the log (the process's metrics).
    pub lag_sink: Option<LagSink>,
}

impl std::fmt::Debug for StreamSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSettings")
            .field("workspace", &self.workspace)
            .field("slot", &self.slot)
            .field("spool", &self.spool)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamReport {
    pub shipped: u64,
    pub bytes: u64,
    pub restarts: u64,
}

/// The default replication slot of a workspace.
pub fn default_slot(workspace: &str) -> String {
    format!("tidemark_{}", workspace.replace('-', "_"))
}

/// Creates the physical replication slot if it is missing, reserving WAL at once (a slot
/// made by `pg_receivewal --create-slot` reserves nothing until the stream reports back,
/// and a checkpoint in between may remove WAL the stream still needs).
///
/// Errors: `Database` when the role may not (REPLICATION or superuser is needed).
pub async fn ensure_slot(spec: &ConnSpec, slot: &str) -> Result<()> {
    let mut conn = spec.connect().await?;
    let created = sqlx::query(
        "SELECT pg_create_physical_replication_slot($1, true) \
         WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = $1)",
    )
    .bind(slot)
    .execute(&mut conn)
    .await;
    match created {
        Ok(_) => Ok(()),
        // Created at the same moment by someone else (a base backup): just as good.
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42710") => Ok(()),
        Err(e) => Err(Error::from(e).context(format!("creating the replication slot {slot}"))),
    }
}

/// The server no longer has the WAL a `.partial` file in the spool continues: that WAL is
/// lost (the slot was dropped or invalidated). The partial file is set aside so the
/// stream can go on from the slot; the gap shows in `pitr window` and `check`.
fn set_aside_partials(spool: &Path) -> Result<Vec<String>> {
    let mut moved = Vec::new();
    for entry in std::fs::read_dir(spool)? {
        let name = entry?.file_name().to_string_lossy().to_string();
        if name.ends_with(".partial") {
            std::fs::rename(spool.join(&name), spool.join(format!("{name}.lost")))?;
            moved.push(name);
        }
    }
    Ok(moved)
}

/// Ships the completed WAL files in the spool, oldest first; returns (files, bytes).
async fn ship_spool(repo: &Repository, recipients: &Recipients, settings: &StreamSettings) -> Result<(u64, u64)> {
    let mut names: Vec<String> = std::fs::read_dir(&settings.spool)?
        .filter_map(|e| e.ok().and_then(|e| e.file_name().to_str().map(str::to_string)))
        .filter(|n| WalFile::parse(n).is_ok())
        .collect();
    names.sort();
    let (mut files, mut bytes) = (0, 0);
    for name in names {
        let path = settings.spool.join(&name);
        let pushed = archive::push(repo, recipients, &settings.workspace, &path).await?;
        if matches!(WalFile::parse(&name), Ok(WalFile::Segment { .. })) {
            archive::drop_partials(repo, &settings.workspace, &name).await?;
        }
        std::fs::remove_file(&path)?;
        tracing::info!(workspace = %settings.workspace, file = %name, stored = pushed.stored, "WAL shipped");
        files += 1;
        bytes += pushed.bytes;
    }
    Ok((files, bytes))
}

/// Ships the unfinished segment if it changed since `last` (its name and mtime).
async fn ship_partial(
    repo: &Repository,
    recipients: &Recipients,
    settings: &StreamSettings,
    last: &mut Option<(String, std::time::SystemTime)>,
) -> Result<()> {
    let partial = std::fs::read_dir(&settings.spool)?
        .filter_map(std::result::Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".partial")))
        .max_by_key(std::fs::DirEntry::file_name);
    let Some(entry) = partial else { return Ok(()) };
    let name = entry.file_name().to_string_lossy().to_string();
    // pg_receivewal renames the file once its segment is complete, at any moment: then
    // there is nothing unfinished to ship (the completed segment is shipped as such).
    let modified = match entry.metadata().and_then(|m| m.modified()) {
        Ok(modified) => modified,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if last.as_ref().is_some_and(|(n, m)| *n == name && *m == modified) {
        return Ok(());
    }
    let pushed = match archive::push_partial(repo, recipients, &settings.workspace, &entry.path()).await {
        Err(_) if !entry.path().exists() => return Ok(()),
        pushed => pushed?,
    };
    if pushed.stored {
        tracing::debug!(workspace = %settings.workspace, file = %pushed.name, "unfinished WAL segment shipped");
    }
    *last = Some((name, modified));
    Ok(())
}

async fn lag_bytes(spec: &ConnSpec, slot: &str) -> Result<Option<i64>> {
    let mut conn = spec.connect().await?;
    let row: Option<(Option<i64>,)> = sqlx::query_as(
        "SELECT (pg_current_wal_lsn() - restart_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(&mut conn)
    .await?;
    Ok(row.and_then(|r| r.0))
}

/// Streams until `shutdown`; pg_receivewal is restarted (resuming from the slot) when it
/// stops. On shutdown, pg_receivewal is stopped and every completed segment shipped.
///
/// Errors: `Database` when the slot cannot be created (REPLICATION privilege, pg_hba),
/// `Unavailable` for the store; a failing push stops the stream (the spool keeps the file).
pub async fn stream(
    repo: &Repository,
    recipients: &Recipients,
    spec: &ConnSpec,
    bin_dir: Option<&Path>,
    settings: &StreamSettings,
    shutdown: CancellationToken,
) -> Result<StreamReport> {
    std::fs::create_dir_all(&settings.spool)
        .map_err(|e| Error::from(e).context(format!("creating the WAL spool {}", settings.spool.display())))?;
    let tool = crate::pg::tool(bin_dir, "pg_receivewal");
    let base_cmd = || {
        let mut cmd = tokio::process::Command::new(&tool);
        cmd.args(["--slot", &settings.slot, "--no-password"]).env("LC_ALL", "C").stdin(std::process::Stdio::null());
        spec.apply_to_command(&mut cmd);
        cmd
    };
    ensure_slot(spec, &settings.slot).await?;
    let mut report = StreamReport::default();
    // What a previous run left in the spool goes first.
    let (files, bytes) = ship_spool(repo, recipients, settings).await?;
    report.shipped += files;
    report.bytes += bytes;

    let mut last_report = Instant::now();
    let mut last_ship = Instant::now();
    let mut last_partial_push = Instant::now();
    let mut last_partial = None;
    let mut backoff = Duration::from_secs(1);
    'outer: loop {
        let mut child = base_cmd()
            .arg("--directory")
            .arg(&settings.spool)
            .args(["--no-loop", "--synchronous"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| crate::pg::tool_spawn_error(&tool, &e))?;
        tracing::info!(workspace = %settings.workspace, slot = %settings.slot, "WAL stream started");
        // Read stderr as it comes (a full pipe would stall pg_receivewal); keep the end.
        let stderr_tail = {
            let mut err = child.stderr.take().expect("piped stderr");
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut tail = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    tail.extend_from_slice(&buf[..n]);
                    let excess = tail.len().saturating_sub(8192);
                    tail.drain(..excess);
                }
                String::from_utf8_lossy(&tail).into_owned()
            })
        };
        let mut stderr_tail = Some(stderr_tail);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    if let Some(pid) = child.id() {
                        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
                    }
                    let _ = child.wait().await;
                    break 'outer;
                }
                status = child.wait() => {
                    let stderr = match stderr_tail.take() {
                        Some(task) => task.await.unwrap_or_default(),
                        None => String::new(),
                    };
                    tracing::warn!(workspace = %settings.workspace, status = ?status.ok(), stderr = %stderr.trim(),
                        retry_in = ?backoff, "pg_receivewal stopped; restarting from the slot");
                    if stderr.contains("has already been removed") {
                        let moved = set_aside_partials(&settings.spool)?;
                        tracing::error!(workspace = %settings.workspace, files = ?moved,
                            "WAL the stream had not finished was removed from the server: it is lost, and the \
                             point-in-time window has a gap here; take a base backup");
                    }
                    report.restarts += 1;
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => break 'outer,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    continue 'outer;
                }
                () = tokio::time::sleep(settings.poll) => {}
            }
            let (files, bytes) = ship_spool(repo, recipients, settings).await?;
            if files > 0 {
                report.shipped += files;
                report.bytes += bytes;
                last_ship = Instant::now();
                backoff = Duration::from_secs(1);
            }
            if last_partial_push.elapsed() >= settings.partial_every {
                last_partial_push = Instant::now();
                ship_partial(repo, recipients, settings, &mut last_partial).await?;
            }
            if last_report.elapsed() >= settings.report_every {
                last_report = Instant::now();
                match lag_bytes(spec, &settings.slot).await {
                    Ok(lag) => {
                        if let (Some(sink), Some(bytes)) = (&settings.lag_sink, lag) {
                            sink(bytes);
                        }
                        tracing::info!(workspace = %settings.workspace, lag_bytes = ?lag,
                            seconds_since_last_shipped = last_ship.elapsed().as_secs(), "WAL stream lag");
                    }
                    Err(e) => {
                        tracing::warn!(workspace = %settings.workspace, error = %e.report(), "cannot read the lag");
                    }
                }
            }
        }
    }
    let (files, bytes) = ship_spool(repo, recipients, settings).await?;
    report.shipped += files;
    report.bytes += bytes;
    ship_partial(repo, recipients, settings, &mut last_partial).await?;
    tracing::info!(workspace = %settings.workspace, shipped = report.shipped, "WAL stream stopped");
    Ok(report)
}
