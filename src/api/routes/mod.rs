//! The `/v1` routes: each translates the request into an operation's options and the
//! token's actor, asks `allow` first, and answers the operation's report (or `202` and a
//! job for long work).

use std::future::Future;

use axum::Router;
use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ApiError, App, allow};
use crate::access::Action;
use crate::actor::Actor;
use crate::catalog::JobEnd;
use crate::error::{Error, ErrorKind};
use crate::ops::{self, Core, job};

mod admin;
mod branches;
mod copies;
mod drills;
mod exports;
mod snapshots;
mod stacks;

pub(super) use admin::*;
pub(super) use branches::*;
pub(super) use copies::*;
pub(super) use drills::*;
pub(super) use exports::*;
pub(super) use snapshots::*;
pub(super) use stacks::*;

type Answer = Result<Response, ApiError>;

/// What a route asks of the token before its handler runs (`authorize`, the one check of
/// the API's routes; the operation asks again what depends on what it is asked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// This right, on the path's workspace when the path names one.
    Needs(Action),
    /// This right to ask at all; the operation then decides from what is asked, with the
    /// reason here (a restore into the live database needs more than one into a new one;
    /// stopping a job needs the right to start it).
    AtLeast(Action, &'static str),
}

impl Gate {
    /// The right every caller needs.
    pub fn action(self) -> Action {
        match self {
            Gate::Needs(action) | Gate::AtLeast(action, _) => action,
        }
    }
}

/// One method-route of `/v1` (and `/metrics`) with what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    /// The route's template (`{ws}` names the workspace).
    pub path: &'static str,
    pub gate: Gate,
}

fn route<H, T>(method: Method, path: &'static str, gate: Gate, handler: H) -> (Route, MethodRouter<App>)
where
    H: axum::handler::Handler<T, App>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a route's method is one axum routes");
    (Route { method, path, gate }, axum::routing::on(filter, handler))
}

/// The routes that need a token, each with its gate and handler: the one table the router,
/// the authorization, docs/reference/roles.md and the role x route test are made from
/// (the OpenAPI test checks each is documented).
pub(super) fn table() -> Vec<(Route, MethodRouter<App>)> {
    use Action as A;
    use Gate::{AtLeast, Needs};
    use Method as M;
    let live = "tables into the live database (`into_live`) need `replace-live`";
    let stop = "stopping a job needs the right to start it; another caller's check needs `cancel-jobs`";
    vec![
        route(M::GET, "/v1/workspaces", Needs(A::Read), workspaces),
        route(M::GET, "/v1/workspaces/{ws}", Needs(A::Read), workspace_status),
        route(M::GET, "/v1/overview", Needs(A::Read), overview),
        route(M::GET, "/v1/workspaces/{ws}/snapshots", Needs(A::Read), list_snapshots),
        route(M::POST, "/v1/workspaces/{ws}/snapshots", Needs(A::Snapshot), create_snapshot),
        route(M::GET, "/v1/workspaces/{ws}/snapshots/{id}", Needs(A::Read), show_snapshot),
        route(M::POST, "/v1/workspaces/{ws}/snapshots/{id}/pin", Needs(A::Pin), pin),
        route(M::DELETE, "/v1/workspaces/{ws}/snapshots/{id}/pin", Needs(A::Unpin), unpin),
        route(M::GET, "/v1/workspaces/{ws}/drills", Needs(A::Read), drills),
        route(M::POST, "/v1/workspaces/{ws}/drills", Needs(A::Drill), run_drill),
        route(M::GET, "/v1/workspaces/{ws}/drills/{id}", Needs(A::Read), drill_report),
        route(M::POST, "/v1/workspaces/{ws}/restores", AtLeast(A::Restore, live), restore),
        route(M::POST, "/v1/workspaces/{ws}/restores/in-place", Needs(A::ReplaceLive), restore_in_place),
        route(M::POST, "/v1/workspaces/{ws}/restores/undo", Needs(A::ReplaceLive), restore_undo),
        route(M::GET, "/v1/workspaces/{ws}/branches", Needs(A::Read), branches),
        route(M::POST, "/v1/workspaces/{ws}/branches", Needs(A::Restore), create_branch),
        route(M::DELETE, "/v1/workspaces/{ws}/branches/{name}", Needs(A::DeleteBranch), delete_branch),
        route(M::POST, "/v1/workspaces/{ws}/branches/{name}/set-live", Needs(A::ReplaceLive), set_live),
        route(M::POST, "/v1/workspaces/{ws}/exports", Needs(A::Export), create_export),
        route(M::POST, "/v1/workspaces/{ws}/exports/{export}/links", Needs(A::Export), create_link),
        route(M::POST, "/v1/workspaces/{ws}/prune", Needs(A::Prune), prune),
        route(M::POST, "/v1/workspaces/{ws}/check", Needs(A::Read), check),
        route(M::GET, "/v1/workspaces/{ws}/copies", Needs(A::Read), copies),
        route(M::POST, "/v1/workspaces/{ws}/copies", Needs(A::Snapshot), run_copy),
        route(M::GET, "/v1/workspaces/{ws}/pitr", Needs(A::Read), window),
        route(M::GET, "/v1/workspaces/{ws}/restore-points", Needs(A::Read), restore_points),
        route(M::POST, "/v1/workspaces/{ws}/restore-points", Needs(A::MarkRestorePoint), mark),
        route(M::GET, "/v1/workspaces/{ws}/stacks", Needs(A::Read), stacks),
        route(M::GET, "/v1/workspaces/{ws}/stacks/{kind}/{name}", Needs(A::Read), stack_show),
        route(M::PUT, "/v1/workspaces/{ws}/stacks/{kind}/{name}", Needs(A::WriteStacks), stack_put),
        route(M::GET, "/v1/workspaces/{ws}/stacks/{kind}/{name}/history", Needs(A::Read), stack_history),
        route(M::GET, "/v1/workspaces/{ws}/stacks/{kind}/{name}/diff", Needs(A::Read), stack_diff),
        route(M::POST, "/v1/workspaces/{ws}/stacks/{kind}/{name}/publish", Needs(A::WriteStacks), stack_publish),
        route(M::POST, "/v1/workspaces/{ws}/stacks/{kind}/{name}/revert", Needs(A::WriteStacks), stack_revert),
        route(M::GET, "/metrics", Needs(A::ReadMetrics), metrics),
        route(M::GET, "/v1/jobs", Needs(A::Read), jobs),
        route(M::GET, "/v1/jobs/{id}", Needs(A::Read), show_job),
        route(M::DELETE, "/v1/jobs/{id}", AtLeast(A::Read, stop), cancel_job),
        route(M::GET, "/v1/audit", Needs(A::ReadAudit), audit),
        route(M::GET, "/v1/audit/verify", Needs(A::ReadAudit), audit_verify),
        route(M::GET, "/v1/fleet", Needs(A::ReadFleet), fleet),
        route(M::GET, "/v1/tokens", Needs(A::ManageTokens), tokens),
        route(M::POST, "/v1/tokens", Needs(A::ManageTokens), token_create),
        route(M::DELETE, "/v1/tokens/{token}", Needs(A::ManageTokens), token_revoke),
    ]
}

/// The routes that need a token and what each needs (for docs and tests).
pub fn gates() -> Vec<Route> {
    table().into_iter().map(|(route, _)| route).collect()
}

/// The router of the token's routes, each behind `authorize`.
pub(super) fn v1(app: App) -> Router<App> {
    table()
        .into_iter()
        .fold(Router::new(), |router, (route, handler)| router.route(route.path, handler))
        .route_layer(axum::middleware::from_fn_with_state(app, authorize))
}

/// The gates by (method, route template).
pub(super) type Gates = std::collections::HashMap<(Method, String), Gate>;

pub(super) fn gate_map() -> Gates {
    gates().into_iter().map(|r| ((r.method, r.path.to_string()), r.gate)).collect()
}

/// The route's gate, asked of the token before the handler runs. A `HEAD` is its `GET` (the
/// router answers it with the `GET` handler). A method the table lacks for this route goes on
/// to the router, which answers `405` (every handler comes from the table, so none runs
/// ungated).
async fn authorize(State(app): State<App>, request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let Some(template) = parts.extensions.get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_string()) else {
        return ApiError(Error::internal("a route without its template")).into_response();
    };
    let method = if parts.method == Method::HEAD { Method::GET } else { parts.method.clone() };
    let about_workspace = template.contains("{ws}");
    let Some(gate) = app.gates.get(&(method, template)).copied() else {
        return next.run(axum::extract::Request::from_parts(parts, body)).await;
    };
    let Some(actor) = parts.extensions.get::<Actor>().cloned() else {
        return ApiError(Error::internal("a route reached without its token's actor")).into_response();
    };
    // A route about a workspace is asked about that workspace: one whose name cannot be
    // read is refused here, never let through as "no workspace".
    let ws = match about_workspace {
        false => None,
        true => {
            let params = axum::extract::RawPathParams::from_request_parts(&mut parts, &()).await;
            let ws = params.ok().and_then(|p| p.iter().find(|(k, _)| *k == "ws").map(|(_, v)| v.to_string()));
            match ws {
                Some(ws) => Some(ws),
                None => return ApiError(Error::usage("the workspace in the path is not a name")).into_response(),
            }
        }
    };
    if let Err(e) = allow(&app, &actor, gate.action(), ws.as_deref()).await {
        return e.into_response();
    }
    next.run(axum::extract::Request::from_parts(parts, body)).await
}

/// A workspace in a path (the rules of `config::validate_workspace_name`).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct WorkspacePath {
    /// A workspace name
    #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop")]
    ws: String,
}

/// A snapshot in a path (the rules of `repo::layout::validate_snapshot_id`).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct SnapshotPath {
    /// A workspace name
    #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop")]
    ws: String,
    /// A snapshot id
    #[param(pattern = "^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$", example = "20261129T101500Z-1a2b3c")]
    id: String,
}

/// A snapshot in a path, or the newest one.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct SnapshotOrLatestPath {
    /// A workspace name
    #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop")]
    ws: String,
    /// A snapshot id, or `latest`
    #[param(pattern = "^([0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}|latest)$", example = "latest")]
    id: String,
}

/// A function stack in a path (the rules of `stacks::StackRef::parse`).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct StackPath {
    /// A workspace name
    #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop")]
    ws: String,
    /// The stack's kind
    #[param(pattern = "^(api|function|task|trigger|middleware|addon)$", example = "api")]
    kind: String,
    /// The stack's name
    #[param(pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", example = "checkout")]
    name: String,
}

/// A page of a listing, newest first.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct Page {
    /// At most this many (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Only those older than this snapshot id (the last of the previous page).
    #[param(pattern = "^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$")]
    before: Option<String>,
}

/// The workspaces a token may see.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct WorkspaceList {
    workspaces: Vec<String>,
}

/// Long work started: the job to poll.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct JobStarted {
    job: i64,
    /// `/v1/jobs/{job}`, also in the `Location` header.
    location: String,
}

/// A snapshot's pin, as it is now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct PinState {
    id: String,
    workspace: String,
    pinned: bool,
}

/// A stop asked of a running job.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Cancelling {
    job: i64,
    cancelling: bool,
}

/// A report as the JSON answer, serialized once, straight into the body.
fn json(value: &impl Serialize) -> Response {
    axum::Json(value).into_response()
}

/// A JSON body as an operation's options (empty: `{}`, the defaults). Unknown fields and bad
/// values are `usage` errors (400), never a partial read.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let bytes: &[u8] = match bytes.iter().all(u8::is_ascii_whitespace) {
        true => b"{}",
        false => bytes,
    };
    serde_json::from_slice(bytes).map_err(|e| ApiError(Error::usage(format!("the request body is not valid: {e}"))))
}

/// The workspace in the path: configured, or `not-found` (a path never names a file). The
/// answer names neither the other workspaces nor the config's path: they are the host's.
fn workspace(core: &Core, ws: &str) -> Result<String, ApiError> {
    crate::config::validate_workspace_name(ws)?;
    if core.workspace(ws).is_err() {
        return Err(ApiError(Error::not_found(format!("no workspace named {ws:?}: GET /v1/workspaces lists yours"))));
    }
    Ok(ws.to_string())
}

#[utoipa::path(
    get,
    path = "/v1/workspaces",
    summary = "The workspaces this token may see",
    responses((status = 200, body = WorkspaceList)),
)]
pub(super) async fn workspaces(State(app): State<App>, Extension(actor): Extension<Actor>) -> Answer {
    let grant = actor.grant();
    let names: Vec<&String> = app
        .core
        .config
        .config
        .workspaces
        .keys()
        .filter(|w| grant.workspaces.is_empty() || grant.workspaces.contains(w))
        .collect();
    Ok(json(&WorkspaceList { workspaces: names.into_iter().cloned().collect() }))
}

#[utoipa::path(
    get,
    path = "/v1/workspaces/{ws}",
    summary = "A workspace's status, from the catalog",
    params(WorkspacePath),
    responses((status = 200, body = ops::workspace::WorkspaceStatus)),
)]
pub(super) async fn workspace_status(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(WorkspacePath { ws }): Path<WorkspacePath>,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    Ok(json(&ops::workspace::status(&app.core, &ops::workspace::StatusOptions { workspace: ws }, &actor).await?))
}

#[utoipa::path(
    get,
    path = "/v1/overview",
    summary = "Every workspace this token may see: health, newest snapshot and drill, PITR window, size, next run; worst first",
    params(OverviewQuery),
    responses((status = 200, body = ops::overview::Overview)),
)]
pub(super) async fn overview(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<OverviewQuery>,
) -> Answer {
    let workspace = q.workspace.map(|ws| scoped(&app, &ws)).transpose()?;
    let opts = ops::overview::OverviewOptions { workspace };
    Ok(json(&ops::overview::overview(&app.core, &opts, &actor, chrono::Utc::now()).await?))
}

/// One workspace of the overview.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct OverviewQuery {
    /// One workspace's line (default: every one this token may see)
    #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop")]
    workspace: Option<String>,
}

/// The workspace in the path, configured (the route's gate has let the token in: a token
/// limited to some workspaces is refused any other name alike, configured or not, and
/// learns nothing of which exist).
pub(super) fn scoped(app: &App, ws: &str) -> Result<String, ApiError> {
    workspace(&app.core, ws)
}

/// Runs long work as a job: `202 Accepted`, the job's id and `Location`; the work goes on
/// after the answer, stoppable with `DELETE /v1/jobs/{id}`.
pub(super) async fn start<T, F, Fut>(
    app: &App,
    actor: &Actor,
    spec: job::JobSpec,
    work: F,
    end: fn(&T) -> JobEnd,
) -> Answer
where
    T: Serialize + Send + Sync + 'static,
    F: FnOnce(Core) -> Fut + Send + 'static,
    Fut: Future<Output = crate::error::Result<T>> + Send + 'static,
{
    // What the job's operation needs is asked again here, from the operation itself (the
    // handler asked for its route's action already: they are the same, or this refuses).
    allow(app, actor, spec.operation.permission(), Some(&spec.workspace)).await?;
    if app.closing.is_cancelled() {
        return Err(ApiError(Error::new(ErrorKind::Unavailable, "this server is stopping; start the job again later")));
    }
    // Heavy work (restores, drills, branches, exports): a few at a time per workspace and
    // per token.
    let slot = match spec.operation.is_heavy() {
        true => match app.limits.heavy(&spec.workspace, actor.token_id.as_deref().unwrap_or(&actor.name)) {
            Ok(slot) => Some(slot),
            Err(wait) => return Ok(wait.into_response()),
        },
        false => None,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let core = app.core.with_stop(stop.clone());
    let started = job::begin(&core, actor, spec).await;
    let Some(id) = started.id() else {
        return Err(ApiError(Error::new(ErrorKind::Unavailable, "the catalog cannot record jobs now; try again")));
    };
    app.running.lock().expect("jobs lock").insert(id, stop);
    let running = app.running.clone();
    // The heavy-job slot is given back when the work ends, before the job's end is
    // recorded: a client that sees the job finished may start the next one at once.
    let work = move |core| async move {
        let result = work(core).await;
        drop(slot);
        result
    };
    app.jobs.spawn(async move {
        let _ = started.run(work, end).await;
        running.lock().expect("jobs lock").remove(&id);
    });
    let location = format!("/v1/jobs/{id}");
    let started = JobStarted { job: id, location: location.clone() };
    let mut response = (StatusCode::ACCEPTED, json(&started)).into_response();
    response.headers_mut().insert(header::LOCATION, location.parse().expect("a path is a header value"));
    Ok(response)
}
