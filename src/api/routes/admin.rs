//! Jobs, the audit trail and tokens.

#[allow(clippy::wildcard_imports)]
use super::*;

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(in crate::api) struct JobsQuery {
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
pub(in crate::api) async fn jobs(
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
    allow(&app, &actor, Action::Read, ws.as_deref().or(grant.workspaces.first().map(String::as_str))).await?;
    let opts = ops::catalog::JobsOptions { workspace: ws, limit: q.limit.unwrap_or(50).min(1000) };
    let listed = ops::catalog::jobs(&app.core, &opts, &actor).await?;
    let visible: Vec<_> =
        listed.into_iter().filter(|j| grant.workspaces.is_empty() || grant.workspaces.contains(&j.workspace)).collect();
    Ok(json(&visible))
}

pub(in crate::api) async fn job_of(app: &App, actor: &Actor, id: i64) -> Result<crate::catalog::Job, ApiError> {
    let job = app.core.catalog().await?.job(id).await?;
    allow(app, actor, Action::Read, Some(&job.workspace)).await?;
    Ok(job)
}

#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    summary = "A job: its phase and progress while it runs, its result at the end",
    params(("id" = i64, Path, description = "A job's id")),
    responses((status = 200, body = crate::catalog::Job)),
)]
pub(in crate::api) async fn show_job(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<i64>,
) -> Answer {
    Ok(json(&job_of(&app, &actor, id).await?))
}

#[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    summary = "Stops a running job (run by this server or, through the catalog, by another process)",
    params(("id" = i64, Path, description = "A job's id")),
    responses((status = 202, body = Cancelling)),
)]
pub(in crate::api) async fn cancel_job(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<i64>,
) -> Answer {
    let job = job_of(&app, &actor, id).await?;
    let stop = app.running.lock().expect("jobs lock").get(&id).cloned();
    ops::job::cancel(&app.core, &job, &actor, stop).await?;
    Ok((StatusCode::ACCEPTED, json(&Cancelling { job: id, cancelling: true })).into_response())
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(in crate::api) struct AuditQuery {
    /// Records from this moment on (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// Records before this moment (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<String>,
    /// Records whose actor (`kind:name`, or the token's id) contains this text.
    actor: Option<String>,
    /// Records of this action (`snapshot`, `api.denied`, ...).
    action: Option<String>,
    /// Records about this workspace.
    workspace: Option<String>,
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
pub(in crate::api) async fn audit(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Query(q): Query<AuditQuery>,
) -> Answer {
    let since = q.since.as_deref().map(crate::wal::window::parse_time).transpose()?;
    let until = q.until.as_deref().map(crate::wal::window::parse_time).transpose()?;
    let records = ops::audit::list(
        &app.core,
        &ops::audit::AuditListOptions { since, until, actor: q.actor, action: q.action, workspace: q.workspace },
        &actor,
    )
    .await?;
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
pub(in crate::api) async fn audit_verify(State(app): State<App>, Extension(actor): Extension<Actor>) -> Answer {
    Ok(json(&ops::audit::verify(&app.core, &actor).await?))
}

#[utoipa::path(
    get,
    path = "/v1/fleet",
    summary = "The tidemark processes sharing the catalog, their heartbeats and what each holds",
    responses((status = 200, body = ops::fleet::FleetReport)),
)]
pub(in crate::api) async fn fleet(State(app): State<App>, Extension(actor): Extension<Actor>) -> Answer {
    Ok(json(&ops::fleet::fleet(&app.core, &actor).await?))
}

#[utoipa::path(
    get,
    path = "/v1/tokens",
    summary = "Tokens (never a secret)",
    responses((status = 200, body = [crate::catalog::tokens::TokenRecord])),
)]
pub(in crate::api) async fn tokens(State(app): State<App>, Extension(actor): Extension<Actor>) -> Answer {
    Ok(json(&ops::token::list(&app.core, &actor).await?))
}

#[utoipa::path(
    post,
    path = "/v1/tokens",
    summary = "Makes a token; its secret is in this answer only",
    request_body(content = ops::token::TokenCreateOptions, content_type = "application/json"),
    responses((status = 201, body = ops::token::TokenCreated)),
)]
pub(in crate::api) async fn token_create(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    bytes: Bytes,
) -> Answer {
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
pub(in crate::api) async fn token_revoke(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(token): Path<String>,
) -> Answer {
    let opts = ops::token::TokenRevokeOptions { token };
    Ok(json(&ops::token::revoke(&app.core, &opts, &actor).await?))
}

#[utoipa::path(
    get,
    path = "/metrics",
    summary = "Prometheus metrics: OpenMetrics when asked for, else the classic text format (a token for all workspaces)",
    responses((status = 200, content_type = "text/plain", body = String)),
)]
pub(in crate::api) async fn metrics(State(app): State<App>, headers: axum::http::HeaderMap) -> Answer {
    crate::api::metrics_text(&app.core, &headers).await
}
