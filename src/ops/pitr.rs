//! `pitr window|restore|mark`: what moments can be restored, restoring one into a new data
//! directory (base backup + recovery configured to fetch WAL from the repository), and
//! named restore points.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Core;
use crate::actor::Actor;
use crate::error::{Error, ErrorKind, Result};
use crate::keys::Identities;
use crate::pg::ConnSpec;
use crate::progress::Progress;
use crate::repo::layout;
use crate::wal::timeline::{self, Histories, Leg};
use crate::wal::window::{self, Target, Window};
use crate::wal::{Lsn, Segment, archive, base};

/// The window of a workspace. Errors: `Key` without an identity (base backup manifests
/// are encrypted), `Unavailable` for the store.
pub async fn window(core: &Core, workspace: &str) -> Result<Window> {
    core.config.workspace(workspace)?;
    Ok(Physical::load(core, &core.identities()?, workspace).await?.window())
}

/// What the window is computed from: a workspace's base backups, archived WAL files and
/// timeline history files.
pub(crate) struct Physical {
    pub bases: Vec<base::BaseManifest>,
    pub archived: Vec<archive::Archived>,
    pub histories: Histories,
}

impl Physical {
    /// A base backup whose manifest cannot be read is left out (logged; `check` reports
    /// it), so an older good one still serves.
    ///
    /// Errors: `Key` without the identity (manifests and history files are encrypted),
    /// `Integrity` for a damaged history file, `Unavailable` for the store.
    pub async fn load(core: &Core, identities: &Identities, workspace: &str) -> Result<Physical> {
        let read = base::read_all(&core.repo, identities, workspace).await?;
        for d in &read.damaged {
            tracing::warn!(workspace, base_backup = %d.id, problem = %d.problem, "a base backup's manifest cannot be read; it is left out");
        }
        let bases = read.items;
        let archived = archive::list(&core.repo, workspace).await?;
        let histories = archive::histories(&core.repo, identities, workspace, &archived).await?;
        Ok(Physical { bases, archived, histories })
    }

    pub fn window(&self) -> Window {
        window::compute(&self.bases, &self.archived, &self.histories)
    }

    /// The timelines recovery from `base` replays.
    fn path(&self, base: &base::BaseManifest) -> Vec<Leg> {
        timeline::path(&self.histories, base.timeline, base.start_lsn, base.end_lsn)
    }
}

/// A restore point tidemark made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestorePoint {
    pub name: String,
    pub lsn: Lsn,
    pub time: DateTime<Utc>,
}

/// What `pitr mark` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MarkOptions {
    pub workspace: String,
    /// The restore point's name (1 to 63 characters; never reused).
    pub name: String,
}

/// Creates a named restore point on the workspace's server (`pg_create_restore_point`),
/// switches to a new WAL segment so it is archived at once, and records it.
///
/// Errors: `AlreadyExists` for a name already recorded (never replaced); `Database` when
/// the role may not (superuser or an explicit grant is needed).
pub async fn mark(core: &Core, opts: &MarkOptions, _actor: &Actor) -> Result<RestorePoint> {
    let (workspace, name) = (opts.workspace.as_str(), opts.name.as_str());
    if name.is_empty() || name.len() > 63 {
        return Err(Error::usage("a restore point name has 1 to 63 characters"));
    }
    let ws = core.workspace(workspace)?;
    // A name already recorded is refused before the server gets a second point of that name.
    if core.repo.stored_size(&layout::restore_point(workspace, name)).await?.is_some() {
        return Err(used_name(Error::new(ErrorKind::AlreadyExists, "exists"), name));
    }
    let spec = ws.conn()?.clone();
    let mut conn = spec.connect().await?;
    let grant = |e: Error| {
        if e.message().contains("SQLSTATE 42501") {
            e.context(format!(
                "a restore point needs a superuser, or: GRANT EXECUTE ON FUNCTION pg_create_restore_point(text), \
                 pg_switch_wal() TO {}; (see README \"Privileges\")",
                spec_user(&spec)
            ))
        } else {
            e
        }
    };
    let (lsn, time): (String, DateTime<Utc>) = sqlx::query_as("SELECT pg_create_restore_point($1)::text, now()")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| grant(e.into()))?;
    sqlx::query("SELECT pg_switch_wal()").execute(&mut conn).await.map_err(|e| grant(e.into()))?;
    let point = RestorePoint { name: name.to_string(), lsn: lsn.parse()?, time };
    let key = layout::restore_point(workspace, name);
    // Write-once: a restore point recorded under this name at the same moment is not replaced.
    core.repo.put_sealed(&key, &point, core.recipients()?).await.map_err(|e| used_name(e, name))?;
    Ok(point)
}

/// A restore point name that is taken: `AlreadyExists`, saying what to do.
fn used_name(e: Error, name: &str) -> Error {
    if e.kind() != ErrorKind::AlreadyExists {
        return e;
    }
    Error::new(
        ErrorKind::AlreadyExists,
        format!(
            "a restore point named {name:?} is already recorded; restore points are never replaced (restoring \
             `--name {name}` must mean one moment): choose another name"
        ),
    )
}

/// The role a connection spec names, for GRANT lines in messages.
fn spec_user(spec: &ConnSpec) -> String {
    url::Url::parse(&spec.display())
        .ok()
        .map(|u| u.username().to_string())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "<role>".into())
}

async fn recorded_point(core: &Core, workspace: &str, name: &str) -> Result<Option<RestorePoint>> {
    let key = layout::restore_point(workspace, name);
    core.repo.read_sealed(&key, &core.identities()?, &format!("restore point {name}")).await
}

/// What `pitr restore` takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PitrRestoreOptions {
    pub workspace: String,
    /// The new data directory: must not exist, or be empty.
    pub pgdata: PathBuf,
    pub target: Target,
    /// Start the server and wait until the target is reached.
    pub start: bool,
    /// The port of the started server (default: a free one).
    pub port: Option<u16>,
    /// How tidemark is invoked by the server's `restore_command` (default: this binary).
    pub tidemark_command: Option<String>,
    /// WAL segments read ahead during recovery (`wal fetch --prefetch`); 0: none.
    pub prefetch: u32,
}

/// Segments `pitr restore` reads ahead by default: 8 x 16 MiB in the spool at most.
pub const DEFAULT_PREFETCH: u32 = 8;

/// The prefetch folder of a restored data directory (removed at the end of recovery).
pub const PREFETCH_DIR: &str = "tidemark-prefetch";

#[derive(Debug, Clone, Serialize)]
pub struct Reached {
    /// The last WAL location replayed.
    pub lsn: String,
    /// The commit time of the last transaction replayed.
    pub last_commit: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PitrRestoreReport {
    pub workspace: String,
    pub pgdata: String,
    pub base_backup: String,
    pub target: String,
    pub window: String,
    pub port: Option<u16>,
    pub reached: Option<Reached>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub restore_ms: u64,
    /// What the restore reads, stored and plain: the base backup's tar and the WAL
    /// segments along its timelines from its start to the one recovery stopped in (without
    /// `--start`, to the one where the copy becomes consistent), as archived when the
    /// restore began.
    pub stored_bytes: u64,
    pub plain_bytes: u64,
}

/// Builds a data directory restored to the target (the base backup checked with
/// `pg_verifybackup` before recovery is configured), and optionally starts it.
///
/// Errors: `Refused` for a target outside the window (before anything is written) or a
/// non-empty `pgdata`; `Integrity`/`Key` for the base backup; `Integrity` when recovery
/// ended before the target or the end of the archived WAL (naming what was not replayed),
/// or a WAL file failed verification; `Internal` with the server log when recovery fails
/// otherwise. A failed restore stops the server it started and removes what it wrote (the
/// data directory, when this call created it).
pub async fn restore(core: &Core, opts: &PitrRestoreOptions, _actor: &Actor) -> Result<PitrRestoreReport> {
    let progress = core.progress();
    progress.set_prefix(format!("pitr restore {}", opts.workspace));
    let restored = restore_with(core, opts, progress).await;
    progress.finish();
    restored
}

async fn restore_with(core: &Core, opts: &PitrRestoreOptions, progress: &Progress) -> Result<PitrRestoreReport> {
    let clock = Instant::now();
    core.config.workspace(&opts.workspace)?;
    if opts.start {
        // The server runs `tidemark wal fetch` as its own OS user: check, as that user,
        // that it can (before anything is written), and say what to run if not.
        let command = opts.tidemark_command.as_deref().filter(|c| Path::new(c).is_file());
        let setup = super::wal::setup(core, Some(&opts.workspace), true, command).await?;
        if !setup.ok {
            return Err(Error::config(format!(
                "the restored server could not fetch WAL: {}. Fix it (as root) with:\n  {}\n(`tidemark wal setup \
                 --restore` checks again)",
                setup.problem.unwrap_or_default(),
                setup.fixes.join("\n  ")
            )));
        }
    }
    let identities = core.identities()?;
    let physical = Physical::load(core, &identities, &opts.workspace).await?;
    let window = physical.window();
    let target = match &opts.target {
        Target::Name(name, None) => {
            Target::Name(name.clone(), recorded_point(core, &opts.workspace, name).await?.map(|p| p.lsn))
        }
        other => other.clone(),
    };
    let chosen = window::choose(&window, &physical.bases, &target)?.clone();
    let legs = physical.path(&chosen);

    let pgdata = std::path::absolute(&opts.pgdata)?;
    if pgdata.exists() && std::fs::read_dir(&pgdata)?.next().is_some() {
        return Err(Error::new(
            ErrorKind::Refused,
            format!("{} is not empty; pitr restore writes a new data directory", pgdata.display()),
        ));
    }
    let created = !pgdata.exists();
    std::fs::create_dir_all(&pgdata)?;
    let built: Result<()> = async {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pgdata, std::fs::Permissions::from_mode(0o700))?;
        progress.set_message(format!("base backup {}: extracting", chosen.id));
        base::extract(&core.repo, &identities, &chosen, &pgdata, progress).await?;
        progress.set_message(format!("base backup {}: pg_verifybackup", chosen.id));
        verify_backup(core.pg_bin_dir().as_deref(), &pgdata).await?;
        let timeline = legs.last().expect("a path has the base backup's timeline").timeline;
        write_recovery_settings(core, opts, &target, timeline, &pgdata, chosen.wal_segment_size)?;
        crate::pgcluster::hand_over(&pgdata)
    }
    .await;
    if let Err(e) = built {
        discard(core, &pgdata, created).await;
        return Err(e.context(format!("restoring workspace {} into {}", opts.workspace, pgdata.display())));
    }

    let mut report = PitrRestoreReport {
        workspace: opts.workspace.clone(),
        pgdata: pgdata.display().to_string(),
        base_backup: chosen.id.clone(),
        target: target.describe(),
        window: window.describe(),
        port: None,
        reached: None,
        note: None,
        restore_ms: 0,
        stored_bytes: 0,
        plain_bytes: 0,
    };
    if opts.start {
        let recovered = recover(core, opts, &target, &pgdata, &window, &chosen, &legs, &mut report).await;
        if let Err(e) = recovered {
            // Nothing half-recovered is left to be taken for the restore: the server is
            // stopped (if it promoted) and the directory this call made is removed.
            discard(core, &pgdata, created).await;
            return Err(e.context(format!(
                "{RECOVERY_CONTEXT} of workspace {} from base backup {}",
                opts.workspace, chosen.id
            )));
        }
    }
    let replayed_to = match &report.reached {
        Some(r) => r.lsn.parse()?,
        None => chosen.end_lsn,
    };
    (report.stored_bytes, report.plain_bytes) = bytes_read(&chosen, &legs, &physical.archived, replayed_to);
    report.restore_ms = clock.elapsed().as_millis() as u64;
    Ok(report)
}

/// The context line of errors that happen while the restored server replays WAL (after
/// the base backup was extracted and verified).
pub const RECOVERY_CONTEXT: &str = "replaying WAL";

/// Starts the restored server, waits until it has recovered to the target, and checks
/// that it got there: recovery that ends early (a segment that is not what its name says,
/// a segment Postgres could not read) promotes silently at the last record it could read.
#[allow(clippy::too_many_arguments)]
async fn recover(
    core: &Core,
    opts: &PitrRestoreOptions,
    target: &Target,
    pgdata: &Path,
    window: &Window,
    chosen: &base::BaseManifest,
    legs: &[Leg],
    report: &mut PitrRestoreReport,
) -> Result<()> {
    let ws = core.workspace(&opts.workspace)?;
    let port = match opts.port {
        Some(p) => p,
        None => crate::pgcluster::free_port()?,
    };
    append_setting(pgdata, "port", &port.to_string())?;
    let log = pgdata.join("tidemark-recovery.log");
    let spec = ws.conn()?.with_host_port("127.0.0.1", port)?;
    report.port = Some(port);
    let mut to_the_end = matches!(target, Target::Latest);
    let reached = match start_and_wait(core, pgdata, &spec, &log).await {
        Ok(reached) => reached,
        // A time or LSN past the last transaction in the archive: Postgres stops with
        // "recovery ended before configured recovery target was reached". Nothing
        // committed after the target is archived, so everything archived is exactly
        // the state at the target: recover to the end instead (checked below to get there).
        Err(e)
            if matches!(target, Target::Time(_) | Target::Lsn(_))
                && std::fs::read_to_string(&log).is_ok_and(|l| l.contains("before configured recovery target")) =>
        {
            tracing::info!(error = %e.report(), "no transaction after the target is archived; recovering to the end");
            let setting =
                if matches!(target, Target::Time(_)) { "recovery_target_time" } else { "recovery_target_lsn" };
            append_setting(pgdata, setting, "")?;
            report.note = Some(
                "no transaction committed after the target is in the repository: recovered everything \
                 archived, which is the state at the target"
                    .into(),
            );
            to_the_end = true;
            start_and_wait(core, pgdata, &spec, &log).await?
        }
        Err(e) => return Err(e),
    };
    let lsn: Lsn = reached.lsn.parse()?;
    report.reached = Some(reached);
    let range = window.base_backups.iter().find(|r| r.id == chosen.id).expect("the chosen base backup has a range");
    let wanted = match target {
        _ if to_the_end => range.to.as_ref().map(|to| Lsn(to.lsn.0.saturating_sub(chosen.wal_segment_size) + 1)),
        Target::Lsn(l) | Target::Name(_, Some(l)) => Some(*l),
        _ => None,
    };
    match wanted {
        Some(wanted) if lsn < wanted => Err(ended_early(lsn, wanted, range, legs, chosen.wal_segment_size)),
        _ => Ok(()),
    }
}

/// Recovery stopped at `reached`, short of `wanted`: names the WAL it did not replay.
fn ended_early(reached: Lsn, wanted: Lsn, range: &window::BaseRange, legs: &[Leg], size: u64) -> Error {
    let end = range.to.as_ref().map_or(wanted, |to| to.lsn.max(wanted));
    let name = |lsn: Lsn| {
        let number = lsn.0 / size;
        Segment { timeline: timeline::serving(legs, number, size), number }.name(size)
    };
    let last = Lsn(end.0.saturating_sub(1));
    Error::integrity(format!(
        "recovery ended at {reached}, before {wanted}: the WAL from {reached} to {end} (segments {} to {}) was \
         in the repository but was not replayed, so the restored copy would silently lack what was committed \
         there. A segment there is damaged or is not the segment its name says: run `tidemark check --read-data`",
        name(reached),
        name(last)
    ))
}

/// Stops a server left running in a failed restore's data directory and removes what the
/// restore wrote there (the directory itself when the restore created it).
async fn discard(core: &Core, pgdata: &Path, created: bool) {
    let (bin_dir, data) = (core.pg_bin_dir(), pgdata.to_path_buf());
    let _ = tokio::task::spawn_blocking(move || {
        if data.join("postmaster.pid").exists() {
            let _ = crate::pgcluster::stop_data_dir_now(bin_dir.as_deref(), &data);
        }
    })
    .await;
    if created {
        let _ = std::fs::remove_dir_all(pgdata);
    } else if let Ok(entries) = std::fs::read_dir(pgdata) {
        for entry in entries.flatten() {
            let path = entry.path();
            let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        }
    }
}

/// The stored and plain bytes of a base backup plus the archived segments recovery reads
/// along its timelines (`legs`) from its start up to the one holding `upto`.
fn bytes_read(base: &base::BaseManifest, legs: &[Leg], archived: &[archive::Archived], upto: Lsn) -> (u64, u64) {
    let size = base.wal_segment_size;
    let first = Segment::of(base.timeline, base.start_lsn, size);
    let last = Segment::of(base.timeline, upto, size);
    archived
        .iter()
        .filter_map(|a| Segment::parse(&a.name, size).ok().map(|s| (s, a.stored_size)))
        .filter(|(s, _)| {
            (first.number..=last.number).contains(&s.number) && timeline::serving(legs, s.number, size) == s.timeline
        })
        .fold((base.tar.stored_size, base.tar.plain_size), |(stored, plain), (_, wal)| (stored + wal, plain + size))
}

/// `pg_verifybackup` against the `backup_manifest` pg_basebackup put in the tar: every
/// file present with its size and checksum (WAL is checked by recovery itself).
///
/// Errors: `Integrity` with pg_verifybackup's findings.
async fn verify_backup(bin_dir: Option<&Path>, pgdata: &Path) -> Result<()> {
    let tool = crate::pg::tool(bin_dir, "pg_verifybackup");
    let out = tokio::process::Command::new(&tool)
        .arg("--no-parse-wal")
        .arg("--quiet")
        .arg(pgdata)
        .env("LC_ALL", "C")
        .output()
        .await
        .map_err(|e| crate::pg::tool_spawn_error(&tool, e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::integrity(format!(
            "pg_verifybackup found the restored base backup damaged: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn append_setting(pgdata: &Path, key: &str, value: &str) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(pgdata.join("postgresql.auto.conf"))?;
    writeln!(file, "{key} = {}", crate::pg::conf_quote(value))?;
    Ok(())
}

fn write_recovery_settings(
    core: &Core,
    opts: &PitrRestoreOptions,
    target: &Target,
    timeline: u32,
    pgdata: &Path,
    segment_size: u64,
) -> Result<()> {
    let exe = match &opts.tidemark_command {
        Some(command) => command.replace('%', "%%"),
        None => command_word(&std::env::current_exe()?.display().to_string()),
    };
    let config = std::path::absolute(&core.config.path)?;
    let spool = (opts.prefetch > 0).then(|| pgdata.join(PREFETCH_DIR));
    let (restore_command, end_command) =
        recovery_commands(&exe, &config, &opts.workspace, spool.as_deref(), opts.prefetch, segment_size);
    let mut settings: Vec<(&str, String)> = end_command.map(|c| ("recovery_end_command", c)).into_iter().collect();
    settings.extend([
        ("restore_command", restore_command),
        ("recovery_target_action", "promote".to_string()),
        // The timeline the window was computed along (what 'latest' finds, unless the base
        // backup is on a branch that was abandoned: then its own).
        ("recovery_target_timeline", timeline.to_string()),
        // The copy must not archive its own WAL into the source's archive.
        ("archive_mode", "off".to_string()),
        ("listen_addresses", "localhost".to_string()),
        ("unix_socket_directories", String::new()),
    ]);
    match target {
        Target::Time(t) => settings.push(("recovery_target_time", t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string())),
        Target::Lsn(l) => settings.push(("recovery_target_lsn", l.to_string())),
        Target::Name(n, _) => settings.push(("recovery_target_name", n.clone())),
        Target::Latest => {}
    }
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().append(true).open(pgdata.join("postgresql.auto.conf"))?;
        writeln!(file, "\n# tidemark pitr restore of workspace {} to {}", opts.workspace, target.describe())?;
    }
    for (k, v) in settings {
        append_setting(pgdata, k, &v)?;
    }
    std::fs::write(pgdata.join("recovery.signal"), "")?;
    Ok(())
}

/// The `restore_command` (and, when reading ahead, the `recovery_end_command`) of a restored
/// data directory. `exe`: how the server invokes tidemark, ready for the command line.
fn recovery_commands(
    exe: &str,
    config: &Path,
    workspace: &str,
    spool: Option<&Path>,
    prefetch: u32,
    segment_size: u64,
) -> (String, Option<String>) {
    let mut restore_command = format!(
        "{exe} --config {} wal fetch --workspace {}",
        command_word(&config.display().to_string()),
        command_word(workspace)
    );
    let end_command = spool.map(|spool| {
        let spool = command_word(&spool.display().to_string());
        restore_command.push_str(&format!(" --prefetch {prefetch} --spool {spool} --segment-size {segment_size}"));
        format!("{exe} wal prefetch --spool {spool} --remove")
    });
    restore_command.push_str(" %f \"%p\"");
    (restore_command, end_command)
}

/// One word of a command Postgres runs through the shell: shell-quoted, and `%` doubled
/// (the server replaces `%f`, `%p`, `%r` and `%%` in it).
fn command_word(s: &str) -> String {
    shell_quote(s).replace('%', "%%")
}

fn shell_quote(s: &str) -> String {
    if s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// What the restored server's `restore_command` (`tidemark wal fetch`) needs of tidemark's
/// environment to reach the repository, and nothing else: the identity and config
/// variables tidemark reads, the object store's own (`AWS_*`), and the variables the
/// repository settings name as `env:` secrets. Database passwords, webhook URLs and the
/// rest stay out of the server's environment.
pub(crate) fn restore_command_env(core: &Core) -> Vec<(String, String)> {
    let repository = &core.config.config.repository;
    let named: Vec<&str> = [&repository.access_key_id, &repository.secret_access_key]
        .into_iter()
        .flatten()
        .filter_map(|s| s.env_var())
        .collect();
    std::env::vars()
        .filter(|(k, _)| k.starts_with("TIDEMARK_") || k.starts_with("AWS_") || named.contains(&k.as_str()))
        .collect()
}

/// Starts the restored server and waits until it is promoted. When a WAL file tidemark
/// could not serve stopped recovery, the error has that failure's kind (a damaged object
/// is `integrity`, a wrong key `key`): it is not a tidemark bug.
async fn start_and_wait(core: &Core, pgdata: &Path, spec: &ConnSpec, log: &Path) -> Result<Reached> {
    start_and_wait_once(core, pgdata, spec, log).await.map_err(|e| {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        match super::wal::fetch_failure_in(&text) {
            Some(kind) => e.with_kind(kind),
            None => e,
        }
    })
}

async fn start_and_wait_once(core: &Core, pgdata: &Path, spec: &ConnSpec, log: &Path) -> Result<Reached> {
    let (bin_dir, data, log_path) = (core.pg_bin_dir(), pgdata.to_path_buf(), log.to_path_buf());
    let env = restore_command_env(core);
    tokio::task::spawn_blocking(move || crate::pgcluster::start_data_dir(bin_dir.as_deref(), &data, &log_path, &env))
        .await
        .map_err(|e| Error::internal(format!("pg_ctl task: {e}")))?
        .map_err(|e| e.context("starting the restored server"))?;
    wait_for_promotion(spec, log).await
}

/// Waits until recovery has reached its target and the server was promoted.
async fn wait_for_promotion(spec: &ConnSpec, log: &Path) -> Result<Reached> {
    let deadline = Instant::now() + Duration::from_secs(6 * 3600);
    let mut last_error = None;
    while Instant::now() < deadline {
        match spec.connect().await {
            Ok(mut conn) => {
                let (in_recovery, lsn, last_commit): (bool, Option<String>, Option<DateTime<Utc>>) = sqlx::query_as(
                    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp()",
                )
                .fetch_one(&mut conn)
                .await?;
                if !in_recovery {
                    return Ok(Reached { lsn: lsn.unwrap_or_default(), last_commit });
                }
            }
            Err(e) => last_error = Some(e),
        }
        if !log.parent().unwrap_or(Path::new(".")).join("postmaster.pid").exists() {
            return Err(Error::internal(format!(
                "the restored server stopped before reaching the target; its log:\n{}",
                crate::pgcluster::log_tail(log)
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last_error.unwrap_or_else(|| Error::new(ErrorKind::Unavailable, "recovery did not finish in 6 hours")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Postgres does with a restore_command: `%f`, `%p`, `%r` and `%%` replaced (any
    /// other `%` is refused here, as Postgres 16 does), then run by `sh -c`. Returns the
    /// arguments the command received.
    fn run_as_postgres_does(command: &str) -> Vec<String> {
        let mut line = String::new();
        let mut chars = command.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                line.push(c);
                continue;
            }
            match chars.next() {
                Some('f') => line.push_str("000000010000000000000003"),
                Some('p') => line.push_str("pg_wal/RECOVERYXLOG"),
                Some('r') => line.push_str("000000010000000000000001"),
                Some('%') => line.push('%'),
                other => panic!("a stray % before {other:?} in {command}"),
            }
        }
        let out = std::process::Command::new("sh").args(["-c", &line]).output().unwrap();
        assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
    }

    #[test]
    fn recovery_commands_survive_quotes_spaces_and_percent_signs() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("it's 100%restored \"test\" $HOME `x` \\ here");
        std::fs::create_dir(&odd).unwrap();
        let exe = odd.join("tidemark");
        std::fs::write(&exe, "#!/bin/sh\nprintf '%s\\n' \"$@\"\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (config, spool) = (odd.join("tidemark.toml"), odd.join("spool"));
        let exe_word = command_word(&exe.display().to_string());
        let (restore, end) = recovery_commands(&exe_word, &config, "shop", Some(&spool), 8, 16 << 20);
        let (config, spool) = (config.display().to_string(), spool.display().to_string());
        let expected = [
            "--config",
            &config,
            "wal",
            "fetch",
            "--workspace",
            "shop",
            "--prefetch",
            "8",
            "--spool",
            &spool,
            "--segment-size",
            "16777216",
            "000000010000000000000003",
            "pg_wal/RECOVERYXLOG",
        ];
        assert_eq!(run_as_postgres_does(&restore), expected);
        assert_eq!(run_as_postgres_does(&end.unwrap()), ["wal", "prefetch", "--spool", &spool, "--remove"]);
        let (plain, none) = recovery_commands(&exe_word, Path::new("/etc/tidemark.toml"), "shop", None, 0, 16 << 20);
        assert!(none.is_none() && !plain.contains("--prefetch"), "{plain}");
    }
}
