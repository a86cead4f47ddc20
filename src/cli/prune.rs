//! `tidemark prune`.

use clap::Args;
use tidemark::Result;
use tidemark::ops::prune::{DEFAULT_GRACE, PruneOptions, prune_recorded};

use super::{Global, count, human_bytes};

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The workspace, as named in tidemark.toml (default: the only one configured)
    #[arg(long, short)]
    workspace: Option<String>,
    /// Say what would be deleted, delete nothing
    #[arg(long)]
    dry_run: bool,
    /// Leave garbage younger than this alone (a snapshot may be writing it), e.g. 6h, 2d
    /// [default: 6h]
    #[arg(long, value_parser = humantime::parse_duration)]
    grace: Option<std::time::Duration>,
    /// Apply a copy's own retention ([copies.NAME] keep-within, pitr-window) to that copy
    #[arg(long, value_name = "NAME")]
    repository: Option<String>,
    #[command(flatten)]
    wait: super::WaitArg,
}

pub async fn run(global: &Global, args: PruneArgs) -> Result<()> {
    let (core, _stop) = global.job_core_on(args.repository.as_deref()).await?;
    let opts = PruneOptions {
        workspace: core.workspace_or_only(args.workspace.as_deref())?,
        dry_run: args.dry_run,
        grace: args.grace.unwrap_or(DEFAULT_GRACE),
        as_of: None,
        wait: args.wait.get(),
        repository: args.repository,
    };
    let report = prune_recorded(&core, &opts, &global.actor()).await?;
    if global.json {
        global.print_json(&report);
        return Ok(());
    }
    for d in &report.decisions {
        println!("{:<24} {:<6}  {}", d.id, if d.keep { "keep" } else { "delete" }, d.reasons.join("; "));
    }
    let verb = if report.dry_run { "would delete" } else { "deleted" };
    println!(
        "{verb} {}, {} ({}), of which {} garbage; {} left for a later prune (inside the grace period)",
        count(report.decisions.iter().filter(|d| !d.keep).count() as u64, "snapshot"),
        count(report.deleted_objects, "object"),
        human_bytes(report.deleted_bytes),
        report.garbage_objects,
        count(report.garbage_in_grace, "object")
    );
    if report.unfinished_uploads_deleted > 0 {
        println!("{verb} {} that never completed", count(report.unfinished_uploads_deleted, "upload"));
    }
    for d in report.damaged.iter().chain(report.pitr.damaged.iter()) {
        eprintln!("warning: {} cannot be read and is kept: {}", d.id, d.problem);
    }
    let pitr = &report.pitr;
    if !pitr.base_backups_deleted.is_empty() || pitr.wal_files_deleted > 0 || pitr.wal_files_in_grace > 0 {
        let bases = match pitr.base_backups_deleted.as_slice() {
            [] => "no base backup".to_string(),
            ids => format!("{} ({})", count(ids.len() as u64, "base backup"), ids.join(", ")),
        };
        println!(
            "point-in-time window {}: {verb} {bases} and {} ({} more inside the grace period); WAL kept from {}",
            pitr.window,
            count(pitr.wal_files_deleted, "WAL file"),
            pitr.wal_files_in_grace,
            pitr.oldest_wal_kept.as_deref().unwrap_or("-")
        );
    }
    for db in &report.replaced_databases_dropped {
        let verb = if report.dry_run { "would drop" } else { "dropped" };
        println!("{verb} database {db}, replaced by an in-place restore longer ago than keep-replaced");
    }
    for id in &report.exports_removed {
        let verb = if report.dry_run { "would remove" } else { "removed" };
        println!("{verb} export {id} (made over the API longer ago than [api] keep-exports)");
    }
    if report.drill_reports_deleted > 0 {
        println!("{verb} {} past the retention", count(report.drill_reports_deleted, "restore drill report"));
    }
    Ok(())
}
