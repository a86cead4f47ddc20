//! `tidemark serve`: run the scheduler until SIGTERM or SIGINT, then stop gracefully.

use std::sync::Arc;

use clap::Args;
use tidemark::Result;
use tidemark::ops::serve::serve;
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
    let shutdown = CancellationToken::new();
    // One daemon per catalog: a second one is refused naming the first (exit 6) before it
    // tries the first one's addresses. The daemon takes the lock for good when it starts.
    if !args.api_only {
        drop(tidemark::catalog::Catalog::open(&core.config.catalog_path()).await?.lock_for_daemon()?);
    }
    // The API (when [api] listen is set) runs beside the scheduler and stops with it.
    let rules = tidemark::api::AddressRules::from_config(&core.config.config.api)?;
    let api = match tidemark::api::bind(&core.config).await? {
        Some(bound) => {
            let address = bound.local_addr().map(|a| a.to_string()).unwrap_or_default();
            tracing::info!(%address, tls = bound.is_tls(), "serving the API");
            Some(tokio::spawn(tidemark::api::serve(core.clone(), rules, bound, shutdown.clone())))
        }
        None if args.api_only => {
            return Err(tidemark::Error::config("--api-only needs [api] listen = \"host:port\" in tidemark.toml"));
        }
        None => None,
    };
    // Metrics on a listener of their own, without a token ([metrics] listen).
    let metrics = match &core.config.config.metrics.listen {
        Some(address) => {
            let tcp = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|e| tidemark::Error::config(format!("metrics.listen {address:?} cannot be bound: {e}")))?;
            tracing::info!(%address, "serving /metrics without a token (plain HTTP)");
            if tcp.local_addr().is_ok_and(|a| !a.ip().is_loopback()) {
                tracing::warn!(
                    %address,
                    "metrics.listen is not a loopback address: anyone who reaches it reads every workspace's \
                     names and backup ages without a token; keep it on a private interface"
                );
            }
            Some(tokio::spawn(tidemark::api::serve_metrics(core.clone(), tcp, shutdown.clone())))
        }
        None => None,
    };
    let listener = tokio::spawn(stop_on_signal(shutdown.clone()));
    let hangups = tokio::spawn(say_on_hangup(shutdown.clone()));
    let report = if args.api_only {
        tidemark::ops::switch::recover_all(&core).await;
        shutdown.cancelled().await;
        Ok(Default::default())
    } else {
        serve(&core, Arc::new(SystemClock), shutdown.clone()).await
    };
    shutdown.cancel();
    listener.abort();
    hangups.abort();
    if let Some(metrics) = metrics {
        metrics.await.map_err(|e| tidemark::Error::internal(format!("the metrics task failed: {e}")))??;
    }
    if let Some(api) = api {
        api.await.map_err(|e| tidemark::Error::internal(format!("the API task failed: {e}")))??;
    }
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
