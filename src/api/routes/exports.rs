//! Exports on the server and private, expiring download links to them (`ops::link`).

#[allow(clippy::wildcard_imports)]
use super::*;

/// An export asked over the API: a snapshot as a bundle encrypted to the repository's
/// recipients, kept on the server until downloaded through a link.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct ExportBody {
    /// A snapshot id, or `latest` (default).
    #[schema(pattern = "^([0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}|latest)$")]
    snapshot: Option<String>,
    /// The schema only, no table data.
    #[serde(default)]
    schema_only: bool,
    /// Only these tables' data (`schema.name`).
    #[serde(default)]
    #[schema(max_items = 100)]
    tables: Vec<String>,
}

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
    request_body(content = ExportBody, content_type = "application/json"),
    responses((status = 202, body = ExportStarted, headers(("Location" = String, description = "The job")))),
)]
pub(in crate::api) async fn create_export(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(WorkspacePath { ws }): Path<WorkspacePath>,
    bytes: Bytes,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    let asked: ExportBody = body(&bytes)?;
    ops::check_tables(&asked.tables, "tables")?;
    let export = ops::link::new_export_id();
    let file = ops::link::export_file(&app.core, &ws, &export)?;
    if let Some(dir) = file.parent() {
        fs_err::create_dir_all(dir).map_err(Error::from)?;
    }
    let opts = ops::export::ExportOptions {
        workspace: ws.clone(),
        snapshot: Some(snapshot_or_latest(asked.snapshot.as_deref())?),
        to: file,
        schema_only: asked.schema_only,
        tables: asked.tables,
        ..Default::default()
    };
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

/// How long a link works.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct LinkBody {
    /// `15m` (the default), at most `24h`.
    #[schema(example = "15m")]
    valid_for: Option<String>,
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
    request_body(content = LinkBody, content_type = "application/json"),
    responses((status = 201, body = ops::link::Link)),
)]
pub(in crate::api) async fn create_link(
    State(app): State<App>,
    Extension(actor): Extension<Actor>,
    Path(ExportPath { ws, export }): Path<ExportPath>,
    bytes: Bytes,
) -> Answer {
    let ws = scoped(&app, &ws)?;
    let asked: LinkBody = body(&bytes)?;
    let valid_for = match asked.valid_for {
        Some(text) => Some(
            humantime::parse_duration(&text).map_err(|_| ApiError(Error::usage("valid_for is a duration: 15m, 1h")))?,
        ),
        None => None,
    };
    let link = ops::link::issue(&app.core, &app.links, &actor, &ws, &export, valid_for).await?;
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
