//! `tidemark drill`: restore a backup into a throwaway, check it, report (text, `--json`,
//! JUnit), and exit 0 only when every check passed; `drill history` reads the catalog.

use clap::{Args, Subcommand};
use tidemark::drill::{CheckStatus, DrillReport};
use tidemark::ops::drill::{DrillOptions, DrillSource, HistoryOptions, drill_recorded, history};
use tidemark::wal::window::Target;
use tidemark::{Error, ErrorKind, Result};

use super::{Global, human_bytes, human_ms};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct DrillArgs {
    #[command(subcommand)]
    command: Option<DrillCommand>,
    /// The workspace whose backup is drilled
    #[arg(long, short, required = true)]
    workspace: Option<String>,
    /// The snapshot to drill (default: the newest; `latest` says so)
    #[arg(long, conflicts_with_all = ["pitr", "pitr_time"])]
    snapshot: Option<String>,
    /// A point-in-time drill to the end of the archive: `--pitr latest`
    #[arg(long, value_parser = ["latest"], conflicts_with = "pitr_time")]
    pitr: Option<String>,
    /// A point-in-time drill to this moment ('2026-11-22 10:15:00+00')
    #[arg(long)]
    pitr_time: Option<String>,
    /// Also write the report as JUnit XML to this file (for CI systems)
    #[arg(long, value_name = "FILE")]
    junit: Option<std::path::PathBuf>,
    /// Drill a copy ([copies.NAME]) instead of the primary repository
    #[arg(long, value_name = "NAME")]
    repository: Option<String>,
    /// Also check that every table row is in each of its indexes (pg_amcheck
    /// --heapallindexed; slower)
    #[arg(long)]
    heapallindexed: bool,
}

#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// The drills recorded in the catalog, newest first
    History {
        /// Only this workspace's drills (default: every workspace)
        #[arg(long, short)]
        workspace: Option<String>,
        /// How many drills to show
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

pub async fn run(global: &Global, args: DrillArgs) -> Result<()> {
    if let Some(DrillCommand::History { workspace, limit }) = args.command {
        let core = global.core().await?;
        let drills = history(&core, &HistoryOptions { workspace, limit }, &global.actor()).await?;
        if global.json {
            global.print_json(&drills);
            return Ok(());
        }
        if drills.is_empty() {
            println!("no drills recorded yet; run `tidemark drill --workspace NAME`");
        }
        for d in &drills {
            let r = &d.report;
            println!(
                "{}  {:<10} {:<7} {:<22} {}  {}/{} checks passed  RTO {}  ({})",
                r.started_at.format("%Y-%m-%d %H:%M:%S"),
                r.workspace,
                r.kind.as_str(),
                r.source,
                if r.passed { "PASSED" } else { "FAILED" },
                r.passed_checks(),
                r.checks.len(),
                human_ms(r.timings.restore_ms),
                d.trigger
            );
        }
        return Ok(());
    }

    let workspace = args.workspace.ok_or_else(|| Error::usage("drill needs --workspace NAME"))?;
    let source = match (args.pitr, args.pitr_time) {
        (Some(_), _) => DrillSource::Pitr(Target::Latest),
        (None, Some(time)) => DrillSource::Pitr(Target::Time(tidemark::wal::window::parse_time(&time)?)),
        (None, None) => DrillSource::Snapshot(args.snapshot),
    };
    let wanted = tidemark::ops::copy::Wanted::drill(&workspace, &source);
    let (core, _stop) = global.job_core_for(args.repository.as_deref(), wanted).await?;
    if !global.json {
        eprintln!("drilling workspace {workspace}: restoring into a throwaway, then checking...");
    }
    let opts = DrillOptions {
        repository: args.repository,
        heapallindexed: args.heapallindexed,
        ..DrillOptions::new(&workspace, source)
    };
    let report = drill_recorded(&core, &opts, &global.actor()).await;
    let write_junit = |xml: String| match &args.junit {
        Some(path) => fs_err::write(path, xml)
            .map_err(|e| tidemark::Error::from(e).context(format!("writing the JUnit report {}", path.display()))),
        None => Ok(()),
    };
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            write_junit(tidemark::drill::junit_for_error(&workspace, &e.report()))?;
            return Err(e);
        }
    };
    write_junit(report.junit())?;
    if global.json {
        global.print_json(&report);
    } else {
        print_report(&report);
    }
    if report.passed {
        return Ok(());
    }
    let failed: Vec<&str> = report.failed_checks().iter().map(|c| c.name.as_str()).collect();
    let message = match &report.cleanup_error {
        Some(e) if failed.is_empty() => format!("drill FAILED: its throwaway could not be removed: {e}"),
        _ => format!("drill FAILED: {} of {} checks failed: {}", failed.len(), report.checks.len(), failed.join(", ")),
    };
    Err(Error::new(ErrorKind::Integrity, message).result_printed())
}

fn print_report(r: &DrillReport) {
    println!("drill of workspace {} ({} {}) into {}", r.workspace, r.kind.as_str(), r.source, r.restored_into);
    let width = r.checks.iter().map(|c| c.name.len()).max().unwrap_or(0).min(60);
    for c in &r.checks {
        let status = match c.status {
            CheckStatus::Pass => "PASS",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Skip => "SKIP",
        };
        println!("  {status}  {:<width$}  {}", c.name, c.details);
    }
    let t = &r.timings;
    println!(
        "restore (RTO) {}: target {}, preflight {}, schema {}, data {}, indexes {}, finish {}, media {}; \
         checks {}; cleanup {}; total {}",
        human_ms(t.restore_ms),
        human_ms(t.target_ms),
        human_ms(t.preflight_ms),
        human_ms(t.schema_ms),
        human_ms(t.data_ms),
        human_ms(t.indexes_ms),
        human_ms(t.finish_ms),
        human_ms(t.media_ms),
        human_ms(t.checks_ms),
        human_ms(t.cleanup_ms),
        human_ms(t.total_ms)
    );
    if r.stored_bytes > 0 {
        println!("read {} from the repository ({} restored)", human_bytes(r.stored_bytes), human_bytes(r.plain_bytes));
    }
    for l in &r.leftovers_removed {
        println!("removed the leftover of a crashed drill: {l}");
    }
    if r.passed {
        let skipped = r.checks.iter().filter(|c| c.status == tidemark::drill::CheckStatus::Skip).count();
        let skipped = if skipped > 0 { format!(" ({skipped} skipped)") } else { String::new() };
        println!("drill PASSED: {} of {} checks passed{skipped}", r.passed_checks(), r.checks.len());
    }
}
