//! Issue 30, "found by attacking it, round 2": each refusal tested through the front end
//! where it was found (HTTP on real parts: a server on loopback, clients on distinct
//! loopback addresses, a dual-stack listener), next to what is still allowed.

use reqwest::{Method, StatusCode};
use tidemark::access::Role;
use tidemark::api::AddressRules;
use tidemark::config::WorkspaceConfig;

use crate::api::{call, client, finished, json, start, token};
use crate::support::{actor, create_database, databases_like, snapshot_shop, world};
use tidemark::service::Service;

const SHOP: &str = "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100);";

/// Workspace shop (SHOP) with a snapshot, served over HTTP with room for several heavy
/// jobs, a client on 127.0.0.2, an operator's token for shop and an admin's for all.
struct Served {
    w: crate::support::World,
    m: tidemark::repo::manifest::Manifest,
    server: crate::api::Server,
    c: reqwest::Client,
    operator: String,
    admin: String,
}

async fn served() -> Served {
    let mut w = world().await;
    create_database(&w.cluster, "shop", SHOP).await;
    w.core.config.config.api.heavy_jobs_per_workspace = 10;
    w.core.config.config.api.heavy_jobs_per_token = 10;
    let m = snapshot_shop(&w.core).await.unwrap();
    let server = start(&w, AddressRules::default()).await;
    let c = client("127.0.0.2");
    let operator = token(&w, "operator", Role::Operator, &["shop"], &[]).await;
    let admin = token(&w, "admin", Role::Admin, &[], &[]).await;
    Served { w, m, server, c, operator, admin }
}

fn names(listed: &serde_json::Value) -> Vec<String> {
    listed.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect()
}

/// 30.1: a workspace-scoped admin sees and manages only tokens within its workspaces, reads
/// only its workspaces' audit records, and cannot verify the whole chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_admin_stays_in_its_workspaces() {
    let mut w = world().await;
    create_database(&w.cluster, "shop", SHOP).await;
    w.core.config.config.workspaces.insert("blog".into(), WorkspaceConfig::at(w.cluster.url("blog")));
    let server = start(&w, AddressRules::default()).await;
    let (base, c) = (server.base.clone(), client("127.0.0.2"));
    let global = token(&w, "global-admin", Role::Admin, &[], &[]).await;
    let scoped = token(&w, "shop-admin", Role::Admin, &["shop"], &[]).await;
    let _shop_ci = token(&w, "shop-ci", Role::Operator, &["shop"], &[]).await;
    let blog = token(&w, "blog-operator", Role::Operator, &["blog"], &[]).await;
    let _both = token(&w, "both-viewer", Role::Viewer, &["shop", "blog"], &[]).await;

    let listed = json(call(&c, Method::GET, &format!("{base}/v1/tokens"), Some(&scoped), None).await).await;
    assert_eq!(names(&listed).iter().filter(|n| n.as_str() != "shop-admin").collect::<Vec<_>>(), ["shop-ci"]);
    let all = json(call(&c, Method::GET, &format!("{base}/v1/tokens"), Some(&global), None).await).await;
    assert_eq!(names(&all).len(), 5, "a global admin lists every token: {all}");
    // Revoking a token outside its workspaces: as if there were none; the token still works.
    for other in ["global-admin", "blog-operator", "both-viewer"] {
        let r = call(&c, Method::DELETE, &format!("{base}/v1/tokens/{other}"), Some(&scoped), None).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{other}");
    }
    let r = call(&c, Method::GET, &format!("{base}/v1/jobs"), Some(&global), None).await;
    assert_eq!(r.status(), StatusCode::OK, "the global admin's token was not revoked");
    let r = call(&c, Method::DELETE, &format!("{base}/v1/tokens/shop-ci"), Some(&scoped), None).await;
    assert_eq!(r.status(), StatusCode::OK);

    // A record about blog (a refused prune), one about shop.
    let r = call(&c, Method::POST, &format!("{base}/v1/workspaces/blog/prune"), Some(&blog), None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    snapshot_shop(&w.core).await.unwrap();
    let trail = json(call(&c, Method::GET, &format!("{base}/v1/audit"), Some(&scoped), None).await).await;
    let records = trail.as_array().unwrap();
    let targets: Vec<&str> = records.iter().map(|r| r["target"].as_str().unwrap()).collect();
    assert!(targets.contains(&"token/shop-ci"), "its own workspace's token: {targets:?}");
    assert!(!targets.iter().any(|t| *t == "blog" || t.starts_with("blog/")), "blog's records: {targets:?}");
    let created: Vec<&str> =
        records.iter().filter(|r| r["action"] == "token.create").map(|r| r["target"].as_str().unwrap()).collect();
    assert_eq!(created, ["token/shop-admin", "token/shop-ci"], "tokens for other workspaces are not its business");
    let everything = json(call(&c, Method::GET, &format!("{base}/v1/audit"), Some(&global), None).await).await;
    assert!(everything.as_array().unwrap().iter().any(|r| r["target"] == "blog"), "{everything}");
    let r = call(&c, Method::GET, &format!("{base}/v1/audit/verify"), Some(&scoped), None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Issue 31.10: an unknown workspace names neither the others nor the config's path; to a
    // scoped token it is refused like another workspace (which exist is not its business).
    let r = call(&c, Method::GET, &format!("{base}/v1/workspaces/nope/snapshots"), Some(&global), None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let message = json(r).await["error"]["message"].as_str().unwrap().to_string();
    let config = w.core.config.path.display().to_string();
    assert!(!message.contains("shop") && !message.contains("blog") && !message.contains(&config), "{message}");
    for other in ["nope", "blog"] {
        let r = call(&c, Method::GET, &format!("{base}/v1/workspaces/{other}/snapshots"), Some(&scoped), None).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{other}");
    }
    let r = call(&c, Method::GET, &format!("{base}/v1/audit/verify"), Some(&global), None).await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// 30.2: stopping a job needs what starting that exact operation needs; an operation the
/// server does not know is refused; every attempt is audited with the canceller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_job_needs_what_starting_it_needs() {
    let mut w = world().await;
    create_database(&w.cluster, "shop", SHOP).await;
    w.core.config.config.api.heavy_jobs_per_workspace = 10;
    let server = start(&w, AddressRules::default()).await;
    let (base, c) = (server.base.clone(), client("127.0.0.2"));
    let admin = token(&w, "admin", Role::Admin, &[], &[]).await;
    let operator = token(&w, "operator", Role::Operator, &[], &[]).await;
    let viewer = token(&w, "viewer", Role::Viewer, &[], &[]).await;
    let missing = "20200101T000000Z-000000";
    // Jobs of the admin's that end at once (no such snapshot): recorded under their own names.
    let mut jobs = Vec::new();
    for (path, body) in [
        ("restores/in-place", format!(r#"{{"snapshot": "{missing}", "confirm": "shop"}}"#)),
        ("restores/undo", r#"{"confirm": "shop"}"#.to_string()),
        ("branches/none/set-live", r#"{"confirm": "shop"}"#.to_string()),
        ("exports", format!(r#"{{"snapshot": "{missing}"}}"#)),
        ("check", String::new()),
    ] {
        let url = format!("{base}/v1/workspaces/shop/{path}");
        let started = call(&c, Method::POST, &url, Some(&admin), Some(&body)).await;
        assert_eq!(started.status(), StatusCode::ACCEPTED, "{path}");
        let job = finished(&c, &base, &started, &admin).await;
        jobs.push((path, job["id"].as_i64().unwrap(), job["operation"].as_str().unwrap().to_string()));
    }
    let operations: Vec<&str> = jobs.iter().map(|(_, _, op)| op.as_str()).collect();
    assert_eq!(operations, ["restore-in-place", "restore-undo", "branch-set-live", "export", "check"]);
    for (path, id, _) in &jobs {
        let url = format!("{base}/v1/jobs/{id}");
        for (who, secret) in [("viewer", &viewer), ("operator", &operator)] {
            let refused = call(&c, Method::DELETE, &url, Some(secret), None).await;
            let may = who == "operator" && *path == "exports";
            let want = if may { StatusCode::CONFLICT } else { StatusCode::FORBIDDEN };
            assert_eq!(refused.status(), want, "{who} stopping the admin's {path}");
        }
        // The admin may: the job is over, so there is nothing to stop.
        assert_eq!(call(&c, Method::DELETE, &url, Some(&admin), None).await.status(), StatusCode::CONFLICT);
    }
    // A viewer may stop its own check.
    let own = call(&c, Method::POST, &format!("{base}/v1/workspaces/shop/check"), Some(&viewer), None).await;
    let own = finished(&c, &base, &own, &viewer).await;
    let url = format!("{base}/v1/jobs/{}", own["id"]);
    assert_eq!(call(&c, Method::DELETE, &url, Some(&viewer), None).await.status(), StatusCode::CONFLICT);
    // A job of an operation this server does not know: refused, even to an admin.
    let unknown = tidemark::catalog::NewJob {
        workspace: "shop".into(),
        operation: "restore.in-place".into(),
        kind: None,
        trigger: tidemark::catalog::Trigger::of(&actor()),
        policy: None,
        scheduled_for: None,
        started_at: chrono::Utc::now(),
        actor: Some(actor().to_string()),
    };
    let id = w.core.catalog().await.unwrap().start_job(&unknown).await.unwrap();
    let r = call(&c, Method::DELETE, &format!("{base}/v1/jobs/{id}"), Some(&admin), None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The canceller is in the trail.
    let trail = json(call(&c, Method::GET, &format!("{base}/v1/audit"), Some(&admin), None).await).await;
    let cancels: Vec<&serde_json::Value> =
        trail.as_array().unwrap().iter().filter(|r| r["action"] == "job.cancel").collect();
    assert!(cancels.iter().any(|r| r["actor"]["name"] == "viewer" && r["outcome"] == "denied"), "{cancels:?}");
    assert!(cancels.iter().any(|r| r["actor"]["name"] == "operator" && r["outcome"] == "denied"), "{cancels:?}");
    assert!(cancels.iter().all(|r| r["details"]["job"].is_i64() && r["details"]["operation"].is_string()));
}

/// 30.3 and 30.4: restores into a server's system databases, a name tidemark keeps beside a
/// workspace, or a live database are refused (over HTTP, and for the host too where it is
/// not allowed either); undo swaps back only a database recorded as moved aside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_stay_out_of_system_reserved_and_live_databases() {
    let Served { w, m, server, c, operator, admin } = served().await;
    let base = server.base.clone();
    let restores = format!("{base}/v1/workspaces/shop/restores");
    for (database, tables) in [
        ("template1", false),
        ("postgres", false),
        ("template0", true),
        ("shop_before_evil", false),
        ("shop_restoring_x", true),
        ("shop_branch_x", false),
        ("shop", false),
    ] {
        let tables = if tables { r#", "tables": ["public.t"]"# } else { "" };
        let body = format!(r#"{{"snapshot": "{}", "database": "{database}"{tables}}}"#, m.id);
        let started = call(&c, Method::POST, &restores, Some(&operator), Some(&body)).await;
        let refused = match started.status() {
            StatusCode::ACCEPTED => finished(&c, &base, &started, &operator).await["error"].clone(),
            status => {
                assert!(status.is_client_error(), "{database}: {status}");
                json(started).await["error"]["message"].clone()
            }
        };
        assert!(!refused.is_null(), "{database}: the restore went ahead");
    }
    for db in ["template1", "postgres"] {
        let spec = tidemark::pg::ConnSpec::parse(&w.cluster.url(db), None).unwrap();
        let mut conn = spec.connect().await.unwrap();
        let leaked: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_class WHERE relname = 't'").fetch_one(&mut conn).await.unwrap();
        assert_eq!(leaked, 0, "a table restored into {db}");
    }
    assert!(databases_like(&w.cluster, "shop_%").await.is_empty());
    // The host's command line is refused the system databases too (the same operation).
    let opts = tidemark::ops::restore::RestoreOptions {
        snapshot: m.id.clone(),
        workspace: Some("shop".into()),
        target: w.cluster.url("template1").into(),
        ..Default::default()
    };
    let e = tidemark::ops::restore::restore(&w.core, &opts, &actor()).await.unwrap_err();
    assert_eq!(e.kind(), tidemark::ErrorKind::Refused, "{}", e.report());

    let undo_url = format!("{base}/v1/workspaces/shop/restores/undo");
    let undo = async || {
        let asked = call(&c, Method::POST, &undo_url, Some(&admin), Some(r#"{"confirm": "shop"}"#)).await;
        finished(&c, &base, &asked, &admin).await
    };
    let live = tidemark::pg::ConnSpec::parse(&w.cluster.url("shop"), None).unwrap();
    let live_rows = async || {
        let mut conn = live.connect().await.unwrap();
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM t").fetch_one(&mut conn).await.unwrap()
    };

    // A database named like one an in-place restore moved aside, made by hand: undo does not
    // take it for one (nothing is recorded as moved aside).
    create_database(&w.cluster, "shop_before_20200101t000000z_000000", "CREATE TABLE planted (x int);").await;
    let job = undo().await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(live_rows().await, 100, "the live database is still the workspace's");

    // A real in-place restore; then the database it moved aside is replaced by another of
    // the same name (dropped and made again): undo refuses it, by its oid.
    let body = format!(r#"{{"snapshot": "{}", "confirm": "shop"}}"#, m.id);
    let url = format!("{base}/v1/workspaces/shop/restores/in-place");
    let job = finished(&c, &base, &call(&c, Method::POST, &url, Some(&admin), Some(&body)).await, &admin).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let aside = format!("shop_before_{}", m.id.to_ascii_lowercase().replace('-', "_"));
    let server = tidemark::pg::ConnSpec::parse(&w.cluster.url("postgres"), None).unwrap();
    let mut dba = server.connect().await.unwrap();
    for sql in [format!(r#"ALTER DATABASE "{aside}" RENAME TO elsewhere"#), format!(r#"CREATE DATABASE "{aside}""#)] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut dba).await.unwrap();
    }
    let job = undo().await;
    assert_eq!(job["status"], "refused", "{job}");
    assert!(job["error"].as_str().unwrap().contains("is not the one"), "{job}");
    assert_eq!(live_rows().await, 100, "the restored database is still live");
}

/// 30.5: a `dbname` parameter in a workspace's URL cannot send a branch's restore to the
/// live database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dbname_parameter_does_not_redirect_a_branch() {
    let mut w = world().await;
    create_database(&w.cluster, "shop", SHOP).await;
    let url = format!("postgres://postgres@127.0.0.1:{}/?dbname=shop", w.cluster.port());
    w.core.config.config.workspaces.insert("shop".into(), WorkspaceConfig::at(url));
    std::fs::write(&w.core.config.path, toml::to_string(&w.core.config.config).unwrap()).unwrap();
    snapshot_shop(&w.core).await.unwrap();
    let server = start(&w, AddressRules::default()).await;
    let (base, c) = (server.base.clone(), client("127.0.0.2"));
    let admin = token(&w, "admin", Role::Admin, &[], &[]).await;
    let started =
        call(&c, Method::POST, &format!("{base}/v1/workspaces/shop/branches"), Some(&admin), Some(r#"{"name": "b1"}"#))
            .await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let job = finished(&c, &base, &started, &admin).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(databases_like(&w.cluster, "shop_branch_b1").await, ["shop_branch_b1"]);
    // And a URL naming two databases is refused when read.
    let twice = format!("postgres://postgres@127.0.0.1:{}/shop?dbname=blog", w.cluster.port());
    let e = tidemark::pg::ConnSpec::parse(&twice, None).unwrap_err();
    assert_eq!(e.kind(), tidemark::ErrorKind::Config);
}

/// 30.6 to 30.8: IPv4-mapped addresses meet the deny list (a dual-stack listener, and in
/// X-Forwarded-For), every hop form through a trusted proxy is parsed or the request is
/// refused, and a flood of refusals writes one audit record a minute per address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_are_compared_as_themselves_and_refusals_do_not_flood_the_trail() {
    let mut w = world().await;
    create_database(&w.cluster, "shop", SHOP).await;
    w.core.config.config.api.requests_per_second = 0;
    let rules = AddressRules {
        deny: vec![tidemark::access::parse_net("127.0.0.9").unwrap()],
        trusted_proxies: vec![tidemark::access::parse_net("127.0.0.2").unwrap()],
        ..Default::default()
    };
    // A dual-stack listener: IPv4 clients arrive as ::ffff:a.b.c.d.
    let listener = tokio::net::TcpListener::bind("[::]:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = tokio_util::sync::CancellationToken::new();
    let served =
        tokio::spawn(tidemark::service::run(w.core.clone(), Service::api_only(listener.into(), rules), stop.clone()));
    let base = format!("http://127.0.0.1:{port}");
    let admin = token(&w, "admin", Role::Admin, &[], &[]).await;
    let snapshots = format!("{base}/v1/workspaces/shop/snapshots");
    let denied = client("127.0.0.9");
    assert_eq!(call(&denied, Method::GET, &snapshots, Some(&admin), None).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(call(&client("127.0.0.8"), Method::GET, &snapshots, Some(&admin), None).await.status(), StatusCode::OK);

    // Through the trusted proxy (127.0.0.2): every form of the denied address is denied.
    let proxy = client("127.0.0.2");
    let via = async |forwarded: &str| {
        proxy.get(&snapshots).bearer_auth(&admin).header("x-forwarded-for", forwarded).send().await.unwrap().status()
    };
    for forwarded in ["::ffff:127.0.0.9", "127.0.0.3, 127.0.0.9:5555", "[::ffff:127.0.0.9]:80", "127.0.0.3, 127.0.0.9"]
    {
        assert_eq!(via(forwarded).await, StatusCode::FORBIDDEN, "{forwarded}");
    }
    // A hop that is no address is never skipped to reach one the client chose.
    assert_eq!(via("127.0.0.3, not-an-address").await, StatusCode::BAD_REQUEST);
    assert_eq!(via("127.0.0.3:4444").await, StatusCode::OK);
    assert_eq!(via("[::1]:80").await, StatusCode::OK);

    // A flood from a denied address, with long paths: a few records, paths cut.
    let size_before = crate::support::catalog_bytes(&w).await;
    let long = format!("{base}/v1/{}", "a".repeat(60_000));
    for _ in 0..300 {
        assert_eq!(call(&denied, Method::GET, &long, None, None).await.status(), StatusCode::FORBIDDEN);
    }
    let records = w.core.catalog().await.unwrap().audit_records(None).await.unwrap();
    let from_nine: Vec<_> = records
        .iter()
        .filter(|r| r.entry.actor.address.as_deref() == Some("127.0.0.9") && r.entry.action == "api.denied")
        .collect();
    assert_eq!(from_nine.len(), 1, "one record for the minute: {from_nine:?}");
    // Issue 31.6: one error in the record, its own kind (it also said `refused`).
    assert_eq!(from_nine[0].entry.details["error"]["kind"], "forbidden", "{from_nine:?}");
    assert!(from_nine[0].entry.details.get("kind").is_none(), "{from_nine:?}");
    assert!(records.iter().all(|r| r.entry.target.len() <= 300), "a path is cut");
    let grown = crate::support::catalog_bytes(&w).await.saturating_sub(size_before);
    assert!(grown < 1024 * 1024, "the catalog grew by {grown} bytes");
    // At shutdown, the rest of the minute is one record with its count.
    stop.cancel();
    served.await.unwrap().unwrap();
    let records = w.core.catalog().await.unwrap().audit_records(None).await.unwrap();
    let counted: Vec<_> = records.iter().filter(|r| r.entry.action == "api.denied.repeated").collect();
    assert!(
        counted
            .iter()
            .any(|r| r.entry.actor.address.as_deref() == Some("127.0.0.9")
                && r.entry.details["count"].as_u64() >= Some(300)),
        "{counted:?}"
    );
}

/// 30.9: exports are heavy jobs: one at a time per workspace, and a few per token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_take_a_heavy_slot_and_count_against_the_token() {
    let mut w = world().await;
    create_database(&w.cluster, "shop", SHOP).await;
    snapshot_shop(&w.core).await.unwrap();
    w.core.config.config.api.requests_per_second = 0;
    // A slow store: each export runs for seconds, while the others are asked.
    let faults = tidemark::repo::faults::Faults::new();
    faults.delay(std::time::Duration::from_millis(300));
    w.core.repo = w.core.repo.with_faults(&faults);
    let server = start(&w, AddressRules::default()).await;
    let (base, c) = (server.base.clone(), client("127.0.0.2"));
    let operator = token(&w, "operator", Role::Operator, &["shop"], &[]).await;
    let exports = format!("{base}/v1/workspaces/shop/exports");
    let asked =
        futures::future::join_all((0..6).map(|_| call(&c, Method::POST, &exports, Some(&operator), None))).await;
    let statuses: Vec<StatusCode> = asked.iter().map(reqwest::Response::status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::ACCEPTED).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count(), 5, "{statuses:?}");
    let started = asked.iter().find(|r| r.status() == StatusCode::ACCEPTED).unwrap();
    let job = finished(&c, &base, started, &operator).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // Its slot is given back.
    let again = call(&c, Method::POST, &exports, Some(&operator), Some(r#"{"schema_only": true}"#)).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    finished(&c, &base, &again, &operator).await;
    drop(server);

    // With room in the workspace, the token's own quota (2 by default) holds.
    w.core.config.config.api.heavy_jobs_per_workspace = 10;
    let server = start(&w, AddressRules::default()).await;
    let exports = format!("{}/v1/workspaces/shop/exports", server.base);
    let asked =
        futures::future::join_all((0..6).map(|_| call(&c, Method::POST, &exports, Some(&operator), None))).await;
    let accepted = asked.iter().filter(|r| r.status() == StatusCode::ACCEPTED).count();
    assert_eq!(accepted, 2, "{:?}", asked.iter().map(reqwest::Response::status).collect::<Vec<_>>());
    for started in asked.iter().filter(|r| r.status() == StatusCode::ACCEPTED) {
        finished(&c, &server.base, started, &operator).await;
    }
}

/// The binary, with `w`'s config, dying at fault point `fault` (or none).
fn tidemark_at(w: &crate::support::World, fault: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"));
    cmd.args(["--config", w.core.config.path.to_str().unwrap()]).args(args).env_remove("CI");
    match fault {
        Some(point) => cmd.env(tidemark::faults::VARIABLE, point),
        None => cmd.env_remove(tidemark::faults::VARIABLE),
    };
    cmd.output().unwrap()
}

/// The media folders an in-place restore made beside the live one in `dir`.
fn restoring_media(dir: &std::path::Path) -> Vec<String> {
    let names = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap());
    names.filter(|n| n.starts_with("media.restoring-")).collect()
}

fn files(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// 30.11: an in-place restore killed at each step of its switch leaves a live database that
/// is whole (the old one or the new one), and the next `restore undo` finishes or undoes
/// the switch first: afterwards database and media are the ones from before, with nothing
/// left beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_restore_killed_at_any_step_of_its_switch_is_finished_or_undone() {
    for point in [
        "switch-intent-recorded",
        "switch-renamed-live-aside",
        "switch-database-switched",
        "media-moved-aside",
        "switch-media-switched",
    ] {
        let mut w = world().await;
        let media = w.dir.path().join("media");
        std::fs::create_dir_all(&media).unwrap();
        std::fs::write(media.join("notes.txt"), b"at the snapshot").unwrap();
        w.core.config.config.workspaces.get_mut("shop").unwrap().media =
            Some(url::Url::from_directory_path(&media).unwrap().to_string());
        std::fs::write(&w.core.config.path, toml::to_string(&w.core.config.config).unwrap()).unwrap();
        let live = create_database(&w.cluster, "shop", SHOP).await;
        let snapshot = snapshot_shop(&w.core).await.unwrap();
        let at_snapshot = crate::support::content_fingerprint(&live).await;
        // After the snapshot: data and media change.
        let mut conn = live.connect().await.unwrap();
        sqlx::raw_sql("DELETE FROM t WHERE id > 50").execute(&mut conn).await.unwrap();
        drop(conn);
        std::fs::write(media.join("notes.txt"), b"changed later").unwrap();
        let before = (crate::support::content_fingerprint(&live).await, files(&media));

        let killed =
            tidemark_at(&w, Some(point), &["restore", &snapshot.id, "--in-place", "-w", "shop", "--confirm", "shop"]);
        assert_eq!(killed.status.code(), None, "{point}: not killed: {}", String::from_utf8_lossy(&killed.stderr));
        // Right after the crash: a live database, whole, the old one or the new one.
        let now = crate::support::content_fingerprint(&live).await;
        assert!(now == before.0 || now == at_snapshot, "{point}: the live database is neither");

        let undone = tidemark_at(&w, None, &["restore", "undo", "shop", "--confirm", "shop"]);
        let stderr = String::from_utf8_lossy(&undone.stderr);
        match point {
            // Switched before the crash: finished, then undone.
            "switch-database-switched" | "media-moved-aside" | "switch-media-switched" => {
                assert!(undone.status.success(), "{point}: {stderr}");
            }
            // Not switched: undone by the recovery, and nothing to swap back.
            _ => assert_eq!(undone.status.code(), Some(tidemark::ErrorKind::NotFound.exit_code()), "{point}: {stderr}"),
        }
        assert_eq!(crate::support::content_fingerprint(&live).await, before.0, "{point}: the database");
        assert_eq!(files(&media), before.1, "{point}: the media");
        assert!(databases_like(&w.cluster, "shop_restoring_%").await.is_empty(), "{point}: a copy was left");
        let beside = restoring_media(w.dir.path());
        assert!(beside.is_empty(), "{point}: {beside:?}");
        assert!(w.core.catalog().await.unwrap().switch_intent("shop").await.unwrap().is_none(), "{point}");
        let trail = w.core.catalog().await.unwrap().audit_records(None).await.unwrap();
        assert!(trail.iter().any(|r| r.entry.action == "switch.recover" && r.entry.outcome == "ok"), "{point}");
    }
}

/// 30.13: `serve` stopped with SIGTERM while an API in-place restore runs: no new jobs are
/// taken, the running one is stopped (the shutdown timeout is zero here) and ends as a
/// stopped restore does (its copy dropped, its media removed), recorded as aborted before
/// the process exits; the live database is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_serve_stops_an_api_job_with_its_cleanup() {
    use std::io::{BufRead, BufReader};
    let mut w = world().await;
    let live = create_database(
        &w.cluster,
        "shop",
        "CREATE TABLE t (id int PRIMARY KEY, v text); \
         INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, 400000) i; CREATE INDEX ON t (v);",
    )
    .await;
    let media = w.dir.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("notes.txt"), b"live").unwrap();
    w.core.config.config.workspaces.get_mut("shop").unwrap().media =
        Some(url::Url::from_directory_path(&media).unwrap().to_string());
    let snapshot = snapshot_shop(&w.core).await.unwrap();
    let before = crate::support::content_fingerprint(&live).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    w.core.config.config.api.listen = Some(format!("127.0.0.1:{port}"));
    std::fs::write(&w.core.config.path, toml::to_string(&w.core.config.config).unwrap()).unwrap();
    let admin = token(&w, "admin", Role::Admin, &[], &[]).await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["--config", w.core.config.path.to_str().unwrap(), "serve", "--api-only", "--shutdown-timeout", "0s"])
        .args(["--log-format", "json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("serving the API") {
            break;
        }
    }
    let (base, c) = (format!("http://127.0.0.1:{port}"), client("127.0.0.2"));
    let body = format!(r#"{{"snapshot": "{}", "confirm": "shop"}}"#, snapshot.id);
    let url = format!("{base}/v1/workspaces/shop/restores/in-place");
    let started = call(&c, Method::POST, &url, Some(&admin), Some(&body)).await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let job_url = format!("{base}{}", started.headers()["location"].to_str().unwrap());
    // Stopped once the copy beside the live database is being loaded: its database exists.
    let mut observer = live.connect().await.unwrap();
    let copying = "SELECT count(*) FROM pg_database WHERE datname LIKE 'shop\\_restoring\\_%'";
    let mut seen = false;
    for _ in 0..3000 {
        if sqlx::query_scalar::<_, i64>(copying).fetch_one(&mut observer).await.unwrap() > 0 {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(seen, "the restore beside the live database never started");
    drop(observer);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(child.wait().unwrap().code(), Some(0), "{rest:?}");

    // Its end is recorded: stopped (the copy is loading for about a second after its
    // database appears), or, when the stop came as the switch began, finished (a switch is
    // never left half done). Nothing is left beside the live database either way.
    let job_id = job_url.rsplit('/').next().unwrap().parse().unwrap();
    let job = w.core.catalog().await.unwrap().job(job_id).await.unwrap();
    assert!(matches!(job.status.as_str(), "aborted" | "succeeded"), "{job:?} {rest:#?}");
    if job.status == "aborted" {
        assert!(databases_like(&w.cluster, "shop_before_%").await.is_empty(), "nothing was switched");
    }
    assert!(
        databases_like(&w.cluster, "shop_restoring_%").await.is_empty(),
        "the copy beside the live database was left"
    );
    let left = restoring_media(w.dir.path());
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(crate::support::content_fingerprint(&live).await, before, "the live database");
    assert_eq!(std::fs::read(media.join("notes.txt")).unwrap(), b"live");
}

/// 30.10: a catalog whose audit chain was replaced (a new chain id, the chain row deleted)
/// no longer passes `audit verify`, and is never checkpointed as genuine; a catalog that
/// was lost starts a new chain only through `audit new-chain`, linked to the old chain's
/// last checkpoint, and verifies then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_audit_chain_fails_verification_and_a_new_one_is_linked() {
    use tidemark::ops::audit;
    let w = world().await;
    let made = |name: &str| tidemark::ops::token::TokenCreateOptions {
        name: name.into(),
        role: Role::Viewer,
        workspaces: Vec::new(),
        expires: None,
        never_expires: false,
        allow_ips: Vec::new(),
    };
    for name in ["one", "two"] {
        tidemark::ops::token::create(&w.core, &made(name), &actor()).await.unwrap();
    }
    let genuine = audit::verify(&w.core, &actor()).await.unwrap();
    let chain = genuine.chain.clone().unwrap();
    assert_eq!(genuine.checkpoint.as_ref().map(|c| c.seq), Some(2));
    let chains_in_repo = || async { std::fs::read_dir(w.repo_dir().join("audit")).unwrap().count() };

    for attack in ["UPDATE audit_chain SET id = 'forged0000000000'", "DELETE FROM audit_chain"] {
        crate::support::catalog_sql(&w, attack).await;
        let e = audit::verify(&w.core, &actor()).await.unwrap_err();
        assert_eq!(e.kind(), tidemark::ErrorKind::Integrity, "{attack}: {}", e.report());
        assert!(e.message().contains(&chain), "{attack}: {}", e.report());
        // The next audited action is recorded, but its chain is not checkpointed as genuine.
        tidemark::ops::token::create(&w.core, &made(&format!("after-{}", attack.len())), &actor()).await.unwrap();
        assert_eq!(chains_in_repo().await, 1, "{attack}: a second chain was checkpointed");
        assert!(audit::verify(&w.core, &actor()).await.is_err(), "{attack}");
        let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        crate::support::catalog_sql(
            &w,
            &format!("DELETE FROM audit_chain; INSERT INTO audit_chain (id, created) VALUES ('{chain}', '{created}')"),
        )
        .await;
        audit::verify(&w.core, &actor()).await.unwrap();
    }

    // The catalog is lost: the empty trail does not verify; `audit new-chain` links a new one.
    crate::support::lose_catalog(&w).await;
    let run = |args: &[&str]| tidemark_at(&w, None, args);
    let lost = run(&["audit", "verify"]);
    assert_eq!(lost.status.code(), Some(tidemark::ErrorKind::Integrity.exit_code()));
    assert!(
        String::from_utf8_lossy(&lost.stderr).contains("audit new-chain"),
        "{}",
        String::from_utf8_lossy(&lost.stderr)
    );
    let started = run(&["--json", "audit", "new-chain"]);
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let link: serde_json::Value = serde_json::from_slice(&started.stdout).unwrap();
    assert_eq!(link["follows"]["chain"], chain.as_str());
    let verified = run(&["--json", "audit", "verify"]);
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    let report: serde_json::Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(report["continues"][0]["chain"], chain.as_str(), "{report}");
    assert_ne!(report["chain"], chain.as_str());
    let again = run(&["audit", "new-chain"]);
    assert_eq!(again.status.code(), Some(tidemark::ErrorKind::Refused.exit_code()), "linked already");
}

/// Issue 32: the rules are the operation's, so the command line and the API refuse the same
/// bad inputs with the same kind (the CLI took `--jobs 500` and any number of tables); and
/// tables restored into the live database are their own operation, which needs the right to
/// change the live database (an operator could, with "restore into a new database").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_the_api_refuse_alike_and_tables_into_live_need_the_live_right() {
    let Served { w, m, server, c, operator, admin } = served().await;
    let base = server.base.clone();
    let many: Vec<String> = (0..101).map(|i| format!("public.t{i}")).collect();
    let long_name = "x".repeat(64);
    let copy_url = w.cluster.url("shop_copy");
    let long_url = w.cluster.url(&long_name);
    let mut many_args = vec!["restore", m.id.as_str(), "-w", "shop", "--target", copy_url.as_str()];
    for t in &many {
        many_args.extend(["--table", t.as_str()]);
    }
    let cases: Vec<(&str, String, String, Vec<&str>)> = vec![
        (
            "500 connections",
            "restores".into(),
            format!(r#"{{"snapshot": "{}", "database": "shop_copy", "jobs": 500}}"#, m.id),
            vec!["restore", &m.id, "-w", "shop", "--target", &copy_url, "--jobs", "500"],
        ),
        (
            "101 tables",
            "restores".into(),
            format!(r#"{{"snapshot": "{}", "database": "shop_copy", "tables": {}}}"#, m.id, serde_json::json!(many)),
            many_args.clone(),
        ),
        (
            "a branch on 500 connections",
            "branches".into(),
            format!(r#"{{"name": "b", "from": "{}", "jobs": 500}}"#, m.id),
            vec!["branch", "create", "shop", "b", "--from", &m.id, "--jobs", "500"],
        ),
        (
            "a snapshot and a moment",
            "restores".into(),
            format!(r#"{{"snapshot": "{}", "time": "2026-11-22 10:15:00+00", "database": "shop_copy"}}"#, m.id),
            vec!["restore", &m.id, "-w", "shop", "--target", &copy_url, "--time", "2026-11-22 10:15:00+00"],
        ),
        (
            "a moment that is none",
            "restores".into(),
            r#"{"time": "around lunch", "database": "shop_copy"}"#.into(),
            vec!["restore", "-w", "shop", "--target", &copy_url, "--time", "around lunch"],
        ),
        (
            "a snapshot id that is none",
            "restores".into(),
            r#"{"snapshot": "../../etc", "database": "shop_copy"}"#.into(),
            vec!["restore", "../../etc", "-w", "shop", "--target", &copy_url],
        ),
        (
            "a branch from a snapshot and a moment",
            "branches".into(),
            format!(r#"{{"name": "b", "from": "{}", "time": "2026-11-22 10:15:00+00"}}"#, m.id),
            vec!["branch", "create", "shop", "b", "--from", &m.id, "--time", "2026-11-22 10:15:00+00"],
        ),
        (
            "a branch name that is none",
            "branches".into(),
            r#"{"name": "Not A Name"}"#.into(),
            vec!["branch", "create", "shop", "Not A Name"],
        ),
        (
            "a 64-byte database name",
            "restores".into(),
            format!(r#"{{"snapshot": "{}", "database": "{long_name}"}}"#, m.id),
            vec!["restore", &m.id, "-w", "shop", "--target", &long_url],
        ),
    ];
    for (what, route, body, args) in cases {
        let url = format!("{base}/v1/workspaces/shop/{route}");
        let answered = call(&c, Method::POST, &url, Some(&admin), Some(&body)).await;
        assert_eq!(answered.status(), StatusCode::BAD_REQUEST, "{what} over the API");
        assert_eq!(json(answered).await["error"]["kind"], "usage", "{what} over the API");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args(["--config", w.core.config.path.to_str().unwrap()])
            .args(&args)
            .env_remove("CI")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(tidemark::ErrorKind::Usage.exit_code()),
            "{what} on the command line: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(databases_like(&w.cluster, "shop_%").await.is_empty(), "nothing was made");
    assert!(databases_like(&w.cluster, "xxxx%").await.is_empty(), "nothing was made");

    // Tables beside the live ones: an operator is refused (before any job), an admin not.
    let url = format!("{base}/v1/workspaces/shop/restores");
    let body =
        format!(r#"{{"snapshot": "{}", "tables": ["public.t"], "into_live": true, "as": ["public.t_back"]}}"#, m.id);
    let refused = call(&c, Method::POST, &url, Some(&operator), Some(&body)).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let started = call(&c, Method::POST, &url, Some(&admin), Some(&body)).await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let job = finished(&c, &base, &started, &admin).await;
    assert_eq!(
        (job["status"].as_str(), job["operation"].as_str()),
        (Some("succeeded"), Some("restore-into-live")),
        "{job}"
    );
    // The operation decides, whichever front end asks: an operator's grant is refused by
    // the operation itself.
    let mut as_operator = actor();
    as_operator.grant = Some(tidemark::access::Grant { role: Role::Operator, workspaces: vec!["shop".into()] });
    let opts = tidemark::ops::restore::RestoreOptions {
        snapshot: m.id.clone(),
        workspace: Some("shop".into()),
        tables: vec!["public.t".into()],
        target: tidemark::ops::restore::RestoreTarget::BesideLive,
        rename_to: vec!["public.t_again".into()],
        ..Default::default()
    };
    let e = tidemark::ops::restore::restore(&w.core, &opts, &as_operator).await.unwrap_err();
    assert_eq!(e.kind(), tidemark::ErrorKind::Forbidden, "{}", e.report());
}

/// Issue 32.5: a workspace another operation holds is `busy` (temporary: exit 14, HTTP 409
/// with `Retry-After`), not a permanent refusal; once free, the same call succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_workspace_says_when_to_try_again() {
    let w = world().await;
    create_database(&w.cluster, "shop", SHOP).await;
    let m = snapshot_shop(&w.core).await.unwrap();
    let server = start(&w, AddressRules::default()).await;
    let (base, c) = (server.base.clone(), client("127.0.0.2"));
    let operator = token(&w, "operator", Role::Operator, &["shop"], &[]).await;
    let holder = tidemark::catalog::lock::Holder::me("prune", &actor());
    let stop = tokio_util::sync::CancellationToken::new();
    let wait = tidemark::catalog::lock::Wait::No;
    let catalog = w.core.catalog().await.unwrap();
    let held =
        tidemark::catalog::lock::WorkspaceLock::acquire_shared(catalog, "shop", &holder, wait, &stop).await.unwrap();

    // Over the API: a pin (answered at once) is 409 `busy` with Retry-After; a snapshot
    // (a job) is recorded as refused, saying why.
    let pin = format!("{base}/v1/workspaces/shop/snapshots/{}/pin", m.id);
    let answered = call(&c, Method::POST, &pin, Some(&operator), None).await;
    assert_eq!(answered.status(), StatusCode::CONFLICT);
    assert_eq!(answered.headers()["retry-after"], "30");
    let error = json(answered).await["error"].clone();
    assert_eq!((error["kind"].as_str(), error["temporary"].as_bool()), (Some("busy"), Some(true)), "{error}");
    let url = format!("{base}/v1/workspaces/shop/snapshots");
    let started = call(&c, Method::POST, &url, Some(&operator), Some("{}")).await;
    let job = finished(&c, &base, &started, &operator).await;
    assert_eq!(job["status"], "refused", "{job}");
    assert!(job["error"].as_str().unwrap().contains("is busy"), "{job}");

    // On the command line: exit 14, `busy`, temporary.
    let snapshot = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args(["--config", w.core.config.path.to_str().unwrap(), "--json", "snapshot", "create", "-w", "shop"])
            .env_remove("CI")
            .output()
            .unwrap()
    };
    let out = snapshot();
    assert_eq!(out.status.code(), Some(tidemark::ErrorKind::Busy.exit_code()));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((answer["error"]["kind"].as_str(), answer["error"]["temporary"].as_bool()), (Some("busy"), Some(true)));
    // Free again: the same calls go through.
    drop(held);
    assert!(snapshot().status.success());
    assert_eq!(call(&c, Method::POST, &pin, Some(&operator), None).await.status(), StatusCode::OK);
}
