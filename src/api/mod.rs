//! The HTTP API: tidemark's second front end. A handler only translates: the request
//! becomes an `*Options` and the token's [`Actor`], the operation in `ops/` runs, its
//! report is the JSON answer. Who may do what is `access::check` (one place); every refused
//! request (address, token, role) is audited; long work answers `202` with a job whose
//! progress the catalog keeps.

mod limits;
mod routes;

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
    /// Parses `[api]`'s lists.
    ///
    /// Errors: `Config` naming an entry that is not an address or CIDR range.
    pub fn from_config(api: &ApiConfig) -> Result<AddressRules> {
        let parse = |list: &[String], key: &str| -> Result<Vec<IpNet>> {
            list.iter()
                .map(|t| {
                    t.parse::<IpNet>()
                        .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
                        .map_err(|_| Error::config(format!("api.{key}: {t:?} is not an address or CIDR range")))
                })
                .collect()
        };
        Ok(AddressRules {
            allow: parse(&api.allow_ips, "allow-ips")?,
            deny: parse(&api.deny_ips, "deny-ips")?,
            trusted_proxies: parse(&api.trusted_proxies, "trusted-proxies")?,
        })
    }

    /// The client: the peer, or, when the peer is a trusted proxy, the nearest address in
    /// `X-Forwarded-For` that is not one.
    fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusted_proxies.iter().any(|n| n.contains(&peer)) {
            return peer;
        }
        let forwarded = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
        let hops: Vec<IpAddr> =
            forwarded.flat_map(|v| v.split(',')).filter_map(|h| h.trim().parse::<IpAddr>().ok()).collect();
        hops.into_iter().rev().find(|a| !self.trusted_proxies.iter().any(|n| n.contains(a))).unwrap_or(peer)
    }

    /// Deny wins; an empty allow list allows every address.
    fn admits(&self, client: IpAddr) -> bool {
        !self.deny.iter().any(|n| n.contains(&client))
            && (self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&client)))
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct App {
    pub core: Core,
    pub rules: Arc<AddressRules>,
    /// Stop signals of the jobs this server started, for `DELETE /v1/jobs/{id}`.
    pub running: Arc<Mutex<std::collections::HashMap<i64, CancellationToken>>>,
    pub limits: Arc<limits::Limits>,
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
        (status, axum::Json(self.0.to_json())).into_response()
    }
}

/// The router, with the address, token and audit checks in front of every `/v1` route.
pub fn router(core: Core, rules: AddressRules) -> Router {
    let limits = Arc::new(limits::Limits::from_config(&core.config.config.api));
    let app = App { core, rules: Arc::new(rules), running: Default::default(), limits };
    routes::v1()
        .layer(axum::middleware::from_fn_with_state(app.clone(), authenticate))
        .route("/healthz", axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .layer(axum::middleware::from_fn_with_state(app.clone(), admit))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
}

/// The client's address, as the address check found it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Client(pub IpAddr);

/// The address rules, before anything else (also `/healthz`).
async fn admit(State(app): State<App>, mut request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let Some(peer) = peer else { return ApiError(Error::internal("no peer address")).into_response() };
    let client = app.rules.client(peer, request.headers());
    if !app.rules.admits(client) {
        let who = Actor { address: Some(client.to_string()), ..Actor::new(ActorKind::Api, "unknown") };
        let e = Error::new(ErrorKind::Forbidden, "this address may not use the API");
        deny(&app.core, &who, request.uri().path(), &e).await;
        return ApiError(e).into_response();
    }
    if let Err(wait) = app.limits.request(client) {
        return wait.into_response();
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
        deny(&app.core, &anonymous, &path, &e).await;
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
            deny(&app.core, &anonymous, &path, &e).await;
            let response = ApiError(e).into_response();
            if response.status() == StatusCode::UNAUTHORIZED { with_challenge(response) } else { response }
        }
    }
}

fn with_challenge(mut response: Response) -> Response {
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

/// Audits a refused request (never with a secret: messages name tokens by id only).
async fn deny(core: &Core, actor: &Actor, path: &str, e: &Error) {
    let refused: Result<()> = Err(Error::new(ErrorKind::Refused, e.message()));
    let details = serde_json::json!({"kind": e.kind().name(), "reason": e.message()});
    crate::ops::audit::record(core, actor, "api.denied", path, &refused, details).await;
}

/// Whether the actor may do `action` (on `workspace`); a refusal is audited.
pub(crate) async fn allow(core: &Core, actor: &Actor, action: Action, workspace: Option<&str>) -> Result<(), ApiError> {
    if let Err(e) = access::check(&actor.grant(), action, workspace) {
        deny(core, actor, workspace.unwrap_or("-"), &e).await;
        return Err(ApiError(e));
    }
    Ok(())
}

/// Serves the API on `listener` until `shutdown`.
///
/// Errors: `Unavailable` when the server fails.
pub async fn serve(
    core: Core,
    rules: AddressRules,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<()> {
    let app = router(core.clone(), rules);
    // The audit trail's head goes to the repository at least every few minutes (refused
    // requests are not checkpointed one by one).
    let periodic = tokio::spawn({
        let (core, stop) = (core.clone(), shutdown.clone());
        async move {
            let mut every = tokio::time::interval(CHECKPOINT_EVERY);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    () = stop.cancelled() => break,
                }
                if let Err(e) = crate::ops::audit::checkpoint(&core).await {
                    tracing::warn!(error = %e.report(), "the audit trail's checkpoint could not be written");
                }
            }
        }
    });
    let served = accept(listener, app, core.config.config.api.header_read_timeout, &shutdown).await;
    shutdown.cancel();
    let _ = periodic.await;
    if let Err(e) = crate::ops::audit::checkpoint(&core).await {
        tracing::warn!(error = %e.report(), "the audit trail's checkpoint could not be written");
    }
    served
}

/// Serves HTTP/1.1 connections until `shutdown`, then lets open requests finish (up to
/// 30 s). Each connection gets the client's address (`ConnectInfo`), and a client that has
/// not sent its headers within `header_read_timeout` is cut off (a slow client cannot hold
/// connections open).
async fn accept(
    listener: tokio::net::TcpListener,
    app: Router,
    header_read_timeout: std::time::Duration,
    shutdown: &CancellationToken,
) -> Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;
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
        let service = app.clone().map_request(move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.map(axum::body::Body::new)
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(TokioIo::new(stream), hyper_util::service::TowerToHyperService::new(service));
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(error = %e, "an API connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(std::time::Duration::from_secs(30), graceful.shutdown()).await.is_err() {
        tracing::warn!("API connections still open after 30 s were cut off");
    }
    Ok(())
}

/// How often the API writes the audit trail's head into the repository.
pub const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(180);

/// The listener `[api] listen` names; refused on an address that is not loopback unless
/// `allow-plain-http` (TLS is not built in: a proxy terminates it).
///
/// Errors: `Config` for a bad or refused address, `Unavailable` when it cannot be bound.
pub async fn bind(api: &ApiConfig) -> Result<Option<tokio::net::TcpListener>> {
    let Some(listen) = &api.listen else { return Ok(None) };
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| Error::config(format!("api.listen {listen:?} is not host:port (127.0.0.1:8420)")))?;
    if !addr.ip().is_loopback() {
        if !api.allow_plain_http {
            return Err(Error::config(format!(
                "api.listen {addr} is not a loopback address and tidemark serves plain HTTP: put a TLS proxy in \
                 front and set api.allow-plain-http = true, or listen on 127.0.0.1"
            )));
        }
        tracing::warn!(%addr, "the API is served as plain HTTP on a non-loopback address (api.allow-plain-http)");
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("cannot listen on {addr}: {e}")))?;
    Ok(Some(listener))
}
