//! The `/v1` routes: each translates the request into an operation's options and the
//! token's actor, asks `allow` first, and answers the operation's report (or `202` and a
//! job for long work).

use std::future::Future;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
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
mod drills;
mod exports;
mod snapshots;
mod stacks;

pub(super) use admin::*;
pub(super) use branches::*;
pub(super) use drills::*;
pub(super) use exports::*;
pub(super) use snapshots::*;
pub(super) use stacks::*;

type Answer = Result<Response, ApiError>;

/// The `/v1` routes and their handlers (the OpenAPI test checks each is documented).
pub(super) fn table() -> Vec<(&'static str, MethodRouter<App>)> {
    vec![
        ("/v1/workspaces", get(workspaces)),
        ("/v1/workspaces/{ws}", get(workspace_status)),
        ("/v1/workspaces/{ws}/snapshots", get(list_snapshots).post(create_snapshot)),
        ("/v1/workspaces/{ws}/snapshots/{id}", get(show_snapshot)),
        ("/v1/workspaces/{ws}/snapshots/{id}/pin", post(pin).delete(unpin)),
        ("/v1/workspaces/{ws}/drills", get(drills).post(run_drill)),
        ("/v1/workspaces/{ws}/drills/{id}", get(drill_report)),
        ("/v1/workspaces/{ws}/restores", post(restore)),
        ("/v1/workspaces/{ws}/restores/in-place", post(restore_in_place)),
        ("/v1/workspaces/{ws}/restores/undo", post(restore_undo)),
        ("/v1/workspaces/{ws}/branches", get(branches).post(create_branch)),
        ("/v1/workspaces/{ws}/branches/{name}", axum::routing::delete(delete_branch)),
        ("/v1/workspaces/{ws}/branches/{name}/set-live", post(set_live)),
        ("/v1/workspaces/{ws}/exports", post(create_export)),
        ("/v1/workspaces/{ws}/exports/{export}/links", post(create_link)),
        ("/v1/workspaces/{ws}/prune", post(prune)),
        ("/v1/workspaces/{ws}/check", post(check)),
        ("/v1/workspaces/{ws}/pitr", get(window)),
        ("/v1/workspaces/{ws}/restore-points", post(mark)),
        ("/v1/workspaces/{ws}/stacks", get(stacks)),
        ("/v1/workspaces/{ws}/stacks/{kind}/{name}", get(stack_show).put(stack_put)),
        ("/v1/workspaces/{ws}/stacks/{kind}/{name}/history", get(stack_history)),
        ("/v1/workspaces/{ws}/stacks/{kind}/{name}/diff", get(stack_diff)),
        ("/v1/workspaces/{ws}/stacks/{kind}/{name}/publish", post(stack_publish)),
        ("/v1/workspaces/{ws}/stacks/{kind}/{name}/revert", post(stack_revert)),
        ("/metrics", get(metrics)),
        ("/v1/jobs", get(jobs)),
        ("/v1/jobs/{id}", get(show_job).delete(cancel_job)),
        ("/v1/audit", get(audit)),
        ("/v1/audit/verify", get(audit_verify)),
        ("/v1/tokens", get(tokens).post(token_create)),
        ("/v1/tokens/{token}", axum::routing::delete(token_revoke)),
    ]
}

pub(super) fn v1() -> Router<App> {
    table().into_iter().fold(Router::new(), |router, (path, handler)| router.route(path, handler))
}

/// A workspace in a path (the rules of `config::validate_workspace_name`).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct WorkspacePath {
    /// A workspace name
    #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop")]
    ws: String,
}

/// A snapshot named in a body: an id (checked like `repo::layout::validate_snapshot_id`),
/// or `latest` (also when left out).
///
/// Errors: `Usage` for anything else.
pub(super) fn snapshot_or_latest(asked: Option<String>) -> crate::error::Result<String> {
    let snapshot = asked.unwrap_or_else(|| "latest".into());
    if snapshot != "latest" {
        crate::repo::layout::validate_snapshot_id(&snapshot)?;
    }
    Ok(snapshot)
}

/// A snapshot as [`snapshot_or_latest`], or none (an empty id) when the body names a
/// moment instead.
///
/// Errors: `Usage` for both, or a time that is not one.
pub(super) fn snapshot_or_time(asked: Option<String>, time: Option<&str>) -> crate::error::Result<String> {
    match (time, asked) {
        (Some(_), Some(_)) => Err(crate::error::Error::usage("give a snapshot or a time, not both")),
        (Some(time), None) => crate::wal::window::parse_time(time).map(|_| String::new()),
        (None, asked) => snapshot_or_latest(asked),
    }
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

/// A manual snapshot asked over the API.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SnapshotBody {
    /// Why it was taken ("before migration 42").
    note: Option<String>,
    /// Leave the media store out.
    #[serde(default)]
    no_media: bool,
}

/// A report as the JSON answer, serialized once, straight into the body.
fn json(value: &impl Serialize) -> Response {
    axum::Json(value).into_response()
}

/// A JSON body as an operation's options (empty: the defaults). Unknown fields and bad
/// values are `usage` errors (400), never a partial read.
fn body<T: DeserializeOwned + Default>(bytes: &Bytes) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
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
    allow(&app, &actor, Action::Read, None).await?;
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
    let ws = scoped(&app, &actor, &ws, Action::Read).await?;
    Ok(json(&ops::workspace::status(&app.core, &ops::workspace::StatusOptions { workspace: ws }, &actor).await?))
}

/// The workspace in the path, checked, and the actor allowed to do `action` there.
/// A token limited to some workspaces is refused any other name alike, configured or not
/// (it learns nothing of which exist).
pub(super) async fn scoped(app: &App, actor: &Actor, ws: &str, action: Action) -> Result<String, ApiError> {
    crate::config::validate_workspace_name(ws)?;
    allow(app, actor, action, Some(ws)).await?;
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
