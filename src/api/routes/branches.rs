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
    request_body(content = ops::branch::BranchCreateOptions, content_type = "application/json"),
    responses((status = 202, body = JobStarted, headers(("Location" = String, description = "The job")))),
)]
pub(in crate::api) async fn create_branch(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(WorkspacePath { ws }): Path<WorkspacePath>,
    bytes: Bytes,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    let mut opts: ops::branch::BranchCreateOptions = body(&bytes)?;
    opts.workspace = ws.clone();
    // Refused here rather than in the job (the operation asks again).
    opts.check()?;
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
    request_body(content = ops::branch::SetLiveOptions, content_type = "application/json"),
    responses((status = 202, body = JobStarted, headers(("Location" = String, description = "The job")))),
)]
pub(in crate::api) async fn set_live(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(BranchPath { ws, name }): Path<BranchPath>,
    bytes: Bytes,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    let mut opts: ops::branch::SetLiveOptions = body(&bytes)?;
    ops::branch::check_name(&ws, &name)?;
    (opts.workspace, opts.name) = (ws.clone(), name);
    ops::inplace::confirmed(&ws, &opts.confirm)?;
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
