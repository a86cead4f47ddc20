//! `tidemark check`: exit 0 only when every backup of the workspace is whole.

use clap::Args;
use tidemark::{Error, ErrorKind, Result};

use super::Global;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The workspace, as named in tidemark.toml (default: the only one configured)
    #[arg(long, short)]
    workspace: Option<String>,
    /// Also download, decrypt and hash every object (slow; reads the whole repository)
    #[arg(long)]
    read_data: bool,
    /// Check a copy ([copies.NAME]) instead of the primary repository
    #[arg(long, value_name = "NAME")]
    repository: Option<String>,
}

pub async fn run(global: &Global, args: CheckArgs) -> Result<()> {
    let (core, _stop) = global.job_core_on(args.repository.as_deref()).await?;
    let opts = tidemark::ops::check::CheckOptions {
        workspace: core.workspace_or_only(args.workspace.as_deref())?,
        read_data: args.read_data,
        repository: args.repository,
    };
    let report = tidemark::ops::check::check_recorded(&core, &opts, &global.actor()).await?;
    if global.json {
        global.print_json(&report);
    } else {
        println!(
            "workspace {}: {}, {}, {}; {} checked, {} read back",
            report.workspace,
            super::count(report.snapshots as u64, "snapshot"),
            super::count(report.base_backups as u64, "base backup"),
            super::count(report.wal_files as u64, "WAL file"),
            super::count(report.objects_checked, "object"),
            report.objects_read
        );
        println!("point-in-time window: {}", report.window);
        for p in &report.problems {
            println!("PROBLEM: {p}");
        }
    }
    if report.problems.is_empty() {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Integrity, format!("{} problems found in the repository", report.problems.len()))
            .result_printed())
    }
}
