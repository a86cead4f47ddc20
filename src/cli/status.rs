//! `tidemark status`: one line per workspace, healthy or what is wrong, and the exit codes
//! of a monitoring-plugin check: 0 healthy, 1 stale, 2 failing, 3 when it cannot tell.

use tidemark::ops::health::{self, Health, HealthOptions, words as age};
use tidemark::{Error, ErrorKind, Result};

use super::Global;

/// Exit codes (Nagios / monitoring-plugins: OK, WARNING, CRITICAL, UNKNOWN).
pub const STALE: i32 = 1;
pub const FAILING: i32 = 2;
pub const UNKNOWN: i32 = 3;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Only this workspace (default: all)
    #[arg(long, short, value_name = "WORKSPACE")]
    workspace: Option<String>,
}

pub async fn run(global: &Global, args: StatusArgs) -> Result<()> {
    let opts = HealthOptions { workspace: args.workspace };
    let report = async { health::health(&global.core().await?, &opts, &global.actor()).await }
        .await
        .map_err(|e| e.with_exit_code(UNKNOWN))?;
    if global.json {
        global.print_json(&report);
    } else {
        for w in &report.workspaces {
            println!("{}", line(w));
            if let Some(stream) = &w.wal_stream {
                println!("    {}", stream_line(stream));
            }
            for p in &w.problems {
                println!("    {}: {}", p.kind.as_str(), p.message);
            }
            // A synchronous stream's cost is said even when all is well.
            if let Some(warning) = w.wal_stream.as_ref().and_then(|s| s.warning.as_ref())
                && !w.problems.iter().any(|p| p.message == *warning)
            {
                println!("    warning: {warning}");
            }
        }
        for u in &report.unknown {
            println!("{:<20} UNKNOWN  {}", u.workspace, u.error);
        }
    }
    let (code, what) = match report.state.as_str() {
        "healthy" => return Ok(()),
        "stale" => (STALE, "stale"),
        "unknown" => (UNKNOWN, "cannot tell"),
        _ => (FAILING, "failing"),
    };
    let names: Vec<&str> = report
        .workspaces
        .iter()
        .filter(|w| w.state != "healthy")
        .map(|w| w.workspace.as_str())
        .chain(report.unknown.iter().map(|u| u.workspace.as_str()))
        .collect();
    let error = Error::new(ErrorKind::Refused, format!("{what}: {}", names.join(", "))).with_exit_code(code);
    Err(if global.json { error.result_printed() } else { error })
}

/// `WAL stream (synchronous, sync): streamed to 0/3081E50, shipped 1s ago`.
fn stream_line(s: &health::StreamHealth) -> String {
    let state = match s.standby.as_ref().map(|st| st.sync_state.as_deref()) {
        Some(Some(state)) => format!(", {state}"),
        Some(None) => ", receiver NOT connected".to_string(),
        None => String::new(),
    };
    match (s.streamed_lsn, s.streamed_age_seconds) {
        (Some(lsn), Some(secs)) => {
            format!("WAL stream ({}{state}): streamed to {lsn}, shipped {} ago", s.mode, age(secs))
        }
        _ => format!("WAL stream ({}{state}): nothing streamed yet", s.mode),
    }
}

/// `shop  healthy  snapshot 3h ago  drill passed 2d ago  PITR to 2026-11-29 20:00:12 (RPO 12s)`.
fn line(w: &Health) -> String {
    let ago = |secs: Option<i64>| secs.map_or_else(|| "never".to_string(), |s| format!("{} ago", age(s)));
    let snapshot = ago(w.newest_snapshot_at.map(|t| (w.status.at - t).num_seconds()));
    let drill = match &w.status.last_drill {
        Some(d) => format!("{} {}", if d.passed { "passed" } else { "FAILED" }, ago(Some(d.age_seconds))),
        None => "never".to_string(),
    };
    let pitr = match (w.pitr_latest, w.rpo_seconds) {
        (Some(latest), Some(rpo)) => format!("PITR to {} (RPO {})", latest.format("%Y-%m-%d %H:%M:%S"), age(rpo)),
        (None, Some(rpo)) => format!("no PITR (RPO {})", age(rpo)),
        _ => "no PITR".to_string(),
    };
    format!(
        "{:<20} {:<8} snapshot {:<12} drill {:<18} {pitr}",
        w.workspace,
        w.state.to_uppercase().replace("HEALTHY", "healthy"),
        snapshot,
        drill
    )
}
