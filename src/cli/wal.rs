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

pub async fn run(global: &Global, cmd: WalCommand) -> Result<()> {
    let core = global.core().await?;
    match cmd {
        WalCommand::Push { path, workspace } => {
            let pushed = wal::push(&core, workspace.as_deref(), &path).await?;
            if global.json {
                global.print_json(&pushed);
            }
        }
        WalCommand::Fetch { name, dest, workspace } => {
            let bytes = wal::fetch(&core, workspace.as_deref(), &name, &dest).await?;
            if global.json {
                global.print_json(&serde_json::json!({ "name": name, "bytes": bytes }));
            }
        }
    }
    Ok(())
}
