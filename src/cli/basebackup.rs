//! `tidemark basebackup`.

use clap::Args;
use tidemark::Result;
use tidemark::ops::basebackup::{BaseBackupOptions, basebackup_recorded};

use super::{Global, human_bytes};

#[derive(Debug, Args)]
pub struct BasebackupArgs {
    /// The workspace, as named in tidemark.toml (default: the only one configured)
    #[arg(long, short)]
    workspace: Option<String>,
    /// Only what changed since the newest base backup: run on the database host (it reads
    /// the data directory)
    #[arg(long)]
    incremental: bool,
    /// The data directory an incremental base backup reads (default: the server's own)
    #[arg(long, value_name = "DIR", requires = "incremental")]
    pgdata: Option<std::path::PathBuf>,
    #[command(flatten)]
    wait: super::WaitArg,
}

pub async fn run(global: &Global, args: BasebackupArgs) -> Result<()> {
    let (core, _stop) = global.job_core().await?;
    let opts = BaseBackupOptions {
        workspace: core.workspace_or_only(args.workspace.as_deref())?,
        wait: args.wait.get(),
        incremental: args.incremental,
        pgdata: args.pgdata,
        max_chain: None,
    };
    let manifest = basebackup_recorded(&core, &opts, &global.actor()).await?;
    if global.json {
        global.print_json(&manifest);
    } else {
        println!(
            "{}base backup {} of workspace {}: timeline {}, WAL {} to {}, {} stored",
            manifest.parent.as_ref().map(|p| format!("incremental (to {p}) ")).unwrap_or_default(),
            manifest.id,
            manifest.workspace,
            manifest.timeline,
            manifest.start_lsn,
            manifest.end_lsn,
            human_bytes(manifest.tar.stored_size)
        );
    }
    Ok(())
}
