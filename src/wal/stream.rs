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

use super::archive;
use super::{Lsn, Segment, WalFile};
use crate::error::{Error, Result};
use crate::keys::Recipients;
use crate::pg::ConnSpec;
use crate::repo::Repository;

/// Told where the stream stands each time the lag is read.
pub type LagSink = std::sync::Arc<dyn Fn(&Progress) + Send + Sync>;

/// Where a stream stands: what the repository holds of the source's WAL.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    /// Where the WAL shipped to the repository reaches (the end of a completed segment,
    /// or of the last whole record of the unfinished one).
    pub streamed: Option<Lsn>,
    /// When that was shipped.
    pub shipped_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Bytes of WAL the source has written and the repository does not hold yet.
    pub lag_bytes: Option<i64>,
}

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
    /// Run as a synchronous standby named `application_name` (`wal-stream = "synchronous"`).
    pub synchronous: bool,
}

/// The application name a workspace's receiver reports to the source (what
/// `synchronous_standby_names` lists for `wal-stream = "synchronous"`): its slot's name.
pub fn application_name(workspace: &str) -> String {
    default_slot(workspace)
}

/// How the source sees a receiver: whether its `synchronous_standby_names` names it, and
/// the receiver's replication state while it is connected.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StandbyState {
    pub application_name: String,
    /// The source's `synchronous_standby_names`.
    pub synchronous_standby_names: String,
    /// Whether that names the receiver (by name or `*`).
    pub named: bool,
    /// The source's `synchronous_commit` (as tidemark's role sees it): `off` and `local`
    /// commits do not wait for any standby.
    pub synchronous_commit: String,
    /// `pg_stat_replication.sync_state` (`sync`, `quorum`, `potential`, `async`) while the
    /// receiver is connected; `None` while it is not (or cannot be seen).
    pub sync_state: Option<String>,
    /// Whether tidemark's role may see the receivers' state (superuser or
    /// `pg_read_all_stats`); without it, whether the receiver is connected is unknown.
    pub state_visible: bool,
}

impl StandbyState {
    /// Whether the source's commits wait for the receiver: it names it, commits wait for
    /// standbys, and the receiver is connected as a synchronous one.
    pub fn is_synchronous(&self) -> bool {
        self.named
            && !matches!(self.synchronous_commit.as_str(), "off" | "local")
            && (!self.state_visible || matches!(self.sync_state.as_deref(), Some("sync" | "quorum")))
    }

    /// What a user must know about a synchronous stream in this state: the source blocks
    /// commits while the receiver is down, or the stream is not synchronous at all.
    pub fn warning(&self) -> String {
        let app = &self.application_name;
        if matches!(self.synchronous_commit.as_str(), "off" | "local") {
            return format!(
                "wal-stream = \"synchronous\", but the source runs with synchronous_commit = {}: commits do NOT wait \
                 for the stream and the last second of them can be lost. Set synchronous_commit = on on the source",
                self.synchronous_commit
            );
        }
        if !self.named {
            return format!(
                "wal-stream = \"synchronous\", but the source's synchronous_standby_names ({:?}) does not name {app}: \
                 commits do NOT wait for the stream and the last second of them can be lost. Set \
                 synchronous_standby_names = '{app}' on the source and reload it",
                self.synchronous_standby_names
            );
        }
        let names = self.synchronous_standby_names.to_ascii_lowercase();
        let quorum = names.starts_with("any ") || names.contains(',');
        let down = match (self.state_visible, &self.sync_state, quorum) {
            (false, _, _) => {
                "(tidemark's role cannot see whether the receiver is connected: grant it \
                              pg_read_all_stats.) "
            }
            (true, None, false) => "The receiver is NOT connected now: commits are waiting. ",
            (true, None, true) => "The receiver is NOT connected now. ",
            (true, Some(_), _) => "",
        };
        if quorum {
            format!(
                "{down}synchronous WAL stream {app} in {:?}: a commit waits for the standbys listed there; \
                 commits acknowledged by another standby alone may not be in tidemark's spool",
                self.synchronous_standby_names
            )
        } else {
            format!(
                "{down}synchronous WAL stream: the source blocks EVERY commit while {app} is down (tidemark stopped, its \
                 host or network gone). The usual remedy is a second synchronous standby: \
                 synchronous_standby_names = 'ANY 1 ({app}, other_standby)'"
            )
        }
    }
}

/// Whether `synchronous_standby_names` names `app` (`name, ...`, `FIRST n (...)`,
/// `ANY n (...)`, `n (...)`; `*` names everyone; names compare without case unless quoted).
pub fn names_standby(setting: &str, app: &str) -> bool {
    let list = match (setting.find('('), setting.rfind(')')) {
        (Some(a), Some(b)) if a < b => &setting[a + 1..b],
        _ => setting,
    };
    list.split(',').map(str::trim).filter(|n| !n.is_empty()).any(|n| match n.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"') == Some(app),
        None => n == "*" || n.eq_ignore_ascii_case(app),
    })
}

/// Reads how the source sees the receiver named `app`.
///
/// Errors: `Unavailable`/`Database` when the source cannot be asked.
pub async fn standby_state(spec: &ConnSpec, app: &str) -> Result<StandbyState> {
    let mut conn = spec.connect().await?;
    let (names, commit, visible): (String, String, bool) = sqlx::query_as(
        "SELECT current_setting('synchronous_standby_names'), current_setting('synchronous_commit'), \
         pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')",
    )
    .fetch_one(&mut conn)
    .await?;
    let state: Option<(Option<String>,)> = sqlx::query_as(
        "SELECT sync_state FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming' LIMIT 1",
    )
    .bind(app)
    .fetch_optional(&mut conn)
    .await?;
    ConnSpec::close(conn).await;
    Ok(StandbyState {
        application_name: app.to_string(),
        named: names_standby(&names, app),
        synchronous_standby_names: names,
        synchronous_commit: commit,
        sync_state: state.and_then(|s| s.0),
        state_visible: visible,
    })
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
    /// Where the WAL shipped by this run reaches.
    pub streamed: Option<Lsn>,
}

impl Progress {
    /// Records a shipment that reaches `to` (`None`: nothing new was shipped).
    fn advance(&mut self, to: Option<Lsn>) {
        if let Some(to) = to {
            self.streamed = Some(self.streamed.map_or(to, |s| s.max(to)));
            self.shipped_at = Some(chrono::Utc::now());
        }
    }
}

/// Said at start: the source blocks commits while a synchronous receiver is down (or, when
/// the source does not name it, that the stream is not synchronous at all).
async fn warn_synchronous(spec: &ConnSpec, app: &str, workspace: &str) {
    match standby_state(spec, app).await {
        Ok(state) if !state.named || matches!(state.synchronous_commit.as_str(), "off" | "local") => {
            tracing::error!(workspace, "{}", state.warning());
        }
        Ok(state) => tracing::warn!(workspace, "{}", state.warning()),
        Err(e) => tracing::warn!(workspace, error = %e.report(), "cannot read synchronous_standby_names"),
    }
}

/// Said at every lag report while the source does not treat the receiver as synchronous.
async fn warn_if_not_synchronous(spec: &ConnSpec, app: &str, workspace: &str) {
    match standby_state(spec, app).await {
        Ok(state) if !state.named || matches!(state.synchronous_commit.as_str(), "off" | "local") => {
            tracing::error!(workspace, "{}", state.warning());
        }
        Ok(state) if !state.is_synchronous() => {
            tracing::warn!(workspace, sync_state = ?state.sync_state, "the WAL stream is not a synchronous standby now");
        }
        _ => {}
    }
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
    for entry in fs_err::read_dir(spool)? {
        let name = entry?.file_name().to_string_lossy().to_string();
        if name.ends_with(".partial") {
            fs_err::rename(spool.join(&name), spool.join(format!("{name}.lost")))?;
            moved.push(name);
        }
    }
    Ok(moved)
}

/// Ships the completed WAL files in the spool, oldest first; returns (files, bytes, the
/// end of the newest segment shipped).
async fn ship_spool(
    repo: &Repository,
    recipients: &Recipients,
    settings: &StreamSettings,
) -> Result<(u64, u64, Option<Lsn>)> {
    let mut names: Vec<String> = fs_err::read_dir(&settings.spool)?
        .filter_map(|e| e.ok().and_then(|e| e.file_name().to_str().map(str::to_string)))
        .filter(|n| WalFile::parse(n).is_ok())
        .collect();
    names.sort();
    let (mut files, mut bytes, mut end) = (0, 0, None);
    for name in names {
        let path = settings.spool.join(&name);
        let pushed = archive::push(repo, recipients, &settings.workspace, &path).await?;
        if matches!(WalFile::parse(&name), Ok(WalFile::Segment { .. })) {
            archive::drop_partials(repo, &settings.workspace, &name).await?;
            if let Ok(segment) = Segment::parse(&name, pushed.bytes) {
                end = Some(Lsn(segment.start(pushed.bytes).0 + pushed.bytes));
            }
        }
        fs_err::remove_file(&path)?;
        tracing::info!(workspace = %settings.workspace, file = %name, stored = pushed.stored, "WAL shipped");
        files += 1;
        bytes += pushed.bytes;
    }
    Ok((files, bytes, end))
}

/// Ships the unfinished segment if it changed since `last` (its name and mtime); returns
/// where the shipped version reaches when one was stored.
async fn ship_partial(
    repo: &Repository,
    recipients: &Recipients,
    settings: &StreamSettings,
    last: &mut Option<(String, std::time::SystemTime)>,
) -> Result<Option<Lsn>> {
    let partial = fs_err::read_dir(&settings.spool)?
        .filter_map(std::result::Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".partial")))
        .max_by_key(fs_err::DirEntry::file_name);
    let Some(entry) = partial else { return Ok(None) };
    let name = entry.file_name().to_string_lossy().to_string();
    // pg_receivewal renames the file once its segment is complete, at any moment: then
    // there is nothing unfinished to ship (the completed segment is shipped as such).
    let modified = match entry.metadata().and_then(|m| m.modified()) {
        Ok(modified) => modified,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if last.as_ref().is_some_and(|(n, m)| *n == name && *m == modified) {
        return Ok(None);
    }
    let pushed = match archive::push_partial(repo, recipients, &settings.workspace, &entry.path()).await {
        Err(_) if !entry.path().exists() => return Ok(None),
        pushed => pushed?,
    };
    if pushed.stored {
        tracing::debug!(workspace = %settings.workspace, file = %pushed.name, reach = ?pushed.reach,
            "unfinished WAL segment shipped");
    }
    *last = Some((name, modified));
    Ok(if pushed.stored { pushed.reach } else { None })
}

/// Bytes the repository lacks: from `streamed` (else the slot's position) to the source's
/// current position.
async fn lag_bytes(spec: &ConnSpec, slot: &str, streamed: Option<Lsn>) -> Result<Option<i64>> {
    let mut conn = spec.connect().await?;
    let row: Option<(Option<i64>,)> = sqlx::query_as(
        "SELECT (pg_current_wal_lsn() - coalesce($2::pg_lsn, restart_lsn))::bigint \
         FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .bind(streamed.map(|l| l.to_string()))
    .fetch_optional(&mut conn)
    .await?;
    ConnSpec::close(conn).await;
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
    fs_err::create_dir_all(&settings.spool)
        .map_err(|e| Error::from(e).context(format!("creating the WAL spool {}", settings.spool.display())))?;
    let tool = crate::pg::tool(bin_dir, "pg_receivewal");
    let app = application_name(&settings.workspace);
    let base_cmd = || {
        let mut cmd = tokio::process::Command::new(&tool);
        cmd.args(["--slot", &settings.slot, "--no-password"]).env("LC_ALL", "C").stdin(std::process::Stdio::null());
        spec.apply_to_command(&mut cmd);
        if settings.synchronous {
            // The name the source's synchronous_standby_names lists.
            cmd.env("PGAPPNAME", &app);
        }
        cmd
    };
    ensure_slot(spec, &settings.slot).await?;
    if settings.synchronous {
        warn_synchronous(spec, &app, &settings.workspace).await;
    }
    let mut report = StreamReport::default();
    let mut progress = Progress::default();
    // What a previous run left in the spool goes first.
    let (files, bytes, end) = ship_spool(repo, recipients, settings).await?;
    report.shipped += files;
    report.bytes += bytes;
    if end.is_some() {
        (progress.streamed, progress.shipped_at) = (end, Some(chrono::Utc::now()));
    }

    let mut last_report = Instant::now();
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
            let (files, bytes, end) = ship_spool(repo, recipients, settings).await?;
            if files > 0 {
                report.shipped += files;
                report.bytes += bytes;
                backoff = Duration::from_secs(1);
            }
            progress.advance(end);
            if last_partial_push.elapsed() >= settings.partial_every {
                last_partial_push = Instant::now();
                progress.advance(ship_partial(repo, recipients, settings, &mut last_partial).await?);
            }
            if last_report.elapsed() >= settings.report_every {
                last_report = Instant::now();
                match lag_bytes(spec, &settings.slot, progress.streamed).await {
                    Ok(lag) => {
                        progress.lag_bytes = lag;
                        if let Some(sink) = &settings.lag_sink {
                            sink(&progress);
                        }
                        let shipped_ago = progress.shipped_at.map(|t| (chrono::Utc::now() - t).num_seconds());
                        tracing::info!(workspace = %settings.workspace, lag_bytes = ?lag,
                            streamed_lsn = %progress.streamed.map(|l| l.to_string()).unwrap_or_default(),
                            seconds_since_last_shipped = ?shipped_ago, "WAL stream lag");
                    }
                    Err(e) => {
                        tracing::warn!(workspace = %settings.workspace, error = %e.report(), "cannot read the lag");
                    }
                }
                if settings.synchronous {
                    warn_if_not_synchronous(spec, &app, &settings.workspace).await;
                }
            }
        }
    }
    let (files, bytes, end) = ship_spool(repo, recipients, settings).await?;
    report.shipped += files;
    report.bytes += bytes;
    progress.advance(end);
    progress.advance(ship_partial(repo, recipients, settings, &mut last_partial).await?);
    report.streamed = progress.streamed;
    tracing::info!(workspace = %settings.workspace, shipped = report.shipped, "WAL stream stopped");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synchronous_standby_names_are_read_as_postgres_reads_them() {
        for named in [
            "tidemark_shop",
            "Tidemark_Shop",
            "other, tidemark_shop",
            "FIRST 1 (tidemark_shop, other)",
            "ANY 1 (other, \"tidemark_shop\")",
            "2 (a, tidemark_shop, b)",
            "*",
        ] {
            assert!(names_standby(named, "tidemark_shop"), "{named}");
        }
        for not in ["", "tidemark", "tidemark_shop2", "ANY 1 (a, b)", "\"Tidemark_Shop\""] {
            assert!(!names_standby(not, "tidemark_shop"), "{not}");
        }
    }

    #[test]
    fn a_stream_is_synchronous_only_when_the_source_waits_for_it() {
        let state = |names: &str, commit: &str, sync: Option<&str>| StandbyState {
            application_name: "tidemark_shop".into(),
            synchronous_standby_names: names.into(),
            named: names_standby(names, "tidemark_shop"),
            synchronous_commit: commit.into(),
            sync_state: sync.map(str::to_string),
            state_visible: true,
        };
        assert!(state("tidemark_shop", "on", Some("sync")).is_synchronous());
        assert!(state("ANY 1 (tidemark_shop, b)", "remote_apply", Some("quorum")).is_synchronous());
        let alone = state("tidemark_shop", "on", Some("sync")).warning();
        assert!(alone.contains("blocks EVERY commit") && alone.contains("ANY 1 (tidemark_shop,"), "{alone}");
        let down = state("tidemark_shop", "on", None);
        assert!(!down.is_synchronous() && down.warning().contains("NOT connected"), "{}", down.warning());
        let unnamed = state("other", "on", Some("async"));
        assert!(!unnamed.is_synchronous() && unnamed.warning().contains("does not name"), "{}", unnamed.warning());
        let local = state("tidemark_shop", "local", Some("sync"));
        assert!(!local.is_synchronous() && local.warning().contains("synchronous_commit = local"));
        let quorum = state("ANY 1 (tidemark_shop, b)", "on", Some("quorum")).warning();
        assert!(quorum.contains("may not be in tidemark's spool"), "{quorum}");
        // A role that cannot see the receivers: not a problem it cannot know, but said.
        let unseen = StandbyState { state_visible: false, ..state("tidemark_shop", "on", None) };
        assert!(unseen.is_synchronous() && unseen.warning().contains("pg_read_all_stats"), "{}", unseen.warning());
        let unseen_unnamed = StandbyState { state_visible: false, ..state("other", "on", None) };
        assert!(!unseen_unnamed.is_synchronous());
    }
}
