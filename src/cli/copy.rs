//! `tidemark copy`: send what the primary repository holds and a copy lacks to the copies
//! (`[copies.NAME]`), checked on the way.

use clap::Args;
use tidemark::{Error, ErrorKind, Result};

use super::Global;

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The workspace, as named in tidemark.toml (default: the only one configured)
    #[arg(long, short)]
    workspace: Option<String>,
    /// One copy, as named by its [copies.NAME] table (default: every copy)
    #[arg(long)]
    to: Option<String>,
}

pub async fn run(global: &Global, args: CopyArgs) -> Result<()> {
    let (core, _stop) = global.job_core().await?;
    let opts =
        tidemark::ops::copy::CopyOptions { workspace: core.workspace_or_only(args.workspace.as_deref())?, to: args.to };
    let report = tidemark::ops::copy::copy_recorded(&core, &opts, &global.actor()).await?;
    let problems: Vec<String> = report.problems().collect();
    if global.json {
        global.print_json(&report);
    } else {
        for c in &report.copies {
            let t = &c.tally;
            println!(
                "copy {} ({}): {}, {}, {}, {} sent ({}); {} already there",
                c.name,
                c.url,
                super::count(t.snapshots, "snapshot"),
                super::count(t.base_backups, "base backup"),
                super::count(t.wal_files, "WAL file"),
                super::count(t.objects, "object"),
                super::human_bytes(t.bytes),
                t.already_there
            );
            match c.lag.oldest_missing {
                None => println!("  the copy holds everything the primary has of {}", report.workspace),
                Some(_) => println!(
                    "  still missing: {} (the oldest written {}s ago)",
                    super::count(c.lag.missing_objects, "object"),
                    c.lag_seconds
                ),
            }
        }
        for p in &problems {
            println!("PROBLEM: {p}");
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Integrity, format!("{} objects could not be copied", problems.len()))
            .result_printed())
    }
}
