//! Copies of a workspace's backups (`[copies.NAME]`): how far each is behind, and a copy
//! job that sends what they lack.

#[allow(clippy::wildcard_imports)]
use super::*;

#[utoipa::path(
    get,
    path = "/v1/workspaces/{ws}/copies",
    summary = "The workspace's copies and how far each is behind the primary",
    params(WorkspacePath),
    responses((status = 200, body = [ops::copy::CopyState])),
)]
pub(in crate::api) async fn copies(
    State(app): State<App>,
    Extension(_actor): Extension<Actor>,
    Path(WorkspacePath { ws }): Path<WorkspacePath>,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    Ok(json(&ops::copy::states(&app.core, &ws).await?))
}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/copies",
    summary = "Copies what the primary holds and the copies lack, checked on the way (a job)",
    params(WorkspacePath),
    request_body(content = ops::copy::CopyRequest, content_type = "application/json"),
    responses((status = 202, body = JobStarted, headers(("Location" = String, description = "The job")))),
)]
pub(in crate::api) async fn run_copy(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(WorkspacePath { ws }): Path<WorkspacePath>,
    bytes: Bytes,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    let asked: ops::copy::CopyRequest = body(&bytes)?;
    let opts = ops::copy::CopyOptions { workspace: ws.clone(), to: asked.to };
    ops::copy::targets(&app.core, opts.to.as_deref())?;
    let spec = job::JobSpec { workspace: ws, operation: crate::operation::Operation::Copy, kind: None };
    let who = actor.clone();
    start(&app, &actor, spec, move |core| async move { ops::copy::copy(&core, &opts, &who).await }, ops::copy::job_end)
        .await
}
