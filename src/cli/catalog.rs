//! `tidemark jobs` and `tidemark catalog rebuild`: the catalog's job history, and
//! recreating the catalog from the repository.

use clap::{Args, Subcommand};
use tidemark::Result;
use tidemark::ops::catalog;

use super::{Global, human_bytes};

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only this workspace's jobs
    #[arg(long, short)]
    workspace: Option<String>,
    /// How many of the newest jobs to show
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Recreate the catalog's job history and schedules' last runs from the repository
    Rebuild {
        /// If the catalog file is damaged, move it aside (<file>.damaged-<time>) and build a new one
        #[arg(long)]
        replace: bool,
    },
    /// Copy this SQLite catalog into an empty PostgreSQL one (then name it in tidemark.toml)
    Migrate {
        /// The PostgreSQL catalog: postgres://user@host/db (no password in it)
        #[arg(long, value_name = "URL")]
        to: String,
        /// Its password
        #[arg(long, value_name = "env:VAR|file:PATH")]
        password: Option<String>,
    },
}

pub async fn jobs(global: &Global, args: JobsArgs) -> Result<()> {
    let core = global.core().await?;
    let opts = catalog::JobsOptions { workspace: args.workspace, limit: args.limit };
    let jobs = catalog::jobs(&core, &opts, &global.actor()).await?;
    if global.json {
        global.print_json(&jobs);
        return Ok(());
    }
    if jobs.is_empty() {
        println!("no jobs recorded yet");
    }
    for j in &jobs {
        let outcome = match (&j.snapshot_id, &j.error) {
            (Some(id), _) => format!("{id} ({})", human_bytes(j.bytes.unwrap_or(0).max(0) as u64)),
            (None, Some(e)) => e.lines().next().unwrap_or_default().to_string(),
            _ => String::new(),
        };
        // What the job was: its operation, and a snapshot's kind.
        let what = match &j.kind {
            Some(kind) => format!("{} {kind}", j.operation),
            None => j.operation.clone(),
        };
        println!(
            "{:>5}  {}  {:<10} {:<18} {:<9} {:<10} attempts {}  {}",
            j.id,
            j.started_at.format("%Y-%m-%d %H:%M:%S"),
            j.workspace,
            what,
            j.trigger,
            j.status,
            j.attempts,
            outcome
        );
        if let Some(w) = &j.warning {
            println!("       warning: {w}");
        }
    }
    Ok(())
}

pub async fn run(global: &Global, cmd: CatalogCommand) -> Result<()> {
    let core = global.core().await?;
    match cmd {
        CatalogCommand::Migrate { to, password } => {
            let opts = catalog::MigrateOptions { to, password };
            let report = catalog::migrate(&core, &opts, &global.actor()).await?;
            if global.json {
                global.print_json(&report);
            } else {
                let rows: u64 = report.tables.iter().map(|(_, n)| n).sum();
                println!(
                    "copied {rows} rows of {} tables from {} into {}; the audit trail's {} records verify",
                    report.tables.len(),
                    report.from,
                    report.to,
                    report.audit_records
                );
                println!(
                    "next: set catalog = \"{}\" (and catalog-password) in tidemark.toml, then restart `tidemark serve`",
                    report.to
                );
            }
            Ok(())
        }
        CatalogCommand::Rebuild { replace } => {
            let opts = catalog::RebuildOptions { replace_damaged: replace };
            let report = catalog::rebuild(&core, &opts, &global.actor()).await?;
            if global.json {
                global.print_json(&report);
            } else {
                println!(
                    "catalog {}: {} snapshots in {} workspaces, {} jobs added, {} schedules' last runs set, \
                     {} drill reports added",
                    report.catalog,
                    report.snapshots,
                    report.workspaces,
                    report.jobs_added,
                    report.schedules_set,
                    report.drills_added
                );
                if let Some(aside) = &report.moved_aside {
                    eprintln!("the damaged catalog was moved to {aside}");
                }
                for d in &report.damaged {
                    eprintln!("warning: snapshot {} was not recorded: {}", d.id, d.problem);
                }
            }
            Ok(())
        }
    }
}
