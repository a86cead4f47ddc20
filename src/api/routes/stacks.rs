//! Function stacks: list, show, history, diff, put, publish, revert.

#[allow(clippy::wildcard_imports)]
use super::*;

#[utoipa::path(
    get,
    path = "/v1/workspaces/{ws}/stacks",
    summary = "The workspace's function stacks",
    params(WorkspacePath),
    responses((status = 200, body = [crate::repo::manifest::StackSummary])),
)]
pub(in crate::api) async fn stacks(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(WorkspacePath { ws }): Path<WorkspacePath>,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    let opts = ops::stacks::StackListOptions { workspace: Some(ws) };
    Ok(json(&ops::stacks::list(&app.core, &opts, &actor).await?))
}

/// A stack route's workspace (configured) and `kind/name`.
pub(in crate::api) fn stack_route(app: &App, ws: &str, kind: &str, name: &str) -> Result<(String, String), ApiError> {
    Ok((scoped(app, ws)?, format!("{kind}/{name}")))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(in crate::api) struct StateQuery {
    /// `live` (default), `published`, `version:N`, `change:N`.
    #[param(pattern = "^(live|published|version:[1-9][0-9]{0,17}|change:[1-9][0-9]{0,17})$")]
    state: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/workspaces/{ws}/stacks/{kind}/{name}",
    summary = "A state of a stack",
    params(StackPath, StateQuery),
    responses((status = 200, body = ops::stacks::StackState)),
)]
pub(in crate::api) async fn stack_show(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(StackPath { ws, kind, name }): Path<StackPath>,
    Query(q): Query<StateQuery>,
) -> Answer {
    let (ws, stack) = stack_route(&app, &ws, &kind, &name)?;
    let opts =
        ops::stacks::StackShowOptions { workspace: Some(ws), stack, state: q.state.unwrap_or_else(|| "live".into()) };
    Ok(json(&ops::stacks::show(&app.core, &opts, &actor).await?))
}

#[utoipa::path(
    get,
    path = "/v1/workspaces/{ws}/stacks/{kind}/{name}/history",
    summary = "A stack's changes",
    params(StackPath),
    responses((status = 200, body = [crate::stacks::log::ChangeInfo])),
)]
pub(in crate::api) async fn stack_history(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(StackPath { ws, kind, name }): Path<StackPath>,
) -> Answer {
    let (ws, stack) = stack_route(&app, &ws, &kind, &name)?;
    let opts = ops::stacks::StackOptions { workspace: Some(ws), stack };
    Ok(json(&ops::stacks::history(&app.core, &opts, &actor).await?))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(in crate::api) struct DiffQuery {
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
    params(StackPath, DiffQuery),
    responses((status = 200, body = ops::stacks::DiffReport)),
)]
pub(in crate::api) async fn stack_diff(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(StackPath { ws, kind, name }): Path<StackPath>,
    Query(q): Query<DiffQuery>,
) -> Answer {
    let (ws, stack) = stack_route(&app, &ws, &kind, &name)?;
    let opts = ops::stacks::StackDiffOptions {
        workspace: Some(ws),
        stack,
        from: q.from,
        to: q.to.unwrap_or_else(|| "live".into()),
        // Another workspace would need a scope check of its own: not offered over the API.
        to_workspace: None,
    };
    Ok(json(&ops::stacks::diff(&app.core, &opts, &actor).await?))
}

#[utoipa::path(
    put,
    path = "/v1/workspaces/{ws}/stacks/{kind}/{name}",
    summary = "Writes a stack's live state",
    params(StackPath),
    request_body(content = ops::stacks::StackPutOptions, content_type = "application/json"),
    responses((status = 200, body = crate::stacks::log::PutOutcome)),
)]
pub(in crate::api) async fn stack_put(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(StackPath { ws, kind, name }): Path<StackPath>,
    bytes: Bytes,
) -> Answer {
    let (ws, stack) = stack_route(&app, &ws, &kind, &name)?;
    // The API records the token's name as the author: nobody else can be claimed.
    let mut opts: ops::stacks::StackPutOptions = body(&bytes)?;
    (opts.workspace, opts.stack) = (Some(ws), stack);
    Ok(json(&ops::stacks::put(&app.core, &opts, &actor).await?))
}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/stacks/{kind}/{name}/publish",
    summary = "Publishes a stack's live state",
    params(StackPath),
    request_body(content = ops::stacks::StackPublishOptions, content_type = "application/json"),
    responses((status = 200, body = crate::stacks::log::Published)),
)]
pub(in crate::api) async fn stack_publish(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(StackPath { ws, kind, name }): Path<StackPath>,
    bytes: Bytes,
) -> Answer {
    let (ws, stack) = stack_route(&app, &ws, &kind, &name)?;
    let mut opts: ops::stacks::StackPublishOptions = body(&bytes)?;
    (opts.workspace, opts.stack) = (Some(ws), stack);
    Ok(json(&ops::stacks::publish(&app.core, &opts, &actor).await?))
}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/stacks/{kind}/{name}/revert",
    summary = "Makes an earlier state live again",
    params(StackPath),
    request_body(content = ops::stacks::StackRevertOptions, content_type = "application/json"),
    responses((status = 200, body = crate::stacks::log::PutOutcome)),
)]
pub(in crate::api) async fn stack_revert(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(StackPath { ws, kind, name }): Path<StackPath>,
    bytes: Bytes,
) -> Answer {
    let (ws, stack) = stack_route(&app, &ws, &kind, &name)?;
    let mut opts: ops::stacks::StackRevertOptions = body(&bytes)?;
    (opts.workspace, opts.stack) = (Some(ws), stack);
    Ok(json(&ops::stacks::revert(&app.core, &opts, &actor).await?))
}
