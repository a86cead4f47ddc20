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

/// The workspace in the path: configured, or `not-found` (a path never names a file).
fn workspace(core: &Core, ws: &str) -> Result<String, ApiError> {
    crate::config::validate_workspace_name(ws)?;
    core.workspace(ws)?;
    Ok(ws.to_string())
}

#[utoipa::path(
    get,
    path = "/v1/workspaces",
    summary = "The workspaces this token may see",
    responses((status = 200, body = WorkspaceList)),
)]
pub(super) async fn workspaces(State(app): State<App>, Extension(actor): Extension<Actor>) -> Answer {
    allow(&app.core, &actor, Action::Read, None).await?;
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
    params(("ws" = String, Path, description = "A workspace name", pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop")),
    responses((status = 200, body = ops::workspace::WorkspaceStatus)),
)]
pub(super) async fn workspace_status(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(ws): Path<String>,
) -> Answer {
    let ws = scoped(&app, &actor, &ws, Action::Read).await?;
    Ok(json(&ops::workspace::status(&app.core, &ops::workspace::StatusOptions { workspace: ws }, &actor).await?))
}

#[utoipa::path(
    get,
    path = "/v1/workspaces/{ws}/snapshots",
    summary = "The workspace's snapshots, newest first, a page at a time",
    params(("ws" = String, Path, description = "A workspace name", pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop"), Page),
    responses((status = 200, body = [ops::snapshot::SnapshotSummary])),
)]
pub(super) async fn list_snapshots(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(ws): Path<String>,
    Query(q): Query<Page>,
) -> Answer {
    let ws = scoped(&app, &actor, &ws, Action::Read).await?;
    let opts = ops::snapshot::ListOptions {
        workspace: ws,
        limit: Some(q.limit.unwrap_or(100).clamp(1, 1000)),
        before: q.before,
        // From the catalog's index (compared with the repository once a minute).
        from_repository: false,
    };
    Ok(json(&ops::snapshot::list(&app.core, &opts, &actor).await?))
}

#[utoipa::path(
    get,
    path = "/v1/workspaces/{ws}/snapshots/{id}",
    summary = "One snapshot's manifest",
    params(("ws" = String, Path, description = "A workspace name", pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop"), ("id" = String, Path, description = "A snapshot id, or `latest`", pattern = "^([0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}|latest)$", example = "latest")),
    responses((status = 200, body = crate::repo::manifest::Manifest)),
)]
pub(super) async fn show_snapshot(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path((ws, id)): Path<(String, String)>,
) -> Answer {
    let ws = scoped(&app, &actor, &ws, Action::Read).await?;
    if id != "latest" {
        crate::repo::layout::validate_snapshot_id(&id)?;
    }
    let opts = ops::snapshot::ShowOptions { id, workspace: Some(ws) };
    Ok(json(&ops::snapshot::show(&app.core, &opts, &actor).await?))
}

/// The workspace in the path, checked, and the actor allowed to do `action` there.
pub(super) async fn scoped(app: &App, actor: &Actor, ws: &str, action: Action) -> Result<String, ApiError> {
    let ws = workspace(&app.core, ws)?;
    allow(&app.core, actor, action, Some(&ws)).await?;
    Ok(ws)
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
    T: Send + Sync + 'static,
    F: FnOnce(Core) -> Fut + Send + 'static,
    Fut: Future<Output = crate::error::Result<T>> + Send + 'static,
{
    // Restores and drills are heavy: a few at a time per workspace.
    let slot = match spec.operation {
        "restore" | "drill" => match app.limits.heavy(&spec.workspace) {
            Ok(slot) => Some(slot),
            Err(wait) => return Ok(wait.into_response()),
        },
        _ => None,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let core = app.core.with_stop(stop.clone());
    let started = job::begin(&core, actor, spec).await;
    let Some(id) = started.id() else {
        return Err(ApiError(Error::new(ErrorKind::Unavailable, "the catalog cannot record jobs now; try again")));
    };
    app.running.lock().expect("jobs lock").insert(id, stop);
    let running = app.running.clone();
    tokio::spawn(async move {
        let _ = started.run(work, end).await;
        running.lock().expect("jobs lock").remove(&id);
        drop(slot);
    });
    let location = format!("/v1/jobs/{id}");
    let started = JobStarted { job: id, location: location.clone() };
    let mut response = (StatusCode::ACCEPTED, json(&started)).into_response();
    response.headers_mut().insert(header::LOCATION, location.parse().expect("a path is a header value"));
    Ok(response)
}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/snapshots",
    summary = "Takes a manual snapshot (a job)",
    params(("ws" = String, Path, description = "A workspace name", pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop")),
    request_body(content = SnapshotBody, content_type = "application/json"),
    responses((status = 202, body = JobStarted, headers(("Location" = String, description = "The job")))),
)]
pub(super) async fn create_snapshot(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(ws): Path<String>,
    bytes: Bytes,
) -> Answer {
    let ws = scoped(&app, &actor, &ws, Action::Snapshot).await?;
    let asked: SnapshotBody = body(&bytes)?;
    // The API takes manual snapshots of the workspace in its path, nothing else; how many
    // connections it opens is the host's to say.
    let opts = ops::snapshot::SnapshotOptions {
        workspace: ws.clone(),
        kind: crate::repo::manifest::SnapshotKind::Manual,
        note: asked.note,
        no_media: asked.no_media,
        ..Default::default()
    };
    let spec = job::JobSpec { workspace: ws, operation: "snapshot", kind: Some(opts.kind.to_string()) };
    let who = actor.clone();
    start(
        &app,
        &actor,
        spec,
        move |core| async move { ops::snapshot::create(&core, &opts, &who).await },
        ops::snapshot::job_end,
    )
    .await
}

pub(super) async fn set_pin(app: &App, actor: &Actor, ws: &str, id: String, pin: bool) -> Answer {
    let ws = scoped(app, actor, ws, if pin { Action::Pin } else { Action::Unpin }).await?;
    crate::repo::layout::validate_snapshot_id(&id)?;
    let opts = ops::prune::PinOptions { id: id.clone(), workspace: Some(ws.clone()), pin, wait: Default::default() };
    ops::prune::set_pin(&app.core, &opts, actor).await?;
    Ok(json(&PinState { id, workspace: ws, pinned: pin }))
}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/snapshots/{id}/pin",
    summary = "Pins a snapshot: retention keeps it",
    params(("ws" = String, Path, description = "A workspace name", pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop"), ("id" = String, Path, description = "A snapshot id", pattern = "^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$", example = "20261129T101500Z-1a2b3c")),
    responses((status = 200, body = PinState)),
)]
pub(super) async fn pin(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path((ws, id)): Path<(String, String)>,
) -> Answer {
    set_pin(&app, &actor, &ws, id, true).await
}

#[utoipa::path(
    delete,
    path = "/v1/workspaces/{ws}/snapshots/{id}/pin",
    summary = "Unpins a snapshot",
    params(("ws" = String, Path, description = "A workspace name", pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop"), ("id" = String, Path, description = "A snapshot id", pattern = "^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$", example = "20261129T101500Z-1a2b3c")),
    responses((status = 200, body = PinState)),
)]
pub(super) async fn unpin(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path((ws, id)): Path<(String, String)>,
) -> Answer {
    set_pin(&app, &actor, &ws, id, false).await
}

#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DrillBody {
    /// A snapshot id, or `latest` (default).
    #[schema(pattern = "^([0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}|latest)$")]
    snapshot: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/drills",
    summary = "Runs a restore drill in a throwaway (a job)",
    params(("ws" = String, Path, description = "A workspace name", pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop")),
    request_body(content = DrillBody, content_type = "application/json"),
    responses((status = 202, body = JobStarted, headers(("Location" = String, description = "The job")))),
)]
pub(super) async fn run_drill(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(ws): Path<String>,
    bytes: Bytes,
) -> Answer {
    let ws = scoped(&app, &actor, &ws, Action::Drill).await?;
    let asked: DrillBody = body(&bytes)?;
    if let Some(id) = asked.snapshot.as_deref().filter(|id| *id != "latest") {
        crate::repo::layout::validate_snapshot_id(id)?;
    }
    let opts = ops::drill::DrillOptions::new(&ws, ops::drill::DrillSource::Snapshot(asked.snapshot));
    let spec = job::JobSpec { workspace: ws, operation: "drill", kind: None };
    let who = actor.clone();
    start(
        &app,
        &actor,
        spec,
        move |core| async move { ops::drill::drill(&core, &opts, &who).await },
        ops::drill::job_end,
    )
    .await
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct Limit {
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/v1/workspaces/{ws}/drills",
    summary = "The workspace's restore drills, newest first",
    params(("ws" = String, Path, description = "A workspace name", pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop"), Limit),
    responses((status = 200, body = [ops::drill::DrillEntry])),
)]
pub(super) async fn drills(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(ws): Path<String>,
    Query(q): Query<Limit>,
) -> Answer {
    let ws = scoped(&app, &actor, &ws, Action::Read).await?;
    let opts = ops::drill::HistoryOptions { workspace: Some(ws), limit: q.limit.unwrap_or(50).min(1000) };
    Ok(json(&ops::drill::history(&app.core, &opts, &actor).await?))
}

/// A restore asked over the API: into a new database on the workspace's own server, with
/// the workspace's credentials. Neither a server nor a password nor a media folder comes
/// from the request: a token must not make the backup host connect to a server of its
/// choosing with a password read from the host's files or environment (`file:`/`env:`),
/// nor write files where it says.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RestoreBody {
    /// A snapshot id, or `latest` (default).
    #[schema(pattern = "^([0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}|latest)$")]
    snapshot: Option<String>,
    /// The new database's name (letters, digits, `_`; at most 63): created, or refused
    /// when it exists and is not empty.
    #[schema(pattern = "^[A-Za-z_][A-Za-z0-9_]{0,62}$", example = "shop_copy")]
    database: String,
    /// Parallel connections loading tables (default: one per core, at most 16).
    #[schema(minimum = 1, maximum = 16)]
    jobs: Option<usize>,
}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/restores",
    summary = "Restores a snapshot into a new database on the workspace's server (a job)",
    params(("ws" = String, Path, description = "A workspace name", pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop")),
    request_body(content = RestoreBody, content_type = "application/json"),
    responses((status = 202, body = JobStarted, headers(("Location" = String, description = "The job")))),
)]
pub(super) async fn restore(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(ws): Path<String>,
    bytes: Bytes,
) -> Answer {
    let ws = scoped(&app, &actor, &ws, Action::Restore).await?;
    let asked: RestoreBody = body(&bytes)?;
    let snapshot = asked.snapshot.unwrap_or_else(|| "latest".into());
    if snapshot != "latest" {
        crate::repo::layout::validate_snapshot_id(&snapshot)?;
    }
    let name_ok = (1..=63).contains(&asked.database.len())
        && asked.database.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !asked.database.starts_with(|c: char| c.is_ascii_digit());
    if !name_ok {
        return Err(ApiError(Error::usage(
            "database is a new database's name: 1 to 63 letters, digits or '_', not starting with a digit",
        )));
    }
    if asked.jobs.is_some_and(|j| j == 0 || j > 16) {
        return Err(ApiError(Error::usage("jobs is 1 to 16")));
    }
    // Into a new database only: never the workspace's own (that is an in-place restore).
    let own = app.core.workspace(&ws)?.conn()?.clone();
    let target = own.with_database(&asked.database);
    if own.same_database(&target) {
        return Err(ApiError(Error::new(
            ErrorKind::Refused,
            "the API restores into a new database, not the workspace's",
        )));
    }
    let opts = ops::restore::RestoreOptions {
        snapshot,
        workspace: Some(ws.clone()),
        target: target.display(),
        target_conn: Some(target),
        jobs: asked.jobs,
        no_media: true,
        ..Default::default()
    };
    let spec = job::JobSpec { workspace: ws, operation: "restore", kind: None };
    let who = actor.clone();
    start(
        &app,
        &actor,
        spec,
        move |core| async move { ops::restore::restore(&core, &opts, &who).await },
        ops::restore::job_end,
    )
    .await
}

#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PruneBody {
    #[serde(default)]
    dry_run: bool,
}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/prune",
    summary = "Applies retention, or says what it would do (a job)",
    params(("ws" = String, Path, description = "A workspace name", pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop")),
    request_body(content = PruneBody, content_type = "application/json"),
    responses((status = 202, body = JobStarted, headers(("Location" = String, description = "The job")))),
)]
pub(super) async fn prune(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(ws): Path<String>,
    bytes: Bytes,
) -> Answer {
    let ws = scoped(&app, &actor, &ws, Action::Prune).await?;
    let asked: PruneBody = body(&bytes)?;
    let opts = ops::prune::PruneOptions {
        workspace: ws.clone(),
        dry_run: asked.dry_run,
        grace: ops::prune::DEFAULT_GRACE,
        ..Default::default()
    };
    let spec = job::JobSpec { workspace: ws, operation: "prune", kind: None };
    let who = actor.clone();
    start(
        &app,
        &actor,
        spec,
        move |core| async move { ops::prune::prune(&core, &opts, &who).await },
        ops::prune::job_end,
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/check",
    summary = "Checks the workspace's repository objects (a job)",
    params(("ws" = String, Path, description = "A workspace name", pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop")),
    responses((status = 202, body = JobStarted, headers(("Location" = String, description = "The job")))),
)]
pub(super) async fn check(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(ws): Path<String>,
) -> Answer {
    let ws = scoped(&app, &actor, &ws, Action::Read).await?;
    let opts = ops::check::CheckOptions { workspace: ws.clone(), read_data: false };
    let spec = job::JobSpec { workspace: ws, operation: "check", kind: None };
    let who = actor.clone();
    start(
        &app,
        &actor,
        spec,
        move |core| async move { ops::check::check(&core, &opts, &who).await },
        ops::check::job_end,
    )
    .await
}

#[utoipa::path(
    get,
    path = "/v1/workspaces/{ws}/pitr",
    summary = "The point-in-time window",
    params(("ws" = String, Path, description = "A workspace name", pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop")),
    responses((status = 200, body = crate::wal::window::Window)),
)]
pub(super) async fn window(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(ws): Path<String>,
) -> Answer {
    let ws = scoped(&app, &actor, &ws, Action::Read).await?;
    Ok(json(&ops::pitr::window(&app.core, &ops::pitr::WindowOptions { workspace: ws }, &actor).await?))
}

#[utoipa::path(
    get,
    path = "/v1/workspaces/{ws}/stacks",
    summary = "The workspace's function stacks",
    params(("ws" = String, Path, description = "A workspace name", pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop")),
    responses((status = 200, body = [crate::repo::manifest::StackSummary])),
)]
pub(super) async fn stacks(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(ws): Path<String>,
) -> Answer {
    let ws = scoped(&app, &actor, &ws, Action::Read).await?;
    let opts = ops::stacks::StackListOptions { workspace: Some(ws) };
    Ok(json(&ops::stacks::list(&app.core, &opts, &actor).await?))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct JobsQuery {
    workspace: Option<String>,
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/v1/jobs",
    summary = "Jobs, newest first",
    params(JobsQuery),
    responses((status = 200, body = [crate::catalog::Job])),
)]
pub(super) async fn jobs(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<JobsQuery>,
) -> Answer {
    let grant = actor.grant();
    let ws = match q.workspace {
        Some(ws) => Some(workspace(&app.core, &ws)?),
        // A token limited to one workspace sees that one's jobs.
        None if grant.workspaces.len() == 1 => grant.workspaces.first().cloned(),
        None => None,
    };
    allow(&app.core, &actor, Action::Read, ws.as_deref().or(grant.workspaces.first().map(String::as_str))).await?;
    let opts = ops::catalog::JobsOptions { workspace: ws, limit: q.limit.unwrap_or(50).min(1000) };
    let listed = ops::catalog::jobs(&app.core, &opts, &actor).await?;
    let visible: Vec<_> =
        listed.into_iter().filter(|j| grant.workspaces.is_empty() || grant.workspaces.contains(&j.workspace)).collect();
    Ok(json(&visible))
}

pub(super) async fn job_of(app: &App, actor: &Actor, id: i64) -> Result<crate::catalog::Job, ApiError> {
    let job = app.core.catalog().await?.job(id).await?;
    allow(&app.core, actor, Action::Read, Some(&job.workspace)).await?;
    Ok(job)
}

#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    summary = "A job: its phase and progress while it runs, its result at the end",
    params(("id" = i64, Path, description = "A job's id")),
    responses((status = 200, body = crate::catalog::Job)),
)]
pub(super) async fn show_job(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<i64>,
) -> Answer {
    Ok(json(&job_of(&app, &actor, id).await?))
}

#[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    summary = "Stops a job this server runs",
    params(("id" = i64, Path, description = "A job's id")),
    responses((status = 202, body = Cancelling)),
)]
pub(super) async fn cancel_job(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<i64>,
) -> Answer {
    let job = job_of(&app, &actor, id).await?;
    let action = match job.operation.as_str() {
        "snapshot" => Action::Snapshot,
        "drill" => Action::Drill,
        "restore" => Action::Restore,
        "prune" => Action::Prune,
        _ => Action::Read,
    };
    allow(&app.core, &actor, action, Some(&job.workspace)).await?;
    let stop = app.running.lock().expect("jobs lock").get(&id).cloned();
    match stop {
        Some(stop) => {
            stop.cancel();
            Ok((StatusCode::ACCEPTED, json(&Cancelling { job: id, cancelling: true })).into_response())
        }
        None => Err(ApiError(Error::new(ErrorKind::Refused, format!("job {id} is not running in this server")))),
    }
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// Records from this moment on (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    format: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/audit",
    summary = "The audit trail",
    params(AuditQuery),
    responses((status = 200, description = "The trail, oldest first: JSON, or CSV with `format=csv`", content(([crate::catalog::audit::AuditRecord] = "application/json"), (String = "text/csv")))),
)]
pub(super) async fn audit(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<AuditQuery>,
) -> Answer {
    allow(&app.core, &actor, Action::ReadAudit, None).await?;
    let since = q.since.as_deref().map(crate::wal::window::parse_time).transpose()?;
    let records = ops::audit::list(&app.core, &ops::audit::AuditListOptions { since }, &actor).await?;
    match q.format.as_deref() {
        None | Some("json") => Ok(json(&records)),
        Some("csv") => {
            Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], ops::audit::to_csv(&records)).into_response())
        }
        Some(other) => Err(ApiError(Error::usage(format!("format is json or csv, not {other:?}")))),
    }
}

#[utoipa::path(
    get,
    path = "/v1/audit/verify",
    summary = "Checks the audit trail against the repository's checkpoint",
    responses((status = 200, body = ops::audit::AuditReport)),
)]
pub(super) async fn audit_verify(State(app): State<App>, Extension(actor): Extension<Actor>) -> Answer {
    allow(&app.core, &actor, Action::ReadAudit, None).await?;
    Ok(json(&ops::audit::verify(&app.core, &actor).await?))
}

#[utoipa::path(
    get,
    path = "/v1/tokens",
    summary = "Tokens (never a secret)",
    responses((status = 200, body = [crate::catalog::tokens::TokenRecord])),
)]
pub(super) async fn tokens(State(app): State<App>, Extension(actor): Extension<Actor>) -> Answer {
    allow(&app.core, &actor, Action::ManageTokens, None).await?;
    Ok(json(&ops::token::list(&app.core, &actor).await?))
}

#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct MarkBody {
    name: String,
}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/restore-points",
    summary = "Marks a named restore point",
    params(("ws" = String, Path, description = "A workspace name", pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop")),
    request_body(content = MarkBody, content_type = "application/json"),
    responses((status = 200, body = ops::pitr::RestorePoint)),
)]
pub(super) async fn mark(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(ws): Path<String>,
    bytes: Bytes,
) -> Answer {
    let ws = scoped(&app, &actor, &ws, Action::MarkRestorePoint).await?;
    let asked: MarkBody = body(&bytes)?;
    let opts = ops::pitr::MarkOptions { workspace: ws, name: asked.name };
    Ok(json(&ops::pitr::mark(&app.core, &opts, &actor).await?))
}

/// A stack route's workspace and `kind/name`, after the workspace and role checks.
pub(super) async fn stack_route(
    app: &App,
    actor: &Actor,
    ws: &str,
    kind: &str,
    name: &str,
    action: Action,
) -> Result<(String, String), ApiError> {
    Ok((scoped(app, actor, ws, action).await?, format!("{kind}/{name}")))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct StateQuery {
    /// `live` (default), `published`, `version:N`, `change:N`.
    #[param(pattern = "^(live|published|version:[1-9][0-9]{0,17}|change:[1-9][0-9]{0,17})$")]
    state: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/workspaces/{ws}/stacks/{kind}/{name}",
    summary = "A state of a stack",
    params(("ws" = String, Path, description = "A workspace name", pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop"), ("kind" = String, Path, description = "The stack's kind", pattern = "^(api|function|task|trigger|middleware|addon)$", example = "api"), ("name" = String, Path, description = "The stack's name", pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", example = "checkout"), StateQuery),
    responses((status = 200, body = ops::stacks::StackState)),
)]
pub(super) async fn stack_show(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path((ws, kind, name)): Path<(String, String, String)>,
    Query(q): Query<StateQuery>,
) -> Answer {
    let (ws, stack) = stack_route(&app, &actor, &ws, &kind, &name, Action::Read).await?;
    let opts =
        ops::stacks::StackShowOptions { workspace: Some(ws), stack, state: q.state.unwrap_or_else(|| "live".into()) };
    Ok(json(&ops::stacks::show(&app.core, &opts, &actor).await?))
}

#[utoipa::path(
    get,
    path = "/v1/workspaces/{ws}/stacks/{kind}/{name}/history",
    summary = "A stack's changes",
    params(("ws" = String, Path, description = "A workspace name", pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop"), ("kind" = String, Path, description = "The stack's kind", pattern = "^(api|function|task|trigger|middleware|addon)$", example = "api"), ("name" = String, Path, description = "The stack's name", pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", example = "checkout")),
    responses((status = 200, body = [crate::stacks::log::ChangeInfo])),
)]
pub(super) async fn stack_history(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path((ws, kind, name)): Path<(String, String, String)>,
) -> Answer {
    let (ws, stack) = stack_route(&app, &actor, &ws, &kind, &name, Action::Read).await?;
    let opts = ops::stacks::StackOptions { workspace: Some(ws), stack };
    Ok(json(&ops::stacks::history(&app.core, &opts, &actor).await?))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DiffQuery {
    /// A state: `live`, `published`, `version:N`, `change:N`.
    #[param(pattern = "^(live|published|version:[1-9][0-9]{0,17}|change:[1-9][0-9]{0,17})$")]
    from: String,
    /// A state (default `live`).
    #[param(pattern = "^(live|published|version:[1-9][0-9]{0,17}|change:[1-9][0-9]{0,17})$")]
    to: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/workspaces/{ws}/stacks/{kind}/{name}/diff",
    summary = "A structural diff between two states",
    params(("ws" = String, Path, description = "A workspace name", pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop"), ("kind" = String, Path, description = "The stack's kind", pattern = "^(api|function|task|trigger|middleware|addon)$", example = "api"), ("name" = String, Path, description = "The stack's name", pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", example = "checkout"), DiffQuery),
    responses((status = 200, body = ops::stacks::DiffReport)),
)]
pub(super) async fn stack_diff(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path((ws, kind, name)): Path<(String, String, String)>,
    Query(q): Query<DiffQuery>,
) -> Answer {
    let (ws, stack) = stack_route(&app, &actor, &ws, &kind, &name, Action::Read).await?;
    let opts = ops::stacks::StackDiffOptions {
        workspace: Some(ws),
        stack,
        from: q.from,
        to: q.to.unwrap_or_else(|| "live".into()),
    };
    Ok(json(&ops::stacks::diff(&app.core, &opts, &actor).await?))
}

#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct StackChange {
    /// The new content (put).
    content: Option<serde_json::Value>,
    /// The state to go back to (revert): `published`, `version:N`, `change:N`.
    #[schema(pattern = "^(live|published|version:[1-9][0-9]{0,17}|change:[1-9][0-9]{0,17})$")]
    to: Option<String>,
    message: Option<String>,
}

#[utoipa::path(
    put,
    path = "/v1/workspaces/{ws}/stacks/{kind}/{name}",
    summary = "Writes a stack's live state",
    params(("ws" = String, Path, description = "A workspace name", pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop"), ("kind" = String, Path, description = "The stack's kind", pattern = "^(api|function|task|trigger|middleware|addon)$", example = "api"), ("name" = String, Path, description = "The stack's name", pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", example = "checkout")),
    request_body(content = StackChange, content_type = "application/json"),
    responses((status = 200, body = crate::stacks::log::PutOutcome)),
)]
pub(super) async fn stack_put(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path((ws, kind, name)): Path<(String, String, String)>,
    bytes: Bytes,
) -> Answer {
    let (ws, stack) = stack_route(&app, &actor, &ws, &kind, &name, Action::WriteStacks).await?;
    let change: StackChange = body(&bytes)?;
    let content = change.content.ok_or_else(|| ApiError(Error::usage("put needs {\"content\": ...}")))?;
    let opts = ops::stacks::StackPutOptions {
        workspace: Some(ws),
        stack,
        json: content.to_string(),
        origin: "the request body".into(),
        // The API records the token's name as the author: nobody else can be claimed.
        author: None,
        message: change.message,
    };
    Ok(json(&ops::stacks::put(&app.core, &opts, &actor).await?))
}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/stacks/{kind}/{name}/publish",
    summary = "Publishes a stack's live state",
    params(("ws" = String, Path, description = "A workspace name", pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop"), ("kind" = String, Path, description = "The stack's kind", pattern = "^(api|function|task|trigger|middleware|addon)$", example = "api"), ("name" = String, Path, description = "The stack's name", pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", example = "checkout")),
    request_body(content = StackChange, content_type = "application/json"),
    responses((status = 200, body = crate::stacks::log::Published)),
)]
pub(super) async fn stack_publish(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path((ws, kind, name)): Path<(String, String, String)>,
    bytes: Bytes,
) -> Answer {
    let (ws, stack) = stack_route(&app, &actor, &ws, &kind, &name, Action::WriteStacks).await?;
    let change: StackChange = body(&bytes)?;
    let opts = ops::stacks::StackPublishOptions { workspace: Some(ws), stack, author: None, message: change.message };
    Ok(json(&ops::stacks::publish(&app.core, &opts, &actor).await?))
}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/stacks/{kind}/{name}/revert",
    summary = "Makes an earlier state live again",
    params(("ws" = String, Path, description = "A workspace name", pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop"), ("kind" = String, Path, description = "The stack's kind", pattern = "^(api|function|task|trigger|middleware|addon)$", example = "api"), ("name" = String, Path, description = "The stack's name", pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", example = "checkout")),
    request_body(content = StackChange, content_type = "application/json"),
    responses((status = 200, body = crate::stacks::log::PutOutcome)),
)]
pub(super) async fn stack_revert(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path((ws, kind, name)): Path<(String, String, String)>,
    bytes: Bytes,
) -> Answer {
    let (ws, stack) = stack_route(&app, &actor, &ws, &kind, &name, Action::WriteStacks).await?;
    let change: StackChange = body(&bytes)?;
    let to = change
        .to
        .ok_or_else(|| ApiError(Error::usage("revert needs {\"to\": \"published\"|\"version:N\"|\"change:N\"}")))?;
    let opts = ops::stacks::StackRevertOptions { workspace: Some(ws), stack, to, author: None };
    Ok(json(&ops::stacks::revert(&app.core, &opts, &actor).await?))
}

#[utoipa::path(
    post,
    path = "/v1/tokens",
    summary = "Makes a token; its secret is in this answer only",
    request_body(content = ops::token::TokenCreateOptions, content_type = "application/json"),
    responses((status = 201, body = ops::token::TokenCreated)),
)]
pub(super) async fn token_create(State(app): State<App>, Extension(actor): Extension<Actor>, bytes: Bytes) -> Answer {
    allow(&app.core, &actor, Action::ManageTokens, None).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError(Error::usage("a token needs {\"name\", \"role\"}")));
    }
    let opts: ops::token::TokenCreateOptions = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError(Error::usage(format!("the request body is not valid: {e}"))))?;
    let created = ops::token::create(&app.core, &opts, &actor).await?;
    Ok((StatusCode::CREATED, axum::Json(serde_json::to_value(&created).expect("a token serializes"))).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/tokens/{token}",
    summary = "Revokes a token at once",
    params(("token" = String, Path, description = "A token's name or id")),
    responses((status = 200, body = crate::catalog::tokens::TokenRecord)),
)]
pub(super) async fn token_revoke(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(token): Path<String>,
) -> Answer {
    allow(&app.core, &actor, Action::ManageTokens, None).await?;
    let opts = ops::token::TokenRevokeOptions { token };
    Ok(json(&ops::token::revoke(&app.core, &opts, &actor).await?))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct Format {
    /// `json` (default) or `junit`.
    #[param(pattern = "^(json|junit)$")]
    format: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/workspaces/{ws}/drills/{id}",
    summary = "One drill's report",
    params(("ws" = String, Path, description = "A workspace name", pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop"), ("id" = i64, Path, description = "A drill's id"), Format),
    responses((status = 200, description = "The drill's report as JSON, or JUnit XML with `format=junit`", content((ops::drill::DrillEntry = "application/json"), (String = "application/xml")))),
)]
pub(super) async fn drill_report(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path((ws, id)): Path<(String, i64)>,
    Query(q): Query<Format>,
) -> Answer {
    let ws = scoped(&app, &actor, &ws, Action::Read).await?;
    let opts = ops::drill::HistoryOptions { workspace: Some(ws.clone()), limit: 100_000 };
    let entry = ops::drill::history(&app.core, &opts, &actor)
        .await?
        .into_iter()
        .find(|d| d.id == id)
        .ok_or_else(|| ApiError(Error::not_found(format!("workspace {ws} has no drill {id}"))))?;
    match q.format.as_deref() {
        None | Some("json") => Ok(json(&entry)),
        Some("junit") => Ok(([(header::CONTENT_TYPE, "application/xml")], entry.report.junit()).into_response()),
        Some(other) => Err(ApiError(Error::usage(format!("format is json or junit, not {other:?}")))),
    }
}
