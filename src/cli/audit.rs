//! `tidemark audit list|verify`: the audit trail of state-changing operations.

use clap::Subcommand;
use tidemark::Result;
use tidemark::ops::audit;

use super::Global;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The audit trail, oldest first: who did what, to what, and how it ended
    List {
        /// Only records from this moment on ('2026-11-22 10:15:00+00' or RFC 3339)
        #[arg(long)]
        since: Option<String>,
        /// Comma-separated values with a header line, for spreadsheets; a field that would run
        /// as a formula gets a leading ' (--json wins over it)
        #[arg(long)]
        csv: bool,
    },
    /// Check the whole trail and that it still reaches the repository's newest checkpoint
    Verify,
}

pub async fn run(global: &Global, cmd: AuditCommand) -> Result<()> {
    let core = global.core().await?;
    match cmd {
        AuditCommand::List { since, csv } => {
            let since = since.as_deref().map(tidemark::wal::window::parse_time).transpose()?;
            let records = audit::list(&core, &audit::AuditListOptions { since }, &global.actor()).await?;
            if global.json {
                global.print_json(&records);
            } else if csv {
                print!("{}", audit::to_csv(&records));
            } else {
                for r in &records {
                    println!(
                        "{:>6} {} {:<24} {:<16} {:<32} {}",
                        r.seq,
                        r.at.format("%Y-%m-%d %H:%M:%S"),
                        r.entry.actor.to_string(),
                        r.entry.action,
                        r.entry.target,
                        r.entry.outcome
                    );
                }
            }
        }
        AuditCommand::Verify => {
            let report = audit::verify(&core, &global.actor()).await?;
            if global.json {
                global.print_json(&report);
            } else {
                match &report.checkpoint {
                    Some(cp) => println!(
                        "the audit trail is whole: {} records, and it reaches the repository's checkpoint (record {})",
                        report.records, cp.seq
                    ),
                    None => println!("the audit trail is whole: {} records (no checkpoint yet)", report.records),
                }
            }
        }
    }
    Ok(())
}
