//! `tidemark wal push|fetch|stream|prefetch`: the archive_command and restore_command of a
//! cluster, continuous streaming, and reading WAL ahead during recovery.

use std::path::PathBuf;

use clap::Subcommand;
use tidemark::Result;
use tidemark::ops::wal;
use tidemark::wal::ahead::PushSpool;
use tidemark::wal::prefetch::Spool;

use super::Global;

#[derive(Debug, Subcommand)]
pub enum WalCommand {
    /// Archive one WAL file (archive_command = 'tidemark wal push %p'); exits 0 only once it is durable
    Push {
        /// The file Postgres hands over (%p)
        path: PathBuf,
        /// Default: the only workspace in the config
        #[arg(long, short)]
        workspace: Option<String>,
        /// Answer from a background pusher that archives every waiting file ahead, several at once (for a server that writes WAL faster than one push per segment keeps up with)
        #[arg(long = "async")]
        asynchronous: bool,
        /// With --async: the pusher's spool folder (default: tidemark-push-spool in the data directory)
        #[arg(long, requires = "asynchronous")]
        spool: Option<PathBuf>,
        /// With --async: files the pusher stores at once
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64), requires = "asynchronous")]
        parallel: u16,
    },
    /// The background pusher of `wal push --async` (started by it)
    #[command(hide = true)]
    PushAhead {
        /// The cluster's pg_wal folder
        #[arg(long)]
        pg_wal: PathBuf,
        /// The spool folder
        #[arg(long)]
        spool: PathBuf,
        /// The workspace, as named in tidemark.toml (default: the only one configured)
        #[arg(long, short)]
        workspace: Option<String>,
        /// Files stored at once
        #[arg(long, default_value_t = 4)]
        parallel: u16,
    },
    /// Stream WAL continuously (pg_receivewal over a replication slot) and ship each completed segment, until SIGTERM/SIGINT
    Stream {
        /// The workspace, as named in tidemark.toml (default: the only one configured)
        #[arg(long, short)]
        workspace: Option<String>,
        /// Replication slot (default: tidemark_<workspace>; created if missing)
        #[arg(long)]
        slot: Option<String>,
        /// Where received WAL waits until it is shipped (default: wal-spool/<workspace> beside the config)
        #[arg(long)]
        spool: Option<PathBuf>,
    },
    /// Restore one WAL file (restore_command = 'tidemark wal fetch %f "%p"')
    Fetch {
        /// The WAL file name (%f)
        name: String,
        /// Where to write it (%p)
        dest: PathBuf,
        /// The workspace, as named in tidemark.toml (default: the only one configured)
        #[arg(long, short)]
        workspace: Option<String>,
        /// Read ahead: a background `wal prefetch` downloads up to N following segments into --spool while the server replays
        #[arg(long, default_value_t = 0, requires = "spool")]
        prefetch: u32,
        /// Where prefetched segments wait (a folder of the server's OS user; remove it at the end of recovery with `wal prefetch --spool DIR --remove`)
        #[arg(long)]
        spool: Option<PathBuf>,
        /// The cluster's WAL segment size in bytes
        #[arg(long, default_value_t = DEFAULT_SEGMENT_SIZE, value_parser = parse_segment_size)]
        segment_size: u64,
        /// A folder of WAL copied from the WAL stream's spool (`pitr restore` sets it): a segment the repository does not hold whole is served from there when it reaches further
        #[arg(long)]
        streamed: Option<PathBuf>,
    },
    /// Check, as the OS user the Postgres server runs as, that archive_command (and with --restore, restore_command) can work; print the commands that fix what cannot
    Setup {
        /// The workspace, as named in tidemark.toml (default: the only one configured)
        #[arg(long, short)]
        workspace: Option<String>,
        /// Also check what a point-in-time restore needs: the identity and reading the WAL
        #[arg(long)]
        restore: bool,
    },
    /// What `wal setup` runs as the server's user (prints its findings as JSON)
    #[command(hide = true)]
    Probe {
        /// The workspace, as named in tidemark.toml (default: the only one configured)
        #[arg(long, short)]
        workspace: Option<String>,
        /// Also check the identity and reading the WAL
        #[arg(long)]
        restore: bool,
    },
    /// Download the segments after the one Postgres asked for last into a spool (started by `wal fetch --prefetch`), or remove the spool (--remove: the recovery_end_command)
    Prefetch {
        /// The spool folder (inside the data directory of the recovering server)
        #[arg(long)]
        spool: PathBuf,
        /// The workspace, as named in tidemark.toml (default: the only one configured)
        #[arg(long, short)]
        workspace: Option<String>,
        /// How many segments to read ahead
        #[arg(long, default_value_t = 8)]
        depth: u32,
        /// The cluster's WAL segment size in bytes
        #[arg(long, default_value_t = DEFAULT_SEGMENT_SIZE, value_parser = parse_segment_size)]
        segment_size: u64,
        /// Remove the spool (after waiting for a running prefetcher) instead
        #[arg(long)]
        remove: bool,
    },
}

const DEFAULT_SEGMENT_SIZE: u64 = 16 << 20;

/// How long `wal push --async` waits for the pusher before it pushes the file itself.
const PUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long the pusher waits for more files before it exits.
const PUSHER_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

/// A WAL segment size Postgres allows: a power of two from 1 MiB to 1 GiB.
fn parse_segment_size(text: &str) -> std::result::Result<u64, String> {
    let size: u64 = text.parse().map_err(|_| format!("{text:?} is not a number of bytes"))?;
    if size.is_power_of_two() && ((1 << 20)..=(1 << 30)).contains(&size) {
        Ok(size)
    } else {
        Err(format!("{size} is not a WAL segment size (a power of two from 1048576 to 1073741824)"))
    }
}

/// `wal fetch`'s exit code for every failure except "not archived": above 125, so that
/// Postgres aborts recovery instead of taking the failure for the end of the archive
/// and promoting a copy that is missing WAL (an unreachable bucket, a wrong key).
pub const FETCH_FAILED_EXIT: i32 = 200;

pub async fn run(global: &Global, cmd: WalCommand) -> Result<()> {
    match cmd {
        WalCommand::Push { path, workspace, asynchronous: false, .. } => {
            let pushed = wal::push(&global.bare_core().await?, workspace.as_deref(), &path).await?;
            if global.json {
                global.print_json(&pushed);
            }
            Ok(())
        }
        WalCommand::Push { path, workspace, asynchronous: true, spool, parallel } => {
            let pg_wal = std::path::absolute(path.parent().unwrap_or(std::path::Path::new(".")))?;
            let spool = PushSpool::new(match spool {
                Some(dir) => std::path::absolute(dir)?,
                None => PushSpool::beside(&pg_wal).dir().to_path_buf(),
            });
            let start = || start_pusher(global, &pg_wal, &spool, workspace.as_deref(), parallel);
            let core = global.bare_core().await?;
            let pushed = wal::push_async(&core, workspace.as_deref(), &path, &spool, PUSH_WAIT, start).await?;
            if global.json {
                global.print_json(&pushed);
            }
            Ok(())
        }
        WalCommand::Stream { workspace, slot, spool } => {
            let core = global.bare_core().await?;
            let workspace = core.workspace_or_only(workspace.as_deref())?;
            let shutdown = tokio_util::sync::CancellationToken::new();
            let listener = tokio::spawn(super::serve::stop_on_signal(shutdown.clone()));
            let opts = wal::StreamOptions { workspace, slot, spool };
            let report = wal::stream(&core, &opts, shutdown).await;
            listener.abort();
            let report = report?;
            if global.json {
                global.print_json(&report);
            }
            Ok(())
        }
        WalCommand::Fetch { name, dest, workspace, prefetch, spool, segment_size, streamed } => {
            let spool = spool.filter(|_| prefetch > 0).map(Spool::new);
            let mut prefetched = false;
            if let Some(spool) = &spool {
                // Served from the spool needs no repository and no key: a rename.
                prefetched = spool.take(&name, &dest);
                start_prefetcher(global, spool, &name, workspace.as_deref(), prefetch, segment_size);
            }
            let fetched = async {
                if prefetched {
                    return Ok(fs_err::metadata(&dest)?.len());
                }
                wal::fetch(&global.fetch_core().await?, workspace.as_deref(), &name, &dest, streamed.as_deref()).await
            }
            .await;
            match fetched {
                Ok(bytes) => {
                    if global.json {
                        global
                            .print_json(&serde_json::json!({ "name": name, "bytes": bytes, "prefetched": prefetched }));
                    }
                    Ok(())
                }
                // Recovery asks for files that may not exist as a matter of course (the
                // next timeline's history file, the segment after the last): not an error
                // in the server's log. Its exit code says "not there".
                Err(e) if e.kind() == tidemark::ErrorKind::NotFound => {
                    tracing::debug!(file = %name, "{}", e.report());
                    if global.json {
                        global.print_json(&e.to_json());
                    }
                    std::process::exit(e.exit_code());
                }
                Err(e) => {
                    eprintln!(
                        "{}\n(exit {FETCH_FAILED_EXIT}: recovery must stop, not promote)",
                        wal::fetch_failure_line(&e)
                    );
                    std::process::exit(FETCH_FAILED_EXIT);
                }
            }
        }
        WalCommand::Setup { workspace, restore } => {
            let report = wal::setup(&global.bare_core().await?, workspace.as_deref(), restore, None).await?;
            if let Some(note) = report.note.as_ref().filter(|_| !global.json) {
                println!("note: {note}");
            }
            if global.json {
                global.print_json(&report);
            } else if report.ok {
                println!(
                    "ok: as {}, {} can read the config and write WAL of workspace {}{}",
                    report.user,
                    report.command,
                    report.workspace,
                    if report.restore { ", read the identity and fetch WAL" } else { "" }
                );
            } else {
                for problem in &report.problems {
                    println!("NOT READY: {problem}");
                }
                println!("fix (as root):");
                for fix in &report.fixes {
                    println!("  {fix}");
                }
            }
            match report.ok {
                true => Ok(()),
                false => Err(tidemark::Error::new(
                    tidemark::ErrorKind::Config,
                    format!("the server's OS user {} cannot use tidemark yet", report.user),
                )
                .result_printed()),
            }
        }
        WalCommand::Probe { workspace, restore } => {
            // A restore's probe reads what its `wal fetch` will: the copy it restores from.
            let core = if restore { global.fetch_core().await? } else { global.bare_core().await? };
            let probe = wal::probe(&core, workspace.as_deref(), restore).await;
            global.print_json(&probe);
            Ok(())
        }
        WalCommand::PushAhead { pg_wal, spool, workspace, parallel } => {
            let core = global.bare_core().await?;
            let spool = PushSpool::new(spool);
            let stored =
                wal::push_ahead(&core, workspace.as_deref(), &pg_wal, &spool, parallel.into(), PUSHER_IDLE).await?;
            if global.json {
                global.print_json(&serde_json::json!({ "stored": stored }));
            }
            Ok(())
        }
        WalCommand::Prefetch { spool, remove: true, .. } => {
            Spool::new(spool).remove(std::time::Duration::from_secs(60))
        }
        WalCommand::Prefetch { spool, workspace, depth, segment_size, remove: false } => {
            let downloaded = wal::prefetch(
                &global.fetch_core().await?,
                workspace.as_deref(),
                &Spool::new(spool),
                depth,
                segment_size,
            )
            .await?;
            if global.json {
                global.print_json(&serde_json::json!({ "downloaded": downloaded }));
            }
            Ok(())
        }
    }
}

/// This process's stderr for a detached child, when it is a regular file (the server log
/// of `pg_ctl -l` or Debian's `pg_ctlcluster`): a pipe could keep whoever reads it
/// waiting for the child to end.
fn stderr_if_a_file() -> Option<std::process::Stdio> {
    use std::os::fd::AsFd;
    let file = std::fs::File::from(std::io::stderr().as_fd().try_clone_to_owned().ok()?);
    file.metadata().ok()?.file_type().is_file().then(|| std::process::Stdio::from(file))
}

/// Starts `wal push-ahead` for `wal push --async`, detached like the prefetcher.
fn start_pusher(
    global: &Global,
    pg_wal: &std::path::Path,
    spool: &PushSpool,
    workspace: Option<&str>,
    parallel: u16,
) -> bool {
    let mut args: Vec<std::ffi::OsString> = vec!["wal".into(), "push-ahead".into(), "--pg-wal".into(), pg_wal.into()];
    args.extend(["--spool".into(), spool.dir().into(), "--parallel".into(), parallel.to_string().into()]);
    match spawn_detached(global, args, workspace) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the WAL pusher; the archive_command pushes its file itself");
            false
        }
    }
}

/// Runs this binary with `args` (and the config and workspace of this command) in the
/// background: the command that starts it returns at once, and nobody may wait for the
/// child's output. Its warnings go to the server log when that is where this command's go.
fn spawn_detached(global: &Global, args: Vec<std::ffi::OsString>, workspace: Option<&str>) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(std::env::current_exe()?);
    if let Some(config) = &global.config {
        command.arg("--config").arg(std::path::absolute(config)?);
    }
    command.args(args);
    if let Some(workspace) = workspace {
        command.args(["--workspace", workspace]);
    }
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr_if_a_file().unwrap_or_else(std::process::Stdio::null))
        .process_group(0)
        .spawn()
        .map(drop)
}

/// Records Postgres' request in the spool and, unless one runs, starts a detached
/// `wal prefetch` that reads ahead of it. Problems only cost the read-ahead: logged.
fn start_prefetcher(
    global: &Global,
    spool: &Spool,
    name: &str,
    workspace: Option<&str>,
    depth: u32,
    segment_size: u64,
) {
    match spool.request(name) {
        Ok(true) => {}
        Ok(false) => return, // a prefetcher runs and will see the request
        Err(e) => {
            tracing::warn!(spool = %spool.dir().display(), error = %e, "cannot use the WAL prefetch folder");
            return;
        }
    }
    let mut args: Vec<std::ffi::OsString> = vec!["wal".into(), "prefetch".into(), "--spool".into(), spool.dir().into()];
    args.extend(["--depth".into(), depth.to_string().into(), "--segment-size".into(), segment_size.to_string().into()]);
    if let Err(e) = spawn_detached(global, args, workspace) {
        tracing::warn!(error = %e, "cannot start the WAL prefetcher");
    }
}
