//! Exports on the server and private, expiring download links to them (`ops::link`).

#[allow(clippy::wildcard_imports)]
use super::*;

/// A started export: its job, and the export's id for links once the job has succeeded.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(in crate::api) struct ExportStarted {
    job: i64,
    location: String,
    export: String,
}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/exports",
    summary = "Exports a snapshot as an encrypted bundle kept on the server (a job; operator, admin)",
    params(WorkspacePath),
    request_body(content = ops::export::ExportOptions, content_type = "application/json"),
    responses((status = 202, body = ExportStarted, headers(("Location" = String, description = "The job")))),
)]
pub(in crate::api) async fn create_export(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(WorkspacePath { ws }): Path<WorkspacePath>,
    bytes: Bytes,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    let mut opts: ops::export::ExportOptions = body(&bytes)?;
    opts.workspace.clone_from(&ws);
    // What the export would refuse before any work, asked now (the job asks again).
    ops::export::check_request(&opts)?;
    let export = ops::link::place_on_server(&app.core, &mut opts)?;
    let spec = job::JobSpec { workspace: ws, operation: crate::operation::Operation::Export, kind: None };
    let who = actor.clone();
    let work = move |core: Core| async move { ops::export::export(&core, &opts, &who).await };
    let started = start(&app, &actor, spec, work, ops::export::job_end).await?;
    if started.status() != StatusCode::ACCEPTED {
        return Ok(started); // refused (a heavy-job cap): no export was started
    }
    // The job's answer, with the export's id.
    let location =
        started.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let job = location.rsplit('/').next().and_then(|j| j.parse().ok()).unwrap_or_default();
    let mut response =
        (StatusCode::ACCEPTED, json(&ExportStarted { job, location: location.clone(), export })).into_response();
    if let Ok(value) = location.parse() {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// An export in a path.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(in crate::api) struct ExportPath {
    /// A workspace name
    #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,47}$", example = "shop")]
    ws: String,
    /// An export id (32 lowercase hex digits)
    #[param(pattern = "^[0-9a-f]{32}$")]
    export: String,
}

#[utoipa::path(
    post,
    path = "/v1/workspaces/{ws}/exports/{export}/links",
    summary = "A private download link to an export, bound to this token, expiring (operator, admin)",
    params(ExportPath),
    request_body(content = ops::link::LinkOptions, content_type = "application/json"),
    responses((status = 201, body = ops::link::Link)),
)]
pub(in crate::api) async fn create_link(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(ExportPath { ws, export }): Path<ExportPath>,
    bytes: Bytes,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    let mut opts: ops::link::LinkOptions = body(&bytes)?;
    (opts.workspace, opts.export) = (ws, export);
    let link = ops::link::issue(&app.core, &app.links, &actor, &opts).await?;
    Ok((StatusCode::CREATED, json(&link)).into_response())
}

/// What a download link carries.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(in crate::api) struct LinkQuery {
    /// The token the link was issued to (its id, not its secret)
    token: String,
    /// When the link dies (Unix seconds)
    expires: i64,
    /// The link's signature
    sig: String,
}

#[utoipa::path(
    get,
    path = "/v1/downloads/{ws}/{export}",
    summary = "Downloads an export through a link (no token: the link is the credential; address rules apply)",
    params(ExportPath, LinkQuery),
    security(()),
    responses((status = 200, content_type = "application/octet-stream", description = "The bundle")),
)]
pub(in crate::api) async fn download(
    State(app): State<App>,
    client: Option<Extension<super::super::Client>>,
    Path(ExportPath { ws, export }): Path<ExportPath>,
    Query(q): Query<LinkQuery>,
) -> Answer {
    let presented =
        ops::link::Presented { workspace: ws, export: export.clone(), token: q.token, expires: q.expires, sig: q.sig };
    let client = client.map(|Extension(c)| c.0);
    let redeemed = ops::link::redeem(&app.core, &app.links, &presented, client.map(|c| c.to_string())).await;
    if let (Err(e), Some(client)) = (&redeemed, client)
        && e.kind() == ErrorKind::Forbidden
    {
        app.limits.failed(client); // guessing at links is guessing at credentials
    }
    let file = redeemed?;
    let opened = tokio::fs::File::open(&file).await.map_err(Error::from)?;
    let size = opened.metadata().await.map_err(Error::from)?.len();
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(opened));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{export}.tidemark\"")),
        ],
        body,
    )
        .into_response())
}
