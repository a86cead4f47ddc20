//! `tidemark prune`.

use clap::Args;
use tidemark::Result;
use tidemark::ops::prune::{DEFAULT_GRACE, PruneOptions, prune};

use super::{Global, human_bytes};

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The workspace, as named in tidemark.toml (`tidemark workspace list`)
    #[arg(long, short)]
    workspace: String,
    /// Say what would be deleted, delete nothing
    #[arg(long)]
    dry_run: bool,
    /// Leave garbage younger than this alone (a snapshot may be writing it), e.g. 6h, 2d
    /// [default: 6h]
    #[arg(long, value_parser = humantime::parse_duration)]
    grace: Option<std::time::Duration>,
}

pub async fn run(global: &Global, args: PruneArgs) -> Result<()> {
    let core = global.core().await?;
    let opts = PruneOptions {
        workspace: args.workspace,
        dry_run: args.dry_run,
        grace: args.grace.unwrap_or(DEFAULT_GRACE),
        as_of: None,
    };
    let report = prune(&core, &opts).await?;
    if global.json {
        global.print_json(&report);
        return Ok(());
    }
    for d in &report.decisions {
        println!("{:<24} {:<6}  {}", d.id, if d.keep { "keep" } else { "delete" }, d.reasons.join("; "));
    }
    let verb = if report.dry_run { "would delete" } else { "deleted" };
    println!(
        "{verb} {} snapshots, {} objects ({}), of which {} garbage; {} objects left for a later prune (inside the grace period)",
        report.decisions.iter().filter(|d| !d.keep).count(),
        report.deleted_objects,
        human_bytes(report.deleted_bytes),
        report.garbage_objects,
        report.garbage_in_grace
    );
    let pitr = &report.pitr;
    if !pitr.base_backups_deleted.is_empty() || pitr.wal_files_deleted > 0 || pitr.wal_files_in_grace > 0 {
        println!(
            "point-in-time window {}: {verb} base backups [{}] and {} WAL files ({} more inside the grace period); \
             WAL kept from {}",
            pitr.window,
            pitr.base_backups_deleted.join(", "),
            pitr.wal_files_deleted,
            pitr.wal_files_in_grace,
            pitr.oldest_wal_kept.as_deref().unwrap_or("-")
        );
    }
    if report.drill_reports_deleted > 0 {
        println!("{verb} {} restore drill reports past the retention", report.drill_reports_deleted);
    }
    Ok(())
}
