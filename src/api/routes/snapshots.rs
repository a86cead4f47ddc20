//! Snapshots, restores into a new database, retention, checks, the PITR window and
//! restore points.

#[allow(clippy::wildcard_imports)]
use super::*;

#[utoipa::path(
    get,
    path = "/v1/workspaces/{ws}/snapshots",
    summary = "The workspace's snapshots, newest first, a page at a time",
    params(WorkspacePath, Page),
    responses((status = 200, body = [ops::snapshot::SnapshotSummary])),
)]
pub(in crate::api) async fn list_snapshots(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(WorkspacePath { ws }): Path<WorkspacePath>,
    Query(q): Query<Page>,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    let opts = ops::snapshot::ListOptions {
        workspace: ws,
        limit: Some(q.limit.unwrap_or(100).clamp(1, 1000)),
        before: q.before,
        // From the catalog's index (compared with the repository once a minute).
        from_repository: false,
        repository: None,
    };
    Ok(json(&ops::prune::list_annotated(&app.core, &opts, &actor).await?))
}

#[utoipa::path(
    get,
    path = "/v1/workspaces/{ws}/snapshots/{id}",
    summary = "One snapshot's manifest",
    params(SnapshotOrLatestPath),
    responses((status = 200, body = crate::repo::manifest::Manifest)),
)]
pub(in crate::api) async fn show_snapshot(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(SnapshotOrLatestPath { ws, id }): Path<SnapshotOrLatestPath>,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    if id != "latest" {
        crate::repo::layout::validate_snapshot_id(&id)?;
    }
    let opts = ops::snapshot::ShowOptions { id, workspace: Some(ws) };
    Ok(json(&ops::snapshot::show(&app.core, &opts, &actor).await?))
}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/snapshots",
    summary = "Takes a manual snapshot (a job)",
    params(WorkspacePath),
    request_body(content = ops::snapshot::SnapshotOptions, content_type = "application/json"),
    responses((status = 202, body = JobStarted, headers(("Location" = String, description = "The job")))),
)]
pub(in crate::api) async fn create_snapshot(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(WorkspacePath { ws }): Path<WorkspacePath>,
    bytes: Bytes,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    // A manual snapshot of the workspace in the path, nothing else (what a request may
    // set is the options' to say); how many connections it opens is the host's.
    let mut opts: ops::snapshot::SnapshotOptions = body(&bytes)?;
    opts.workspace.clone_from(&ws);
    let spec = job::JobSpec {
        workspace: ws,
        operation: crate::operation::Operation::Snapshot,
        kind: Some(opts.kind.to_string()),
    };
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

pub(in crate::api) async fn set_pin(app: &App, actor: &Actor, ws: &str, id: String, pin: bool) -> Answer {
    let ws = scoped(app, ws)?;
    crate::repo::layout::validate_snapshot_id(&id)?;
    let opts = ops::prune::PinOptions { id: id.clone(), workspace: Some(ws.clone()), pin, wait: Default::default() };
    ops::prune::set_pin(&app.core, &opts, actor).await?;
    Ok(json(&PinState { id, workspace: ws, pinned: pin }))
}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/snapshots/{id}/pin",
    summary = "Pins a snapshot: retention keeps it",
    params(SnapshotPath),
    responses((status = 200, body = PinState)),
)]
pub(in crate::api) async fn pin(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(SnapshotPath { ws, id }): Path<SnapshotPath>,
) -> Answer {
    set_pin(&app, &actor, &ws, id, true).await
}

#[utoipa::path(
    delete,
    path = "/v1/workspaces/{ws}/snapshots/{id}/pin",
    summary = "Unpins a snapshot",
    params(SnapshotPath),
    responses((status = 200, body = PinState)),
)]
pub(in crate::api) async fn unpin(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(SnapshotPath { ws, id }): Path<SnapshotPath>,
) -> Answer {
    set_pin(&app, &actor, &ws, id, false).await
}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/restores",
    summary = "Restores a snapshot into a new database on the workspace's server (a job)",
    params(WorkspacePath),
    request_body(content = ops::restore::RestoreRequest, content_type = "application/json"),
    responses((status = 202, body = JobStarted, headers(("Location" = String, description = "The job")))),
)]
pub(in crate::api) async fn restore(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(WorkspacePath { ws }): Path<WorkspacePath>,
    bytes: Bytes,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    let mut opts: ops::restore::RestoreOptions = body(&bytes)?;
    opts.workspace = Some(ws.clone());
    // Tables into the live database are their own operation, with its own permission: the
    // route's gate let in who may restore at all, the operation asks for more (again in
    // `start`, and in `ops::restore`).
    let operation = ops::restore::operation_of(&opts);
    allow(&app, &actor, operation.permission(), Some(&ws)).await?;
    // What the restore would refuse before any work, asked now for an answer to this
    // request (the job asks again).
    ops::restore::check_request(&app.core, &opts, &actor).await?;
    let spec = job::JobSpec { workspace: ws, operation, kind: None };
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

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/restores/in-place",
    summary = "Restores a snapshot over the workspace's live database, with an undo (a job; admin)",
    params(WorkspacePath),
    request_body(content = ops::inplace::InPlaceOptions, content_type = "application/json"),
    responses((status = 202, body = JobStarted, headers(("Location" = String, description = "The job")))),
)]
pub(in crate::api) async fn restore_in_place(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(WorkspacePath { ws }): Path<WorkspacePath>,
    bytes: Bytes,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    let mut opts: ops::inplace::InPlaceOptions = body(&bytes)?;
    opts.workspace.clone_from(&ws);
    // What the restore would refuse before any work, asked now (the job asks again).
    ops::inplace::check_request(&opts)?;
    let spec = job::JobSpec { workspace: ws, operation: crate::operation::Operation::RestoreInPlace, kind: None };
    let who = actor.clone();
    start(
        &app,
        &actor,
        spec,
        move |core| async move { ops::inplace::restore_in_place(&core, &opts, &who).await },
        ops::inplace::job_end,
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/restores/undo",
    summary = "Swaps back the newest in-place restore of the workspace (a job; admin)",
    params(WorkspacePath),
    request_body(content = ops::inplace::UndoOptions, content_type = "application/json"),
    responses((status = 202, body = JobStarted, headers(("Location" = String, description = "The job")))),
)]
pub(in crate::api) async fn restore_undo(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(WorkspacePath { ws }): Path<WorkspacePath>,
    bytes: Bytes,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    let mut opts: ops::inplace::UndoOptions = body(&bytes)?;
    opts.workspace = ws.clone();
    ops::inplace::confirmed(&ws, &opts.confirm)?;
    let spec = job::JobSpec { workspace: ws, operation: crate::operation::Operation::RestoreUndo, kind: None };
    let who = actor.clone();
    start(
        &app,
        &actor,
        spec,
        move |core| async move { ops::inplace::undo(&core, &opts, &who).await },
        |_| crate::catalog::JobEnd::default(),
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/prune",
    summary = "Applies retention, or says what it would do (a job)",
    params(WorkspacePath),
    request_body(content = ops::prune::PruneOptions, content_type = "application/json"),
    responses((status = 202, body = JobStarted, headers(("Location" = String, description = "The job")))),
)]
pub(in crate::api) async fn prune(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(WorkspacePath { ws }): Path<WorkspacePath>,
    bytes: Bytes,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    let mut opts: ops::prune::PruneOptions = body(&bytes)?;
    opts.workspace.clone_from(&ws);
    let spec = job::JobSpec { workspace: ws, operation: ops::prune::operation_of(&opts), kind: None };
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
    params(WorkspacePath),
    responses((status = 202, body = JobStarted, headers(("Location" = String, description = "The job")))),
)]
pub(in crate::api) async fn check(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(WorkspacePath { ws }): Path<WorkspacePath>,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    let opts = ops::check::CheckOptions { workspace: ws.clone(), ..Default::default() };
    let spec = job::JobSpec { workspace: ws, operation: crate::operation::Operation::Check, kind: None };
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
    params(WorkspacePath),
    responses((status = 200, body = crate::wal::window::Window)),
)]
pub(in crate::api) async fn window(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(WorkspacePath { ws }): Path<WorkspacePath>,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    Ok(json(&ops::pitr::window(&app.core, &ops::pitr::WindowOptions { workspace: ws }, &actor).await?))
}

#[utoipa::path(
    get,
    path = "/v1/workspaces/{ws}/restore-points",
    summary = "The named restore points, oldest first",
    params(WorkspacePath),
    responses((status = 200, body = [ops::pitr::RestorePoint])),
)]
pub(in crate::api) async fn restore_points(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(WorkspacePath { ws }): Path<WorkspacePath>,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    Ok(json(&ops::pitr::points(&app.core, &ws, &actor).await?))
}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/restore-points",
    summary = "Marks a named restore point",
    params(WorkspacePath),
    request_body(content = ops::pitr::MarkOptions, content_type = "application/json"),
    responses((status = 200, body = ops::pitr::RestorePoint)),
)]
pub(in crate::api) async fn mark(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(WorkspacePath { ws }): Path<WorkspacePath>,
    bytes: Bytes,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    let mut opts: ops::pitr::MarkOptions = body(&bytes)?;
    opts.workspace = ws;
    Ok(json(&ops::pitr::mark(&app.core, &opts, &actor).await?))
}
