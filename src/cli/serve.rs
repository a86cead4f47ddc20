//! `tidemark serve`: run the scheduler until SIGTERM or SIGINT, then stop gracefully.

use std::sync::Arc;

use clap::Args;
use tidemark::Result;
use tidemark::schedule::clock::SystemClock;
use tokio_util::sync::CancellationToken;

use super::Global;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// How long running jobs may take to finish after SIGTERM/SIGINT before they are
    /// aborted (overrides daemon.shutdown-timeout), e.g. 30s, 5m
    #[arg(long, value_parser = humantime::parse_duration)]
    shutdown_timeout: Option<std::time::Duration>,
    /// Serve the API ([api] listen) without the scheduler
    #[arg(long)]
    api_only: bool,
}

pub async fn run(global: &Global, args: ServeArgs) -> Result<()> {
    let mut core = global.core().await?;
    if let Some(t) = args.shutdown_timeout {
        core.config.config.daemon.shutdown_timeout = t;
    }
    let scheduler: Option<Arc<dyn tidemark::schedule::clock::Clock>> = match args.api_only {
        true => None,
        false => Some(Arc::new(SystemClock)),
    };
    let service = tidemark::service::bind(&core, scheduler).await?;
    let shutdown = CancellationToken::new();
    let listener = tokio::spawn(stop_on_signal(shutdown.clone()));
    let hangups = tokio::spawn(say_on_hangup(shutdown.clone()));
    let report = tidemark::service::run(core, service, shutdown).await;
    listener.abort();
    hangups.abort();
    let report = report?;
    if global.json {
        global.print_json(&report);
    }
    Ok(())
}

/// SIGHUP does not end the daemon (its default action would), and says what it does: the
/// config is read once, at start (the API's TLS certificate is what SIGHUP reloads).
async fn say_on_hangup(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else { return };
    loop {
        tokio::select! {
            _ = hangup.recv() => tracing::warn!(
                "SIGHUP: tidemark.toml and the schedules are read only when `serve` starts; restart it to apply \
                 changes (a TLS certificate is reloaded)"
            ),
            () = shutdown.cancelled() => return,
        }
    }
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT.
pub async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot listen for SIGTERM/SIGINT; stop the daemon with SIGKILL");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "stop requested");
    shutdown.cancel();
}
