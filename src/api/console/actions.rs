//! The console's forms: each is one API request (the [`ACTIONS`] table names its route), its
//! fields the request's JSON fields. A form carries the session's CSRF token, checked
//! before anything else; the API's own gate then decides, as for any caller.

use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::{Console, Signed, constant_eq, pages};

/// One form of the console: the API route it stands for.
pub(crate) struct ActionSpec {
    /// Its name in `/act/{name}`.
    pub name: &'static str,
    pub method: Method,
    /// The API route's template; each `{param}` is taken from the form's field of that name.
    pub template: &'static str,
    /// Fields that are lists (comma- or space-separated in the form).
    pub lists: &'static [&'static str],
    /// Fields that are checkboxes (present: true).
    pub flags: &'static [&'static str],
}

const fn spec(
    name: &'static str,
    method: Method,
    template: &'static str,
    lists: &'static [&'static str],
    flags: &'static [&'static str],
) -> ActionSpec {
    ActionSpec { name, method, template, lists, flags }
}

/// Every form the console has. A unit test checks each names a route of the API's table.
pub(crate) const ACTIONS: &[ActionSpec] = &[
    spec("snapshot", Method::POST, "/v1/workspaces/{ws}/snapshots", &[], &["no_media"]),
    spec("pin", Method::POST, "/v1/workspaces/{ws}/snapshots/{id}/pin", &[], &[]),
    spec("unpin", Method::DELETE, "/v1/workspaces/{ws}/snapshots/{id}/pin", &[], &[]),
    spec("drill", Method::POST, "/v1/workspaces/{ws}/drills", &[], &[]),
    spec("restore", Method::POST, "/v1/workspaces/{ws}/restores", &["tables", "as"], &["into_live", "no_media"]),
    spec("in-place", Method::POST, "/v1/workspaces/{ws}/restores/in-place", &[], &["drop_previous"]),
    spec("undo", Method::POST, "/v1/workspaces/{ws}/restores/undo", &[], &[]),
    spec("branch", Method::POST, "/v1/workspaces/{ws}/branches", &[], &[]),
    spec("export", Method::POST, "/v1/workspaces/{ws}/exports", &["tables"], &["schema_only"]),
    spec("mark", Method::POST, "/v1/workspaces/{ws}/restore-points", &[], &[]),
    spec("cancel", Method::DELETE, "/v1/jobs/{id}", &[], &[]),
    spec("token-create", Method::POST, "/v1/tokens", &["workspaces", "allow_ips"], &["never_expires"]),
    spec("token-revoke", Method::DELETE, "/v1/tokens/{token}", &[], &[]),
];

/// The form named `name`.
pub(crate) fn action(name: &str) -> Option<&'static ActionSpec> {
    ACTIONS.iter().find(|a| a.name == name)
}

/// Fields a form has that are not the request's: the CSRF token, and where to go after.
const CONTROL: [&str; 2] = ["csrf", "back"];

/// A form's fields, once its CSRF token is the session's (else a 403 page).
pub(crate) async fn read_form(signed: &Signed, request: Request) -> Result<Vec<(String, String)>, Response> {
    let bytes = axum::body::to_bytes(request.into_body(), crate::api::BODY_LIMIT).await.map_err(|_| {
        pages::failed(Some(signed), StatusCode::PAYLOAD_TOO_LARGE, &Value::String("the form is too large".into()))
    })?;
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(&bytes).into_owned().collect();
    let csrf = fields.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str()).unwrap_or_default();
    if !constant_eq(csrf, &signed.csrf) {
        return Err(forged(signed));
    }
    Ok(fields)
}

fn forged(signed: &Signed) -> Response {
    let e = crate::error::Error::new(
        crate::error::ErrorKind::Forbidden,
        "the form did not carry this session's CSRF token (a page from another site, or an old one): reload the page",
    );
    pages::failed(Some(signed), StatusCode::FORBIDDEN, &e.to_json())
}

/// `POST /act/{name}`: the form, as its API request. A job started goes to the job's page; a
/// token made shows its secret once; anything else goes back to the page the form was on.
pub(crate) async fn act(State(console): State<Console>, Path(name): Path<String>, request: Request) -> Response {
    let Some(signed) = request.extensions().get::<Signed>().cloned() else {
        return pages::failed(None, StatusCode::UNAUTHORIZED, &Value::Null);
    };
    let fields = match read_form(&signed, request).await {
        Ok(fields) => fields,
        Err(response) => {
            let refused = crate::error::Error::new(crate::error::ErrorKind::Forbidden, "no CSRF token");
            super::super::deny(&console.app, &signed.actor, &format!("/act/{name}"), &refused).await;
            return response;
        }
    };
    let Some(spec) = action(&name) else {
        return pages::failed(Some(&signed), StatusCode::NOT_FOUND, &Value::String(format!("no form {name:?}")));
    };
    let back = fields.iter().find(|(k, _)| k == "back").map(|(_, v)| v.clone()).filter(|b| local(b));
    let (path, body) = match request_of(spec, &fields) {
        Ok(request) => request,
        Err(message) => {
            let e = crate::error::Error::usage(message);
            return pages::failed(Some(&signed), StatusCode::BAD_REQUEST, &e.to_json());
        }
    };
    let body = (spec.method != Method::DELETE).then_some(body);
    let (status, answer) = console.ask(&signed.actor, spec.method.clone(), &path, body.as_ref()).await;
    if !status.is_success() {
        return pages::failed(Some(&signed), status, &answer);
    }
    if spec.name == "token-create" {
        return pages::token_created(&signed, &answer);
    }
    let to = match answer.get("job").and_then(Value::as_i64) {
        Some(job) if status == StatusCode::ACCEPTED && spec.name != "cancel" => format!("/jobs/{job}"),
        _ => back.unwrap_or_else(|| "/".into()),
    };
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(to) = HeaderValue::from_str(&to) {
        response.headers_mut().insert(header::LOCATION, to);
    }
    response
}

/// A path on this server (never `//host` or a scheme: no open redirect).
fn local(path: &str) -> bool {
    path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') && !path.chars().any(char::is_control)
}

/// The API request a form stands for: the route's path (its parameters from the form,
/// percent-encoded) and the JSON body of the other non-empty fields.
///
/// Errors: a message naming a parameter the form lacks.
fn request_of(spec: &ActionSpec, fields: &[(String, String)]) -> Result<(String, Value), String> {
    let mut path = spec.template.to_string();
    let mut params = Vec::new();
    while let Some(open) = path.find('{') {
        let close = path[open..].find('}').map(|c| open + c).ok_or("a route template without its end")?;
        let param = path[open + 1..close].to_string();
        let value = fields.iter().find(|(k, _)| *k == param).map(|(_, v)| v.trim()).unwrap_or_default();
        if value.is_empty() {
            return Err(format!("the form lacks {param}"));
        }
        let encoded = percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string();
        path.replace_range(open..=close, &encoded);
        params.push(param);
    }
    let mut body = Map::new();
    for (key, value) in fields {
        if CONTROL.contains(&key.as_str()) || params.contains(key) {
            continue;
        }
        let value = value.trim();
        if spec.flags.contains(&key.as_str()) {
            body.insert(key.clone(), Value::Bool(true));
        } else if spec.lists.contains(&key.as_str()) {
            let items: Vec<Value> = value
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect();
            if !items.is_empty() {
                body.insert(key.clone(), Value::Array(items));
            }
        } else if !value.is_empty() {
            body.insert(key.clone(), Value::String(value.to_string()));
        }
    }
    Ok((path, Value::Object(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_is_a_route_of_the_apis_table_with_its_gate() {
        let gates = crate::api::gates();
        for a in ACTIONS {
            assert!(
                gates.iter().any(|r| r.method == a.method && r.path == a.template),
                "{} names {} {}, which the API does not route",
                a.name,
                a.method,
                a.template
            );
            assert_eq!(ACTIONS.iter().filter(|b| b.name == a.name).count(), 1, "{}", a.name);
        }
    }

    #[test]
    fn a_form_becomes_its_request_and_nothing_more() {
        let form = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let restore = action("restore").unwrap();
        let (path, body) = request_of(
            restore,
            &form(&[
                ("ws", "shop"),
                ("csrf", "x"),
                ("back", "/w/shop"),
                ("tables", "public.a, public.b"),
                ("into_live", "on"),
                ("database", ""),
                ("snapshot", " latest "),
            ]),
        )
        .unwrap();
        assert_eq!(path, "/v1/workspaces/shop/restores");
        assert_eq!(
            body,
            serde_json::json!({"tables": ["public.a", "public.b"], "into_live": true, "snapshot": "latest"})
        );
        // A parameter is encoded: it cannot climb out of its place in the path.
        let (path, _) = request_of(action("pin").unwrap(), &form(&[("ws", "../tokens"), ("id", "a/b?c")])).unwrap();
        assert_eq!(path, "/v1/workspaces/%2E%2E%2Ftokens/snapshots/a%2Fb%3Fc/pin");
        assert!(request_of(action("pin").unwrap(), &form(&[("ws", "shop")])).unwrap_err().contains("id"));
        assert!(local("/w/shop") && !local("//evil.example") && !local("https://evil.example") && !local("/\\evil"));
    }
}
