//! The service: what `tidemark serve` runs, started one way by every front end and by the
//! tests. [`bind`] takes what the config asks for (the daemon's lock, the API listener, the
//! metrics listener) before anything runs, so a second daemon or a taken address is refused
//! at once; [`run`] serves until the shutdown signal, then stops in one order:
//!
//! 1. the API stops taking requests and jobs, and the scheduler stops starting runs;
//! 2. running jobs (the scheduler's and the API's) get `daemon.shutdown-timeout` to end,
//!    then are stopped as a stopped operation ends (cleaned up, recorded as aborted);
//! 3. the audit trail's head is checkpointed;
//! 4. the metrics listener stops last (a scrape during shutdown still answers).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::api::{self, AddressRules, Listener};
use crate::error::{Error, ErrorKind, Result};
use crate::ops::Core;
use crate::schedule::clock::Clock;
use crate::schedule::daemon::DaemonReport;

/// What one service process runs.
pub struct Service {
    /// The scheduler (schedules, WAL streams, freshness alerts, switch recovery); `None`:
    /// the API alone (`serve --api-only`).
    pub scheduler: Option<Arc<dyn Clock>>,
    /// The API, when `[api] listen` is set (or a test bound one).
    pub api: Option<(Listener, AddressRules)>,
    /// `/metrics` without a token, when `[metrics] listen` is set.
    pub metrics: Option<tokio::net::TcpListener>,
}

impl Service {
    /// The API alone on `listener` (what the tests start).
    pub fn api_only(listener: Listener, rules: AddressRules) -> Service {
        Service { scheduler: None, api: Some((listener, rules)), metrics: None }
    }
}

/// What the config asks `serve` for, bound: with `scheduler`, the daemon's place (one per
/// catalog) checked first; the API's listener (`[api] listen`) and the metrics listener.
///
/// Errors: `Refused` when another daemon runs with this catalog (naming it) or another
/// process listens on an address; `Config` for bad addresses or certificates, or for
/// `scheduler = None` without `[api] listen`.
pub async fn bind(core: &Core, scheduler: Option<Arc<dyn Clock>>) -> Result<Service> {
    // One daemon per catalog: a second one is refused naming the first before it tries the
    // first one's addresses. The daemon takes the lock for good when it starts.
    if scheduler.is_some() {
        let catalog = crate::catalog::Catalog::open_at(&core.config.catalog_location()).await?;
        drop(catalog.lock_for_daemon()?);
    }
    let rules = AddressRules::from_config(&core.config.config.api)?;
    let api = api::bind(&core.config).await?.map(|bound| (bound, rules));
    if api.is_none() && scheduler.is_none() {
        return Err(Error::config(
            "serving the API alone (serve --api-only) needs [api] listen = \"host:port\" in tidemark.toml",
        ));
    }
    let metrics = match &core.config.config.metrics.listen {
        Some(address) => {
            let tcp = tokio::net::TcpListener::bind(address).await.map_err(|e| match e.kind() {
                std::io::ErrorKind::AddrInUse => Error::new(
                    ErrorKind::Refused,
                    format!("metrics.listen {address}: another process listens there (another `tidemark serve`?)"),
                ),
                _ => Error::config(format!("metrics.listen {address:?} cannot be bound: {e}")),
            })?;
            if tcp.local_addr().is_ok_and(|a| !a.ip().is_loopback()) {
                tracing::warn!(
                    %address,
                    "metrics.listen is not a loopback address: anyone who reaches it reads every workspace's \
                     names and backup ages without a token; keep it on a private interface"
                );
            }
            Some(tcp)
        }
        None => None,
    };
    Ok(Service { scheduler, api, metrics })
}

/// Serves until `shutdown`, then stops in the order the module says. The scheduler's
/// report (empty without a scheduler).
///
/// Errors: those of the scheduler (bad policies, the catalog) and of the listeners;
/// `Internal` when one of the service's tasks panicked (a bug).
pub async fn run(core: Core, service: Service, shutdown: CancellationToken) -> Result<DaemonReport> {
    let metrics_stop = CancellationToken::new();
    let metrics = service.metrics.map(|tcp| {
        if let Ok(address) = tcp.local_addr() {
            tracing::info!(%address, "serving /metrics without a token (plain HTTP)");
        }
        tokio::spawn(api::serve_metrics(core.clone(), tcp, metrics_stop.clone()))
    });
    let api = service.api.map(|(listener, rules)| {
        let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(%address, tls = listener.is_tls(), "serving the API");
        tokio::spawn(api::serve(core.clone(), rules, listener, shutdown.clone()))
    });
    let report = match service.scheduler {
        Some(clock) => crate::ops::serve::serve(&core, clock, shutdown.clone()).await,
        None => {
            // An API server alone is a member of the fleet too (`tidemark fleet` lists it).
            match core.catalog().await {
                Ok(catalog) => {
                    if let Err(e) = catalog.join(crate::catalog::fleet::Role::Api).await {
                        tracing::warn!(error = %e.report(), "cannot join the fleet; the API serves anyway");
                    }
                }
                Err(e) => tracing::warn!(error = %e.report(), "the catalog is not available"),
            }
            crate::ops::switch::recover_all(&core).await;
            shutdown.cancelled().await;
            Ok(DaemonReport::default())
        }
    };
    // The scheduler has stopped (its jobs ended or were stopped); the API ends its own.
    shutdown.cancel();
    let served = match api {
        Some(api) => api.await.map_err(|e| Error::internal(format!("the API task failed: {e}")))?,
        None => Ok(()),
    };
    metrics_stop.cancel();
    if let Some(metrics) = metrics {
        metrics.await.map_err(|e| Error::internal(format!("the metrics task failed: {e}")))??;
    }
    if let Ok(catalog) = core.catalog().await {
        catalog.leave("the service stopped").await;
    }
    served?;
    report
}
