//! The HTTP API on real parts: a server on loopback, clients bound to distinct loopback
//! addresses (127.0.0.2, 127.0.0.3, ...), tokens made by the operations. Every cell of the
//! role matrix, the refusals (no, malformed, revoked or foreign token; a denied address; a
//! token used from outside its allow list), bad input (oversized and unknown bodies, path
//! tricks), and long work as `202` jobs that can be polled.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use tidemark::access::Role;
use tidemark::api::AddressRules;
use tidemark::config::WorkspaceConfig;
use tidemark::ops::token::{TokenCreateOptions, create};
use tokio_util::sync::CancellationToken;

use crate::support::{World, actor, create_database, snapshot_shop, world};
use tidemark::service::Service;

pub(crate) struct Server {
    pub base: String,
    pub stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub(crate) async fn start(w: &World, rules: AddressRules) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(tidemark::service::run(w.core.clone(), Service::api_only(listener.into(), rules), stop.clone()));
    Server { base, stop }
}

pub(crate) async fn json(r: reqwest::Response) -> serde_json::Value {
    let text = r.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

pub(crate) fn client(from: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(from.parse::<IpAddr>().unwrap()).build().unwrap()
}

pub(crate) async fn token(w: &World, name: &str, role: Role, workspaces: &[&str], allow_ips: &[&str]) -> String {
    let opts = TokenCreateOptions {
        name: name.into(),
        role,
        workspaces: workspaces.iter().map(ToString::to_string).collect(),
        expires: None,
        never_expires: false,
        allow_ips: allow_ips.iter().map(ToString::to_string).collect(),
    };
    create(&w.core, &opts, &actor()).await.unwrap().secret
}

pub(crate) async fn call(
    c: &reqwest::Client,
    method: Method,
    url: &str,
    secret: Option<&str>,
    body: Option<&str>,
) -> reqwest::Response {
    let mut request = c.request(method, url);
    if let Some(s) = secret {
        request = request.bearer_auth(s);
    }
    if let Some(b) = body {
        request = request.header("content-type", "application/json").body(b.to_string());
    }
    request.send().await.unwrap()
}

/// The job a `202` answer started, polled at its `Location` until it is no longer running
/// (30 s at most).
pub(crate) async fn finished(
    c: &reqwest::Client,
    base: &str,
    started: &reqwest::Response,
    secret: &str,
) -> serde_json::Value {
    let location = started.headers()["location"].to_str().unwrap().to_string();
    let mut job = serde_json::Value::Null;
    for _ in 0..300 {
        job = json(call(c, Method::GET, &format!("{base}{location}"), Some(secret), None).await).await;
        if job["status"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    job
}

/// The docs' answer to "may `role` use this route": the right the API reference says the
/// route needs (docs/reference/api.md), and whether the roles page's matrix gives it to the
/// role (docs/reference/roles.md). Both are generated from the code and checked by unit
/// tests; this reads them as a user would.
struct DocumentedRights {
    /// (method, route) -> the right's name.
    needs: std::collections::HashMap<(String, String), String>,
    /// (right, role) -> yes.
    matrix: std::collections::HashMap<(String, String), bool>,
}

impl DocumentedRights {
    fn read() -> DocumentedRights {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference");
        let cells =
            |line: &str| line.trim().trim_matches('|').split('|').map(|c| c.trim().to_string()).collect::<Vec<_>>();
        let ticked = |cell: &str| cell.split('`').nth(1).unwrap_or_default().to_string();
        let api = std::fs::read_to_string(docs.join("api.md")).unwrap();
        let needs = api
            .lines()
            .filter(|l| l.starts_with("| ") && l.contains("| `/"))
            .map(|l| {
                let c = cells(l);
                ((c[0].clone(), ticked(&c[1])), ticked(&c[2]))
            })
            .collect();
        let roles = std::fs::read_to_string(docs.join("roles.md")).unwrap();
        let header = roles.lines().find(|l| l.starts_with("| right |")).expect("the roles matrix");
        let names = cells(header);
        let mut matrix = std::collections::HashMap::new();
        for line in roles.lines().filter(|l| l.starts_with("| `")) {
            let c = cells(line);
            for (i, role) in names.iter().enumerate().skip(2) {
                matrix.insert((ticked(&c[0]), role.clone()), c[i] == "yes");
            }
        }
        DocumentedRights { needs, matrix }
    }

    fn allows(&self, method: &Method, path: &str, role: Role) -> bool {
        let right = &self.needs[&(method.to_string(), path.to_string())];
        self.matrix[&(right.clone(), role.to_string())]
    }
}

/// Every method-route of the router's own table, for every role and every scope of token
/// (all workspaces, this workspace, another one), asked over HTTP (and as `HEAD` for each
/// `GET`): refused with `forbidden` exactly where the docs say, and let through everywhere
/// else. Bodies there are ones the route refuses as bad input, so nothing heavy runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_for_every_role_and_scope_as_the_docs_say() {
    let mut w = world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2);").await;
    let m = snapshot_shop(&w.core).await.unwrap();
    w.core.config.config.workspaces.insert("blog".into(), WorkspaceConfig::at(w.cluster.url("blog")));
    w.core.config.config.api.requests_per_second = 0;
    w.core.config.config.api.heavy_jobs_per_workspace = 100;
    w.core.config.config.api.heavy_jobs_per_token = 100;
    let put = tidemark::ops::stacks::StackPutOptions {
        workspace: Some("shop".into()),
        stack: "api/matrix".into(),
        json: r#"{"v": 0}"#.into(),
        origin: "test".into(),
        ..Default::default()
    };
    tidemark::ops::stacks::put(&w.core, &put, &actor()).await.unwrap();
    let server = start(&w, AddressRules::default()).await;
    let c = client("127.0.0.2");
    let docs = DocumentedRights::read();
    let routes = tidemark::api::gates();
    assert!(routes.len() >= 39, "the router's table: {}", routes.len());
    let url = |path: &str| {
        let snapshot = path.contains("/snapshots/");
        let filled = path
            .replace("{ws}", "shop")
            .replace("{id}", if snapshot { &m.id } else { "999999" })
            .replace("{kind}", "api")
            .replace("{name}", if path.contains("/stacks/") { "matrix" } else { "none" })
            .replace("{export}", "none")
            .replace("{token}", "none");
        format!("{}{filled}", server.base)
    };
    let mut cells = 0;
    for role in Role::ALL {
        let scopes: [(&str, &[&str]); 3] = [("all", &[]), ("own", &["shop"]), ("other", &["blog"])];
        for (scope, workspaces) in scopes {
            let secret = token(&w, &format!("matrix-{role}-{scope}"), role, workspaces, &[]).await;
            for route in &routes {
                let mut allowed = docs.allows(&route.method, route.path, role);
                let on_shop = route.path.contains("{ws}");
                if scope == "other" && on_shop {
                    allowed = false;
                }
                // The metrics cover every workspace: a token for some never reads them.
                if scope != "all" && route.gate.action() == tidemark::access::Action::ReadMetrics {
                    allowed = false;
                }
                // docs/reference/roles.md: a token limited to workspaces "cannot verify the
                // whole trail".
                if scope != "all" && route.path == "/v1/audit/verify" {
                    allowed = false;
                }
                let body = matches!(route.method, Method::POST | Method::PUT).then_some(r#"{"not_a_field": 1}"#);
                let mut methods = vec![route.method.clone()];
                if route.method == Method::GET {
                    methods.push(Method::HEAD);
                }
                for method in methods {
                    let response = call(&c, method.clone(), &url(route.path), Some(&secret), body).await;
                    let status = response.status();
                    let cell = format!("{role} ({scope} workspaces) {method} {}", route.path);
                    cells += 1;
                    if allowed {
                        assert!(
                            status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
                            "{cell}: {status}"
                        );
                        assert!(!status.is_server_error(), "{cell}: {status} {}", response.text().await.unwrap());
                    } else {
                        assert_eq!(status, StatusCode::FORBIDDEN, "{cell}");
                        if method != Method::HEAD {
                            assert_eq!(json(response).await["error"]["kind"], "forbidden", "{cell}");
                        }
                    }
                }
            }
        }
    }
    assert!(cells > 39 * 15, "{cells} cells");
    // Replacing the live database needs the workspace's name repeated, even for an admin.
    let admin_secret = token(&w, "matrix-admin-confirm", Role::Admin, &[], &[]).await;
    for body in [r#"{"confirm": "shpo"}"#, r#"{"confirm": ""}"#] {
        for path in ["restores/in-place", "restores/undo", "branches/none/set-live"] {
            let url = format!("{}/v1/workspaces/shop/{path}", server.base);
            let response = call(&c, Method::POST, &url, Some(&admin_secret), Some(body)).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path} {body}");
        }
    }
    let blog = token(&w, "blog-operator", Role::Operator, &["blog"], &[]).await;
    let listed = json(call(&c, Method::GET, &format!("{}/v1/workspaces", server.base), Some(&blog), None).await).await;
    assert_eq!(listed["workspaces"], serde_json::json!(["blog"]));
    // The operations' own option types are the bodies: what the path says (the workspace,
    // the branch) and what only the host may set (how long to wait) are no request's.
    for (path, body) in [
        ("branches", r#"{"name": "x", "workspace": "blog"}"#),
        ("branches/none/set-live", r#"{"confirm": "shop", "name": "other"}"#),
        ("restores/undo", r#"{"confirm": "shop", "wait": "1h"}"#),
        ("restore-points", r#"{"name": "p", "workspace": "blog"}"#),
    ] {
        let url = format!("{}/v1/workspaces/shop/{path}", server.base);
        let refused = call(&c, Method::POST, &url, Some(&admin_secret), Some(body)).await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{path} {body}");
        assert_eq!(json(refused).await["error"]["kind"], "usage", "{path} {body}");
    }
    // A workspace in the path that is not text is refused before any handler, never taken
    // for "no workspace" (which a token for some workspaces would pass).
    let garbled = format!("{}/v1/workspaces/%FF%FE/snapshots", server.base);
    let refused = call(&c, Method::GET, &garbled, Some(&blog), None).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(refused).await["error"]["kind"], "usage");
}

/// Stopping a job, for every operation, started by another caller or by the same token,
/// as every role: refused exactly when the role lacks the right to start that operation
/// (or, for another caller's check, `cancel-jobs`); a permitted stop of a job this server
/// does not run is `refused` (409), after the permission was granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_each_kind_of_job_needs_the_right_to_start_it() {
    use tidemark::operation::Operation;
    let mut w = world().await;
    w.core.config.config.api.requests_per_second = 0;
    let server = start(&w, AddressRules::default()).await;
    let c = client("127.0.0.3");
    let now = chrono::Utc::now();
    let admin = token(&w, "jobs-starter", Role::Admin, &[], &[]).await;
    let admin_actor = tidemark::ops::token::authenticate(&w.core, &admin, None, now).await.unwrap();
    for role in Role::ALL {
        let secret = token(&w, &format!("jobs-{role}"), role, &[], &[]).await;
        let own_actor = tidemark::ops::token::authenticate(&w.core, &secret, None, now).await.unwrap();
        for operation in Operation::ALL.into_iter().filter(|o| o.is_job()) {
            for (own, starter) in [(true, &own_actor), (false, &admin_actor)] {
                let spec = tidemark::ops::job::JobSpec { workspace: "shop".into(), operation, kind: None };
                let started = tidemark::ops::job::begin(&w.core, starter, spec).await;
                let id = started.id().unwrap();
                let url = format!("{}/v1/jobs/{id}", server.base);
                let response = call(&c, Method::DELETE, &url, Some(&secret), None).await;
                let status = response.status();
                let needs = operation.cancel_permission(own);
                let cell = format!("{role} stopping {} {operation}", if own { "its own" } else { "an admin's" });
                // A job this server does not run (begun here, run by no one) is asked to stop
                // through the catalog (issue 33.6), when the caller may.
                let asked = || async { w.core.catalog().await.unwrap().cancel_requested(id).await.unwrap() };
                if role.allows(needs) && role.allows(tidemark::access::Action::Read) {
                    assert_eq!(status, StatusCode::ACCEPTED, "{cell}: {}", response.text().await.unwrap());
                    assert!(asked().await, "{cell}: asked through the catalog");
                } else {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{cell}");
                    assert!(!asked().await, "{cell}: nothing asked");
                }
            }
        }
    }
    // The cases issue 32 found, by name: a viewer stopping an admin's undo, an operator an
    // in-place restore.
    assert!(!Role::Viewer.allows(Operation::RestoreUndo.cancel_permission(false)));
    assert!(!Role::Operator.allows(Operation::RestoreInPlace.cancel_permission(false)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_bad_input_and_jobs_over_http() {
    let w = world().await;
    create_database(
        &w.cluster,
        "shop",
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 1000);",
    )
    .await;
    let rules = AddressRules { deny: vec!["127.0.0.3/32".parse().unwrap()], ..Default::default() };
    let server = start(&w, rules).await;
    let base = server.base.clone();
    let (c2, c3, c4) = (client("127.0.0.2"), client("127.0.0.3"), client("127.0.0.4"));
    let admin = token(&w, "admin", Role::Admin, &[], &[]).await;
    let snapshots = format!("{base}/v1/workspaces/shop/snapshots");

    // Health needs no token and says nothing else.
    let health = call(&c2, Method::GET, &format!("{base}/healthz"), None, None).await;
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(json(health).await, serde_json::json!({"status": "ok"}));
    // No token, a malformed one, a well-formed unknown one: 401 with a challenge.
    for secret in [None, Some("hunter2"), Some("tdm_0000000000000000000000000000000000000000000000000000")] {
        let r = call(&c2, Method::GET, &snapshots, secret, None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{secret:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let text = r.text().await.unwrap();
        assert!(!text.contains("hunter2"), "the secret is echoed: {text}");
    }
    // A denied address, even with a good token; X-Forwarded-For from an untrusted peer is ignored.
    assert_eq!(call(&c3, Method::GET, &snapshots, Some(&admin), None).await.status(), StatusCode::FORBIDDEN);
    let spoofed = c2.get(&snapshots).bearer_auth(&admin).header("x-forwarded-for", "127.0.0.3").send().await.unwrap();
    assert_eq!(spoofed.status(), StatusCode::OK, "a forwarded-for header from an untrusted peer is not believed");
    // A token used from outside its own allow list.
    let pinned = token(&w, "from-2", Role::Viewer, &[], &["127.0.0.2/32"]).await;
    assert_eq!(call(&c2, Method::GET, &snapshots, Some(&pinned), None).await.status(), StatusCode::OK);
    assert_eq!(call(&c4, Method::GET, &snapshots, Some(&pinned), None).await.status(), StatusCode::FORBIDDEN);
    // Revoked: refused at once.
    let gone = token(&w, "gone", Role::Viewer, &[], &[]).await;
    tidemark::ops::token::revoke(&w.core, &tidemark::ops::token::TokenRevokeOptions { token: "gone".into() }, &actor())
        .await
        .unwrap();
    assert_eq!(call(&c2, Method::GET, &snapshots, Some(&gone), None).await.status(), StatusCode::UNAUTHORIZED);

    // Bad input: unknown fields, oversized bodies, ids and workspaces that try to be paths.
    let unknown = call(&c2, Method::POST, &snapshots, Some(&admin), Some(r#"{"note": "x", "oops": 1}"#)).await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    // Over the limit, yet small enough for loopback's socket buffers to take whole: the
    // server answers 413 without reading it, and a larger body could still be on its way
    // when the server closes the connection (a reset instead of the answer).
    let big = format!(r#"{{"note": "{}"}}"#, "x".repeat(tidemark::api::BODY_LIMIT + 16 * 1024));
    assert_eq!(
        call(&c2, Method::POST, &snapshots, Some(&admin), Some(&big)).await.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // A restore cannot name a server, a password from the host's files or environment, a
    // media folder, the workspace's own database or a name that is not one.
    let restores = format!("{base}/v1/workspaces/shop/restores");
    for evil in [
        r#"{"database": "copy", "target": "postgres://evil.example/db"}"#,
        r#"{"database": "copy", "target_password": "file:/etc/shadow"}"#,
        r#"{"database": "copy", "media_target": "/etc"}"#,
        r#"{"database": "copy; DROP DATABASE shop"}"#,
        r#"{"database": "../shop"}"#,
        r#"{"database": ""}"#,
    ] {
        let r = call(&c2, Method::POST, &restores, Some(&admin), Some(evil)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{evil}");
    }
    let own = call(&c2, Method::POST, &restores, Some(&admin), Some(r#"{"database": "shop"}"#)).await;
    assert_eq!(own.status(), StatusCode::CONFLICT, "the workspace's own database");
    for path in ["/v1/workspaces/shop/snapshots/..%2F..%2Fetc%2Fpasswd", "/v1/workspaces/..%2Fshop/snapshots"] {
        let r = call(&c2, Method::GET, &format!("{base}{path}"), Some(&admin), None).await;
        assert!(matches!(r.status(), StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND), "{path}: {}", r.status());
    }

    // Long work: 202, a Location, a job with its progress and result.
    let started = call(&c2, Method::POST, &snapshots, Some(&admin), Some(r#"{"note": "before migration 42"}"#)).await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let job = finished(&c2, &base, &started, &admin).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["actor"], "api:admin");
    assert!(job["progress"]["phase"].as_str().unwrap().starts_with("snapshot shop"), "{job}");
    let listed = json(call(&c2, Method::GET, &snapshots, Some(&admin), None).await).await;
    assert_eq!(listed[0]["note"], "before migration 42");
    // The workspace's status names that snapshot as its newest, from the catalog.
    let status = json(call(&c2, Method::GET, &format!("{base}/v1/workspaces/shop"), Some(&admin), None).await).await;
    assert_eq!(status["last_snapshot"]["snapshot_id"], job["snapshot_id"], "{status}");
    assert_eq!(status["last_snapshot"]["kind"], "manual", "{status}");
    assert!(status["running"].as_array().unwrap().is_empty() && status["failing"].as_array().unwrap().is_empty());
    let unknown = call(&c2, Method::GET, &format!("{base}/v1/workspaces/nope"), Some(&admin), None).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    // That snapshot restored into a new database beside the workspace's, rows and all.
    let asked = format!(r#"{{"snapshot": "{}", "database": "shop_copy"}}"#, job["snapshot_id"].as_str().unwrap());
    let started = call(&c2, Method::POST, &restores, Some(&admin), Some(&asked)).await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let restored = finished(&c2, &base, &started, &admin).await;
    assert_eq!(restored["status"], "succeeded", "{restored}");
    // Issue 31.10: a finished job carries its result, the report `--json` prints.
    assert_eq!(restored["result"]["snapshot"], job["snapshot_id"], "{restored}");
    assert_eq!(restored["result"]["rows"], 1000, "{restored}");
    assert_eq!(job["result"]["id"], job["snapshot_id"], "a small snapshot's manifest is its result: {job}");
    let copy = sqlx::PgPool::connect(&w.cluster.url("shop_copy")).await.unwrap();
    let source = sqlx::PgPool::connect(&w.cluster.url("shop")).await.unwrap();
    let count = "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'";
    let (a, b): (i64, i64) = (
        sqlx::query_scalar(count).fetch_one(&copy).await.unwrap(),
        sqlx::query_scalar(count).fetch_one(&source).await.unwrap(),
    );
    assert!(a > 0 && a == b, "{a} tables restored of {b}");
    // One table back beside the live one, under a new name; never over the live table.
    let id = job["snapshot_id"].as_str().unwrap();
    let back =
        |name: &str| format!(r#"{{"snapshot": "{id}", "tables": ["public.t"], "into_live": true, "as": ["{name}"]}}"#);
    let started = call(&c2, Method::POST, &restores, Some(&admin), Some(&back("public.t_back"))).await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let table = finished(&c2, &base, &started, &admin).await;
    assert_eq!(table["status"], "succeeded", "{table}");
    let rows = "SELECT (SELECT count(*) FROM t_back) = (SELECT count(*) FROM t)";
    assert!(sqlx::query_scalar::<_, bool>(rows).fetch_one(&source).await.unwrap());
    // Started at once: the finished job gave its heavy-job slot back before it said so.
    let started = call(&c2, Method::POST, &restores, Some(&admin), Some(&back("public.t"))).await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let over = finished(&c2, &base, &started, &admin).await;
    assert_eq!(over["status"], "refused", "never over an existing table: refused before anything changed: {over}");
    let both = format!(r#"{{"snapshot": "{id}", "tables": ["t"], "into_live": true, "as": ["x"], "database": "y"}}"#);
    assert_eq!(call(&c2, Method::POST, &restores, Some(&admin), Some(&both)).await.status(), StatusCode::BAD_REQUEST);
    sqlx::query("DROP TABLE t_back").execute(&source).await.unwrap();
    source.close().await;

    // An admin puts the workspace's database back as the snapshot had it, then undoes it.
    let live = sqlx::PgPool::connect(&w.cluster.url("shop")).await.unwrap();
    sqlx::query("CREATE TABLE after_snapshot (x int)").execute(&live).await.unwrap();
    live.close().await;
    let there = async || {
        let pool = sqlx::PgPool::connect(&w.cluster.url("shop")).await.unwrap();
        let found: bool = sqlx::query_scalar("SELECT to_regclass('public.after_snapshot') IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        found
    };
    let in_place = format!("{base}/v1/workspaces/shop/restores/in-place");
    let asked = format!(r#"{{"snapshot": "{}", "confirm": "shop"}}"#, job["snapshot_id"].as_str().unwrap());
    let started = call(&c2, Method::POST, &in_place, Some(&admin), Some(&asked)).await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let replaced = finished(&c2, &base, &started, &admin).await;
    assert_eq!(replaced["status"], "succeeded", "{replaced}");
    assert!(!there().await, "the table made after the snapshot is gone");
    let undo = format!("{base}/v1/workspaces/shop/restores/undo");
    let started = call(&c2, Method::POST, &undo, Some(&admin), Some(r#"{"confirm": "shop"}"#)).await;
    let undone = finished(&c2, &base, &started, &admin).await;
    assert_eq!(undone["status"], "succeeded", "{undone}");
    assert!(there().await, "back as it was before the in-place restore");

    // Branches: made by a job, listed, refused when the name or the source is wrong, made
    // live by an admin (undo swaps back), deleted with the branch's name repeated.
    let branches = format!("{base}/v1/workspaces/shop/branches");
    let snapshot_id = job["snapshot_id"].as_str().unwrap();
    for bad in [
        r#"{"name": "Not A Name"}"#.to_string(),
        format!(r#"{{"name": "x", "from": "{snapshot_id}", "time": "2026-01-01 00:00:00+00"}}"#),
        r#"{"name": "x", "time": "yesterday-ish"}"#.to_string(),
        r#"{"name": "x", "jobs": 0}"#.to_string(),
    ] {
        let refused = call(&c2, Method::POST, &branches, Some(&admin), Some(&bad)).await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let asked = format!(r#"{{"name": "try", "from": "{snapshot_id}"}}"#);
    let started = call(&c2, Method::POST, &branches, Some(&admin), Some(&asked)).await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let made = finished(&c2, &base, &started, &admin).await;
    assert_eq!(made["status"], "succeeded", "{made}");
    let listed = json(call(&c2, Method::GET, &branches, Some(&admin), None).await).await;
    assert_eq!(listed["branches"][0]["name"], "try", "{listed}");
    assert_eq!(listed["branches"][0]["database"], "shop_branch_try", "{listed}");
    let branch_db = sqlx::PgPool::connect(&w.cluster.url("shop_branch_try")).await.unwrap();
    sqlx::query("CREATE TABLE made_on_the_branch (x int)").execute(&branch_db).await.unwrap();
    branch_db.close().await;
    let set_live = format!("{branches}/try/set-live");
    let wrong = call(&c2, Method::POST, &set_live, Some(&admin), Some(r#"{"confirm": "try"}"#)).await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    let started = call(&c2, Method::POST, &set_live, Some(&admin), Some(r#"{"confirm": "shop"}"#)).await;
    let switched = finished(&c2, &base, &started, &admin).await;
    assert_eq!(switched["status"], "succeeded", "{switched}");
    let live_has = async |table: &str| {
        let pool = sqlx::PgPool::connect(&w.cluster.url("shop")).await.unwrap();
        let found: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(format!("public.{table}"))
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        found
    };
    assert!(live_has("made_on_the_branch").await, "the branch is live");
    let listed = json(call(&c2, Method::GET, &branches, Some(&admin), None).await).await;
    assert_eq!(listed["branches"], serde_json::json!([]), "no longer a branch once live");
    let started = call(&c2, Method::POST, &undo, Some(&admin), Some(r#"{"confirm": "shop"}"#)).await;
    assert_eq!(finished(&c2, &base, &started, &admin).await["status"], "succeeded");
    assert!(!live_has("made_on_the_branch").await && live_has("after_snapshot").await, "undone");
    // Delete: the name repeated, or nothing happens.
    let asked = format!(r#"{{"name": "gone", "from": "{snapshot_id}"}}"#);
    let started = call(&c2, Method::POST, &branches, Some(&admin), Some(&asked)).await;
    assert_eq!(finished(&c2, &base, &started, &admin).await["status"], "succeeded");
    for confirm in ["", "?confirm=shop", "?confirm=gon"] {
        let url = format!("{branches}/gone{confirm}");
        let refused = call(&c2, Method::DELETE, &url, Some(&admin), None).await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{confirm}");
    }
    assert_eq!(crate::support::databases_like(&w.cluster, "shop_branch_gone").await.len(), 1);
    let deleted = call(&c2, Method::DELETE, &format!("{branches}/gone?confirm=gone"), Some(&admin), None).await;
    assert_eq!(deleted.status(), StatusCode::OK);
    assert_eq!(json(deleted).await["database"], "shop_branch_gone");
    assert!(crate::support::databases_like(&w.cluster, "shop_branch_gone").await.is_empty());

    // Every refusal is in the audit trail, with the address and never a secret.
    let trail = call(&c2, Method::GET, &format!("{base}/v1/audit"), Some(&admin), None).await.text().await.unwrap();
    assert!(trail.contains("api.denied") && trail.contains("127.0.0.3") && trail.contains("127.0.0.4"), "{trail}");
    assert!(!trail.contains(&admin[4..]) && !trail.contains("hunter2"));
    // The auditor's export as CSV: one line per record after the header, the same records.
    let csv = call(&c2, Method::GET, &format!("{base}/v1/audit?format=csv"), Some(&admin), None).await;
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    let records: serde_json::Value = serde_json::from_str(&trail).unwrap();
    assert!(csv.starts_with("seq,at,actor,action,target,outcome,details,hash\n"), "{csv}");
    let last = records.as_array().unwrap().last().unwrap()["hash"].as_str().unwrap().to_string();
    assert!(csv.contains(&last), "the newest record is in the CSV");
    let bad = call(&c2, Method::GET, &format!("{base}/v1/audit?format=xml"), Some(&admin), None).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let verified = call(&c2, Method::GET, &format!("{base}/v1/audit/verify"), Some(&admin), None).await;
    assert_eq!(verified.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_per_address_failed_authentication_and_heavy_jobs() {
    let mut w = world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);").await;
    snapshot_shop(&w.core).await.unwrap();
    let api = &mut w.core.config.config.api;
    (api.requests_per_second, api.failed_auth_per_minute, api.heavy_jobs_per_workspace) = (2, 3, 1);
    let server = start(&w, AddressRules::default()).await;
    let admin = token(&w, "admin", Role::Admin, &[], &[]).await;
    let snapshots = format!("{}/v1/workspaces/shop/snapshots", server.base);

    // Per address: a burst of 4, then 429 with Retry-After; another address is not affected.
    let c5 = client("127.0.0.5");
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let r = call(&c5, Method::GET, &snapshots, Some(&admin), None).await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers().get("retry-after").is_some());
        }
        statuses.push(r.status());
    }
    assert!(statuses.contains(&StatusCode::OK) && statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    let c6 = client("127.0.0.6");
    assert_eq!(call(&c6, Method::GET, &format!("{}/healthz", server.base), None, None).await.status(), StatusCode::OK);

    // Brute force: after 3 failed authentications an address is refused even with a good token.
    let c7 = client("127.0.0.7");
    for _ in 0..4 {
        let bad = call(&c7, Method::GET, &snapshots, Some("tdm_guess"), None).await;
        assert!(matches!(bad.status(), StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS));
        tokio::time::sleep(Duration::from_millis(600)).await; // stay under the per-address rate
    }
    assert_eq!(call(&c7, Method::GET, &snapshots, Some(&admin), None).await.status(), StatusCode::TOO_MANY_REQUESTS);

    // One restore or drill at a time per workspace: a second while a drill runs is 429.
    let c8 = client("127.0.0.8");
    let drills = format!("{}/v1/workspaces/shop/drills", server.base);
    let first = call(&c8, Method::POST, &drills, Some(&admin), None).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let job = format!("{}{}", server.base, first.headers()["location"].to_str().unwrap());
    let second = call(&c8, Method::POST, &drills, Some(&admin), None).await;
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    // Cancelled, the drill removes its throwaway and its job ends as aborted.
    assert_eq!(call(&c8, Method::DELETE, &job, Some(&admin), None).await.status(), StatusCode::ACCEPTED);
    let mut status = String::new();
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(500)).await; // under this server's 2 requests a second
        let now = json(call(&c8, Method::GET, &job, Some(&admin), None).await).await;
        status = now["status"].as_str().unwrap_or("rate-limited").to_string();
        if !matches!(status.as_str(), "running" | "rate-limited") {
            break;
        }
    }
    assert!(matches!(status.as_str(), "aborted" | "succeeded"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stacks_tokens_and_drill_reports_over_http() {
    let w = world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);").await;
    snapshot_shop(&w.core).await.unwrap();
    let server = start(&w, AddressRules::default()).await;
    let (c, base) = (client("127.0.0.2"), server.base.clone());
    let admin = token(&w, "admin", Role::Admin, &[], &[]).await;
    let dev = token(&w, "dev", Role::Developer, &["shop"], &[]).await;

    // A developer changes, publishes and reverts a stack; the history says who.
    let stack = format!("{base}/v1/workspaces/shop/stacks/api/checkout");
    for v in [1, 2] {
        let body = format!(r#"{{"content": {{"route": "/checkout", "v": {v}}}, "message": "v{v}"}}"#);
        assert_eq!(call(&c, Method::PUT, &stack, Some(&dev), Some(&body)).await.status(), StatusCode::OK);
        if v == 1 {
            let published = call(&c, Method::POST, &format!("{stack}/publish"), Some(&dev), None).await;
            assert_eq!(published.status(), StatusCode::OK);
        }
    }
    let diff = json(call(&c, Method::GET, &format!("{stack}/diff?from=published"), Some(&dev), None).await).await;
    assert_eq!(diff["changes"].as_array().unwrap().len(), 1, "{diff}");
    let reverted = call(&c, Method::POST, &format!("{stack}/revert"), Some(&dev), Some(r#"{"to": "published"}"#)).await;
    assert_eq!(reverted.status(), StatusCode::OK);
    let shown = json(call(&c, Method::GET, &stack, Some(&dev), None).await).await;
    assert_eq!(shown["content"]["v"], 1);
    let history = json(call(&c, Method::GET, &format!("{stack}/history"), Some(&dev), None).await).await;
    let changes = history.as_array().unwrap();
    assert_eq!(changes.len(), 3);
    assert!(changes.iter().all(|h| h["author"] == "dev" && h["actor"] == "api:dev"), "{history}");
    let junk = call(&c, Method::PUT, &stack, Some(&dev), Some(r#"{"content": 1, "author": "someone else"}"#)).await;
    assert_eq!(junk.status(), StatusCode::BAD_REQUEST, "the author is the token, never claimed");
    // Text Postgres cannot store (found by schemathesis: it was a 502) is bad input.
    for body in [r#"{"content": 1, "message": "m\u0000"}"#, r#"{"content": {"k": "v\u0000"}}"#] {
        let refused = call(&c, Method::PUT, &stack, Some(&dev), Some(body)).await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    let history = json(call(&c, Method::GET, &format!("{stack}/history"), Some(&dev), None).await).await;
    assert_eq!(history.as_array().unwrap().len(), 3, "nothing was written: {history}");

    // An admin makes a token over HTTP (201, the secret once), it works, then is revoked.
    let made = call(
        &c,
        Method::POST,
        &format!("{base}/v1/tokens"),
        Some(&admin),
        Some(r#"{"name": "ci", "role": "viewer", "workspaces": ["shop"]}"#),
    )
    .await;
    assert_eq!(made.status(), StatusCode::CREATED);
    let made = json(made).await;
    let secret = made["secret"].as_str().unwrap().to_string();
    let snapshots = format!("{base}/v1/workspaces/shop/snapshots");
    assert_eq!(call(&c, Method::GET, &snapshots, Some(&secret), None).await.status(), StatusCode::OK);
    let listed = call(&c, Method::GET, &format!("{base}/v1/tokens"), Some(&admin), None).await.text().await.unwrap();
    assert!(!listed.contains(&secret[4..]), "a list never shows a secret");
    assert_eq!(
        call(&c, Method::DELETE, &format!("{base}/v1/tokens/ci"), Some(&admin), None).await.status(),
        StatusCode::OK
    );
    assert_eq!(call(&c, Method::GET, &snapshots, Some(&secret), None).await.status(), StatusCode::UNAUTHORIZED);
    // A developer cannot make tokens.
    let refused =
        call(&c, Method::POST, &format!("{base}/v1/tokens"), Some(&dev), Some(r#"{"name": "x", "role": "viewer"}"#))
            .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    // A drill's report as JSON and as JUnit.
    let opts = tidemark::ops::drill::DrillOptions::new("shop", tidemark::ops::drill::DrillSource::Snapshot(None));
    assert!(tidemark::ops::drill::drill(&w.core, &opts, &actor()).await.unwrap().passed);
    let drills =
        json(call(&c, Method::GET, &format!("{base}/v1/workspaces/shop/drills"), Some(&admin), None).await).await;
    let id = drills[0]["id"].as_i64().unwrap();
    let report = format!("{base}/v1/workspaces/shop/drills/{id}");
    assert_eq!(json(call(&c, Method::GET, &report, Some(&admin), None).await).await["passed"], true);
    let junit = call(&c, Method::GET, &format!("{report}?format=junit"), Some(&admin), None).await;
    assert_eq!(junit.headers()["content-type"], "application/xml");
    assert!(junit.text().await.unwrap().contains("<testsuite"));
}

/// Issue 16.5: an export kept on the server and private, expiring links to it: bound to
/// the export and the token that asked, dead when that token is revoked, every issue and
/// use audited without the signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_links_expire_are_bound_and_die_with_their_token() {
    let w = world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2);").await;
    snapshot_shop(&w.core).await.unwrap();
    let server = start(&w, AddressRules::default()).await;
    let (c, base) = (client("127.0.0.2"), server.base.clone());
    let operator = TokenCreateOptions {
        name: "exporter".into(),
        role: Role::Operator,
        workspaces: vec![],
        expires: None,
        never_expires: false,
        allow_ips: vec![],
    };
    let operator = create(&w.core, &operator, &actor()).await.unwrap();
    let (admin, viewer, developer) = (
        token(&w, "links-admin", Role::Admin, &[], &[]).await,
        token(&w, "links-viewer", Role::Viewer, &[], &[]).await,
        token(&w, "links-developer", Role::Developer, &[], &[]).await,
    );
    let started =
        call(&c, Method::POST, &format!("{base}/v1/workspaces/shop/exports"), Some(&operator.secret), Some("{}")).await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let job = finished(&c, &base, &started, &admin).await;
    let export = json(started).await["export"].as_str().unwrap().to_string();
    assert_eq!(job["status"], "succeeded", "{job}");
    let file = tidemark::ops::link::export_file(&w.core, "shop", &export).unwrap();
    let on_disk = std::fs::read(&file).unwrap();
    assert!(on_disk.starts_with(b"age-encryption.org/v1"));

    let links = format!("{base}/v1/workspaces/shop/exports/{export}/links");
    for refused in [&viewer, &developer] {
        assert_eq!(call(&c, Method::POST, &links, Some(refused), Some("{}")).await.status(), StatusCode::FORBIDDEN);
    }
    // Over a day, or under a second (dead on issue: an expiry is a whole unix second).
    for valid_for in ["25h", "500ms", "0s"] {
        let body = format!(r#"{{"valid_for": "{valid_for}"}}"#);
        let refused = call(&c, Method::POST, &links, Some(&operator.secret), Some(&body)).await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{valid_for}");
    }
    let issued = call(&c, Method::POST, &links, Some(&operator.secret), Some(r#"{"valid_for": "15m"}"#)).await;
    assert_eq!(issued.status(), StatusCode::CREATED);
    let url = json(issued).await["url"].as_str().unwrap().to_string();
    // No token needed: the link is the credential.
    let got = call(&c, Method::GET, &format!("{base}{url}"), None, None).await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap().to_vec(), on_disk);

    // Altered: the signature, the expiry, another export: refused.
    let sig = url.rsplit("sig=").next().unwrap().to_string();
    let flipped = format!("{}{}", &sig[..sig.len() - 1], if sig.ends_with('0') { '1' } else { '0' });
    let expires: i64 = url.split("expires=").nth(1).unwrap().split('&').next().unwrap().parse().unwrap();
    let other = format!("{:032x}", 7);
    for bad in [
        url.replace(&sig, &flipped),
        url.replace(&format!("expires={expires}"), &format!("expires={}", expires + 3600)),
        url.replace(&export, &other),
        url.replace(&format!("token={}", operator.token.id), "token=tdm_aaaaaaaa"),
        url.replace(&format!("token={}", operator.token.id), &format!("token={}", "x".repeat(5000))),
    ] {
        let r = call(&c, Method::GET, &format!("{base}{bad}"), None, None).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{bad}");
    }
    // Expired.
    let short = call(&c, Method::POST, &links, Some(&operator.secret), Some(r#"{"valid_for": "1s"}"#)).await;
    let short = json(short).await["url"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(call(&c, Method::GET, &format!("{base}{short}"), None, None).await.status(), StatusCode::FORBIDDEN);
    // The token that asked is revoked: its links die with it.
    let revoke = tidemark::ops::token::TokenRevokeOptions { token: "exporter".into() };
    tidemark::ops::token::revoke(&w.core, &revoke, &actor()).await.unwrap();
    assert_eq!(call(&c, Method::GET, &format!("{base}{url}"), None, None).await.status(), StatusCode::FORBIDDEN);

    // Issuing and every use are in the audit trail; the signature never is.
    let trail =
        call(&c, Method::GET, &format!("{base}/v1/audit?limit=500"), Some(&admin), None).await.text().await.unwrap();
    assert!(trail.contains("export.link") && trail.contains("export.download"), "{trail}");
    assert!(!trail.contains(&sig), "a link's signature is a credential");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut w = world().await;
    w.core.config.config.api.header_read_timeout = Duration::from_secs(1);
    let server = start(&w, AddressRules::default()).await;
    let address = server.base.trim_start_matches("http://").to_string();
    // Headers that never end: the server closes the connection after its timeout.
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = std::time::Instant::now();
    // Read until the server closes (it may answer 408 first).
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 256];
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the slow client was still connected after 10 s");
    let held = started.elapsed();
    assert!(held >= Duration::from_millis(900) && held < Duration::from_secs(5), "held for {held:?}");
    // A client that sends its request in time is served.
    let c = client("127.0.0.2");
    assert_eq!(call(&c, Method::GET, &format!("{}/healthz", server.base), None, None).await.status(), StatusCode::OK);
}

/// A self-signed certificate for `localhost` and 127.0.0.1, as PEM (chain, key).
fn certificate() -> (String, String) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    (made.cert.pem(), made.signing_key.serialize_pem())
}

/// A client from 127.0.0.2 that trusts only `pem`.
fn tls_client(pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<IpAddr>().unwrap())
        .tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes()).unwrap()])
        .build()
        .unwrap()
}

/// Whether a client trusting only `pem` gets `/healthz` from `url`.
async fn trusted(pem: &str, url: &str) -> bool {
    tls_client(pem).get(url).send().await.is_ok_and(|r| r.status() == StatusCode::OK)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_certificate_reloaded_on_sighup() {
    use tokio::signal::unix::{SignalKind, signal};
    // This process survives SIGHUP whichever task listens first.
    let _hangup = signal(SignalKind::hangup()).unwrap();
    let mut w = world().await;
    let (cert_path, key_path) = (w.dir.path().join("api.crt"), w.dir.path().join("api.key"));
    let (first, first_key) = certificate();
    std::fs::write(&cert_path, &first).unwrap();
    std::fs::write(&key_path, &first_key).unwrap();
    w.core.config.config.api.listen = Some("127.0.0.1:0".into());

    // Half a pair, a key of another certificate, a missing file: refused when the server
    // starts, naming the file, never quoting the key.
    w.core.config.config.api.tls_cert = Some(cert_path.clone());
    let e = tidemark::api::bind(&w.core.config).await.err().expect("a certificate without its key");
    assert!(e.message().contains("tls-cert and tls-key go together"), "{e}");
    let (_, other_key) = certificate();
    let wrong_key = w.dir.path().join("other.key");
    std::fs::write(&wrong_key, &other_key).unwrap();
    w.core.config.config.api.tls_key = Some(wrong_key);
    let e = tidemark::api::bind(&w.core.config).await.err().expect("a key of another certificate");
    assert!(e.message().contains("does not belong to"), "{e}");
    assert!(!e.to_string().contains("PRIVATE KEY"), "{e}");
    w.core.config.config.api.tls_key = Some(w.dir.path().join("missing.key"));
    let e = tidemark::api::bind(&w.core.config).await.err().expect("a missing key");
    assert!(e.message().contains("missing.key"), "{e}");
    // Plain HTTP on an address that is not loopback is refused; with TLS it is not (the
    // documentation address then fails to bind, which is another error than the refusal).
    w.core.config.config.api.listen = Some("192.0.2.1:8443".into());
    w.core.config.config.api.tls_cert = None;
    w.core.config.config.api.tls_key = None;
    let e = tidemark::api::bind(&w.core.config).await.err().expect("plain HTTP off loopback");
    assert_eq!(e.kind(), tidemark::ErrorKind::Config, "{e}");
    assert!(e.message().contains("tls-cert"), "{e}");
    w.core.config.config.api.tls_cert = Some(cert_path.clone());
    w.core.config.config.api.tls_key = Some(key_path.clone());
    let e = tidemark::api::bind(&w.core.config).await.err().expect("192.0.2.1 is not this machine's");
    assert_eq!(e.kind(), tidemark::ErrorKind::Unavailable, "{e}");

    w.core.config.config.api.listen = Some("127.0.0.1:0".into());
    let listener = tidemark::api::bind(&w.core.config).await.unwrap().unwrap();
    assert!(listener.is_tls());
    let port = listener.local_addr().unwrap().port();
    let stop = CancellationToken::new();
    let _server = Server { base: String::new(), stop: stop.clone() };
    tokio::spawn(tidemark::service::run(
        w.core.clone(),
        Service::api_only(listener, AddressRules::default()),
        stop.clone(),
    ));
    let healthz = format!("https://localhost:{port}/healthz");

    // HTTPS works, and the routes behind it with a token; plain HTTP on the port does not.
    assert!(trusted(&first, &healthz).await);
    let secret = token(&w, "tls-viewer", Role::Viewer, &[], &[]).await;
    let listed =
        call(&tls_client(&first), Method::GET, &format!("https://localhost:{port}/v1/workspaces"), Some(&secret), None)
            .await;
    assert_eq!(listed.status(), StatusCode::OK);
    let plain = client("127.0.0.2").get(format!("http://127.0.0.1:{port}/healthz")).send().await;
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status() != StatusCode::OK), "plain HTTP answered");

    // A renewed certificate: written in place, SIGHUP, the next connection gets it.
    let (second, second_key) = certificate();
    std::fs::write(&cert_path, &second).unwrap();
    std::fs::write(&key_path, &second_key).unwrap();
    assert!(trusted(&first, &healthz).await, "files alone change nothing before SIGHUP");
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).unwrap();
    let mut waited = 0;
    while !trusted(&second, &healthz).await {
        waited += 1;
        assert!(waited < 100, "the renewed certificate was not served after SIGHUP");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!trusted(&first, &healthz).await, "the old certificate is still served");

    // A broken renewal: SIGHUP keeps the certificate in use.
    std::fs::write(&cert_path, "not a certificate").unwrap();
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(trusted(&second, &healthz).await, "a broken renewal took the certificate away");
}

/// schemathesis (PyPI; `scripts/setup-debian.sh` installs it) against a live server with
/// an admin token: every documented operation, generated requests, and no 5xx, no status,
/// content type, header or body outside the document. The token reaches schemathesis in
/// its environment through its config file, never in its arguments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_api_keeps_to_its_openapi_document() {
    let st = ["schemathesis", "st"]
        .into_iter()
        .find(|c| std::process::Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("schemathesis is not installed: run scripts/setup-debian.sh (it installs it from PyPI)");
    let mut w = world().await;
    create_database(
        &w.cluster,
        "shop",
        "CREATE TABLE orders (id int PRIMARY KEY, note text); INSERT INTO orders SELECT g, 'n' || g FROM generate_series(1, 100) g;",
    )
    .await;
    snapshot_shop(&w.core).await.unwrap();
    let put = tidemark::ops::stacks::StackPutOptions {
        workspace: Some("shop".into()),
        stack: "api/checkout".into(),
        json: r#"{"steps": [1, 2]}"#.into(),
        origin: "test".into(),
        ..Default::default()
    };
    tidemark::ops::stacks::put(&w.core, &put, &actor()).await.unwrap();
    // Rate limits off for the run; a few heavy jobs at once.
    w.core.config.config.api.requests_per_second = 0;
    w.core.config.config.api.failed_auth_per_minute = 0;
    w.core.config.config.api.heavy_jobs_per_workspace = 2;
    let server = start(&w, AddressRules::default()).await;
    let secret = token(&w, "schemathesis", Role::Admin, &[], &[]).await;
    let config = w.dir.path().join("schemathesis.toml");
    std::fs::write(&config, "[auth.openapi.token]\nbearer = \"${TIDEMARK_SCHEMATHESIS_TOKEN}\"\n").unwrap();
    let checks = "not_a_server_error,status_code_conformance,content_type_conformance,\
                  response_headers_conformance,response_schema_conformance,ignored_auth";
    let url = format!("{}/v1/openapi.json", server.base);
    let args = [
        "--config-file",
        config.to_str().unwrap(),
        "run",
        &url,
        "--checks",
        checks,
        "--max-examples",
        "15",
        "--request-timeout",
        "30",
        "--phases",
        "examples,coverage,fuzzing",
        // Revoking tokens has its own tests; here it would revoke the run's own token,
        // whose id the token list shows.
        "--exclude-path",
        "/v1/tokens/{token}",
        // These replace the workspace's live database; their roles and refusals have their
        // own tests (the role matrix above, tests/it/inplace.rs).
        "--exclude-path",
        "/v1/workspaces/{ws}/restores/in-place",
        "--exclude-path",
        "/v1/workspaces/{ws}/restores/undo",
        "--exclude-path",
        "/v1/workspaces/{ws}/branches/{name}/set-live",
        // A download link is its own credential: without a real one every answer is 403
        // (which schemathesis reads as a token that stopped working); tested above.
        "--exclude-path",
        "/v1/downloads/{ws}/{export}",
        "--no-color",
    ];
    let ran = tokio::task::spawn_blocking({
        let (st, secret) = (st.to_string(), secret.clone());
        let args: Vec<String> = args.iter().map(ToString::to_string).collect();
        move || {
            std::process::Command::new(st)
                .args(args)
                .env("TIDEMARK_SCHEMATHESIS_TOKEN", secret)
                .current_dir(std::env::temp_dir())
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&ran.stdout), String::from_utf8_lossy(&ran.stderr));
    let said = said.replace(&secret, "tdm_[the token]");
    assert!(ran.status.success(), "schemathesis found problems:\n{said}");
    assert!(said.contains("passed") || said.contains("PASSED"), "{said}");
    assert!(!said.contains("Authentication failed"), "the run's token stopped working:\n{said}");
}
