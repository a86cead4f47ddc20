//! Branches over HTTP (`ops::branch`): listed by anyone who reads the workspace, created
//! like a restore into a new database (operator, admin), made live like an in-place restore
//! and deleted (admin only).

#[allow(clippy::wildcard_imports)]
use super::*;

/// The branches of a workspace.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(in crate::api) struct BranchList {
    branches: Vec<ops::branch::BranchInfo>,
}

/// A branch asked over the API: a snapshot (or a moment) of the workspace restored into a
/// new database beside it.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct BranchBody {
    /// The branch's name: lowercase letters, digits, `_` and `-`.
    #[schema(pattern = "^[a-z0-9_-]{1,40}$", example = "try-42")]
    name: String,
    /// A snapshot id, or `latest` (the default unless `time`).
    #[schema(pattern = "^([0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}|latest)$")]
    from: Option<String>,
    /// A moment instead of a snapshot (`2026-11-22 10:15:00+00`).
    time: Option<String>,
    /// Parallel connections loading tables (default: one per core).
    #[schema(minimum = 1, maximum = 32)]
    jobs: Option<usize>,
}

/// A branch in a path.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(in crate::api) struct BranchPath {
    /// A workspace name
    #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop")]
    ws: String,
    /// A branch name
    #[param(pattern = "^[a-z0-9_-]{1,40}$", example = "try-42")]
    name: String,
}

/// Making a branch live: the workspace's name repeated (admin only).
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct SetLiveBody {
    /// The workspace's name again: its live database is replaced.
    confirm: String,
    /// Drop the replaced database after the switch (no undo then).
    #[serde(default)]
    drop_previous: bool,
}

/// Deleting a branch: its name repeated.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(in crate::api) struct DeleteBranchQuery {
    /// The branch's name again: its database is dropped.
    confirm: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/workspaces/{ws}/branches",
    summary = "The workspace's branches: source, moment, size, age",
    params(WorkspacePath),
    responses((status = 200, body = BranchList)),
)]
pub(in crate::api) async fn branches(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(WorkspacePath { ws }): Path<WorkspacePath>,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    Ok(json(&BranchList { branches: ops::branch::list(&app.core, Some(&ws), &actor).await? }))
}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/branches",
    summary = "Restores a snapshot (or a moment) into a new database beside the workspace's, as its branch (a job)",
    params(WorkspacePath),
    request_body(content = BranchBody, content_type = "application/json"),
    responses((status = 202, body = JobStarted, headers(("Location" = String, description = "The job")))),
)]
pub(in crate::api) async fn create_branch(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(WorkspacePath { ws }): Path<WorkspacePath>,
    bytes: Bytes,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    let asked: BranchBody = body(&bytes)?;
    // Refused here rather than in the job: a bad name, both a snapshot and a time, a moment
    // that is none, too many connections.
    ops::branch::check_name(&ws, &asked.name)?;
    let from = crate::restore::RestoreSource::from_options(asked.from.as_deref(), asked.time.as_deref())?
        .snapshot()
        .map(str::to_string);
    ops::check_jobs(asked.jobs)?;
    let opts = ops::branch::BranchCreateOptions {
        workspace: ws.clone(),
        name: asked.name,
        from,
        time: asked.time,
        jobs: asked.jobs,
        tidemark_command: None,
    };
    let spec = job::JobSpec { workspace: ws, operation: crate::operation::Operation::BranchCreate, kind: None };
    let who = actor.clone();
    let end = ops::branch::create_job_end;
    start(&app, &actor, spec, move |core| async move { ops::branch::create(&core, &opts, &who).await }, end).await
}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/branches/{name}/set-live",
    summary = "Makes a branch the workspace's live database, after a pre-restore snapshot; undo swaps back (a job; admin)",
    params(BranchPath),
    request_body(content = SetLiveBody, content_type = "application/json"),
    responses((status = 202, body = JobStarted, headers(("Location" = String, description = "The job")))),
)]
pub(in crate::api) async fn set_live(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(BranchPath { ws, name }): Path<BranchPath>,
    bytes: Bytes,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    let asked: SetLiveBody = body(&bytes)?;
    ops::branch::check_name(&ws, &name)?;
    ops::inplace::confirmed(&ws, &asked.confirm)?;
    let opts = ops::branch::SetLiveOptions {
        workspace: ws.clone(),
        name,
        confirm: asked.confirm,
        drop_previous: asked.drop_previous,
        ..Default::default()
    };
    let spec = job::JobSpec { workspace: ws, operation: crate::operation::Operation::BranchSetLive, kind: None };
    let who = actor.clone();
    start(
        &app,
        &actor,
        spec,
        move |core| async move { ops::branch::set_live(&core, &opts, &who).await },
        |_| JobEnd::default(),
    )
    .await
}

#[utoipa::path(
    delete,
    path = "/v1/workspaces/{ws}/branches/{name}",
    summary = "Drops a branch's database and forgets the branch (admin)",
    params(BranchPath, DeleteBranchQuery),
    responses((status = 200, body = ops::branch::BranchInfo)),
)]
pub(in crate::api) async fn delete_branch(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(BranchPath { ws, name }): Path<BranchPath>,
    Query(q): Query<DeleteBranchQuery>,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    ops::branch::check_name(&ws, &name)?;
    let opts = ops::branch::BranchDeleteOptions { workspace: ws, name, confirm: q.confirm.unwrap_or_default() };
    Ok(json(&ops::branch::delete(&app.core, &opts, &actor).await?))
}
