//! `wal push` and `wal fetch`: the `archive_command` and `restore_command` of a workspace's
//! cluster. The workspace may be omitted when the config has exactly one.

use std::path::Path;

use super::Core;
use crate::error::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

use crate::wal::archive::{self, Pushed};

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

/// What `wal probe` found, as the OS user it ran as.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    pub user: String,
    /// The first step that failed: `config`, `repository`, `identity`; `None`: all passed.
    pub failed: Option<String>,
    pub error: Option<String>,
}

/// Run by `wal setup` as the server's OS user (the hidden `wal probe`): reads the config
/// (already done by the caller), writes and deletes an object where WAL goes, and for a
/// restore loads the identity and lists the WAL. Never fails: the answer says what broke.
pub async fn probe(core: &Core, workspace: Option<&str>, restore: bool) -> Probe {
    let user = crate::error::current_user();
    let workspace = match core.workspace_or_only(workspace) {
        Ok(w) => w,
        Err(e) => return Probe { user, failed: Some("config".into()), error: Some(e.report()) },
    };
    let tag = format!("{}-{}", std::process::id(), rand::random::<u32>());
    if let Err(e) = core.repo.probe_write(&crate::repo::layout::wal_probe(&workspace, &tag)).await {
        return Probe { user, failed: Some("repository".into()), error: Some(e.report()) };
    }
    if restore {
        let read = async { archive::list(&core.repo, &workspace).await.and(core.identities().map(|_| ())) };
        match read.await {
            // Readable, and what was read is damaged or unsigned: not the server user's
            // access, which is all this checks; the restore refuses the WAL as `integrity`.
            Err(e) if e.kind() == crate::error::ErrorKind::Integrity => {}
            Err(e) => {
                let step = if e.kind() == crate::error::ErrorKind::Key || e.kind() == crate::error::ErrorKind::Config {
                    "identity"
                } else {
                    "repository"
                };
                return Probe { user, failed: Some(step.into()), error: Some(e.report()) };
            }
            Ok(()) => {}
        }
    }
    Probe { user, failed: None, error: None }
}

/// What `wal setup` checked and what to run to fix it.
#[derive(Debug, Clone, Serialize)]
pub struct SetupReport {
    pub workspace: String,
    /// The OS user the Postgres server (and so archive_command/restore_command) runs as.
    pub user: String,
    /// How the server runs tidemark.
    pub command: String,
    pub restore: bool,
    pub ok: bool,
    /// The first problem found (see `problems`).
    pub problem: Option<String>,
    /// Every problem found: the files the server's user must read are checked each, so
    /// one run says everything to fix.
    pub problems: Vec<String>,
    /// Commands that fix them, to run as root (or the owner of the files).
    pub fixes: Vec<String>,
    /// Every installed copy of tidemark found (this one, the `tidemark` programs on PATH,
    /// `/usr/local/bin`, `/usr/bin`), when there is more than one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<String>,
    /// Which of them the server runs, and why, when there is more than one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The report as answered: `problem` is the first of `problems`.
fn finished(mut report: SetupReport) -> SetupReport {
    report.problem = report.problems.first().cloned();
    report
}

/// What makes the binary runnable by the server's user.
fn install_fix(exe: &std::path::Path) -> String {
    format!(
        "install -m 755 {} /usr/local/bin/tidemark   # then use /usr/local/bin/tidemark in archive_command and restore_command",
        exe.display()
    )
}

/// What makes a file readable by the server's user's `group`: the config (any mode with
/// group read, its folder searchable) or a key (mode 640).
fn read_fixes(group: &str, file: &std::path::Path, key: bool) -> Vec<String> {
    if key {
        return vec![format!("chgrp {group} {0} && chmod 640 {0}", file.display())];
    }
    let mut fixes = vec![format!("chgrp {group} {0} && chmod g+r {0}", file.display())];
    if let Some(dir) = file.parent() {
        fixes.push(format!("chmod o+x {}   # each folder on the way must be searchable", dir.display()));
    }
    fixes
}

/// Checks, as the OS user the Postgres server runs as, that it can run tidemark, read the
/// config, write the repository's WAL (push) and, with `restore`, read the identity and
/// the WAL (fetch): what `archive_command` and `restore_command` need. `command`: how the
/// server runs tidemark (default: this binary). When tidemark does not run as root, the
/// server is taken to run as this user.
///
/// Errors: `Config` when there is no `postgres` user to check as (as root).
pub async fn setup(core: &Core, workspace: Option<&str>, restore: bool, command: Option<&str>) -> Result<SetupReport> {
    let workspace = core.workspace_or_only(workspace)?;
    let run_as = crate::pgcluster::server_user()?;
    let user = match run_as {
        Some((uid, _)) => nix::unistd::User::from_uid(uid).ok().flatten().map(|u| u.name).unwrap_or_default(),
        None => crate::error::current_user(),
    };
    let (exe, copies, note) = match command {
        Some(c) => (std::path::PathBuf::from(c), Vec::new(), None),
        None => crate::wal::server_user::server_binary(run_as, &user).await?,
    };
    let config = std::path::absolute(&core.config.path)?;
    let mut report = SetupReport {
        workspace: workspace.clone(),
        user: user.clone(),
        command: exe.display().to_string(),
        restore,
        ok: false,
        problem: None,
        problems: Vec::new(),
        fixes: Vec::new(),
        copies: copies.iter().map(|c| c.display().to_string()).collect(),
        note,
    };
    let group = format!("$(id -gn {user})");
    // The files the server's user needs, each checked, so that one run names them all.
    let repository = &core.config.config.repository;
    if !crate::wal::server_user::can(run_as, 'x', &exe).await {
        report.problems.push(format!("{user} cannot run {}", exe.display()));
        report.fixes.push(install_fix(&exe));
    }
    if !crate::wal::server_user::can(run_as, 'r', &config).await {
        report.problems.push(format!("{user} cannot read the config {}", config.display()));
        report.fixes.extend(read_fixes(&group, &config, false));
    }
    // archive_command signs what it pushes; restore_command decrypts with the identity.
    let keys = [
        ("signing key", repository.signing_key.as_ref(), true),
        ("identity", repository.identity_file.as_ref(), restore),
    ];
    for (what, file, needed) in keys {
        let Some(file) = file.filter(|_| needed).map(|f| core.config.resolve_path(f)) else { continue };
        if !crate::wal::server_user::can(run_as, 'r', &file).await {
            report.problems.push(format!("{user} cannot read the {what} {}", file.display()));
            report.fixes.extend(read_fixes(&group, &file, true));
        }
    }
    if !report.problems.is_empty() {
        return Ok(finished(report));
    }
    let mut child = tokio::process::Command::new(&exe);
    child.arg("--config").arg(&config).args(["--json", "wal", "probe", "--workspace", &workspace]);
    if restore {
        child.arg("--restore");
    }
    child
        .env_clear()
        .envs(crate::wal::recovery::restore_command_env(&core.config.config.repository))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    child.current_dir("/").stdin(std::process::Stdio::null());
    if let Some((uid, gid)) = run_as {
        child.uid(uid.as_raw()).gid(gid.as_raw());
    }
    let out = match child.output().await {
        Ok(out) => out,
        Err(e) => {
            report.problems.push(format!("{user} cannot run {}: {e}", exe.display()));
            report.fixes.push(install_fix(&exe));
            return Ok(finished(report));
        }
    };
    let probe: Option<Probe> = serde_json::from_slice(&out.stdout).ok();
    let Some(probe) = probe else {
        // No answer: it could not read the config (or is another program).
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        report.problems.push(format!("{user} cannot use the config {}: {stderr}", config.display()));
        // archive_command signs what it pushes: the server's user reads the signing key.
        let key = repository.signing_key.as_ref().filter(|_| stderr.contains("signing key"));
        match key {
            Some(key) => report.fixes.extend(read_fixes(&group, &core.config.resolve_path(key), true)),
            None => report.fixes.extend(read_fixes(&group, &config, false)),
        }
        return Ok(finished(report));
    };
    match probe.failed.as_deref() {
        None => report.ok = true,
        Some(step) => {
            report.problems.push(format!("as {user}, the {step} check failed: {}", probe.error.unwrap_or_default()));
            match (step, core.repo.local_root()) {
                ("repository", Some(root)) => {
                    let wal = root.join("workspaces").join(&workspace).join("wal");
                    report.fixes.push(format!("mkdir -p {0} && chown -R {user}:{group} {0}", wal.display()));
                    report.fixes.push(format!(
                        "chmod o+x {} {}   # each folder on the way must be searchable",
                        root.display(),
                        root.join("workspaces").join(&workspace).display()
                    ));
                }
                ("repository", None) => report.fixes.push(
                    "give the server's environment the repository credentials (as env: secrets in the config, \
                     or AWS_* variables of the server's service)"
                        .into(),
                ),
                ("identity", _) => match &repository.identity_file {
                    Some(file) => report.fixes.extend(read_fixes(&group, &core.config.resolve_path(file), true)),
                    None => report.fixes.push(format!(
                        "set repository.identity-file in {} to a file {user} can read (mode 640, group {group})",
                        config.display()
                    )),
                },
                _ => {}
            }
        }
    }
    Ok(finished(report))
}
