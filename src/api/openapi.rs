//! The API's OpenAPI 3.1 document, generated from the handlers' annotations (utoipa) and
//! served at `/v1/openapi.json`. The copy committed at `docs/openapi.json` is compared with
//! it by a test, so a change of the API shows in review.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use super::routes;

/// An error as every front end reports it (`--json` prints the same).
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong. `kind` is a row of the error table (docs/reference/errors.md).
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `usage`, `config`, `not-found`, `refused`, `integrity`, `unauthenticated`,
    /// `forbidden`, `rate-limited`, ...
    pub kind: String,
    pub message: String,
    /// What tidemark was doing, outermost last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Vec<String>>,
    /// Whether the same request may succeed later unchanged.
    pub temporary: bool,
    /// The command line's exit code for this kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// With `rate-limited`: also in `Retry-After`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

/// `GET /healthz`.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

#[utoipa::path(get, path = "/healthz", summary = "Whether the server answers (no token)", security(()),
    responses((status = 200, body = Health)))]
#[allow(dead_code, clippy::unused_async)]
async fn healthz() {}

#[utoipa::path(get, path = "/v1/openapi.json", summary = "This document (no token)", security(()),
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json")))]
#[allow(dead_code, clippy::unused_async)]
async fn openapi_json() {}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tidemark",
        description = "Backups, restores and restore drills of Postgres-backed workspaces. \
            Every /v1 route takes `Authorization: Bearer tdm_...`; what a token may do is its role's \
            (docs/reference/roles.md). Long work answers 202 with a job to poll.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        healthz,
        openapi_json,
        routes::workspaces,
        routes::workspace_status,
        routes::overview,
        routes::list_snapshots,
        routes::show_snapshot,
        routes::create_snapshot,
        routes::pin,
        routes::unpin,
        routes::drills,
        routes::run_drill,
        routes::drill_report,
        routes::restore,
        routes::restore_in_place,
        routes::restore_undo,
        routes::branches,
        routes::create_branch,
        routes::set_live,
        routes::delete_branch,
        routes::create_export,
        routes::create_link,
        routes::download,
        routes::prune,
        routes::check,
        routes::copies,
        routes::run_copy,
        routes::window,
        routes::restore_points,
        routes::mark,
        routes::stacks,
        routes::stack_show,
        routes::stack_put,
        routes::stack_history,
        routes::stack_diff,
        routes::stack_publish,
        routes::stack_revert,
        routes::metrics,
        routes::jobs,
        routes::show_job,
        routes::cancel_job,
        routes::audit,
        routes::audit_verify,
        routes::fleet,
        routes::tokens,
        routes::token_create,
        routes::token_revoke,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Shared),
)]
struct Document;

/// The bearer scheme for every `/v1` route, and the error answers every route can give.
struct Shared;

/// The statuses of the error table (and the server's own: 405, 413, 429).
const ERRORS: [(&str, &str); 13] = [
    ("400", "Bad input: a malformed parameter or body, an unknown field (`usage`)"),
    ("401", "No token, or one that is malformed, unknown, expired or revoked"),
    ("403", "The token's role, workspaces or addresses do not allow it, or the client's address is refused"),
    ("404", "No such workspace, snapshot, drill, job or stack"),
    ("405", "The route does not take this method"),
    ("409", "Refused in this state, or already exists"),
    ("413", "The body is larger than 64 KiB"),
    ("422", "An object failed its integrity check"),
    ("429", "Too many requests (see Retry-After), or the workspace's heavy jobs are all running"),
    ("499", "Interrupted"),
    ("500", "A bug in tidemark"),
    ("502", "The database refused"),
    ("503", "The database, the repository or the catalog cannot be reached now"),
];

impl Modify for Shared {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("tdm_...").build()),
        );
        doc.security = Some(vec![SecurityRequirement::new("token", Vec::<String>::new())]);
        let error = ContentBuilder::new().schema(Some(Ref::from_schema_name(ErrorBody::name().into_owned()))).build();
        for (status, description) in ERRORS {
            let answer = ResponseBuilder::new().description(description).content("application/json", error.clone());
            components.responses.insert(format!("Error{status}"), answer.build().into());
        }
        for item in doc.paths.paths.values_mut() {
            let operations: [&mut Option<Operation>; 5] =
                [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                for (status, _) in ERRORS {
                    let shared = Ref::new(format!("#/components/responses/Error{status}"));
                    operation.responses.responses.entry(status.to_string()).or_insert(shared.into());
                }
            }
        }
    }
}

/// The document, as served and committed (pretty JSON, a newline at the end).
pub fn document() -> String {
    let mut doc = Document::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let mut text = doc.to_pretty_json().expect("the OpenAPI document serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    /// The committed copy is what the code generates. After an API change:
    /// `TIDEMARK_WRITE_OPENAPI=1 cargo test --lib openapi` writes it.
    #[test]
    fn the_committed_openapi_document_is_the_generated_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
        let generated = super::document();
        if std::env::var_os("TIDEMARK_WRITE_OPENAPI").is_some() {
            fs_err::write(&path, &generated).unwrap();
        }
        let committed = fs_err::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json differs from the API's code: run `TIDEMARK_WRITE_OPENAPI=1 cargo test --lib openapi` \
             and commit it"
        );
        let doc: serde_json::Value = serde_json::from_str(&generated).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "OpenAPI 3.1");
        // Every route the router serves is documented.
        let paths = doc["paths"].as_object().unwrap();
        let routes = super::super::routes::gates();
        for route in &routes {
            let method = route.method.as_str().to_lowercase();
            assert!(
                paths.get(route.path).is_some_and(|p| p.get(&method).is_some()),
                "{route:?} is not in the document"
            );
        }
        assert!(paths.contains_key("/v1/downloads/{ws}/{export}"), "the download link route");
        let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(documented, routes.len() + 3, "healthz, the document itself and downloads");
    }

    /// docs/reference/api.md lists every route of the document (generated from it:
    /// `TIDEMARK_WRITE_DOCS=1 cargo test --lib openapi` rewrites it).
    #[test]
    fn the_api_reference_lists_the_documents_routes() {
        let doc: serde_json::Value = serde_json::from_str(&super::document()).unwrap();
        let mut text = String::from(
            "# HTTP API\n\n<!-- Generated from the OpenAPI document: `TIDEMARK_WRITE_DOCS=1 cargo test --lib openapi` \
             rewrites it. -->\n\nThe API `tidemark serve` serves on `[api] listen` (see [the \
             service](../guide/07-service.md#api)). Its full description, with every request and answer \
             schema, is the OpenAPI 3.1 document it serves at `/v1/openapi.json`, committed as \
             [docs/openapi.json](../openapi.json). Every `/v1` route takes `Authorization: Bearer tdm_...`; \
             what a token may do is its role's: a route needs the right in its `needs` column \
             ([roles](roles.md#roles) says which role has which), on the route's workspace; \
             `/healthz`, `/v1/openapi.json` and download links need no token. Errors are \
             `{\"error\": {\"kind\", ...}}` with the status of their kind \
             ([errors](errors.md#errors-and-exit-codes)).\n\n\
             | method | route | needs | what it does |\n|---|---|---|---|\n",
        );
        let gates = super::super::routes::gates();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let summary = op["summary"].as_str().unwrap_or_default().replace('|', "\\|");
                let gate = gates.iter().find(|r| r.path == path && r.method.as_str().eq_ignore_ascii_case(method));
                let needs = match gate.map(|r| r.gate) {
                    None => "no token".to_string(),
                    Some(super::super::Gate::Needs(action)) => format!("`{}`", action.as_str()),
                    Some(super::super::Gate::AtLeast(action, more)) => format!("`{}`; {more}", action.as_str()),
                };
                text.push_str(&format!("| {} | `{path}` | {needs} | {summary} |\n", method.to_uppercase()));
            }
        }
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference/api.md");
        if std::env::var_os("TIDEMARK_WRITE_DOCS").is_some() {
            fs_err::write(&path, &text).unwrap();
        }
        let committed = fs_err::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "docs/reference/api.md differs from the API: run `TIDEMARK_WRITE_DOCS=1 cargo test --lib openapi` and commit it"
        );
    }
}
