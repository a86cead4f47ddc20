//! `tidemark audit list|verify|new-chain`: the audit trail of state-changing operations.

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
    /// Check the whole trail, that it still reaches the repository's newest checkpoint, and
    /// that it continues every audit chain the repository holds
    Verify,
    /// Start the catalog's audit chain as the continuation of the repository's newest one
    /// (after `catalog rebuild`, or a lost catalog); audited, and linked in the repository
    NewChain,
}

pub async fn run(global: &Global, cmd: AuditCommand) -> Result<()> {
    let core = global.core().await?;
    match cmd {
        AuditCommand::List { since, csv } => {
            let since = since.as_deref().map(tidemark::wal::window::parse_time).transpose()?;
            let records =
                audit::list(&core, &audit::AuditListOptions { since, ..Default::default() }, &global.actor()).await?;
            if global.json {
                global.print_json(&records);
            } else if csv {
                print!("{}", audit::to_csv(&records));
            } else {
                for r in &records {
                    // Why it failed or was refused: the error's message, on one line.
                    let reason = r.entry.details["error"]["message"].as_str().unwrap_or_default();
                    let reason: String = reason.lines().next().unwrap_or_default().chars().take(100).collect();
                    println!(
                        "{:>6} {} {:<24} {:<16} {:<32} {:<7} {reason}",
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
        AuditCommand::NewChain => {
            let link = audit::new_chain(&core, &global.actor()).await?;
            if global.json {
                global.print_json(&link);
            } else {
                match &link.follows {
                    Some(h) => println!(
                        "audit chain {} continues chain {} from its record {} (its last checkpoint)",
                        link.chain, h.chain, h.seq
                    ),
                    None => println!("audit chain {} is the repository's first", link.chain),
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
                for h in &report.continues {
                    println!("  it continues audit chain {} (to its record {})", h.chain, h.seq);
                }
            }
        }
    }
    Ok(())
}
