//! The web console (issue 34) on real parts: a real `serve` on loopback with real Postgres
//! workspaces. Over HTTP: its headers, the session cookie, CSRF, a viewer's forged form
//! refused and audited, sign-out and revocation ending sessions, the session's idle and
//! absolute ends. In a real headless Chromium (tests/console/browser.py, Playwright for
//! Python driving Debian's chromium, axe-core for accessibility): every role signed in, the
//! overview's health, a snapshot's progress seen moving, an in-place restore behind the
//! typed name and its undo, tokens, the audit trail.

use std::time::Duration;

use reqwest::StatusCode;
use tidemark::access::Role;
use tidemark::api::AddressRules;
use tidemark::config::WorkspaceConfig;

use crate::api::{start, token};
use crate::support::{World, actor, create_database, snapshot_shop, world};

/// A signed-in browser, as plain HTTP: its session cookie and its forms' CSRF token.
struct Browser {
    c: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

const FORM: &str = "application/x-www-form-urlencoded";

fn encode(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

fn cookie_of(r: &reqwest::Response, name: &str) -> Option<(String, String)> {
    r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        let (pair, attributes) = v.split_once(';').unwrap_or((v, ""));
        let (k, value) = pair.split_once('=')?;
        (k == name).then(|| (value.to_string(), attributes.to_string()))
    })
}

fn field(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\" value=\"")).unwrap_or_else(|| panic!("no {name} in {html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_string()
}

async fn sign_in(c: &reqwest::Client, base: &str, secret: &str) -> Browser {
    let page = c.get(format!("{base}/")).send().await.unwrap();
    let (pre, _) = cookie_of(&page, "tidemark-signin").expect("the sign-in form's cookie");
    let csrf = field(&page.text().await.unwrap(), "csrf");
    assert_eq!(pre, csrf, "double submit: the form's value is the cookie's");
    let signed = c
        .post(format!("{base}/sign-in"))
        .header("cookie", format!("tidemark-signin={pre}"))
        .header("content-type", FORM)
        .body(encode(&[("token", secret), ("csrf", &csrf)]))
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), StatusCode::SEE_OTHER, "{}", signed.text().await.unwrap());
    let (session, attributes) = cookie_of(&signed, "tidemark-session").expect("a session cookie");
    assert!(attributes.contains("HttpOnly") && attributes.contains("SameSite=Strict"), "{attributes}");
    assert!(!attributes.contains("Secure"), "plain HTTP on loopback: a Secure cookie would never come back");
    assert!(!session.contains(secret) && session.starts_with("tdms_"));
    let cookie = format!("tidemark-session={session}");
    let overview = c.get(format!("{base}/")).header("cookie", &cookie).send().await.unwrap();
    let csrf = field(&overview.text().await.unwrap(), "csrf");
    Browser { c: c.clone(), base: base.to_string(), cookie, csrf }
}

impl Browser {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.c.get(format!("{}{path}", self.base)).header("cookie", &self.cookie).send().await.unwrap()
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.c
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("content-type", FORM)
            .body(encode(form))
            .send()
            .await
            .unwrap()
    }
}

async fn audit_has(w: &World, action: &str, actor_name: &str, outcome: &str) -> bool {
    let opts = tidemark::ops::audit::AuditListOptions { action: Some(action.into()), ..Default::default() };
    let records = tidemark::ops::audit::list(&w.core, &opts, &actor()).await.unwrap();
    records.iter().any(|r| r.entry.actor.name == actor_name && r.entry.outcome == outcome)
}

/// Headers, cookies, CSRF, forged forms, sign-out, revocation and the session's two ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_csrf_and_refusals_over_http() {
    let mut w = world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t (x int); INSERT INTO t VALUES (1);").await;
    w.core.config.config.api.requests_per_second = 0;
    let server = start(&w, AddressRules::default()).await;
    let (viewer, operator) = (
        token(&w, "web-viewer", Role::Viewer, &[], &[]).await,
        token(&w, "web-operator", Role::Operator, &[], &[]).await,
    );
    // A browser's requests, one at a time: redirects are looked at, not followed.
    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // Every page: no frames, no inline scripts, no referrer, not cached.
    let page = c.get(format!("{}/", server.base)).send().await.unwrap();
    let h = page.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'") && !csp.contains("unsafe-inline")
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-store");
    assert!(page.text().await.unwrap().contains("type=\"password\""));

    // A wrong token: refused, audited, no session.
    let home = c.get(format!("{}/", server.base)).send().await.unwrap();
    let (pre, _) = cookie_of(&home, "tidemark-signin").unwrap();
    let bad = c
        .post(format!("{}/sign-in", server.base))
        .header("cookie", format!("tidemark-signin={pre}"))
        .header("content-type", FORM)
        .body(encode(&[("token", "tdm_nope"), ("csrf", pre.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    assert!(cookie_of(&bad, "tidemark-session").is_none());
    assert!(audit_has(&w, "console.sign-in", "unknown", "denied").await);
    // Guessing tokens: an address that fails `failed-auth-per-minute` times is refused
    // for the rest of the minute (429), before its sign-in is even read.
    let guesser = reqwest::Client::builder()
        .local_address("127.0.0.3".parse::<std::net::IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let r = guesser
            .post(format!("{}/sign-in", server.base))
            .header("cookie", format!("tidemark-signin={pre}"))
            .header("content-type", FORM)
            .body(encode(&[("token", "tdm_guess"), ("csrf", pre.as_str())]))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses[0], 401);
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // A sign-in posted from elsewhere (no double-submit cookie): refused.
    let forged = c
        .post(format!("{}/sign-in", server.base))
        .header("content-type", FORM)
        .body(encode(&[("token", operator.as_str()), ("csrf", "x")]))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    // A viewer sees no form, and a forged form of a viewer is refused by the API's gate
    // (403) and audited.
    let v = sign_in(&c, &server.base, &viewer).await;
    let shop = v.get("/w/shop").await.text().await.unwrap();
    assert!(!shop.contains("action=\"/act/"), "a viewer's page has no action");
    assert!(shop.contains("id=\"jobs\"") && shop.contains("id=\"snapshots\""));
    // A section refreshing itself gets that section only (the rest is not read).
    let part = v.get("/w/shop?part=jobs").await.text().await.unwrap();
    assert!(part.contains("id=\"jobs\"") && !part.contains("id=\"snapshots\"") && !part.contains("id=\"summary\""));
    let refused = v.post("/act/snapshot", &[("csrf", &v.csrf), ("ws", "shop")]).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(audit_has(&w, "api.denied", "web-viewer", "denied").await, "the forged request is in the trail");

    // An operator's form without the CSRF token (a cross-site post): refused, nothing runs.
    let o = sign_in(&c, &server.base, &operator).await;
    let jobs_before = w.core.catalog().await.unwrap().jobs(Some("shop"), 100).await.unwrap().len();
    for csrf in ["", "0123", &v.csrf] {
        let r = o.post("/act/snapshot", &[("csrf", csrf), ("ws", "shop")]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "csrf {csrf:?}");
    }
    assert_eq!(w.core.catalog().await.unwrap().jobs(Some("shop"), 100).await.unwrap().len(), jobs_before);
    // With it: a job, and the browser is sent to its page.
    let started = o.post("/act/snapshot", &[("csrf", &o.csrf), ("ws", "shop"), ("note", "web")]).await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let job = started.headers()["location"].to_str().unwrap().to_string();
    assert!(job.starts_with("/jobs/"), "{job}");
    // An open redirect is not one: `back` stays on this server.
    let pinless = o
        .post("/act/restore-point", &[("csrf", &o.csrf), ("ws", "shop"), ("name", "x"), ("back", "//evil.example")])
        .await;
    assert_ne!(pinless.headers().get("location").map(|l| l.to_str().unwrap()), Some("//evil.example"));

    // Sign-out ends the session for every request.
    let out = o.post("/sign-out", &[("csrf", &o.csrf)]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let after = o.get("/w/shop").await;
    assert_eq!(after.status(), StatusCode::SEE_OTHER, "a page without a session goes to sign-in");
    assert_eq!(o.post("/act/snapshot", &[("csrf", &o.csrf), ("ws", "shop")]).await.status(), StatusCode::UNAUTHORIZED);
    assert!(audit_has(&w, "console.sign-out", "web-operator", "ok").await);

    // Revoking the token ends its sessions at once.
    assert_eq!(v.get("/w/shop").await.status(), StatusCode::OK);
    let revoke = tidemark::ops::token::TokenRevokeOptions { token: "web-viewer".into() };
    tidemark::ops::token::revoke(&w.core, &revoke, &actor()).await.unwrap();
    assert_eq!(v.get("/w/shop").await.status(), StatusCode::SEE_OTHER);
    let home = v.get("/").await.text().await.unwrap();
    assert!(home.contains("revoked"), "the sign-in page says why");

    // The session's two ends, asked of the operation at later moments: an hour idle, and
    // the absolute lifetime however active.
    use tidemark::ops::session::{Activity, SignInOptions, resume, sign_in as begin};
    let now = chrono::Utc::now();
    let started = begin(&w.core, &SignInOptions { secret: operator.clone(), address: None }, now).await.unwrap();
    let at = |d: chrono::TimeDelta| now + d;
    resume(&w.core, &started.secret, None, at(chrono::TimeDelta::minutes(59)), Activity::Refresh).await.unwrap();
    let idle = resume(&w.core, &started.secret, None, at(chrono::TimeDelta::minutes(61)), Activity::Person).await;
    assert!(idle.unwrap_err().message().contains("idle"), "a refresh is not a person's activity");
    let mut t = chrono::TimeDelta::zero();
    while t < chrono::TimeDelta::hours(11) {
        t += chrono::TimeDelta::minutes(50);
        resume(&w.core, &started.secret, None, at(t), Activity::Person).await.unwrap();
    }
    let ended = resume(&w.core, &started.secret, None, at(chrono::TimeDelta::hours(12)), Activity::Person).await;
    assert!(ended.unwrap_err().message().contains("lifetime"));
}

/// Where the browser test finds axe-core (scripts/setup-debian.sh puts it there).
const AXE: &str = "/opt/tidemark-test/node_modules/axe-core/axe.min.js";

/// Every role in a real browser (see tests/console/browser.py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser_by_role() {
    for (what, ok) in [
        ("chromium", std::path::Path::new("/usr/bin/chromium").exists()),
        ("axe-core", std::path::Path::new(AXE).exists()),
    ] {
        assert!(ok, "{what} is not installed: run scripts/setup-debian.sh");
    }
    let mut w = world().await;
    // shop: healthy, and large enough that a snapshot's progress is seen moving.
    let copies: String = (2..=20).map(|n| format!("CREATE TABLE big{n} AS SELECT * FROM big;")).collect();
    let sql = format!(
        "CREATE TABLE big (id int PRIMARY KEY, pad text); \
         INSERT INTO big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 250000) g; {copies} \
         CREATE TABLE small (x int); INSERT INTO small VALUES (1);"
    );
    create_database(&w.cluster, "shop", &sql).await;
    // blog: stale (no snapshot within its bound); gone: failing (its snapshot failed).
    create_database(&w.cluster, "blog", "CREATE TABLE t (x int);").await;
    let mut blog = WorkspaceConfig::at(w.cluster.url("blog"));
    blog.alerts = Some(tidemark::config::AlertsConfig {
        max_snapshot_age: Some(Duration::from_secs(3600)),
        ..Default::default()
    });
    w.core.config.config.workspaces.insert("blog".into(), blog);
    w.core.config.config.workspaces.insert("gone".into(), WorkspaceConfig::at(w.cluster.url("gone_missing_db")));
    w.core.config.config.api.requests_per_second = 0;
    let took = std::time::Instant::now();
    snapshot_shop(&w.core).await.unwrap();
    eprintln!("a snapshot of shop took {:?}", took.elapsed());
    let failed = tidemark::ops::snapshot::SnapshotOptions { workspace: "gone".into(), ..Default::default() };
    assert!(tidemark::ops::snapshot::create_recorded(&w.core, &failed, &actor()).await.is_err());
    // A function stack with a published version and a live change after it (its page diffs them).
    let stack = |json: &str| tidemark::ops::stacks::StackPutOptions {
        workspace: Some("shop".into()),
        stack: "api/checkout".into(),
        json: json.into(),
        origin: "console-test".into(),
        author: Some("ana".into()),
        message: Some("a change".into()),
    };
    tidemark::ops::stacks::put(&w.core, &stack(r#"{"steps": ["pay"]}"#), &actor()).await.unwrap();
    let publish = tidemark::ops::stacks::StackPublishOptions {
        workspace: Some("shop".into()),
        stack: "api/checkout".into(),
        author: Some("ana".into()),
        message: None,
    };
    tidemark::ops::stacks::publish(&w.core, &publish, &actor()).await.unwrap();
    tidemark::ops::stacks::put(&w.core, &stack(r#"{"steps": ["pay", "ship"]}"#), &actor()).await.unwrap();
    let server = start(&w, AddressRules::default()).await;
    let mut tokens = serde_json::Map::new();
    for role in [Role::Viewer, Role::Operator, Role::Developer, Role::Admin, Role::Auditor] {
        tokens.insert(role.as_str().into(), token(&w, &format!("web-{role}"), role, &[], &[]).await.into());
    }
    let out = w.dir.path().join("browser");
    std::fs::create_dir_all(&out).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console/browser.py");
    let run = tokio::process::Command::new("python3")
        .arg(script)
        .env("CONSOLE_BASE", &server.base)
        .env("CONSOLE_TOKENS", serde_json::Value::Object(tokens).to_string())
        .env("CONSOLE_OUT", &out)
        .env("AXE_JS", AXE)
        .output();
    let run = tokio::time::timeout(Duration::from_secs(420), run)
        .await
        .expect("the browser test took over 7 minutes")
        .unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap_or_else(|_| "{}".into()))
            .unwrap();
    assert!(
        run.status.success(),
        "the browser test failed:\n{}\n{}\nreport: {report:#}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    // Health as `status` says, worst first.
    assert_eq!(report["overview"], serde_json::json!({"gone": "failing", "blog": "stale", "shop": "healthy"}));
    let seen: Vec<(u64, u64)> = report["progress_seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s[0].as_str().unwrap().parse().unwrap(), s[1].as_str().unwrap().parse().unwrap()))
        .collect();
    // Moving: within one phase (one total), a value seen grew; never went back.
    let same_phase = |p: &[(u64, u64)]| p[0].1 == p[1].1;
    assert!(seen.windows(2).any(|p| same_phase(p) && p[1].0 > p[0].0), "progress not seen moving: {seen:?}");
    assert!(seen.windows(2).all(|p| !same_phase(p) || p[1].0 >= p[0].0), "progress went back: {seen:?}");
    // No serious or critical accessibility violation on any page.
    for (page, violations) in report["axe"].as_object().unwrap() {
        assert_eq!(violations, &serde_json::json!([]), "{page}");
    }
    assert!(report["axe"].as_object().unwrap().len() >= 10);
    // The in-place restore and its undo happened (as the audit trail says too).
    assert!(audit_has(&w, "restore-in-place", "web-admin", "ok").await);
    assert!(audit_has(&w, "restore-undo", "web-admin", "ok").await);
    // `TIDEMARK_WRITE_DOCS=1`: the screenshots README shows.
    if std::env::var_os("TIDEMARK_WRITE_DOCS").is_some() {
        for shot in ["console-overview.png", "console-workspace.png"] {
            std::fs::copy(out.join(shot), concat!(env!("CARGO_MANIFEST_DIR"), "/docs/").to_string() + shot).unwrap();
        }
    }
}
