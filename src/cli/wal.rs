//! `tidemark wal push|fetch`: the archive_command and restore_command of a cluster.

use std::path::PathBuf;

use clap::Subcommand;
use tidemark::Result;
use tidemark::ops::wal;

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
    },
    /// Stream WAL continuously (pg_receivewal over a replication slot) and ship each completed segment, until SIGTERM/SIGINT
    Stream {
        #[arg(long, short)]
        workspace: String,
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
        #[arg(long, short)]
        workspace: Option<String>,
    },
}

/// `wal fetch`'s exit code for every failure except "not archived": above 125, so that
/// Postgres aborts recovery instead of taking the failure for the end of the archive
/// and promoting a copy that is missing WAL (an unreachable bucket, a wrong key).
pub const FETCH_FAILED_EXIT: i32 = 200;

pub async fn run(global: &Global, cmd: WalCommand) -> Result<()> {
    match cmd {
        WalCommand::Push { path, workspace } => {
            let pushed = wal::push(&global.core().await?, workspace.as_deref(), &path).await?;
            if global.json {
                global.print_json(&pushed);
            }
            Ok(())
        }
        WalCommand::Stream { workspace, slot, spool } => {
            let core = global.core().await?;
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
        WalCommand::Fetch { name, dest, workspace } => {
            let fetched = async { wal::fetch(&global.core().await?, workspace.as_deref(), &name, &dest).await }.await;
            match fetched {
                Ok(bytes) => {
                    if global.json {
                        global.print_json(&serde_json::json!({ "name": name, "bytes": bytes }));
                    }
                    Ok(())
                }
                Err(e) if e.kind() == tidemark::ErrorKind::NotFound => Err(e),
                Err(e) => {
                    eprintln!("error: {}\n(exit {FETCH_FAILED_EXIT}: recovery must stop, not promote)", e.report());
                    std::process::exit(FETCH_FAILED_EXIT);
                }
            }
        }
    }
}
