//! Restore drills: run one, list them, one report as JSON or JUnit.

#[allow(clippy::wildcard_imports)]
use super::*;

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/drills",
    summary = "Runs a restore drill in a throwaway (a job)",
    params(WorkspacePath),
    request_body(content = ops::drill::DrillOptions, content_type = "application/json"),
    responses((status = 202, body = JobStarted, headers(("Location" = String, description = "The job")))),
)]
pub(in crate::api) async fn run_drill(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(WorkspacePath { ws }): Path<WorkspacePath>,
    bytes: Bytes,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    let mut opts: ops::drill::DrillOptions = body(&bytes)?;
    opts.workspace.clone_from(&ws);
    let spec = job::JobSpec { workspace: ws, operation: crate::operation::Operation::Drill, kind: None };
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
pub(in crate::api) struct Limit {
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/v1/workspaces/{ws}/drills",
    summary = "The workspace's restore drills, newest first",
    params(WorkspacePath, Limit),
    responses((status = 200, body = [ops::drill::DrillEntry])),
)]
pub(in crate::api) async fn drills(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(WorkspacePath { ws }): Path<WorkspacePath>,
    Query(q): Query<Limit>,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    let opts = ops::drill::HistoryOptions { workspace: Some(ws), limit: q.limit.unwrap_or(50).min(1000) };
    Ok(json(&ops::drill::history(&app.core, &opts, &actor).await?))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(in crate::api) struct Format {
    /// `json` (default) or `junit`.
    #[param(pattern = "^(json|junit)$")]
    format: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/workspaces/{ws}/drills/{id}",
    summary = "One drill's report",
    params(WorkspacePath, ("id" = i64, Path, description = "A drill's id"), Format),
    responses((status = 200, description = "The drill's report as JSON, or JUnit XML with `format=junit`", content((ops::drill::DrillEntry = "application/json"), (String = "application/xml")))),
)]
pub(in crate::api) async fn drill_report(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path((ws, id)): Path<(String, i64)>,
    Query(q): Query<Format>,
) -> Answer {
    let ws = scoped(&app, &ws)?;
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
