//! `tidemark restore`.

use clap::Args;
use tidemark::Result;
use tidemark::ops::restore::{RestoreOptions, restore};

use super::{Global, human_bytes, human_ms};

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot id (see `tidemark snapshot list`)
    snapshot: String,
    /// Target database URL: created if missing, refused if not empty
    #[arg(long, value_name = "URL")]
    target: String,
    /// The snapshot's workspace (default: search the repository)
    #[arg(long, short)]
    workspace: Option<String>,
    /// Parallel connections loading tables (default: one per core)
    #[arg(long, short)]
    jobs: Option<usize>,
    /// Where the snapshot's media files go (a folder, file:// or s3:// URL)
    #[arg(long, value_name = "DIR|URL")]
    media_target: Option<String>,
    /// Restore the database only
    #[arg(long, conflicts_with = "media_target")]
    no_media: bool,
}

pub async fn run(global: &Global, args: RestoreArgs) -> Result<()> {
    let core = global.core().await?;
    let opts = RestoreOptions {
        snapshot: args.snapshot,
        workspace: args.workspace,
        target: args.target,
        jobs: args.jobs,
        media_target: args.media_target,
        no_media: args.no_media,
    };
    let report = restore(&core, &opts, &global.progress()).await?;
    if global.json {
        global.print_json(&report);
    } else {
        let t = &report.timings;
        println!(
            "restored snapshot {} into {}{}: {} tables, {} rows, {} in {} \
             (check {}, schema {}, data {}, indexes+constraints {}, sequences+views {})",
            report.snapshot,
            report.target,
            if report.created_database { " (created)" } else { "" },
            report.tables,
            report.rows,
            human_bytes(report.plain_bytes),
            human_ms(t.total_ms),
            human_ms(t.check_ms),
            human_ms(t.pre_data_ms),
            human_ms(t.data_ms),
            human_ms(t.post_data_ms),
            human_ms(t.finish_ms)
        );
    }
    Ok(())
}
