//! `tidemark basebackup`.

use clap::Args;
use tidemark::Result;
use tidemark::ops::basebackup::basebackup;

use super::{Global, human_bytes};

#[derive(Debug, Args)]
pub struct BasebackupArgs {
    /// The workspace, as named in tidemark.toml (`tidemark workspace list`)
    #[arg(long, short)]
    workspace: String,
}

pub async fn run(global: &Global, args: BasebackupArgs) -> Result<()> {
    let core = global.core().await?;
    let manifest = basebackup(&core, &args.workspace, &global.progress()).await?;
    if global.json {
        global.print_json(&manifest);
    } else {
        println!(
            "base backup {} of workspace {}: timeline {}, WAL {} to {}, {} stored",
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
