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
        /// Comma-separated values with a header line, for spreadsheets (--json wins over it)
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
                println!("seq,at,actor,action,target,outcome,details,hash");
                for r in &records {
                    let fields = [
                        r.seq.to_string(),
                        r.at.to_rfc3339(),
                        r.entry.actor.to_string(),
                        r.entry.action.clone(),
                        r.entry.target.clone(),
                        r.entry.outcome.clone(),
                        r.entry.details.to_string(),
                        r.hash.clone(),
                    ];
                    println!("{}", fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
                }
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

/// A CSV field: quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_string() }
}
