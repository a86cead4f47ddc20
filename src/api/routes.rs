//! The `/v1` routes: each translates the request into an operation's options and the
//! token's actor, asks `allow` first, and answers the operation's report (or `202` and a
//! job for long work).

use std::future::Future;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ApiError, App, allow};
use crate::access::Action;
use crate::actor::Actor;
use crate::catalog::JobEnd;
use crate::error::{Error, ErrorKind};
use crate::ops::{self, Core, job};

type Answer = Result<Response, ApiError>;

pub(super) fn v1() -> Router<App> {
    Router::new()
        .route("/v1/workspaces", get(workspaces))
        .route("/v1/workspaces/{ws}", get(workspace_status))
        .route("/v1/workspaces/{ws}/snapshots", get(list_snapshots).post(create_snapshot))
        .route("/v1/workspaces/{ws}/snapshots/{id}", get(show_snapshot))
        .route("/v1/workspaces/{ws}/snapshots/{id}/pin", post(pin).delete(unpin))
        .route("/v1/workspaces/{ws}/drills", get(drills).post(run_drill))
        .route("/v1/workspaces/{ws}/drills/{id}", get(drill_report))
        .route("/v1/workspaces/{ws}/restores", post(restore))
        .route("/v1/workspaces/{ws}/prune", post(prune))
        .route("/v1/workspaces/{ws}/check", post(check))
        .route("/v1/workspaces/{ws}/pitr", get(window))
        .route("/v1/workspaces/{ws}/restore-points", post(mark))
        .route("/v1/workspaces/{ws}/stacks", get(stacks))
        .route("/v1/workspaces/{ws}/stacks/{kind}/{name}", get(stack_show).put(stack_put))
        .route("/v1/workspaces/{ws}/stacks/{kind}/{name}/history", get(stack_history))
        .route("/v1/workspaces/{ws}/stacks/{kind}/{name}/diff", get(stack_diff))
        .route("/v1/workspaces/{ws}/stacks/{kind}/{name}/publish", post(stack_publish))
        .route("/v1/workspaces/{ws}/stacks/{kind}/{name}/revert", post(stack_revert))
        .route("/v1/jobs", get(jobs))
        .route("/v1/jobs/{id}", get(show_job).delete(cancel_job))
        .route("/v1/audit", get(audit))
        .route("/v1/audit/verify", get(audit_verify))
        .route("/v1/tokens", get(tokens).post(token_create))
        .route("/v1/tokens/{token}", axum::routing::delete(token_revoke))
}

fn json(value: &impl Serialize) -> Response {
    axum::Json(serde_json::to_value(value).expect("reports serialize")).into_response()
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

async fn workspaces(State(app): State<App>, Extension(actor): Extension<Actor>) -> Answer {
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
    Ok(json(&serde_json::json!({ "workspaces": names })))
}

async fn workspace_status(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(ws): Path<String>,
) -> Answer {
    let ws = scoped(&app, &actor, &ws, Action::Read).await?;
    Ok(json(&ops::workspace::status(&app.core, &ops::workspace::StatusOptions { workspace: ws }, &actor).await?))
}

async fn list_snapshots(State(app): State<App>, Extension(actor): Extension<Actor>, Path(ws): Path<String>) -> Answer {
    let ws = scoped(&app, &actor, &ws, Action::Read).await?;
    Ok(json(&ops::snapshot::list(&app.core, &ops::snapshot::ListOptions { workspace: ws }, &actor).await?))
}

async fn show_snapshot(
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
async fn scoped(app: &App, actor: &Actor, ws: &str, action: Action) -> Result<String, ApiError> {
    let ws = workspace(&app.core, ws)?;
    allow(&app.core, actor, action, Some(&ws)).await?;
    Ok(ws)
}

/// Runs long work as a job: `202 Accepted`, the job's id and `Location`; the work goes on
/// after the answer, stoppable with `DELETE /v1/jobs/{id}`.
async fn start<T, F, Fut>(app: &App, actor: &Actor, spec: job::JobSpec, work: F, end: fn(&T) -> JobEnd) -> Answer
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
    let mut response =
        (StatusCode::ACCEPTED, axum::Json(serde_json::json!({ "job": id, "location": location }))).into_response();
    response.headers_mut().insert(header::LOCATION, location.parse().expect("a path is a header value"));
    Ok(response)
}

async fn create_snapshot(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(ws): Path<String>,
    bytes: Bytes,
) -> Answer {
    let ws = scoped(&app, &actor, &ws, Action::Snapshot).await?;
    let mut opts: ops::snapshot::SnapshotOptions = body(&bytes)?;
    // The API takes manual snapshots of the workspace in its path, nothing else.
    (opts.workspace, opts.kind) = (ws.clone(), crate::repo::manifest::SnapshotKind::Manual);
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

async fn set_pin(app: &App, actor: &Actor, ws: &str, id: String, pin: bool) -> Answer {
    let ws = scoped(app, actor, ws, if pin { Action::Pin } else { Action::Unpin }).await?;
    crate::repo::layout::validate_snapshot_id(&id)?;
    let opts = ops::prune::PinOptions { id: id.clone(), workspace: Some(ws.clone()), pin, wait: Default::default() };
    ops::prune::set_pin(&app.core, &opts, actor).await?;
    Ok(json(&serde_json::json!({ "id": id, "workspace": ws, "pinned": pin })))
}

async fn pin(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path((ws, id)): Path<(String, String)>,
) -> Answer {
    set_pin(&app, &actor, &ws, id, true).await
}

async fn unpin(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path((ws, id)): Path<(String, String)>,
) -> Answer {
    set_pin(&app, &actor, &ws, id, false).await
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DrillBody {
    /// A snapshot id (default: the newest).
    snapshot: Option<String>,
}

async fn run_drill(
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

#[derive(Debug, serde::Deserialize)]
struct Limit {
    limit: Option<u32>,
}

async fn drills(
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
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    /// A snapshot id, or `latest` (default).
    snapshot: Option<String>,
    /// The new database's name (letters, digits, `_`; at most 63): created, or refused
    /// when it exists and is not empty.
    database: String,
    /// Parallel connections loading tables (default: one per core, at most 16).
    jobs: Option<usize>,
}

async fn restore(
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

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PruneBody {
    #[serde(default)]
    dry_run: bool,
}

async fn prune(
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

async fn check(State(app): State<App>, Extension(actor): Extension<Actor>, Path(ws): Path<String>) -> Answer {
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

async fn window(State(app): State<App>, Extension(actor): Extension<Actor>, Path(ws): Path<String>) -> Answer {
    let ws = scoped(&app, &actor, &ws, Action::Read).await?;
    Ok(json(&ops::pitr::window(&app.core, &ops::pitr::WindowOptions { workspace: ws }, &actor).await?))
}

async fn stacks(State(app): State<App>, Extension(actor): Extension<Actor>, Path(ws): Path<String>) -> Answer {
    let ws = scoped(&app, &actor, &ws, Action::Read).await?;
    let opts = ops::stacks::StackListOptions { workspace: Some(ws) };
    Ok(json(&ops::stacks::list(&app.core, &opts, &actor).await?))
}

#[derive(Debug, serde::Deserialize)]
struct JobsQuery {
    workspace: Option<String>,
    limit: Option<u32>,
}

async fn jobs(State(app): State<App>, Extension(actor): Extension<Actor>, Query(q): Query<JobsQuery>) -> Answer {
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

async fn job_of(app: &App, actor: &Actor, id: i64) -> Result<crate::catalog::Job, ApiError> {
    let job = app.core.catalog().await?.job(id).await?;
    allow(&app.core, actor, Action::Read, Some(&job.workspace)).await?;
    Ok(job)
}

async fn show_job(State(app): State<App>, Extension(actor): Extension<Actor>, Path(id): Path<i64>) -> Answer {
    Ok(json(&job_of(&app, &actor, id).await?))
}

async fn cancel_job(State(app): State<App>, Extension(actor): Extension<Actor>, Path(id): Path<i64>) -> Answer {
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
            Ok((StatusCode::ACCEPTED, axum::Json(serde_json::json!({ "job": id, "cancelling": true }))).into_response())
        }
        None => Err(ApiError(Error::new(ErrorKind::Refused, format!("job {id} is not running in this server")))),
    }
}

#[derive(Debug, serde::Deserialize)]
struct AuditQuery {
    since: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

async fn audit(State(app): State<App>, Extension(actor): Extension<Actor>, Query(q): Query<AuditQuery>) -> Answer {
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

async fn audit_verify(State(app): State<App>, Extension(actor): Extension<Actor>) -> Answer {
    allow(&app.core, &actor, Action::ReadAudit, None).await?;
    Ok(json(&ops::audit::verify(&app.core, &actor).await?))
}

async fn tokens(State(app): State<App>, Extension(actor): Extension<Actor>) -> Answer {
    allow(&app.core, &actor, Action::ManageTokens, None).await?;
    Ok(json(&ops::token::list(&app.core, &actor).await?))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkBody {
    name: String,
}

async fn mark(
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
async fn stack_route(
    app: &App,
    actor: &Actor,
    ws: &str,
    kind: &str,
    name: &str,
    action: Action,
) -> Result<(String, String), ApiError> {
    Ok((scoped(app, actor, ws, action).await?, format!("{kind}/{name}")))
}

#[derive(Debug, serde::Deserialize)]
struct StateQuery {
    /// `live` (default), `published`, `version:N`, `change:N`.
    state: Option<String>,
}

async fn stack_show(
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

async fn stack_history(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path((ws, kind, name)): Path<(String, String, String)>,
) -> Answer {
    let (ws, stack) = stack_route(&app, &actor, &ws, &kind, &name, Action::Read).await?;
    let opts = ops::stacks::StackOptions { workspace: Some(ws), stack };
    Ok(json(&ops::stacks::history(&app.core, &opts, &actor).await?))
}

#[derive(Debug, serde::Deserialize)]
struct DiffQuery {
    from: String,
    to: Option<String>,
}

async fn stack_diff(
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

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StackChange {
    /// The new content (put).
    content: Option<serde_json::Value>,
    /// The state to go back to (revert).
    to: Option<String>,
    message: Option<String>,
}

async fn stack_put(
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

async fn stack_publish(
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

async fn stack_revert(
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

async fn token_create(State(app): State<App>, Extension(actor): Extension<Actor>, bytes: Bytes) -> Answer {
    allow(&app.core, &actor, Action::ManageTokens, None).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError(Error::usage("a token needs {\"name\", \"role\"}")));
    }
    let opts: ops::token::TokenCreateOptions = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError(Error::usage(format!("the request body is not valid: {e}"))))?;
    let created = ops::token::create(&app.core, &opts, &actor).await?;
    Ok((StatusCode::CREATED, axum::Json(serde_json::to_value(&created).expect("a token serializes"))).into_response())
}

async fn token_revoke(State(app): State<App>, Extension(actor): Extension<Actor>, Path(token): Path<String>) -> Answer {
    allow(&app.core, &actor, Action::ManageTokens, None).await?;
    let opts = ops::token::TokenRevokeOptions { token };
    Ok(json(&ops::token::revoke(&app.core, &opts, &actor).await?))
}

#[derive(Debug, serde::Deserialize)]
struct Format {
    /// `json` (default) or `junit`.
    format: Option<String>,
}

async fn drill_report(
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
