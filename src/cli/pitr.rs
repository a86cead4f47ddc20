//! `tidemark pitr window|restore|mark`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use tidemark::Result;
use tidemark::ops::pitr::{self, PitrRestoreOptions};
use tidemark::wal::window::Target;

use super::{Global, human_ms};

#[derive(Debug, Subcommand)]
pub enum PitrCommand {
    /// The earliest and latest restorable moments, the base backups, and missing WAL
    Window {
        /// The workspace, as named in tidemark.toml (default: the only one configured)
        #[arg(long, short)]
        workspace: Option<String>,
    },
    /// Build a new data directory restored to a moment (and start it with --start)
    Restore(RestoreArgs),
    /// Create a named restore point on the workspace's server
    Mark {
        /// The restore point name (1 to 63 bytes, no control characters)
        name: String,
        /// The workspace, as named in tidemark.toml (default: the only one configured)
        #[arg(long, short)]
        workspace: Option<String>,
    },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["time", "lsn", "name", "latest"])))]
pub struct RestoreArgs {
    /// The workspace, as named in tidemark.toml (default: the only one configured)
    #[arg(long, short)]
    workspace: Option<String>,
    /// The new data directory (must not exist or be empty)
    #[arg(long)]
    pgdata: PathBuf,
    /// Restore up to this moment, e.g. '2026-11-22 10:15:00+00' (RFC 3339 also works)
    #[arg(long)]
    time: Option<String>,
    /// Restore up to this WAL location, e.g. 0/5000028
    #[arg(long)]
    lsn: Option<String>,
    /// Restore up to this named restore point (see `pitr mark`)
    #[arg(long)]
    name: Option<String>,
    /// Restore everything the repository has
    #[arg(long)]
    latest: bool,
    /// Start the server (as `postgres` when root) and wait until the target is reached
    #[arg(long)]
    start: bool,
    /// Port of the started server (default: a free one)
    #[arg(long)]
    port: Option<u16>,
    /// WAL segments to read ahead during recovery (0: fetch each when Postgres asks)
    #[arg(long, default_value_t = pitr::DEFAULT_PREFETCH)]
    prefetch: u32,
    /// Leave out what the workspace's WAL stream received on this host and has not shipped yet (its spool): restore from the repository alone
    #[arg(long)]
    repository_only: bool,
    /// Restore from a copy ([copies.NAME]) instead of the primary repository: its base
    /// backups and its WAL (the restored server's `wal fetch` reads the copy too)
    #[arg(long, value_name = "NAME")]
    repository: Option<String>,
}

pub async fn run(global: &Global, cmd: PitrCommand) -> Result<()> {
    let core = match &cmd {
        PitrCommand::Restore(args) => {
            let target = Target::from_flags(args.time.as_deref(), args.lsn.as_deref(), args.name.as_deref())?;
            let wanted =
                tidemark::ops::copy::Wanted::PointInTime { workspace: args.workspace.as_deref(), target: &target };
            global.job_core_for(args.repository.as_deref(), wanted).await?.0
        }
        _ => global.core().await?,
    };
    match cmd {
        PitrCommand::Window { workspace } => {
            let workspace = core.workspace_or_only(workspace.as_deref())?;
            let window = pitr::window(&core, &pitr::WindowOptions { workspace }, &global.actor()).await?;
            if global.json {
                global.print_json(&window);
                return Ok(());
            }
            println!("window: {}", window.describe());
            for b in &window.base_backups {
                match &b.to {
                    Some(to) => {
                        let timelines: Vec<String> = b.timelines.iter().map(u32::to_string).collect();
                        println!(
                            "  base backup {}: {} to {} (timeline {})",
                            b.id,
                            b.from.lsn,
                            to.lsn,
                            timelines.join(" -> ")
                        );
                    }
                    None => println!("  base backup {}: unusable, WAL it needs is missing", b.id),
                }
            }
            for g in &window.gaps {
                println!("  missing WAL: {} to {} ({} segments)", g.first_missing, g.last_missing, g.segments);
            }
            for timeline in &window.unfollowed_timelines {
                println!(
                    "  WAL of timeline {timeline} is archived, but no base backup's recovery reaches it: moments \
                     on it cannot be restored until `tidemark basebackup` runs"
                );
            }
            println!("  {} WAL files archived", window.wal_files);
        }
        PitrCommand::Restore(args) => {
            let target = Target::from_flags(args.time.as_deref(), args.lsn.as_deref(), args.name.as_deref())?;
            let opts = PitrRestoreOptions {
                workspace: core.workspace_or_only(args.workspace.as_deref())?,
                pgdata: args.pgdata,
                target,
                start: args.start,
                port: args.port,
                tidemark_command: None,
                prefetch: args.prefetch,
                repository_only: args.repository_only,
                repository: args.repository,
            };
            let core = core.with_progress(global.progress());
            let report = pitr::restore(&core, &opts, &global.actor()).await?;
            if global.json {
                global.print_json(&report);
                return Ok(());
            }
            println!(
                "restored workspace {} to {} from base backup {} into {} in {}",
                report.workspace,
                report.target,
                report.base_backup,
                report.pgdata,
                human_ms(report.restore_ms)
            );
            match (&report.port, &report.reached) {
                (Some(port), Some(r)) => println!(
                    "running on 127.0.0.1:{port}; replayed up to {}, last commit {}",
                    r.lsn,
                    r.last_commit.map(|t| t.to_rfc3339()).unwrap_or_else(|| "unknown".into())
                ),
                _ => println!("start it with: pg_ctl -D {} start", report.pgdata),
            }
            if !report.from_spool.is_empty() {
                println!(
                    "also replayed from the WAL stream's spool on this host (not yet in the repository): {}",
                    report.from_spool.join(", ")
                );
            }
            if let Some(note) = &report.note {
                println!("note: {note}");
            }
        }
        PitrCommand::Mark { name, workspace } => {
            let workspace = core.workspace_or_only(workspace.as_deref())?;
            let point = pitr::mark(&core, &pitr::MarkOptions { workspace, name }, &global.actor()).await?;
            if global.json {
                global.print_json(&point);
            } else {
                println!("restore point {} at {} ({})", point.name, point.lsn, point.time.to_rfc3339());
            }
        }
    }
    Ok(())
}
