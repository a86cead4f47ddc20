//! The parts of the console's pages: a workspace's actions, jobs, snapshots, point-in-time
//! timeline, drills and stacks; a job; a stack's versions; the audit trail; the tokens.
//!
//! Longer than ~300 lines: each part is a template of what one API answer holds.

use axum::http::Method;
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde_json::Value;

use super::pages::{PAGE, ago, form, size, text, time_of, when};
use super::{Console, Signed};
use crate::access::Role;

/// The workspace's actions the actor may take: each shown only when the API's gate for its
/// route lets the actor through (the API refuses the rest anyway).
pub(super) fn actions(console: &Console, s: &Signed, ws: &str, back: &str, snapshots: &[Value]) -> Markup {
    let may = |template: &str| console.may(&s.actor, &Method::POST, template, Some(ws));
    let ids: Vec<&str> = snapshots.iter().map(|v| text(v, "id")).filter(|id| !id.is_empty()).collect();
    let pick = |label: &str, id: &str| {
        html! {
            label for=(id) { (label) }
            select id=(id) name="snapshot" {
                option value="latest" { "the newest" }
                @for i in &ids { option value=(i) { (i) } }
            }
        }
    };
    let ws_field = html! { input type="hidden" name="ws" value=(ws); };
    let any = ["/v1/workspaces/{ws}/snapshots", "/v1/workspaces/{ws}/drills", "/v1/workspaces/{ws}/restores"]
        .iter()
        .any(|t| may(t));
    html! {
        @if any {
        section #actions aria-labelledby="actions-h" {
            h2 #actions-h { "Actions" }
            div.cards {
                @if may("/v1/workspaces/{ws}/snapshots") {
                    (form(s, "snapshot", back, "Take a snapshot", html! { (ws_field)
                        label for="note" { "Note" } input #note type="text" name="note" maxlength="200"; }))
                }
                @if may("/v1/workspaces/{ws}/drills") {
                    (form(s, "drill", back, "Run a drill", html! { (ws_field) (pick("Snapshot to drill", "drill-snapshot")) }))
                }
                @if may("/v1/workspaces/{ws}/restores") {
                    (form(s, "restore", back, "Restore into a new database", html! { (ws_field) (pick("Snapshot", "restore-snapshot"))
                        label for="restore-db" { "New database" } input #restore-db type="text" name="database" required pattern="[A-Za-z_][A-Za-z0-9_]{0,62}";
                        label for="restore-time" { "Or a moment (instead of the snapshot)" } input #restore-time type="text" name="time" placeholder="2026-12-07 10:15:00+00"; }))
                }
                @if may("/v1/workspaces/{ws}/branches") {
                    (form(s, "branch", back, "Make a branch", html! { (ws_field)
                        label for="branch-name" { "Branch name" } input #branch-name type="text" name="name" required;
                        label for="branch-from" { "From snapshot (default: the newest)" } input #branch-from type="text" name="from"; }))
                }
                @if may("/v1/workspaces/{ws}/exports") {
                    (form(s, "export", back, "Export", html! { (ws_field) (pick("Snapshot", "export-snapshot")) }))
                }
                @if may("/v1/workspaces/{ws}/restore-points") {
                    (form(s, "mark", back, "Mark a restore point", html! { (ws_field)
                        label for="point-name" { "Name" } input #point-name type="text" name="name" required maxlength="63"; }))
                }
                @if console.may(&s.actor, &Method::POST, "/v1/workspaces/{ws}/restores/in-place", Some(ws)) {
                    (form(s, "restore", back, "Restore one table beside the live ones", html! { (ws_field) (pick("Snapshot", "table-snapshot"))
                        input type="hidden" name="into_live" value="on";
                        label for="table-name" { "Table (schema.name)" } input #table-name type="text" name="tables" required;
                        label for="table-as" { "Restored as (schema.new_name)" } input #table-as type="text" name="as" required; }))
                    div.danger {
                        (form(s, "in-place", back, "Restore in place", html! { (ws_field) (pick("Snapshot", "inplace-snapshot"))
                            label for="inplace-confirm" { "Type the workspace's name, " strong { (ws) } ", to replace its live database" }
                            input #inplace-confirm type="text" name="confirm" required autocomplete="off" data-confirm=(ws); }))
                        (form(s, "undo", back, "Undo the last in-place restore", html! { (ws_field)
                            label for="undo-confirm" { "Type " strong { (ws) } " to swap the previous database back" }
                            input #undo-confirm type="text" name="confirm" required autocomplete="off" data-confirm=(ws); }))
                    }
                }
            }
        }
        }
    }
}

/// A job's progress as a bar (bytes, else tables), its phase as text.
fn progress(job: &Value) -> Markup {
    let p = &job["progress"];
    let (done, total) = match (p["bytes_total"].as_u64(), p["tables_total"].as_u64()) {
        (Some(t), _) if t > 0 => (p["bytes_done"].as_u64().unwrap_or(0), t),
        (_, Some(t)) if t > 0 => (p["tables_done"].as_u64().unwrap_or(0), t),
        _ => (0, 0),
    };
    let label = format!("job {} progress", job["id"]);
    html! {
        @if total > 0 {
            progress max=(total) value=(done.min(total)) aria-label=(label) { (done * 100 / total) "%" }
            " " span.phase { (text(p, "phase")) " " (done * 100 / total) "%" }
        } @else {
            progress aria-label=(label) {}
            " " span.phase { (if p.is_object() { text(p, "phase") } else { "starting" }) }
        }
    }
}

/// The cancel button of a running job, when the API's gate lets the actor ask (the
/// operation decides the rest: stopping needs the right to start it).
fn cancel(console: &Console, s: &Signed, back: &str, job: &Value) -> Markup {
    let ws = text(job, "workspace");
    let may = console.may(&s.actor, &Method::DELETE, "/v1/jobs/{id}", None)
        && crate::operation::Operation::from_job_name(text(job, "operation"))
            .is_some_and(|op| crate::access::check(&s.actor.grant(), op.cancel_permission(false), Some(ws)).is_ok());
    html! {
        @if may && text(job, "status") == "running" {
            (form(s, "cancel", back, "Cancel", html! { input type="hidden" name="id" value=(job["id"]); }))
        }
    }
}

pub(super) fn jobs(console: &Console, s: &Signed, back: &str, jobs: Option<&Value>) -> Markup {
    let list = jobs.and_then(Value::as_array).cloned().unwrap_or_default();
    html! {
        section #jobs data-refresh="3" aria-labelledby="jobs-h" aria-live="polite" {
            h2 #jobs-h { "Jobs" }
            @if list.is_empty() { p { "No jobs yet." } }
            ul.jobs {
                @for j in &list {
                    li class={"job " (text(j, "status"))} {
                        a href={"/jobs/" (j["id"])} { "#" (j["id"]) " " (text(j, "operation")) }
                        " " span.status { (text(j, "status")) } " · " (when(&j["started_at"]))
                        @if text(j, "status") == "running" { div { (progress(j)) (cancel(console, s, back, j)) } }
                        @if let Some(e) = j["error"].as_str() { div.error { (e) } }
                    }
                }
            }
        }
    }
}

pub(super) fn job_detail(console: &Console, s: &Signed, back: &str, job: &Value) -> Markup {
    let running = text(job, "status") == "running";
    html! {
        section #job data-refresh=[running.then_some("1")] aria-live="polite" {
            p { "Status: " strong.status { (text(job, "status")) } " · started " (when(&job["started_at"]))
                @if job["finished_at"].is_string() { " · finished " (when(&job["finished_at"])) } }
            @if running { p { (progress(job)) } (cancel(console, s, back, job)) }
            @if let Some(e) = job["error"].as_str() { p.error role="alert" { (e) } }
            @if let Some(id) = job["snapshot_id"].as_str() { p { "Snapshot " code { (id) } } }
            @if job["result"].is_object() {
                details { summary { "Result" } pre { (serde_json::to_string_pretty(&job["result"]).unwrap_or_default()) } }
            }
        }
    }
}

pub(super) fn snapshots(console: &Console, s: &Signed, ws: &str, back: &str, list: &[Value], paged: bool) -> Markup {
    let may_pin = console.may(&s.actor, &Method::POST, "/v1/workspaces/{ws}/snapshots/{id}/pin", Some(ws));
    let may_unpin = console.may(&s.actor, &Method::DELETE, "/v1/workspaces/{ws}/snapshots/{id}/pin", Some(ws));
    html! {
        section #snapshots aria-labelledby="snapshots-h" {
            h2 #snapshots-h { "Snapshots" }
            @if list.is_empty() { p { "No snapshots." } }
            div.scroll { table {
                thead { tr { th scope="col" { "Snapshot" } th scope="col" { "Kind" } th scope="col" { "Taken" }
                    th scope="col" { "Size" } th scope="col" { "Rows" } th scope="col" { "Pinned" } th scope="col" { "Retention" }
                    th scope="col" { "Signature" } th scope="col" { "State" } } }
                tbody { @for v in list { tr {
                    th scope="row" { code { (text(v, "id")) } @if let Some(n) = v["note"].as_str() { div.note { (n) } } }
                    td { (text(v, "kind")) } td { (when(&v["finished_at"])) } td { (size(&v["stored_bytes"])) }
                    td { (v["rows"].as_u64().map(|r| r.to_string()).unwrap_or_default()) }
                    td {
                        @let pinned = v["pinned"].as_bool() == Some(true);
                        (if pinned { "pinned " } else { "" })
                        @let hidden = html! { input type="hidden" name="ws" value=(ws); input type="hidden" name="id" value=(text(v, "id")); };
                        @if pinned && may_unpin { (form(s, "unpin", back, "Unpin", hidden)) }
                        @else if !pinned && may_pin { (form(s, "pin", back, "Pin", hidden)) }
                    }
                    td {
                        @let r = &v["retention"];
                        @if r.is_object() {
                            (if r["keep"].as_bool() == Some(true) { "kept" } else { "deleted at the next prune" })
                            ul.reasons { @for why in r["reasons"].as_array().into_iter().flatten() { li { (why.as_str().unwrap_or("")) } } }
                        } @else { "—" }
                    }
                    td { (text(v, "signature")) }
                    td { @if let Some(p) = v["problem"].as_str() { span.error { "damaged: " (p) } }
                         @else if v["warnings"].as_array().is_some_and(|w| !w.is_empty()) { "warnings: " (v["warnings"].as_array().map_or(0, Vec::len)) }
                         @else { "readable" } }
                } } }
            } }
            nav aria-label="Snapshot pages" {
                @if paged { a href={"/w/" (ws)} { "Newest" } " " }
                @if list.len() as u32 == PAGE { @if let Some(last) = list.last() { a href={"/w/" (ws) "?before=" (text(last, "id"))} { "Older snapshots" } } }
            }
        }
    }
}

/// The point-in-time window drawn as a line from its earliest to its latest moment, with
/// base backups, restore points and snapshots as markers (each also listed as text).
pub(super) fn timeline(window: Option<&Value>, points: Option<&Value>, snapshots: &[Value]) -> Markup {
    let (Some(w), Some(from), Some(to)) = (
        window,
        window.and_then(|w| time_of(&w["earliest"]["time"])),
        window.and_then(|w| time_of(&w["latest"]["time"])),
    ) else {
        return html! { section #pitr aria-labelledby="pitr-h" { h2 #pitr-h { "Point-in-time window" } p { "No window: this workspace archives no WAL, or has no base backup yet." } } };
    };
    let width = (to - from).num_seconds().max(1) as f64;
    let x = |t: DateTime<Utc>| 10.0 + 980.0 * ((t - from).num_seconds() as f64 / width).clamp(0.0, 1.0);
    let bases: Vec<(String, DateTime<Utc>)> = w["base_backups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| time_of(&b["from"]["time"]).map(|t| (text(b, "id").to_string(), t)))
        .collect();
    let marks: Vec<(String, DateTime<Utc>)> = points
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| time_of(&p["time"]).map(|t| (text(p, "name").to_string(), t)))
        .collect();
    let snaps: Vec<(String, DateTime<Utc>)> = snapshots
        .iter()
        .filter_map(|v| {
            time_of(&v["finished_at"]).filter(|t| *t >= from && *t <= to).map(|t| (text(v, "id").to_string(), t))
        })
        .collect();
    html! {
        section #pitr aria-labelledby="pitr-h" {
            h2 #pitr-h { "Point-in-time window" }
            p { "Restorable from " (when(&w["earliest"]["time"])) " to " (when(&w["latest"]["time"])) "." }
            svg.timeline viewBox="0 0 1000 60" role="img" aria-label="The point-in-time window with its base backups, restore points and snapshots" {
                line x1="10" y1="30" x2="990" y2="30" class="window" {}
                @for (id, t) in &bases { rect x=(x(*t) - 4.0) y="18" width="8" height="24" class="base" { title { "base backup " (id) } } }
                @for (id, t) in &snaps { circle cx=(x(*t)) cy="30" r="5" class="snap" { title { "snapshot " (id) } } }
                @for (name, t) in &marks { polygon points=(format!("{0},14 {1},22 {0},30 {2},22", x(*t), x(*t) + 6.0, x(*t) - 6.0)) class="point" { title { "restore point " (name) } } }
            }
            ul.legend {
                @for (id, t) in &bases { li { span.key.base {} "base backup " code { (id) } " " (t.format("%Y-%m-%d %H:%M")) } }
                @for (name, t) in &marks { li { span.key.point {} "restore point " strong { (name) } " " (t.format("%Y-%m-%d %H:%M:%S")) } }
                @if !snaps.is_empty() { li { span.key.snap {} (snaps.len()) " snapshots in the window" } }
            }
        }
    }
}

pub(super) fn drills(drills: Option<&Value>, now: DateTime<Utc>) -> Markup {
    let list = drills.and_then(Value::as_array).cloned().unwrap_or_default();
    html! {
        section #drills aria-labelledby="drills-h" {
            h2 #drills-h { "Drills" }
            @if list.is_empty() { p { "No drills yet." } }
            @if !list.is_empty() { div.scroll { table {
                thead { tr { th scope="col" { "Drill" } th scope="col" { "Finished" } th scope="col" { "Source" } th scope="col" { "Result" } th scope="col" { "Checks" } th scope="col" { "RTO" } } }
                tbody { @for d in &list { tr {
                    th scope="row" { "#" (d["id"]) }
                    td { (when(&d["finished_at"])) " (" (ago(&d["finished_at"], now)) ")" }
                    td { code { (text(d, "source")) } }
                    td { (if d["passed"].as_bool() == Some(true) { "passed" } else { "FAILED" }) }
                    td { ul.checks { @for c in d["checks"].as_array().into_iter().flatten() {
                        li class={"check " (text(c, "status"))} { (text(c, "status")) ": " (text(c, "name")) @if text(c, "status") != "pass" { " — " (text(c, "details")) } }
                    } } }
                    td { (format!("{:.1} s", d["timings"]["restore_ms"].as_f64().unwrap_or(0.0) / 1000.0)) }
                } } }
            } } }
        }
    }
}

pub(super) fn stacks(ws: &str, stacks: Option<&Value>) -> Markup {
    let list = stacks.and_then(Value::as_array).cloned().unwrap_or_default();
    html! {
        section #stacks aria-labelledby="stacks-h" {
            h2 #stacks-h { "Function stacks" }
            @if list.is_empty() { p { "No function stacks." } }
            ul { @for v in &list {
                @let stack = text(v, "stack");
                li {
                    a href={"/w/" (ws) "/stacks/" (stack)} { (stack) }
                    " · " (v["changes"]) " changes"
                    @if let Some(version) = v["latest_version"].as_i64() { " · published version " (version) }
                }
            } }
        }
    }
}

pub(super) fn stack_page(
    ws: &str,
    kind: &str,
    name: &str,
    history: &Value,
    diff: Option<&Value>,
    from: &str,
    to: &str,
) -> Markup {
    html! {
        h1 { (kind) "/" (name) " of " a href={"/w/" (ws)} { (ws) } }
        section aria-labelledby="versions-h" {
            h2 #versions-h { "Versions" }
            div.scroll { table {
                thead { tr { th scope="col" { "Change" } th scope="col" { "When" } th scope="col" { "Author" } th scope="col" { "Message" } th scope="col" { "Published as" } } }
                tbody { @for c in history.as_array().into_iter().flatten() { tr {
                    th scope="row" { (c["id"]) } td { (when(&c["at"])) } td { (text(c, "author")) } td { (text(c, "message")) }
                    td { @for v in c["versions"].as_array().into_iter().flatten() { "version " (v) " " } }
                } } }
            } }
        }
        section aria-labelledby="diff-h" {
            h2 #diff-h { "Diff" }
            form.inline method="get" {
                label for="from" { "From" } input #from type="text" name="from" value=(from);
                label for="to" { "To" } input #to type="text" name="to" value=(to);
                button type="submit" { "Compare" }
            }
            @match diff {
                Some(d) => {
                    @let changes = d["changes"].as_array().cloned().unwrap_or_default();
                    @if changes.is_empty() { p { "No differences." } }
                    ul.diff { @for c in &changes { li class={"change " (text(c, "op"))} {
                        strong { (text(c, "op")) } " " code { (text(c, "path")) } ": "
                        @if c["op"] == "changed" {
                            code { (c["from"].to_string()) } " → " code { (c["to"].to_string()) }
                        } @else { code { (c["value"].to_string()) } }
                    } } }
                }
                None => p { "These two states cannot be compared (a state that does not exist?)." },
            }
        }
    }
}

pub(super) fn audit_page(
    fields: &[(&str, &str, String)],
    records: &[Value],
    total: usize,
    verified: Option<Result<Value, axum::response::Response>>,
) -> Markup {
    html! {
        h1 { "Audit trail" }
        form.filters method="get" action="/audit" {
            @for (name, label, value) in fields { div { label for={"f-" (name)} { (label) } input id={"f-" (name)} type="text" name=(name) value=(value); } }
            button type="submit" { "Filter" }
            button type="submit" name="verify" value="1" { "Filter and verify the trail" }
        }
        @match verified {
            Some(Ok(v)) => p role="status" class={ "verify " (if v["ok"].as_bool() == Some(false) { "bad" } else { "good" }) } { "Verification: " code { (serde_json::to_string(&v).unwrap_or_default()) } },
            Some(Err(_)) => p.error role="alert" { "The trail could not be verified (see `tidemark audit verify`)." },
            None => {},
        }
        p.hint { (total) " records match; the newest " (records.len()) " are shown." }
        div.scroll { table {
            thead { tr { th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "Actor" } th scope="col" { "Action" } th scope="col" { "Target" } th scope="col" { "Outcome" } } }
            tbody { @for r in records { tr class={"outcome-" (text(r, "outcome"))} {
                th scope="row" { (r["seq"]) } td { (when(&r["at"])) }
                td { (text(&r["actor"], "kind")) ":" (text(&r["actor"], "name")) @if let Some(t) = r["actor"]["token_id"].as_str() { " (" (t) ")" } }
                td { (text(r, "action")) } td { code { (text(r, "target")) } } td { (text(r, "outcome")) }
            } } }
        } }
    }
}

pub(super) fn tokens_page(s: &Signed, tokens: &Value, can_revoke: bool) -> Markup {
    let roles = Role::ALL.into_iter().filter(|r| s.actor.grant().role.may_grant(*r));
    html! {
        h1 { "Tokens" }
        section aria-labelledby="new-h" {
            h2 #new-h { "Make a token" }
            (form(s, "token-create", "/tokens", "Make the token", html! {
                label for="t-name" { "Name" } input #t-name type="text" name="name" required maxlength="64";
                label for="t-role" { "Role" } select #t-role name="role" { @for r in roles { option value=(r.as_str()) { (r.as_str()) } } }
                label for="t-ws" { "Workspaces (empty: all)" } input #t-ws type="text" name="workspaces";
                label for="t-exp" { "Expires after" } input #t-exp type="text" name="expires" value="7d";
            }))
        }
        section aria-labelledby="list-h" {
            h2 #list-h { "All tokens" }
            div.scroll { table {
                thead { tr { th scope="col" { "Token" } th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Workspaces" } th scope="col" { "Expires" } th scope="col" { "Last used" } th scope="col" { "State" } } }
                tbody { @for t in tokens.as_array().into_iter().flatten() { tr {
                    th scope="row" { code { (text(t, "id")) } } td { (text(t, "name")) } td { (text(t, "role")) }
                    td { (t["workspaces"].as_array().map(|w| w.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).filter(|w| !w.is_empty()).unwrap_or_else(|| "all".into())) }
                    td { (when(&t["expires_at"])) } td { (when(&t["last_used_at"])) }
                    td { @if t["revoked_at"].is_string() { "revoked " (when(&t["revoked_at"])) }
                         @else if can_revoke { (form(s, "token-revoke", "/tokens", "Revoke", html! { input type="hidden" name="token" value=(text(t, "id")); })) }
                         @else { "live" } }
                } } }
            } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::Lsn;
    use crate::wal::window::{BaseRange, Moment, Window};

    fn moment(t: &str) -> Moment {
        Moment { lsn: Lsn(0x1000), time: DateTime::parse_from_rfc3339(t).unwrap().to_utc(), timeline: 1 }
    }

    /// The timeline, from the API's own types: a marker per base backup, restore point and
    /// snapshot inside the window, each named for a screen reader and listed as text.
    #[test]
    fn the_point_in_time_window_is_drawn_with_its_markers_and_said_in_words() {
        let window = Window {
            earliest: Some(moment("2026-12-01T00:00:00Z")),
            latest: Some(moment("2026-12-02T00:00:00Z")),
            base_backups: vec![BaseRange {
                id: "20261201T000000Z-000001".into(),
                from: moment("2026-12-01T00:00:00Z"),
                to: Some(moment("2026-12-01T00:05:00Z")),
                timelines: vec![1],
            }],
            gaps: Vec::new(),
            wal_files: 3,
            unfollowed_timelines: Vec::new(),
        };
        let points = serde_json::to_value(vec![crate::ops::pitr::RestorePoint {
            name: "before-migration".into(),
            lsn: Lsn(0x2000),
            time: DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z").unwrap().to_utc(),
        }])
        .unwrap();
        let snapshots = [
            serde_json::json!({"id": "20261201T060000Z-000002", "finished_at": "2026-12-01T06:00:10Z"}),
            serde_json::json!({"id": "20261130T060000Z-000003", "finished_at": "2026-11-30T06:00:10Z"}),
        ];
        let html = timeline(Some(&serde_json::to_value(&window).unwrap()), Some(&points), &snapshots).into_string();
        assert!(html.contains("<svg") && html.contains("aria-label=\"The point-in-time window"), "{html}");
        assert_eq!(html.matches("<rect").count(), 1, "one base backup");
        assert_eq!(html.matches("<polygon").count(), 1, "one restore point");
        assert_eq!(html.matches("<circle").count(), 1, "the snapshot before the window is not on it");
        // The restore point half-way: at the middle of the line (x 500 of 10..990).
        assert!(html.contains("points=\"500,14 "), "{html}");
        assert!(html.contains("restore point <strong>before-migration</strong>"));
        assert!(html.contains("Restorable from 2026-12-01 00:00:00 UTC to 2026-12-02 00:00:00 UTC"));
        // No window: said, not drawn.
        let none = timeline(None, None, &snapshots).into_string();
        assert!(none.contains("No window") && !none.contains("<svg"));
    }
}
