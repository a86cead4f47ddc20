//! The web console: tidemark's third front end, on the API's listener. It decides nothing:
//! a page reads the API's own answers (each asked through the API's router, so every gate,
//! scope and refusal, and the audit of refusals, are the API's), and a form is translated
//! into the API request it stands for. What it adds is the browser's side: a session instead
//! of a bearer token (`ops::session`), a CSRF token on every form, and headers that keep the
//! pages out of frames, caches and other sites' reach.

mod actions;
mod pages;
mod pages_ws;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maud::Markup;
use serde_json::Value;
use tower::ServiceExt;

use super::{App, Client};
use crate::actor::Actor;
use crate::error::{Error, ErrorKind};
use crate::ops::session::{self, Activity};

/// The session cookie: `__Host-` (Secure, path `/`, no domain: no other host or path may
/// set or read it) when the console is served over HTTPS.
const COOKIE_TLS: &str = "__Host-tidemark-session";
/// Over plain HTTP on loopback, where a browser drops `Secure` cookies and `__Host-` names.
const COOKIE_PLAIN: &str = "tidemark-session";
/// The sign-in form's own CSRF cookie (double submit: before there is a session).
const PRE_TLS: &str = "__Host-tidemark-signin";
const PRE_PLAIN: &str = "tidemark-signin";
/// A page refreshing itself sends this (the session's idle time does not restart).
pub(crate) const REFRESH_HEADER: &str = "x-tidemark-refresh";

/// Every page: scripts and styles from this server only (none inline), no frames, no
/// forms to elsewhere, no referrer.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What the console's handlers share.
#[derive(Clone)]
pub(crate) struct Console {
    pub app: App,
    /// The API's token routes, asked directly (behind their gates) with the session's actor.
    api: Router,
    /// Whether the browser reaches it over HTTPS (TLS here, or a TLS proxy in front:
    /// `allow-plain-http`): the cookies are `Secure` then.
    secure: bool,
}

/// A signed-in request: the session's actor and the CSRF token its forms carry.
#[derive(Clone)]
pub(crate) struct Signed {
    pub actor: Actor,
    pub csrf: String,
}

/// The console's routes (merged into the API's router, behind its address checks).
pub(super) fn router(app: App) -> Router<App> {
    let api = super::routes::v1(app.clone()).with_state(app.clone());
    let secure = app.https;
    let console = Console { app, api, secure };
    let signed = Router::new()
        .route("/", axum::routing::get(pages::home))
        .route("/w/{ws}", axum::routing::get(pages::workspace))
        .route("/w/{ws}/stacks/{kind}/{name}", axum::routing::get(pages::stack))
        .route("/jobs/{id}", axum::routing::get(pages::job))
        .route("/audit", axum::routing::get(pages::audit))
        .route("/tokens", axum::routing::get(pages::tokens))
        .route("/act/{action}", axum::routing::post(actions::act))
        .route("/sign-out", axum::routing::post(sign_out))
        .route_layer(axum::middleware::from_fn_with_state(console.clone(), signed_in));
    Router::new()
        .merge(signed)
        .route("/sign-in", axum::routing::post(sign_in))
        .route("/assets/console.css", axum::routing::get(css))
        .route("/assets/console.js", axum::routing::get(js))
        .layer(axum::middleware::from_fn(headers))
        .with_state(console)
}

/// The headers of every console answer.
async fn headers(request: Request, next: Next) -> Response {
    let asset = request.uri().path().starts_with("/assets/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    let cache = if asset { "public, max-age=3600" } else { "no-store" };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("assets/console.css")).into_response()
}

async fn js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("assets/console.js")).into_response()
}

impl Console {
    fn cookie_name(&self) -> &'static str {
        if self.secure { COOKIE_TLS } else { COOKIE_PLAIN }
    }

    fn pre_name(&self) -> &'static str {
        if self.secure { PRE_TLS } else { PRE_PLAIN }
    }

    /// A cookie for this console: HttpOnly, SameSite=Strict, path `/`, Secure over HTTPS;
    /// `max_age` 0 removes it.
    fn cookie(&self, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let age = max_age.map(|a| format!("; Max-Age={a}")).unwrap_or_default();
        HeaderValue::from_str(&format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict{secure}{age}"))
            .expect("a cookie of tidemark's own characters")
    }

    /// Asks the API: `method path` with `body` (JSON), as `signed`'s actor. The answer's
    /// status and JSON (`Null` for an empty or non-JSON body).
    pub(crate) async fn ask(
        &self,
        actor: &Actor,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("JSON serializes")).unwrap_or_default();
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(bytes))
            .expect("a request of a checked path");
        request.extensions_mut().insert(actor.clone());
        let response = match self.api.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024 * 1024).await.unwrap_or_default();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// [`Console::ask`] for a page's data: the JSON, or the error page the API's refusal
    /// makes.
    pub(crate) async fn read(&self, signed: &Signed, path: &str) -> Result<Value, Response> {
        let (status, value) = self.ask(&signed.actor, Method::GET, path, None).await;
        match status.is_success() {
            true => Ok(value),
            false => Err(pages::failed(Some(signed), status, &value)),
        }
    }

    /// Whether the actor may use the API route `method template` (on `ws`): the route's own
    /// gate, so a button is shown exactly when the API would take its request.
    pub(crate) fn may(&self, actor: &Actor, method: &Method, template: &str, ws: Option<&str>) -> bool {
        self.app
            .gates
            .get(&(method.clone(), template.to_string()))
            .is_some_and(|gate| crate::access::check(&actor.grant(), gate.action(), ws).is_ok())
    }
}

/// The cookie `name` of a request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn client_of(request: &Request) -> Option<std::net::IpAddr> {
    request.extensions().get::<Client>().map(|c| c.0)
}

/// The session, before every signed-in route: a page without one goes to sign-in (a
/// redirect to `/`, which shows the form), a form without one is refused. A state-changing
/// request must carry the session's CSRF token (checked where the form is read).
async fn signed_in(State(console): State<Console>, mut request: Request, next: Next) -> Response {
    let client = client_of(&request);
    let secret = cookie(request.headers(), console.cookie_name()).map(str::to_string);
    let activity = match request.headers().contains_key(REFRESH_HEADER) {
        true => Activity::Refresh,
        false => Activity::Person,
    };
    // No cookie: not signed in (nothing to say); a cookie refused: why (signed out, idle,
    // revoked, ...).
    let refused = match &secret {
        None => None,
        Some(secret) => match session::resume(&console.app.core, secret, client, chrono::Utc::now(), activity).await {
            Ok(session) => {
                let csrf = session::derived(secret, "csrf");
                request.extensions_mut().insert(Signed { actor: session.actor, csrf });
                return next.run(request).await;
            }
            Err(e) => Some(e),
        },
    };
    if request.method() == Method::GET && request.uri().path() == "/" {
        let pre = cookie(request.headers(), console.pre_name()).map(str::to_string);
        return pages::sign_in_page(&console, pre, refused.as_ref().map(Error::message), StatusCode::OK);
    }
    if request.method() == Method::GET {
        let mut response = StatusCode::SEE_OTHER.into_response();
        response.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/"));
        return response;
    }
    let e = refused.unwrap_or_else(|| Error::new(ErrorKind::Unauthenticated, "not signed in: sign in at /"));
    let status = StatusCode::from_u16(e.kind().http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
    pages::failed(None, status, &e.to_json())
}

/// The sign-in form's fields.
#[derive(serde::Deserialize)]
struct SignInForm {
    token: String,
    csrf: String,
}

/// `POST /sign-in`: the token becomes a session cookie (the token itself is never sent
/// back, nor put in a URL or page).
async fn sign_in(State(console): State<Console>, request: Request) -> Response {
    let client = client_of(&request);
    let pre = cookie(request.headers(), console.pre_name()).unwrap_or_default().to_string();
    let bytes = axum::body::to_bytes(request.into_body(), super::BODY_LIMIT).await.unwrap_or_default();
    let Ok(form) = serde_urlencoded_form::<SignInForm>(&bytes) else {
        return pages::sign_in_page(
            &console,
            None,
            Some("the sign-in form was incomplete: try again"),
            StatusCode::BAD_REQUEST,
        );
    };
    if pre.is_empty() || !constant_eq(&pre, &form.csrf) {
        return pages::sign_in_page(
            &console,
            None,
            Some("the sign-in form had expired or came from another site: try again"),
            StatusCode::FORBIDDEN,
        );
    }
    let opts = session::SignInOptions { secret: form.token, address: client };
    match session::sign_in(&console.app.core, &opts, chrono::Utc::now()).await {
        Ok(started) => {
            let lifetime = (started.session.expires_at - chrono::Utc::now()).num_seconds().max(0);
            let mut response = StatusCode::SEE_OTHER.into_response();
            let h = response.headers_mut();
            h.insert(header::LOCATION, HeaderValue::from_static("/"));
            h.append(header::SET_COOKIE, console.cookie(console.cookie_name(), &started.secret, Some(lifetime)));
            h.append(header::SET_COOKIE, console.cookie(console.pre_name(), "", Some(0)));
            response
        }
        Err(e) => {
            if e.kind() == ErrorKind::Unauthenticated
                && let Some(client) = client
            {
                console.app.limits.failed(client);
            }
            let status = StatusCode::from_u16(e.kind().http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
            pages::sign_in_page(&console, None, Some(e.message()), status)
        }
    }
}

/// `POST /sign-out`: the session ends at once (in the catalog: every API server refuses it).
async fn sign_out(State(console): State<Console>, request: Request) -> Response {
    let Some(signed) = request.extensions().get::<Signed>().cloned() else {
        return pages::failed(None, StatusCode::UNAUTHORIZED, &Value::Null);
    };
    let secret = cookie(request.headers(), console.cookie_name()).unwrap_or_default().to_string();
    if let Err(response) = actions::read_form(&signed, request).await {
        return response;
    }
    if let Err(e) = session::sign_out(&console.app.core, &secret, &signed.actor, chrono::Utc::now()).await {
        return pages::failed(Some(&signed), StatusCode::SERVICE_UNAVAILABLE, &e.to_json());
    }
    let mut response = StatusCode::SEE_OTHER.into_response();
    response.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/"));
    response.headers_mut().append(header::SET_COOKIE, console.cookie(console.cookie_name(), "", Some(0)));
    response
}

fn constant_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A form body (`application/x-www-form-urlencoded`) as `T`.
fn serde_urlencoded_form<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(bytes).into_owned().collect();
    let map: serde_json::Map<String, Value> = pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
    serde_json::from_value(Value::Object(map)).map_err(|e| e.to_string())
}

/// An HTML answer.
pub(crate) fn html(status: StatusCode, markup: Markup) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], markup.into_string()).into_response()
}
