//! `tidemark branch create|list|set-live|delete`.

use clap::Subcommand;
use tidemark::Result;
use tidemark::ops::branch::{self, BranchCreateOptions, BranchDeleteOptions, SetLiveOptions};

use super::{Global, human_bytes, human_ms};

#[derive(Debug, Subcommand)]
pub enum BranchCommand {
    /// Restore a snapshot (or a moment) into a new database beside the workspace's, registered as its branch
    Create {
        /// The workspace to branch
        workspace: String,
        /// The branch's name (lowercase letters, digits, '_', '-')
        name: String,
        /// A snapshot id, or `latest` (the default)
        #[arg(long, value_name = "ID")]
        from: Option<String>,
        /// A moment instead of a snapshot ('2026-11-22 10:15:00+00')
        #[arg(long, value_name = "TIME", conflicts_with = "from")]
        time: Option<String>,
        /// Parallel connections loading tables (default: one per core)
        #[arg(long, short)]
        jobs: Option<usize>,
    },
    /// The branches (of WORKSPACE, or all): source, moment, size, age
    List {
        /// Only this workspace's branches
        workspace: Option<String>,
    },
    /// Make a branch the workspace's live database (a pre-restore snapshot first; `restore undo` swaps back)
    SetLive {
        /// The workspace whose live database is replaced
        workspace: String,
        /// The branch that becomes live
        name: String,
        /// Repeat the workspace's name: its live database is replaced
        #[arg(long, value_name = "WORKSPACE")]
        confirm: String,
        /// Drop the replaced database after the switch (no undo then)
        #[arg(long)]
        drop_previous: bool,
        #[command(flatten)]
        wait: super::WaitArg,
    },
    /// Drop a branch's database and forget the branch
    Delete {
        /// The workspace the branch belongs to
        workspace: String,
        /// The branch whose database is dropped
        name: String,
        /// Repeat the branch's name: its database is dropped
        #[arg(long, value_name = "NAME")]
        confirm: String,
    },
}

pub async fn run(global: &Global, cmd: BranchCommand) -> Result<()> {
    let (core, _stop) = global.job_core().await?;
    let actor = global.actor();
    match cmd {
        BranchCommand::Create { workspace, name, from, time, jobs } => {
            let opts = BranchCreateOptions { workspace, name, from, time, jobs, tidemark_command: None };
            let report = branch::create_recorded(&core, &opts, &actor).await?;
            if global.json {
                global.print_json(&report);
            } else {
                let b = &report.branch;
                println!(
                    "branch {} of {} created from {}: database {} ({} rows, {}), workspace {} (no schedules)",
                    b.name,
                    b.branch_of,
                    b.source,
                    b.database,
                    report.restore.rows,
                    human_ms(report.restore.timings.total_ms),
                    b.workspace
                );
            }
        }
        BranchCommand::List { workspace } => {
            let branches = branch::list(&core, workspace.as_deref(), &actor).await?;
            if global.json {
                global.print_json(&branches);
            } else if branches.is_empty() {
                println!("no branches");
            } else {
                for b in &branches {
                    let age = b.age_seconds.map(|s| {
                        humantime::format_duration(std::time::Duration::from_secs(s.max(0) as u64)).to_string()
                    });
                    println!(
                        "{:<24} of {:<16} from {:<44} {:>10}  {} old  (database {})",
                        b.name,
                        b.branch_of,
                        b.source,
                        b.size_bytes.map(|n| human_bytes(n.max(0) as u64)).unwrap_or_else(|| "?".into()),
                        age.unwrap_or_else(|| "?".into()),
                        b.database
                    );
                }
            }
        }
        BranchCommand::SetLive { workspace, name, confirm, drop_previous, wait } => {
            let opts = SetLiveOptions { workspace, name, confirm, drop_previous, wait: wait.get() };
            let report = branch::set_live_recorded(&core, &opts, &actor).await?;
            if global.json {
                global.print_json(&report);
            } else {
                println!("pre-restore snapshot {} of the live database", report.safety_snapshot);
                println!(
                    "branch {} is the live database {} of workspace {} now (switch {})",
                    report.branch,
                    report.database,
                    report.workspace,
                    human_ms(report.switch_ms)
                );
                super::print_replaced(report.previous_database.as_deref(), &report.workspace);
            }
        }
        BranchCommand::Delete { workspace, name, confirm } => {
            let opts = BranchDeleteOptions { workspace, name, confirm };
            let gone = branch::delete(&core, &opts, &actor).await?;
            if global.json {
                global.print_json(&gone);
            } else {
                println!("branch {} of {} deleted: database {} dropped", gone.name, gone.branch_of, gone.database);
            }
        }
    }
    Ok(())
}
