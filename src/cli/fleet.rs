//! `tidemark fleet`: the processes sharing the catalog.

use clap::Args;
use tidemark::Result;
use tidemark::ops::fleet;

use super::Global;

#[derive(Debug, Args)]
pub struct FleetArgs {}

pub async fn run(global: &Global, _args: FleetArgs) -> Result<()> {
    let core = global.core().await?;
    let report = fleet::fleet(&core, &global.actor()).await?;
    if global.json {
        global.print_json(&report);
        return Ok(());
    }
    println!(
        "catalog {}: {} daemon(s) and {} API server(s) alive; a member silent for {}s is dead",
        report.catalog, report.daemons_alive, report.api_servers_alive, report.lease_timeout_seconds
    );
    if report.members.is_empty() {
        println!("no member has joined yet (`tidemark serve` joins when it starts)");
    }
    for m in &report.members {
        let state = match (&m.stopped_at, m.alive) {
            (Some(at), _) => {
                format!("stopped {}: {}", at.format("%Y-%m-%d %H:%M:%S"), m.stop_reason.as_deref().unwrap_or(""))
            }
            (None, true) => format!("alive, heartbeat {}", m.heartbeat_at.format("%H:%M:%S")),
            (None, false) => format!("silent since {} (about to be taken over)", m.heartbeat_at.format("%H:%M:%S")),
        };
        println!(
            "{:>5}  {:<7} pid {:<8} on {:<20} v{}  since {}  {state}",
            m.id,
            m.role,
            m.pid,
            m.host,
            m.version,
            m.started_at.format("%Y-%m-%d %H:%M:%S"),
        );
        if !m.holds.is_empty() {
            println!("       holds: {}", m.holds.join(", "));
        }
        if m.takeovers > 0 {
            println!("       took over {} dead member(s)", m.takeovers);
        }
    }
    Ok(())
}
