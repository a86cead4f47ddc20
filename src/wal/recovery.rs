//! Recovery of a restored data directory: the settings that make the server replay WAL
//! from the repository to a target (`restore_command` calling `tidemark wal fetch`), the
//! environment it gets (only what reaching the repository needs), starting it and waiting
//! for its promotion, checking how far it got, and removing what a failed restore wrote.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::timeline::{self, Leg};
use super::window::{self, Target};
use super::{Lsn, Segment, archive, base};
use crate::error::{Error, ErrorKind, Result};
use crate::pg::ConnSpec;

/// The prefetch folder of a restored data directory (removed at the end of recovery).
pub const PREFETCH_DIR: &str = "tidemark-prefetch";

/// The folder of a restored data directory that holds what the WAL stream's spool held
/// when the restore began (see [`copy_streamed`]); removed once recovery is done.
pub const STREAMED_DIR: &str = "tidemark-streamed";

/// Copies, from the WAL stream's `spool`, the WAL a recovery along `timelines` from
/// segment `from` may need and the repository may not hold yet: completed segments not
/// shipped yet and the unfinished one (`<segment>.partial`), into `pgdata`'s
/// [`STREAMED_DIR`]. Returns the names copied (none: no folder is made). A spool that does
/// not exist (another host, a stream never run) gives none.
///
/// Errors: `Io` when the spool cannot be read or the copy written.
pub fn copy_streamed(
    spool: &Path,
    pgdata: &Path,
    timelines: &[u32],
    from: u64,
    segment_size: u64,
) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(spool) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::from(e).context(format!("reading the WAL stream's spool {}", spool.display()))),
    };
    let mut names = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().to_string();
        let Ok(segment) = super::Segment::parse(name.strip_suffix(".partial").unwrap_or(&name), segment_size) else {
            continue;
        };
        if timelines.contains(&segment.timeline) && segment.number >= from {
            names.push(name);
        }
    }
    names.sort();
    if names.is_empty() {
        return Ok(names);
    }
    let dir = pgdata.join(STREAMED_DIR);
    fs_err::create_dir_all(&dir)?;
    let mut copied = Vec::new();
    for name in names {
        // A running stream renames the unfinished file once its segment is complete, and
        // removes a completed one once it is in the repository, at any moment: the
        // completed one is copied instead, and one shipped meanwhile is not needed.
        let candidates = std::iter::once(name.as_str()).chain(name.strip_suffix(".partial"));
        for candidate in candidates {
            match fs_err::copy(spool.join(candidate), dir.join(candidate)) {
                Ok(_) => {
                    copied.push(candidate.to_string());
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::from(e).context(format!("copying {candidate} from the WAL stream's spool")));
                }
            }
        }
    }
    if copied.is_empty() {
        let _ = fs_err::remove_dir(&dir);
    }
    Ok(copied)
}

#[derive(Debug, Clone, Serialize)]
pub struct Reached {
    /// The last WAL location replayed.
    pub lsn: String,
    /// The commit time of the last transaction replayed.
    pub last_commit: Option<DateTime<Utc>>,
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

/// Recovery stopped at `reached`, short of `wanted`: names the WAL it did not replay.
pub fn ended_early(reached: Lsn, wanted: Lsn, range: &window::BaseRange, legs: &[Leg], size: u64) -> Error {
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
pub async fn discard(bin_dir: Option<PathBuf>, pgdata: &Path, created: bool) {
    let data = pgdata.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || {
        if data.join("postmaster.pid").exists() {
            let _ = crate::pgcluster::stop_data_dir_now(bin_dir.as_deref(), &data);
        }
    })
    .await;
    if created {
        let _ = fs_err::remove_dir_all(pgdata);
    } else if let Ok(entries) = std::fs::read_dir(pgdata) {
        for entry in entries.flatten() {
            let path = entry.path();
            let _ = if path.is_dir() { fs_err::remove_dir_all(&path) } else { fs_err::remove_file(&path) };
        }
    }
}

/// The stored and plain bytes of a base backup plus the archived segments recovery reads
/// along its timelines (`legs`) from its start up to the one holding `upto`.
pub fn bytes_read(base: &base::BaseManifest, legs: &[Leg], archived: &[archive::Archived], upto: Lsn) -> (u64, u64) {
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
pub async fn verify_backup(bin_dir: Option<&Path>, pgdata: &Path) -> Result<()> {
    let tool = crate::pg::tool(bin_dir, "pg_verifybackup");
    let out = tokio::process::Command::new(&tool)
        .arg("--no-parse-wal")
        .arg("--quiet")
        .arg(pgdata)
        .env("LC_ALL", "C")
        .output()
        .await
        .map_err(|e| crate::pg::tool_spawn_error(&tool, &e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::integrity(format!(
            "pg_verifybackup found the restored base backup damaged: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

pub fn append_setting(pgdata: &Path, key: &str, value: &str) -> Result<()> {
    use std::io::Write;
    let mut file = fs_err::OpenOptions::new().append(true).open(pgdata.join("postgresql.auto.conf"))?;
    writeln!(file, "{key} = {}", crate::pg::conf_quote(value))?;
    Ok(())
}

/// What the restored server's recovery settings say.
pub struct Recovery<'a> {
    pub workspace: &'a str,
    /// The config file `wal fetch` reads.
    pub config: &'a Path,
    /// How the server invokes tidemark (default: this binary).
    pub tidemark_command: Option<&'a str>,
    /// Segments read ahead (0: none).
    pub prefetch: u32,
    pub target: &'a Target,
    pub timeline: u32,
    pub segment_size: u64,
    /// `wal fetch` accepts unsigned WAL (`--allow-unsigned` of the restore that wrote it).
    pub allow_unsigned: bool,
    /// [`STREAMED_DIR`] holds WAL from the stream's spool: `wal fetch` reads it too.
    pub streamed: bool,
}

/// Appends the recovery settings to a restored data directory's `postgresql.auto.conf`
/// and writes `recovery.signal`.
pub fn write_recovery_settings(pgdata: &Path, recovery: &Recovery<'_>) -> Result<()> {
    let Recovery {
        workspace,
        config,
        tidemark_command,
        prefetch,
        target,
        timeline,
        segment_size,
        allow_unsigned,
        streamed,
    } = *recovery;
    let mut exe = match tidemark_command {
        Some(command) => command.replace('%', "%%"),
        None => command_word(&std::env::current_exe()?.display().to_string()),
    };
    if allow_unsigned {
        exe.push_str(" --allow-unsigned");
    }
    let config = std::path::absolute(config)?;
    let spool = (prefetch > 0).then(|| pgdata.join(PREFETCH_DIR));
    let streamed = streamed.then(|| pgdata.join(STREAMED_DIR));
    let (restore_command, end_command) =
        recovery_commands(&exe, &config, workspace, spool.as_deref(), prefetch, segment_size, streamed.as_deref());
    let mut settings: Vec<(&str, String)> = end_command.map(|c| ("recovery_end_command", c)).into_iter().collect();
    settings.extend([
        ("restore_command", restore_command),
        ("recovery_target_action", "promote".to_string()),
        // The timeline the window was computed along (what 'latest' finds, unless the base
        // backup is on a branch that was abandoned: then its own).
        ("recovery_target_timeline", timeline.to_string()),
        // The copy must not archive its own WAL into the source's archive.
        ("archive_mode", "off".to_string()),
        // Nor wait, for each of its commits, for the source's synchronous standbys (a
        // synchronous WAL stream's receiver among them), which it never has.
        ("synchronous_standby_names", String::new()),
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
        let mut file = fs_err::OpenOptions::new().append(true).open(pgdata.join("postgresql.auto.conf"))?;
        writeln!(file, "\n# tidemark pitr restore of workspace {workspace} to {}", target.describe())?;
    }
    for (k, v) in settings {
        append_setting(pgdata, k, &v)?;
    }
    fs_err::write(pgdata.join("recovery.signal"), "")?;
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
    streamed: Option<&Path>,
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
    if let Some(dir) = streamed {
        restore_command.push_str(&format!(" --streamed {}", command_word(&dir.display().to_string())));
    }
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
///
/// `copy`: the copy (`[copies.NAME]`) the restore reads, passed on as
/// `TIDEMARK_REPOSITORY` so `wal fetch` reads the same one.
pub fn restore_command_env(config: &crate::config::Config, copy: Option<&str>) -> Vec<(String, String)> {
    let Ok(repository) = config.repository_named(copy) else { return Vec::new() };
    let named: Vec<&str> = [
        &repository.access_key_id,
        &repository.secret_access_key,
        &repository.service_account,
        &repository.access_key,
        &repository.sas_token,
    ]
    .into_iter()
    .flatten()
    .filter_map(|s| s.env_var())
    .collect();
    let cloud = ["TIDEMARK_", "AWS_", "AZURE_", "GOOGLE_"];
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k != REPOSITORY_ENV)
        .filter(|(k, _)| cloud.iter().any(|p| k.starts_with(p)) || named.contains(&k.as_str()))
        .collect();
    if let Some(copy) = copy {
        env.push((REPOSITORY_ENV.to_string(), copy.to_string()));
    }
    env
}

/// The variable that tells `wal fetch` (run by a restored server) which copy to read.
pub const REPOSITORY_ENV: &str = "TIDEMARK_REPOSITORY";

/// Starts the restored server and waits until it is promoted. When a WAL file tidemark
/// could not serve stopped recovery, the error has that failure's kind (a damaged object
/// is `integrity`, a wrong key `key`): it is not a tidemark bug.
pub async fn start_and_wait(
    bin_dir: Option<PathBuf>,
    env: Vec<(String, String)>,
    pgdata: &Path,
    spec: &ConnSpec,
    log: &Path,
) -> Result<Reached> {
    let started = async {
        let (data, log_path) = (pgdata.to_path_buf(), log.to_path_buf());
        tokio::task::spawn_blocking(move || {
            crate::pgcluster::start_data_dir(bin_dir.as_deref(), &data, &log_path, &env)
        })
        .await
        .map_err(|e| Error::internal(format!("pg_ctl task: {e}")))?
        .map_err(|e| e.context("starting the restored server"))?;
        wait_for_promotion(spec, log).await
    };
    started.await.map_err(|e| {
        let text = fs_err::read_to_string(log).unwrap_or_default();
        match fetch_failure_in(&text) {
            Some(kind) => e.with_kind(kind),
            None => e,
        }
    })
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
        fs_err::create_dir(&odd).unwrap();
        let exe = odd.join("tidemark");
        fs_err::write(&exe, "#!/bin/sh\nprintf '%s\\n' \"$@\"\n").unwrap();
        fs_err::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (config, spool) = (odd.join("tidemark.toml"), odd.join("spool"));
        let exe_word = command_word(&exe.display().to_string());
        let (restore, end) = recovery_commands(&exe_word, &config, "shop", Some(&spool), 8, 16 << 20, None);
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
        let (plain, none) =
            recovery_commands(&exe_word, Path::new("/etc/tidemark.toml"), "shop", None, 0, 16 << 20, None);
        assert!(none.is_none() && !plain.contains("--prefetch"), "{plain}");
    }

    #[test]
    fn what_the_stream_has_not_shipped_is_copied_for_the_recovery() {
        let spool = tempfile::tempdir().unwrap();
        let pgdata = tempfile::tempdir().unwrap();
        let size = 16u64 << 20;
        for name in [
            "000000010000000000000002",         // before the base backup's start
            "000000010000000000000005",         // completed, not shipped yet
            "000000010000000000000006.partial", // being written
            "000000010000000000000004.partial.lost",
            "000000030000000000000006.partial", // a timeline the recovery does not follow
            "00000002.history",
        ] {
            fs_err::write(spool.path().join(name), name).unwrap();
        }
        let copied = copy_streamed(spool.path(), pgdata.path(), &[1, 2], 3, size).unwrap();
        assert_eq!(copied, ["000000010000000000000005", "000000010000000000000006.partial"]);
        let dir = pgdata.path().join(STREAMED_DIR);
        assert_eq!(fs_err::read_to_string(dir.join(&copied[1])).unwrap(), copied[1]);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        // No spool here (another host, no stream ever ran): nothing, and no folder.
        let elsewhere = tempfile::tempdir().unwrap();
        assert!(copy_streamed(&spool.path().join("none"), elsewhere.path(), &[1], 0, size).unwrap().is_empty());
        assert!(!elsewhere.path().join(STREAMED_DIR).exists());
    }

    #[test]
    fn a_restore_that_allows_unsigned_wal_passes_it_to_its_restore_command() {
        let dir = tempfile::tempdir().unwrap();
        for allow in [false, true] {
            fs_err::write(dir.path().join("postgresql.auto.conf"), "").unwrap();
            let recovery = Recovery {
                workspace: "shop",
                config: Path::new("/etc/tidemark.toml"),
                tidemark_command: Some("/usr/bin/tidemark"),
                prefetch: 0,
                target: &Target::Latest,
                timeline: 1,
                segment_size: 16 << 20,
                allow_unsigned: allow,
                streamed: allow,
            };
            write_recovery_settings(dir.path(), &recovery).unwrap();
            let conf = fs_err::read_to_string(dir.path().join("postgresql.auto.conf")).unwrap();
            assert_eq!(conf.contains("tidemark --allow-unsigned --config"), allow, "{conf}");
            let streamed = format!("--streamed {}", dir.path().join(STREAMED_DIR).display());
            assert_eq!(conf.contains(&streamed), allow, "{conf}");
        }
    }
}
