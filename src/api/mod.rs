//! The HTTP API: tidemark's second front end. A handler only translates: the request
//! becomes an `*Options` and the token's [`Actor`], the operation in `ops/` runs, its
//! report is the JSON answer. Who may do what is `access::check` (one place); every refused
//! request (address, token, role) is audited; long work answers `202` with a job whose
//! progress the catalog keeps.

mod console;
mod limits;
pub mod openapi;
mod refusals;
mod routes;
pub use routes::{Gate, Route, gates};
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use tokio_util::sync::CancellationToken;

use crate::access::{self, Action};
use crate::actor::{Actor, ActorKind};
use crate::config::ApiConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::ops::Core;

/// Request bodies larger than this are refused (413).
pub const BODY_LIMIT: usize = 64 * 1024;

/// The address rules of `[api]`, parsed.
#[derive(Debug, Clone, Default)]
pub struct AddressRules {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
    pub trusted_proxies: Vec<IpNet>,
}

impl AddressRules {
    /// Parses `[api]`'s lists (an IPv4-mapped entry is its IPv4 address or range).
    ///
    /// Errors: `Config` naming an entry that is not an address or CIDR range.
    pub fn from_config(api: &ApiConfig) -> Result<AddressRules> {
        let parse = |list: &[String], key: &str| -> Result<Vec<IpNet>> {
            list.iter()
                .map(|t| {
                    access::parse_net(t)
                        .ok_or_else(|| Error::config(format!("api.{key}: {t:?} is not an address or CIDR range")))
                })
                .collect()
        };
        Ok(AddressRules {
            allow: parse(&api.allow_ips, "allow-ips")?,
            deny: parse(&api.deny_ips, "deny-ips")?,
            trusted_proxies: parse(&api.trusted_proxies, "trusted-proxies")?,
        })
    }

    fn trusted(&self, address: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&address))
    }

    /// The client: the peer, or, when the peer is a trusted proxy, the nearest address in
    /// `X-Forwarded-For` that is not one, every address in its IPv4 form when it is
    /// IPv4-mapped. Each hop read on the way there must parse (`1.2.3.4`, `1.2.3.4:5555`,
    /// `::1`, `[::1]:80`, `::ffff:1.2.3.4`): one that does not is never skipped, since the
    /// next one to its left is the client's own choice.
    ///
    /// Errors: `Usage` for a hop that is not an address.
    fn client(&self, peer: IpAddr, headers: &HeaderMap) -> Result<IpAddr> {
        let peer = access::canonical_ip(peer);
        if !self.trusted(peer) {
            return Ok(peer);
        }
        let mut hops = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            let text = value.to_str().map_err(|_| Error::usage("X-Forwarded-For is not text"))?;
            hops.extend(text.split(',').map(|h| h.trim().to_string()));
        }
        for hop in hops.iter().rev() {
            let address = forwarded_hop(hop).ok_or_else(|| {
                Error::usage("X-Forwarded-For has a hop that is not an address; the proxy must send addresses only")
            })?;
            if !self.trusted(address) {
                return Ok(address);
            }
        }
        Ok(peer)
    }

    /// Deny wins; an empty allow list allows every address.
    fn admits(&self, client: IpAddr) -> bool {
        !self.deny.iter().any(|n| n.contains(&client))
            && (self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&client)))
    }
}

/// One hop of `X-Forwarded-For` as an address (see [`AddressRules::client`]).
fn forwarded_hop(hop: &str) -> Option<IpAddr> {
    let address = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| hop.strip_prefix('[')?.strip_suffix(']')?.parse::<IpAddr>().ok())?;
    Some(access::canonical_ip(address))
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct App {
    pub core: Core,
    pub rules: Arc<AddressRules>,
    /// Stop signals of the jobs this server started, for `DELETE /v1/jobs/{id}`.
    pub running: Arc<Mutex<std::collections::HashMap<i64, CancellationToken>>>,
    pub limits: Arc<limits::Limits>,
    /// The key of this process's download links (see `ops::link`).
    pub links: crate::ops::link::LinkKey,
    /// Refusals counted for the audit trail.
    pub refusals: Arc<refusals::Refusals>,
    /// The jobs this server started, waited for at shutdown.
    pub jobs: tokio_util::task::TaskTracker,
    /// Cancelled when the server stops: no new jobs are taken then.
    pub closing: CancellationToken,
    /// What each route needs (`routes::table`).
    pub gates: Arc<routes::Gates>,
    /// Browsers reach this server over HTTPS (its own TLS, or a TLS proxy in front with
    /// `allow-plain-http`): the console's cookies are `Secure`.
    pub https: bool,
}

/// An error as the API answers it: the error table's HTTP status and the `--json` body.
pub(crate) struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.kind().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self.0.to_json())).into_response();
        // A busy workspace is free again once its operation ends: worth another try soon.
        if self.0.kind() == crate::error::ErrorKind::Busy {
            response.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from(BUSY_RETRY_AFTER));
        }
        response
    }
}

/// The seconds a client is told to wait (`Retry-After`) before asking a busy workspace again.
const BUSY_RETRY_AFTER: u64 = 30;

/// The router, with the address, token and audit checks in front of every `/v1` route.
pub fn router(core: Core, rules: AddressRules) -> Router {
    router_of(app(core, rules))
}

fn app(core: Core, rules: AddressRules) -> App {
    let limits = Arc::new(limits::Limits::from_config(&core.config.config.api));
    let links = crate::ops::link::LinkKey::generate();
    let refusals = Arc::new(refusals::Refusals::default());
    let (jobs, closing) = (tokio_util::task::TaskTracker::new(), CancellationToken::new());
    let gates = Arc::new(routes::gate_map());
    let https = core.config.config.api.allow_plain_http;
    App {
        core,
        rules: Arc::new(rules),
        running: Default::default(),
        limits,
        links,
        refusals,
        jobs,
        closing,
        gates,
        https,
    }
}

fn router_of(app: App) -> Router {
    routes::v1(app.clone())
        .layer(axum::middleware::from_fn_with_state(app.clone(), authenticate))
        // A download link is its own credential; the address rules still apply.
        .route("/v1/downloads/{ws}/{export}", axum::routing::get(routes::download))
        .route("/healthz", axum::routing::get(|| async { axum::Json(openapi::Health { status: "ok".into() }) }))
        .route(
            "/v1/openapi.json",
            axum::routing::get(|| async { ([(header::CONTENT_TYPE, "application/json")], openapi::document()) }),
        )
        .merge(console::router(app.clone()))
        .layer(axum::middleware::from_fn_with_state(app.clone(), admit))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

/// Counts every request for `/metrics`: its route template (never the path as sent, so a
/// client cannot make new series), method, final status and latency.
async fn observe(State(app): State<App>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = match request.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS") => m.to_string(),
        _ => "other".to_string(),
    };
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    let metrics = &app.core.metrics;
    metrics.api_request(&route, &method, status.as_u16(), started.elapsed().as_secs_f64());
    if status == StatusCode::TOO_MANY_REQUESTS {
        metrics.api_rate_limited();
    }
    response
}

/// Accepts OpenMetrics (what Prometheus asks for first); else the classic text format.
pub(crate) fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

/// The metrics as the client accepts them.
pub(crate) async fn metrics_text(core: &Core, headers: &HeaderMap) -> Result<Response, ApiError> {
    let open = wants_openmetrics(headers);
    let text = crate::ops::metrics::render(core, open).await?;
    let kind = if open { crate::ops::metrics::OPENMETRICS } else { crate::ops::metrics::CLASSIC };
    Ok(([(header::CONTENT_TYPE, kind)], text).into_response())
}

/// Serves `/metrics` alone, without a token, on `[metrics] listen` until `shutdown` (for a
/// scrape on a private interface; everything else answers 404).
///
/// Errors: `Unavailable` when the server fails.
pub async fn serve_metrics(core: Core, tcp: tokio::net::TcpListener, shutdown: CancellationToken) -> Result<()> {
    let router = Router::new().route(
        "/metrics",
        axum::routing::get(|State(core): State<Core>, headers: HeaderMap| async move {
            metrics_text(&core, &headers).await.unwrap_or_else(IntoResponse::into_response)
        }),
    );
    axum::serve(tcp, router.with_state(core))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("the metrics listener failed: {e}")))
}

/// Every error answer in the error table's JSON body, also those the server gives before a
/// handler runs (an unknown route, a method the route does not take, a body over the limit,
/// a path or query parameter that does not parse), whose bodies are plain text otherwise.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    // The console's pages answer errors as pages.
    let page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if json || page || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let kind = match status {
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        StatusCode::UNAUTHORIZED => ErrorKind::Unauthenticated,
        StatusCode::FORBIDDEN => ErrorKind::Forbidden,
        StatusCode::CONFLICT => ErrorKind::Refused,
        StatusCode::TOO_MANY_REQUESTS => ErrorKind::RateLimited,
        StatusCode::SERVICE_UNAVAILABLE => ErrorKind::Unavailable,
        s if s.is_server_error() => ErrorKind::Internal,
        _ => ErrorKind::Usage,
    };
    let message = match text.is_empty() {
        true => status.canonical_reason().unwrap_or("refused").to_lowercase(),
        false => text,
    };
    let mut fixed = (status, axum::Json(Error::new(kind, message).to_json())).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fixed.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fixed
}

/// The client's address, as the address check found it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Client(pub IpAddr);

/// The address rules, before anything else (also `/healthz`): the client's address, its
/// rate limit (before anything is written: a flood of refused requests costs no more than
/// one of allowed ones), then the allow and deny lists.
async fn admit(State(app): State<App>, mut request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let Some(peer) = peer else { return ApiError(Error::internal("no peer address")).into_response() };
    let client = match app.rules.client(peer, request.headers()) {
        Ok(client) => client,
        Err(e) => {
            let peer = access::canonical_ip(peer);
            if let Err(wait) = app.limits.request(peer) {
                return wait.into_response();
            }
            let who = Actor { address: Some(peer.to_string()), ..Actor::new(ActorKind::Api, "unknown") };
            deny(&app, &who, request.uri().path(), &e).await;
            return ApiError(e).into_response();
        }
    };
    if let Err(wait) = app.limits.request(client) {
        return wait.into_response();
    }
    if !app.rules.admits(client) {
        let who = Actor { address: Some(client.to_string()), ..Actor::new(ActorKind::Api, "unknown") };
        let e = Error::new(ErrorKind::Forbidden, "this address may not use the API");
        deny(&app, &who, request.uri().path(), &e).await;
        return ApiError(e).into_response();
    }
    request.extensions_mut().insert(Client(client));
    next.run(request).await
}

/// The bearer token: the request runs as its actor, or is refused (and audited).
async fn authenticate(State(app): State<App>, mut request: Request, next: Next) -> Response {
    let client = request.extensions().get::<Client>().map(|c| c.0);
    let secret = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    let path = request.uri().path().to_string();
    let anonymous = Actor { address: client.map(|c| c.to_string()), ..Actor::new(ActorKind::Api, "unknown") };
    if secret.is_empty() {
        if let Some(client) = client {
            app.limits.failed(client);
        }
        let e = Error::new(ErrorKind::Unauthenticated, "no token: send Authorization: Bearer tdm_...");
        deny(&app, &anonymous, &path, &e).await;
        return with_challenge(ApiError(e).into_response());
    }
    match crate::ops::token::authenticate(&app.core, &secret, client, chrono::Utc::now()).await {
        Ok(actor) => {
            if let Err(wait) = app.limits.token(actor.token_id.as_deref().unwrap_or_default()) {
                return wait.into_response();
            }
            request.extensions_mut().insert(actor);
            next.run(request).await
        }
        Err(e) => {
            if e.kind() == ErrorKind::Unauthenticated
                && let Some(client) = client
            {
                app.limits.failed(client);
            }
            deny(&app, &anonymous, &path, &e).await;
            let response = ApiError(e).into_response();
            if response.status() == StatusCode::UNAUTHORIZED { with_challenge(response) } else { response }
        }
    }
}

fn with_challenge(mut response: Response) -> Response {
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

/// Audits a refused request (never with a secret: messages name tokens by id only): the
/// first refusal of an address (or token) for a reason in a minute is one record, with
/// its path cut to [`refusals::PATH_KEPT`] characters; the rest of that minute are counted
/// and written as one record when the minute is over (see [`refusals::Refusals`]).
async fn deny(app: &App, actor: &Actor, path: &str, e: &Error) {
    app.core.metrics.api_denied(e.kind().name());
    let closed = app.refusals.refused(actor, e.kind(), std::time::Instant::now());
    if let Some(repeated) = closed.repeated {
        refusals::record_repeated(&app.core, &repeated).await;
    }
    if closed.first {
        // One error in the record: the refusal's own kind and reason (cut).
        let refused: Result<()> = Err(Error::new(e.kind(), refusals::cut(e.message(), refusals::PATH_KEPT)));
        let details = serde_json::json!({});
        crate::ops::audit::record_event(
            &app.core,
            actor,
            "api.denied",
            &refusals::cut(path, refusals::PATH_KEPT),
            &refused,
            details,
        )
        .await;
    }
}

/// Whether the actor may do `action` (on `workspace`); a refusal is audited.
pub(crate) async fn allow(app: &App, actor: &Actor, action: Action, workspace: Option<&str>) -> Result<(), ApiError> {
    if let Err(e) = access::check(&actor.grant(), action, workspace) {
        deny(app, actor, workspace.unwrap_or("-"), &e).await;
        return Err(ApiError(e));
    }
    Ok(())
}

/// Where the API listens: a bound socket, and the certificate when it serves HTTPS.
pub struct Listener {
    tcp: tokio::net::TcpListener,
    tls: Option<Arc<tls::Certificate>>,
}

impl Listener {
    /// HTTPS on `tcp` with `certificate`.
    pub fn tls(tcp: tokio::net::TcpListener, certificate: tls::Certificate) -> Listener {
        Listener { tcp, tls: Some(Arc::new(certificate)) }
    }

    /// The bound address.
    ///
    /// Errors: `Unavailable` when the socket cannot say.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.tcp.local_addr().map_err(|e| Error::new(ErrorKind::Unavailable, format!("the API's socket: {e}")))
    }

    /// Whether it serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// Plain HTTP on `tcp`.
impl From<tokio::net::TcpListener> for Listener {
    fn from(tcp: tokio::net::TcpListener) -> Listener {
        Listener { tcp, tls: None }
    }
}

/// Serves the API on `listener` until `shutdown`. With TLS, SIGHUP loads the certificate
/// and key again (a renewed certificate serves the next connection; one that cannot be
/// loaded is logged as an error and the old one stays).
///
/// Errors: `Unavailable` when the server fails, `Internal` when TLS cannot be set up.
pub async fn serve(core: Core, rules: AddressRules, listener: Listener, shutdown: CancellationToken) -> Result<()> {
    let base = app(core.clone(), rules);
    let shared = App { closing: shutdown.clone(), https: base.https || listener.tls.is_some(), ..base };
    let (refused, jobs, running) = (shared.refusals.clone(), shared.jobs.clone(), shared.running.clone());
    let app = router_of(shared);
    let acceptor = listener.tls.as_ref().map(tls::Certificate::acceptor).transpose()?;
    // The audit trail's head goes to the repository at least every few minutes (refused
    // requests are not checkpointed one by one).
    let periodic = tokio::spawn({
        let (core, stop) = (core.clone(), shutdown.clone());
        let refused = refused.clone();
        async move {
            let mut every = tokio::time::interval(CHECKPOINT_EVERY);
            let mut minute = tokio::time::interval(refusals::WINDOW);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = minute.tick() => {
                        for repeated in refused.closed(std::time::Instant::now()) {
                            refusals::record_repeated(&core, &repeated).await;
                        }
                        continue;
                    }
                    () = stop.cancelled() => break,
                }
                if let Err(e) = crate::ops::audit::checkpoint(&core).await {
                    tracing::warn!(error = %e.report(), "the audit trail's checkpoint could not be written");
                }
            }
        }
    });
    if let Some(certificate) = &listener.tls {
        tokio::spawn(reload_on_hangup(certificate.clone(), shutdown.clone()));
    }
    let served = accept(listener.tcp, acceptor, app, core.config.config.api.header_read_timeout, &shutdown).await;
    shutdown.cancel();
    finish_jobs(&jobs, &running, core.config.config.daemon.shutdown_timeout).await;
    let _ = periodic.await;
    for repeated in refused.drain() {
        refusals::record_repeated(&core, &repeated).await;
    }
    if let Err(e) = crate::ops::audit::checkpoint(&core).await {
        tracing::warn!(error = %e.report(), "the audit trail's checkpoint could not be written");
    }
    served
}

/// At shutdown, the jobs this server started (no new ones are taken: `closing`): each
/// gets up to `grace` to end; then the rest are stopped, and each ends as a stopped
/// operation does (a restore drops what it created, the job is recorded as aborted).
async fn finish_jobs(
    jobs: &tokio_util::task::TaskTracker,
    running: &Mutex<std::collections::HashMap<i64, CancellationToken>>,
    grace: std::time::Duration,
) {
    jobs.close();
    if jobs.is_empty() {
        return;
    }
    tracing::info!(running = jobs.len(), grace = ?grace, "waiting for the API's jobs");
    if tokio::time::timeout(grace, jobs.wait()).await.is_ok() {
        return;
    }
    let stops: Vec<CancellationToken> = running.lock().expect("jobs lock").values().cloned().collect();
    tracing::warn!(running = stops.len(), "the API's jobs did not end in time: stopping them");
    for stop in stops {
        stop.cancel();
    }
    jobs.wait().await;
}

/// Loads the certificate again at every SIGHUP until `shutdown`.
async fn reload_on_hangup(certificate: Arc<tls::Certificate>, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot listen for SIGHUP: a renewed TLS certificate needs a restart");
        return;
    };
    loop {
        tokio::select! {
            _ = hangup.recv() => {}
            () = shutdown.cancelled() => return,
        }
        match certificate.reload() {
            Ok(()) => tracing::info!("SIGHUP: the API's TLS certificate was loaded again"),
            Err(e) => {
                tracing::error!(error = %e.report(), "SIGHUP: the TLS certificate was NOT reloaded; the old one stays");
            }
        }
    }
}

/// Serves HTTP/1.1 connections (over TLS when `acceptor` is set) until `shutdown`, then
/// lets open requests finish (up to 30 s). Each connection gets the client's address
/// (`ConnectInfo`), and a client that has not finished its TLS handshake or sent its
/// headers within `header_read_timeout` is cut off (a slow client cannot hold connections
/// open).
async fn accept(
    listener: tokio::net::TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    header_read_timeout: std::time::Duration,
    shutdown: &CancellationToken,
) -> Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "the API could not accept a connection");
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let (app, watcher, acceptor) = (app.clone(), graceful.watcher(), acceptor.clone());
        tokio::spawn(async move {
            match acceptor {
                None => connection(stream, peer, app, header_read_timeout, watcher).await,
                Some(acceptor) => match tokio::time::timeout(header_read_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => connection(tls, peer, app, header_read_timeout, watcher).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, %peer, "a TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "a TLS handshake took too long"),
                },
            }
        });
    }
    if tokio::time::timeout(std::time::Duration::from_secs(30), graceful.shutdown()).await.is_err() {
        tracing::warn!("API connections still open after 30 s were cut off");
    }
    Ok(())
}

/// One client connection, HTTP/1.1, watched for the graceful shutdown.
async fn connection<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    header_read_timeout: std::time::Duration,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;
    let service = app.map_request(move |mut request: axum::http::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.map(axum::body::Body::new)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(io), hyper_util::service::TowerToHyperService::new(service));
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(error = %e, "an API connection ended with an error");
    }
}

/// How often the API writes the audit trail's head into the repository.
pub const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(180);

/// The listener `[api] listen` names: HTTPS when `tls-cert` and `tls-key` are set (both
/// or neither); plain HTTP only on loopback unless `allow-plain-http`.
///
/// Errors: `Config` for a bad or refused address or a certificate that cannot be used,
/// `Refused` when another process listens there, `Unavailable` when the address cannot be
/// bound otherwise.
pub async fn bind(config: &crate::config::LoadedConfig) -> Result<Option<Listener>> {
    let api = &config.config.api;
    let Some(listen) = &api.listen else { return Ok(None) };
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| Error::config(format!("api.listen {listen:?} is not host:port (127.0.0.1:8420)")))?;
    let certificate = match (&api.tls_cert, &api.tls_key) {
        (Some(cert), Some(key)) => Some(tls::Certificate::load(&config.resolve_path(cert), &config.resolve_path(key))?),
        (None, None) => None,
        _ => return Err(Error::config("api: tls-cert and tls-key go together: set both, or neither")),
    };
    if certificate.is_none() && !addr.ip().is_loopback() {
        if !api.allow_plain_http {
            return Err(Error::config(format!(
                "api.listen {addr} is not a loopback address and no TLS certificate is set: set api.tls-cert and \
                 api.tls-key, or put a TLS proxy in front and set api.allow-plain-http = true, or listen on 127.0.0.1"
            )));
        }
        tracing::warn!(%addr, "the API is served as plain HTTP on a non-loopback address (api.allow-plain-http)");
    }
    let tcp = tokio::net::TcpListener::bind(addr).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => Error::new(
            ErrorKind::Refused,
            format!("cannot listen on {addr}: another process listens there (another `tidemark serve`?)"),
        ),
        _ => Error::new(ErrorKind::Unavailable, format!("cannot listen on {addr}: {e}")),
    })?;
    Ok(Some(match certificate {
        Some(certificate) => Listener::tls(tcp, certificate),
        None => tcp.into(),
    }))
}
