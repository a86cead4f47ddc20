//! The console's pages, server-rendered (maud: templates compiled into the binary, every
//! value escaped). Each page reads the API's answers (`Console::read`) and shows them; a
//! button is shown only when the API's gate for its route would let the actor through.
//!
//! Longer than ~300 lines: one template per page (overview, workspace, job, stack, audit,
//! tokens, sign-in, errors) and the small formatters they share.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use super::{Console, Signed, html as answer};
use crate::access::Action;

/// The page around every page: a skip link, the navigation the actor may use, sign-out.
fn layout(title: &str, signed: Option<&Signed>, body: Markup) -> Markup {
    let body = maud::PreEscaped(body.into_string());
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · tidemark" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    nav aria-label="Main" {
                        a.brand href="/" { "tidemark" }
                        @if let Some(s) = signed {
                            @if allowed(s, Action::Read) { a href="/" { "Overview" } }
                            @if allowed(s, Action::ReadAudit) { a href="/audit" { "Audit" } }
                            @if allowed(s, Action::ManageTokens) { a href="/tokens" { "Tokens" } }
                            span.who { (s.actor.name) " · " (s.actor.grant().role) }
                            form.inline method="post" action="/sign-out" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" { (body) }
            }
        }
    }
}

fn allowed(signed: &Signed, action: Action) -> bool {
    crate::access::check(&signed.actor.grant(), action, None).is_ok()
}

/// A form posting to `/act/{name}` with the session's CSRF token and the page to come back to.
pub(crate) fn form(signed: &Signed, name: &str, back: &str, label: &str, fields: Markup) -> Markup {
    let fields = maud::PreEscaped(fields.into_string());
    html! {
        form.action method="post" action={"/act/" (name)} {
            input type="hidden" name="csrf" value=(signed.csrf);
            input type="hidden" name="back" value=(back);
            (fields)
            button type="submit" { (label) }
        }
    }
}

/// The error page of a refusal (the API's error body, or a message).
pub(crate) fn failed(signed: Option<&Signed>, status: StatusCode, body: &Value) -> Response {
    let message = body["error"]["message"].as_str().or(body.as_str()).unwrap_or("the request was refused");
    let kind = body["error"]["kind"].as_str().unwrap_or("refused");
    let page = layout(
        "Refused",
        signed,
        html! {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            p.error role="alert" { (kind) ": " (message) }
            p { a href="/" { "Back to the overview" } }
        },
    );
    answer(status, page)
}

/// The sign-in page, with its double-submit CSRF value (cookie and field): the browser's
/// own when it has one (another tab's form stays good), else a new one.
pub(crate) fn sign_in_page(
    console: &Console,
    pre: Option<String>,
    notice: Option<&str>,
    status: StatusCode,
) -> Response {
    let pre = pre
        .filter(|p| p.len() == 32 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()));
    let page = layout(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            @if let Some(n) = notice { p.error role="alert" { (n) } }
            form.signin method="post" action="/sign-in" {
                input type="hidden" name="csrf" value=(pre);
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="off" required placeholder="tdm_…";
                button type="submit" { "Sign in" }
            }
            p.hint { "Sign in with a tidemark API token (" code { "tidemark token create" } "). The token is not kept in the browser: a session cookie is, which ends after an hour without use, at sign-out, or when the token is revoked." }
        },
    );
    let mut response = answer(status, page);
    let cookie = console.cookie(console.pre_name(), &pre, Some(3600));
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

pub(super) fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

pub(super) fn time_of(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc))
}

/// `2026-12-07 15:04:05 UTC`.
pub(super) fn when(v: &Value) -> String {
    time_of(v).map_or_else(|| "—".into(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// A duration as people read it: `42 s`, `7 min`, `3 h`, `2 d`.
pub(super) fn span(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..172_800 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

pub(super) fn ago(v: &Value, now: DateTime<Utc>) -> String {
    time_of(v).map_or_else(|| "never".into(), |t| format!("{} ago", span((now - t).num_seconds())))
}

pub(super) fn size(v: &Value) -> String {
    let Some(n) = v.as_u64() else { return "—".into() };
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut x, mut unit) = (n as f64, 0);
    while x >= 1024.0 && unit < UNITS.len() - 1 {
        x /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{x:.1} {}", UNITS[unit]) }
}

pub(super) fn badge(state: &str) -> Markup {
    html! { span class={"badge " (state)} { (state) } }
}

/// `GET /`: the overview (the sign-in page when signed out: see `signed_in`).
pub(crate) async fn home(State(console): State<Console>, axum::Extension(signed): axum::Extension<Signed>) -> Response {
    if !allowed(&signed, Action::Read) {
        let body = html! {
            h1 { "Signed in" }
            p { "This role reads no workspaces." }
            @if allowed(&signed, Action::ReadAudit) { p { a href="/audit" { "The audit trail" } } }
        };
        return answer(StatusCode::OK, layout("Overview", Some(&signed), body));
    }
    let overview = match console.read(&signed, "/v1/overview").await {
        Ok(v) => v,
        Err(page) => return page,
    };
    let now = time_of(&overview["at"]).unwrap_or_else(Utc::now);
    let rows = overview["workspaces"].as_array().cloned().unwrap_or_default();
    let body = html! {
        h1 { "Workspaces" }
        section #overview data-refresh="15" aria-live="polite" {
            p.hint { (rows.len()) " workspaces, worst first · read " (when(&overview["at"])) }
            table.overview {
                thead { tr {
                    th scope="col" { "Workspace" } th scope="col" { "Health" } th scope="col" { "Newest snapshot" }
                    th scope="col" { "Newest passing drill" } th scope="col" { "Point-in-time window" }
                    th scope="col" { "Size" } th scope="col" { "Next run" }
                } }
                tbody {
                    @for r in &rows {
                        tr class={"state-" (text(r, "state"))} {
                            th scope="row" data-label="Workspace" { a href={"/w/" (text(r, "workspace"))} { (text(r, "workspace")) } }
                            td data-label="Health" {
                                (badge(text(r, "state")))
                                @for p in r["problems"].as_array().into_iter().flatten() { div.problem { (p.as_str().unwrap_or("")) } }
                                @for j in r["running"].as_array().into_iter().flatten() { div.running { "running: " (j.as_str().unwrap_or("")) } }
                            }
                            td data-label="Newest snapshot" { (ago(&r["newest_snapshot_at"], now)) }
                            td data-label="Newest passing drill" {
                                @let d = &r["last_passing_drill"];
                                @if d.is_object() {
                                    "RTO " (format!("{:.1} s", d["rto_seconds"].as_f64().unwrap_or(0.0))) ", " (ago(&d["finished_at"], now))
                                } @else { "none" }
                                @if r["last_drill"]["passed"] == false { div.problem { "the newest drill failed " (ago(&r["last_drill"]["finished_at"], now)) } }
                            }
                            td data-label="Point-in-time window" {
                                @if r["pitr_latest"].is_string() {
                                    (when(&r["pitr_earliest"])) " → " (when(&r["pitr_latest"]))
                                    " (lag " (span(r["rpo_seconds"].as_i64().unwrap_or(0))) ")"
                                } @else { "—" }
                            }
                            td data-label="Size" { (size(&r["repository_bytes"])) }
                            td data-label="Next run" {
                                @if let Some(at) = r["next_run"].get("at") { (when(at)) " (" (text(&r["next_run"], "policy")) ")" } @else { "none scheduled" }
                            }
                        }
                    }
                }
            }
        }
    };
    answer(StatusCode::OK, layout("Overview", Some(&signed), body))
}

/// The query of a workspace's page: the snapshot page to show; `part`: only the section
/// a page refreshing itself asks for (what that section needs is all that is read).
#[derive(serde::Deserialize)]
pub(crate) struct WorkspaceQuery {
    before: Option<String>,
    part: Option<String>,
}

/// A workspace's health line.
fn summary(overview: &Value) -> Markup {
    let row = overview["workspaces"].get(0).cloned().unwrap_or(Value::Null);
    let now = time_of(&overview["at"]).unwrap_or_else(Utc::now);
    html! {
        section #summary data-refresh="15" aria-live="polite" {
            p { (badge(text(&row, "state"))) " newest snapshot " (ago(&row["newest_snapshot_at"], now)) " · " (size(&row["repository_bytes"])) " in the repository" }
            @for p in row["problems"].as_array().into_iter().flatten() { p.problem { (p.as_str().unwrap_or("")) } }
            @for c in row["copies"].as_array().into_iter().flatten() {
                p.copy { "copy " strong { (text(c, "name")) } ": "
                    @if c["caught_up_to"].is_null() { "never copied to" }
                    @else { "holds everything before " (when(&c["caught_up_to"])) " (" (ago(&c["caught_up_to"], now)) ") · " (c["snapshots"]) " snapshots" }
                }
            }
        }
    }
}

/// `GET /w/{ws}`: one workspace.
pub(crate) async fn workspace(
    State(console): State<Console>,
    axum::Extension(signed): axum::Extension<Signed>,
    Path(ws): Path<String>,
    Query(q): Query<WorkspaceQuery>,
) -> Response {
    if crate::config::validate_workspace_name(&ws).is_err() {
        return failed(Some(&signed), StatusCode::NOT_FOUND, &Value::String("no such workspace".into()));
    }
    let back = format!("/w/{ws}");
    let overview_path = format!("/v1/overview?workspace={ws}");
    let jobs_path = format!("/v1/jobs?workspace={ws}&limit=15");
    match q.part.as_deref() {
        Some("jobs") => {
            let jobs = console.read(&signed, &jobs_path).await;
            let part = super::pages_ws::jobs(&console, &signed, &back, jobs.ok().as_ref());
            return answer(StatusCode::OK, layout(&ws, Some(&signed), part));
        }
        Some("summary") => {
            let part = match console.read(&signed, &overview_path).await {
                Ok(overview) => summary(&overview),
                Err(page) => return page,
            };
            return answer(StatusCode::OK, layout(&ws, Some(&signed), part));
        }
        _ => {}
    }
    let before = q.before.filter(|b| crate::repo::layout::validate_snapshot_id(b).is_ok());
    let page = format!(
        "/v1/workspaces/{ws}/snapshots?limit={PAGE}{}",
        before.as_deref().map(|b| format!("&before={b}")).unwrap_or_default()
    );
    let base = format!("/v1/workspaces/{ws}");
    let paths = [
        overview_path,
        jobs_path,
        format!("{base}/drills?limit=10"),
        format!("{base}/pitr"),
        format!("{base}/restore-points"),
        format!("{base}/stacks"),
    ];
    let (overview, snapshots, jobs, drills, window, points, stacks) = tokio::join!(
        console.read(&signed, &paths[0]),
        console.read(&signed, &page),
        console.read(&signed, &paths[1]),
        console.read(&signed, &paths[2]),
        console.read(&signed, &paths[3]),
        console.read(&signed, &paths[4]),
        console.read(&signed, &paths[5]),
    );
    let overview = match overview {
        Ok(v) => v,
        Err(page) => return page,
    };
    let now = time_of(&overview["at"]).unwrap_or_else(Utc::now);
    let snapshots = snapshots.ok().and_then(|v| v.as_array().cloned()).unwrap_or_default();
    let body = html! {
        h1 { "Workspace " (ws) }
        (summary(&overview))
        (super::pages_ws::actions(&console, &signed, &ws, &back, &snapshots))
        (super::pages_ws::jobs(&console, &signed, &back, jobs.ok().as_ref()))
        (super::pages_ws::snapshots(&console, &signed, &ws, &back, &snapshots, before.is_some()))
        (super::pages_ws::timeline(window.ok().as_ref(), points.ok().as_ref(), &snapshots))
        (super::pages_ws::drills(drills.ok().as_ref(), now))
        (super::pages_ws::stacks(&ws, stacks.ok().as_ref()))
    };
    answer(StatusCode::OK, layout(&ws, Some(&signed), body))
}

/// Snapshots a page shows.
pub(crate) const PAGE: u32 = 20;

/// `GET /jobs/{id}`: a job's progress, refreshing itself while it runs.
pub(crate) async fn job(
    State(console): State<Console>,
    axum::Extension(signed): axum::Extension<Signed>,
    Path(id): Path<i64>,
) -> Response {
    let job = match console.read(&signed, &format!("/v1/jobs/{id}")).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    let back = format!("/jobs/{id}");
    let body = html! {
        h1 { "Job " (id) ": " (text(&job, "operation")) " of " a href={"/w/" (text(&job, "workspace"))} { (text(&job, "workspace")) } }
        (super::pages_ws::job_detail(&console, &signed, &back, &job))
    };
    answer(StatusCode::OK, layout(&format!("Job {id}"), Some(&signed), body))
}

/// The query of a stack's page: the two states to compare.
#[derive(serde::Deserialize)]
pub(crate) struct DiffQuery {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /w/{ws}/stacks/{kind}/{name}`: a function stack's versions, and a diff of two.
pub(crate) async fn stack(
    State(console): State<Console>,
    axum::Extension(signed): axum::Extension<Signed>,
    Path((ws, kind, name)): Path<(String, String, String)>,
    Query(q): Query<DiffQuery>,
) -> Response {
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    let base = format!("/v1/workspaces/{}/stacks/{}/{}", enc(&ws), enc(&kind), enc(&name));
    let history = match console.read(&signed, &format!("{base}/history")).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    let from = q.from.unwrap_or_else(|| "published".into());
    let to = q.to.unwrap_or_else(|| "live".into());
    let diff = console.read(&signed, &format!("{base}/diff?from={}&to={}", enc(&from), enc(&to))).await;
    let body = super::pages_ws::stack_page(&ws, &kind, &name, &history, diff.ok().as_ref(), &from, &to);
    answer(StatusCode::OK, layout(&format!("{kind}/{name}"), Some(&signed), body))
}

/// The audit page's filters (the API's).
#[derive(serde::Deserialize, Default)]
pub(crate) struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    workspace: Option<String>,
    since: Option<String>,
    until: Option<String>,
    verify: Option<String>,
}

/// Records the audit page shows (the newest).
const AUDIT_SHOWN: usize = 200;

/// `GET /audit`: the trail, filtered, newest first; its verification on demand.
pub(crate) async fn audit(
    State(console): State<Console>,
    axum::Extension(signed): axum::Extension<Signed>,
    Query(q): Query<AuditQuery>,
) -> Response {
    let path = {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        let filters = [
            ("actor", &q.actor),
            ("action", &q.action),
            ("workspace", &q.workspace),
            ("since", &q.since),
            ("until", &q.until),
        ];
        for (k, v) in filters {
            if let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                query.append_pair(k, v);
            }
        }
        format!("/v1/audit?{}", query.finish())
    };
    let records = match console.read(&signed, &path).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    let verified = match q.verify.is_some() {
        true => Some(console.read(&signed, "/v1/audit/verify").await),
        false => None,
    };
    let mut records = records.as_array().cloned().unwrap_or_default();
    let total = records.len();
    records.reverse();
    records.truncate(AUDIT_SHOWN);
    let body = super::pages_ws::audit_page(&q_fields(&q), &records, total, verified);
    answer(StatusCode::OK, layout("Audit", Some(&signed), body))
}

fn q_fields(q: &AuditQuery) -> [(&'static str, &'static str, String); 5] {
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    [
        ("actor", "Actor contains", v(&q.actor)),
        ("action", "Action", v(&q.action)),
        ("workspace", "Workspace", v(&q.workspace)),
        ("since", "From (RFC 3339)", v(&q.since)),
        ("until", "Until (RFC 3339)", v(&q.until)),
    ]
}

/// `GET /tokens`: the tokens the actor may manage, a form to make one.
pub(crate) async fn tokens(
    State(console): State<Console>,
    axum::Extension(signed): axum::Extension<Signed>,
) -> Response {
    let tokens = match console.read(&signed, "/v1/tokens").await {
        Ok(v) => v,
        Err(page) => return page,
    };
    let can_revoke = console.may(&signed.actor, &Method::DELETE, "/v1/tokens/{token}", None);
    let body = super::pages_ws::tokens_page(&signed, &tokens, can_revoke);
    answer(StatusCode::OK, layout("Tokens", Some(&signed), body))
}

/// A token just made: its secret, shown this once (the page is never cached).
pub(crate) fn token_created(signed: &Signed, created: &Value) -> Response {
    let body = html! {
        h1 { "Token " (text(&created["token"], "name")) " made" }
        p role="status" { "Copy the secret now: it is shown only this once and tidemark keeps only its digest." }
        label for="secret" { "Secret" }
        input #secret type="text" readonly value=(text(created, "secret")) size="60";
        p { a href="/tokens" { "Back to the tokens" } }
    };
    let mut response = answer(StatusCode::OK, layout("Token made", Some(signed), body));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workspace_summary_says_how_far_each_copy_is() {
        let overview = serde_json::json!({
            "at": "2026-12-07T12:00:00Z",
            "workspaces": [{
                "state": "stale", "newest_snapshot_at": "2026-12-07T11:00:00Z", "repository_bytes": 1000,
                "problems": ["copy azure has never been copied to"],
                "copies": [
                    {"name": "offsite", "caught_up_to": "2026-12-07T10:00:00Z", "lag_seconds": 7200, "snapshots": 4},
                    {"name": "azure", "caught_up_to": null, "lag_seconds": null, "snapshots": null},
                ],
            }],
        });
        let page = summary(&overview).into_string();
        assert!(page.contains("copy <strong>offsite</strong>: holds everything before"), "{page}");
        assert!(page.contains("(2 h ago) · 4 snapshots"), "{page}");
        assert!(page.contains("copy <strong>azure</strong>: never copied to"), "{page}");
    }
}
