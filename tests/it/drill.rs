//! Restore drills on real workspaces: a passing drill of the hard cases (with roles,
//! stacks and media) recorded in the catalog; drills that fail because an assertion fails
//! or an object was tampered with, each naming the failing check; a drill on a scratch
//! server; the shipped generic assertions catching what they promise; and a killed drill
//! cleaned up by the next one. The PITR drill is in `pitr.rs`, beside its archive setup.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tidemark::drill::{CheckStatus, DrillKind, DrillReport};
use tidemark::ops::drill::{DrillOptions, DrillSource, drill};
use tidemark::pg::ConnSpec;

use crate::support::{World, content_fingerprint, create_database, snapshot_shop, world};

const HARD_CASES: &str = include_str!("fixtures/hard_cases.sql");

fn check<'a>(report: &'a DrillReport, name: &str) -> &'a tidemark::drill::Check {
    report.checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no check {name}: {:#?}", report.checks))
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// Drills into a scratch folder of the test's own, so nothing else's leftovers count.
fn scratch_in(w: &mut World) -> std::path::PathBuf {
    let scratch = w.dir.path().join("drills");
    // The server user (tests run as root) must reach the throwaway clusters inside.
    std::fs::set_permissions(w.dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    w.core.config.config.drill.scratch_dir = Some(scratch.clone());
    scratch
}

/// `tidemark --config <the world's config> drill --workspace shop`, as an operator runs it.
fn drill_binary(w: &World) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    cmd.args(["--config", w.core.config.path.to_str().unwrap(), "drill", "--workspace", "shop"]);
    cmd
}

async fn run(w: &World, source: DrillSource) -> DrillReport {
    drill(&w.core, &DrillOptions::new("shop", source), &crate::support::actor()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_of_a_real_workspace_passes_every_check_and_leaves_nothing() {
    let mut w = world().await;
    let scratch = scratch_in(&mut w);
    let admin = ConnSpec::parse(&w.cluster.url("postgres"), None).unwrap();
    let mut conn = admin.connect().await.unwrap();
    sqlx::raw_sql("CREATE ROLE shop_owner NOLOGIN; CREATE ROLE \"Report Reader\" NOLOGIN")
        .execute(&mut conn)
        .await
        .unwrap();
    let source = create_database(&w.cluster, "shop", HARD_CASES).await;
    let mut conn = source.connect().await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE public.owned (id int PRIMARY KEY); INSERT INTO public.owned VALUES (1), (2); \
         ALTER TABLE public.owned OWNER TO shop_owner; GRANT SELECT ON public.owned TO \"Report Reader\"",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let stack = tidemark::stacks::StackRef::parse("api/orders").unwrap();
    let actor = tidemark::actor::Actor::new(tidemark::actor::ActorKind::Cli, "tester");
    let put = tidemark::ops::stacks::StackPutOptions {
        stack: stack.to_string(),
        json: r#"{"route": "/orders"}"#.into(),
        origin: "t".into(),
        ..Default::default()
    };
    tidemark::ops::stacks::put(&w.core, &put, &actor).await.unwrap();
    let publish = tidemark::ops::stacks::StackPublishOptions { stack: stack.to_string(), ..Default::default() };
    tidemark::ops::stacks::publish(&w.core, &publish, &actor).await.unwrap();
    let media = w.dir.path().join("media");
    std::fs::create_dir_all(media.join("img")).unwrap();
    std::fs::write(media.join("img/logo.png"), vec![9u8; 40_000]).unwrap();
    w.core.config.config.workspaces.get_mut("shop").unwrap().media =
        Some(url::Url::from_directory_path(&media).unwrap().to_string());
    let manifest = snapshot_shop(&w.core).await.unwrap();
    assert!(manifest.roles.contains(&"shop_owner".to_string()), "{:?}", manifest.roles);
    assert!(!manifest.schema_fingerprint.is_empty());
    let before = content_fingerprint(&source).await;

    let report = run(&w, DrillSource::Snapshot(None)).await;
    let failed: Vec<_> = report.checks.iter().filter(|c| c.status != CheckStatus::Pass).collect();
    assert!(report.passed, "failed or skipped checks: {failed:#?}");
    assert_eq!(report.kind, DrillKind::Logical);
    assert_eq!(report.source, manifest.id);
    for name in ["object-hashes", "restore", "sequences", "schema-fingerprint", "function-stacks", "media-hashes"] {
        assert_eq!(check(&report, name).status, CheckStatus::Pass);
    }
    assert_eq!(report.checks.iter().filter(|c| c.name.starts_with("table ")).count(), manifest.tables.len());
    assert!(
        check(&report, "restore-test generic.sql (built in): foreign keys hold for every row").status
            == CheckStatus::Pass
    );
    assert!(report.timings.restore_ms > 0 && report.timings.data_ms <= report.timings.restore_ms);
    assert!(report.restored_into.starts_with("throwaway cluster"));

    // Nothing of the drill touched the source, and nothing of it is left.
    assert_eq!(content_fingerprint(&source).await, before);
    assert!(entries(&scratch).is_empty(), "left behind: {:?}", entries(&scratch));
    let port: u16 = report.restored_into.rsplit(':').next().unwrap().parse().unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the throwaway server still listens");

    // The catalog has it, with its report.
    let recorded = crate::support::drill_history(&w.core, Some("shop"), 10).await.unwrap();
    assert_eq!(recorded.len(), 1);
    assert!(recorded[0].report.passed);
    assert_eq!(recorded[0].report.checks.len(), report.checks.len());

    // So does the repository, encrypted: a lost catalog gets the history back by rebuild.
    let reports = w.repo_dir().join("workspaces/shop/drills");
    let mut stored = entries(&reports);
    assert_eq!(stored.len(), 2, "{stored:?}");
    stored.sort();
    assert_eq!(stored[1], format!("{}.sig", stored[0]), "the report and its signature");
    let sealed = std::fs::read(reports.join(&stored[0])).unwrap();
    assert!(sealed.starts_with(b"age-encryption.org/v1"));
    assert!(!String::from_utf8_lossy(&sealed).contains("object-hashes"), "only ciphertext in the repository");
    crate::support::lose_catalog(&w).await;
    // A new process (the core keeps its catalog open): the catalog is gone.
    let ids = w.identity.identities();
    let fresh = tidemark::ops::Core::from_parts(w.core.config.clone(), w.core.repo.clone(), None, Some(ids));
    assert!(crate::support::drill_history(&fresh, Some("shop"), 10).await.unwrap().is_empty());
    let rebuilt = crate::support::rebuild(&fresh, false).await.unwrap();
    assert_eq!(rebuilt.drills_added, 1);
    let fresh = tidemark::ops::Core::from_parts(
        w.core.config.clone(),
        w.core.repo.clone(),
        None,
        Some(w.identity.identities()),
    );
    let recovered = crate::support::drill_history(&fresh, Some("shop"), 10).await.unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].trigger, "cli");
    assert_eq!(
        serde_json::to_value(&recovered[0].report).unwrap(),
        serde_json::to_value(&report).unwrap(),
        "the same report"
    );
    assert_eq!(crate::support::rebuild(&w.core, false).await.unwrap().drills_added, 0, "never twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_restore_test_fails_the_drill_and_is_named_in_json_and_junit() {
    let mut w = world().await;
    let scratch = scratch_in(&mut w);
    create_database(
        &w.cluster,
        "shop",
        "CREATE SCHEMA app; CREATE TABLE app.users (id int PRIMARY KEY, email text); \
         INSERT INTO app.users VALUES (1, 'a@example.com'), (2, NULL);",
    )
    .await;
    let tests = w.dir.path().join("restore-tests");
    std::fs::create_dir_all(&tests).unwrap();
    std::fs::write(
        tests.join("app.sql"),
        "-- assert: users were restored\nSELECT count(*) > 0 FROM app.users;\n\n\
         -- assert-empty: every user has an email\nSELECT id, email FROM app.users WHERE email IS NULL;\n",
    )
    .unwrap();
    // restore-tests/ beside the config file is found without configuration.
    snapshot_shop(&w.core).await.unwrap();

    let report = run(&w, DrillSource::Snapshot(Some("latest".into()))).await;
    assert!(!report.passed);
    let failed: Vec<&str> = report.failed_checks().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(failed, vec!["restore-test app.sql: every user has an email"]);
    assert!(check(&report, "restore-test app.sql: every user has an email").details.contains("(2,)"));
    assert_eq!(check(&report, "restore-test app.sql: users were restored").status, CheckStatus::Pass);
    assert!(
        report.checks.iter().all(|c| !c.name.contains("generic.sql")),
        "a restore-tests folder replaces the built-in"
    );
    assert!(entries(&scratch).is_empty());

    // The binary: exit code 7, one JSON document naming the check, and a JUnit file.
    let junit = w.dir.path().join("drill.xml");
    let out = drill_binary(&w).args(["--json", "--junit"]).arg(&junit).output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("exactly one JSON document");
    assert_eq!(json["passed"], false);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("failures=\"1\""), "{xml}");
    assert!(xml.contains("<testcase name=\"restore-test app.sql: every user has an email\""), "{xml}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("every user has an email"));
    let history = crate::support::drill_history(&w.core, Some("shop"), 10).await.unwrap();
    assert_eq!(history.len(), 2, "the CLI drill is recorded too");
    // Issue 31.6: the CLI drill's audit record says it failed (it said `ok`), with why.
    let trail = w.core.catalog().await.unwrap().audit_records(None).await.unwrap();
    let drilled = trail.iter().rev().find(|r| r.entry.action == "drill").unwrap();
    assert_eq!(drilled.entry.outcome, "failed", "{drilled:?}");
    assert!(drilled.entry.details["error"]["message"].as_str().unwrap().contains("every user has an email"));

    // A drill that cannot run still leaves a JUnit file saying why.
    let out = drill_binary(&w).args(["--snapshot", "20200101T000000Z-000000", "--junit"]).arg(&junit).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("errors=\"1\"") && xml.contains("20200101T000000Z-000000"), "{xml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_object_fails_the_object_hashes_check() {
    let mut w = world().await;
    let scratch = scratch_in(&mut w);
    create_database(
        &w.cluster,
        "shop",
        "CREATE TABLE t (id int, v text); INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, 5000) i;",
    )
    .await;
    let manifest = snapshot_shop(&w.core).await.unwrap();
    let object = &manifest.tables[0].parts[0].name;
    let path = w.repo_dir().join(format!("workspaces/shop/snapshots/{}/{object}", manifest.id));
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();

    let report = run(&w, DrillSource::Snapshot(Some(manifest.id.clone()))).await;
    assert!(!report.passed);
    let hashes = check(&report, "object-hashes");
    assert_eq!(hashes.status, CheckStatus::Fail);
    assert!(hashes.details.contains(object.as_str()), "names the object: {}", hashes.details);
    assert_eq!(check(&report, "schema-fingerprint").status, CheckStatus::Skip);
    assert!(entries(&scratch).is_empty(), "the throwaway is removed after a failure too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_on_a_scratch_server_drops_its_database_and_crashed_leftovers() {
    let mut w = world().await;
    scratch_in(&mut w);
    create_database(&w.cluster, "shop", "CREATE TABLE t (id serial PRIMARY KEY); INSERT INTO t DEFAULT VALUES;").await;
    let scratch_server = tokio::task::spawn_blocking(crate::support::start_cluster).await.unwrap();
    let admin = ConnSpec::parse(&scratch_server.url("postgres"), None).unwrap();
    let mut conn = admin.connect().await.unwrap();
    for db in ["tidemark_drill_shop_crashed", "keep_me"] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&mut conn).await.unwrap();
    }
    w.core.config.config.drill.scratch_server = Some(scratch_server.url("postgres"));
    let manifest = snapshot_shop(&w.core).await.unwrap();

    let report = run(&w, DrillSource::Snapshot(None)).await;
    assert!(report.passed, "{:#?}", report.checks);
    assert!(report.restored_into.starts_with("scratch server"));
    assert_eq!(report.database, tidemark::drill::throwaway::database_name("shop", &manifest.id));
    assert_eq!(report.leftovers_removed, vec!["tidemark_drill_shop_crashed".to_string()]);
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname::text FROM pg_database ORDER BY 1").fetch_all(&mut conn).await.unwrap();
    assert!(names.iter().all(|n| !n.starts_with("tidemark_drill_")), "{names:?}");
    assert!(names.contains(&"keep_me".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_generic_assertions_catch_what_they_promise() {
    use tidemark::drill::assertions::{BUILT_IN, parse, run as run_assertion};
    let w = world().await;
    let healthy = "CREATE TABLE parent (id serial PRIMARY KEY); CREATE TABLE child (id serial PRIMARY KEY, \
                   parent_id int REFERENCES parent (id), a int, b int); \
                   CREATE TABLE pair (a int, b int, PRIMARY KEY (a, b)); \
                   ALTER TABLE child ADD FOREIGN KEY (a, b) REFERENCES pair (a, b); \
                   INSERT INTO parent DEFAULT VALUES; INSERT INTO pair VALUES (1, 1); \
                   INSERT INTO child (parent_id, a, b) VALUES (1, 1, 1), (NULL, 2, NULL); \
                   CREATE INDEX child_a ON child (a); CREATE TABLE notes (id int); INSERT INTO notes VALUES (1);";
    let good = create_database(&w.cluster, "good", healthy).await;
    let bad = create_database(&w.cluster, "bad", healthy).await;
    let mut conn = bad.connect().await.unwrap();
    sqlx::raw_sql(
        "SET session_replication_role = replica; INSERT INTO child (parent_id, a, b) VALUES (42, 1, 1); \
         INSERT INTO child (parent_id, a, b) VALUES (1, 7, 7); RESET session_replication_role; \
         UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'child_a'::regclass; \
         SELECT setval('child_id_seq', 1); DELETE FROM notes;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let assertions = parse("generic.sql", BUILT_IN).unwrap();
    for (spec, expect_ok) in [(&good, true), (&bad, false)] {
        let mut conn = spec.connect().await.unwrap();
        sqlx::raw_sql(
            "CREATE TEMP TABLE tidemark_snapshot_tables (schema_name text, table_name text, \"rows\" bigint); \
             INSERT INTO tidemark_snapshot_tables VALUES ('public', 'parent', 1), ('public', 'notes', 1)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        for a in &assertions {
            let outcome = run_assertion(&mut conn, a, Duration::from_secs(30)).await;
            assert_eq!(outcome.is_ok(), expect_ok, "{} on {}: {outcome:?}", a.name, spec.display());
            if !expect_ok {
                let details = outcome.unwrap_err();
                assert!(!details.contains("query failed"), "{}: {details}", a.name);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_drill_is_cleaned_up_by_the_next_one() {
    let mut w = world().await;
    let scratch = scratch_in(&mut w);
    std::fs::write(
        &w.core.config.path,
        format!(
            "{}\n[drill]\nscratch-dir = {:?}\n",
            std::fs::read_to_string(&w.core.config.path).unwrap(),
            scratch.display().to_string()
        ),
    )
    .unwrap();
    create_database(
        &w.cluster,
        "shop",
        "CREATE TABLE t (id int, v text); INSERT INTO t SELECT i, repeat(md5(i::text), 8) FROM generate_series(1, 200000) i;",
    )
    .await;
    snapshot_shop(&w.core).await.unwrap();

    let spawn_drill =
        || drill_binary(&w).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    // Ready, not merely started: a postmaster that fails to start (its port taken by
    // another test a moment after it was found free) removes its postmaster.pid, and the
    // drill tries again on another port, which a drill killed right then never does.
    let wait_for_server = || {
        for _ in 0..1200 {
            if let Some(found) = find_postmaster(&scratch)
                && std::fs::read_to_string(found.join("postmaster.pid"))
                    .is_ok_and(|pid| pid.lines().any(|l| l.trim() == "ready"))
            {
                return found;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the drill never started its throwaway cluster");
    };

    // Ctrl-C: the drill removes its throwaway before it exits with 130.
    let mut child = spawn_drill();
    wait_for_server();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert!(entries(&scratch).is_empty(), "an interrupted drill left {:?}", entries(&scratch));

    // SIGKILL: no chance to clean up; the next drill does it.
    let mut child = spawn_drill();
    let data_dir = wait_for_server();
    child.kill().unwrap();
    child.wait().unwrap();
    let leftover = entries(&scratch);
    assert_eq!(leftover.len(), 1, "the killed drill left its folder: {leftover:?}");
    assert!(data_dir.join("postmaster.pid").exists(), "and its server");

    let report = run(&w, DrillSource::Snapshot(None)).await;
    assert!(report.passed, "{:#?}", report.checks);
    assert_eq!(report.leftovers_removed.len(), 1, "{:?}", report.leftovers_removed);
    assert!(report.leftovers_removed[0].ends_with(&leftover[0]));
    assert!(entries(&scratch).is_empty(), "left: {:?}", entries(&scratch));
}

fn find_postmaster(dir: &Path) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.join("postmaster.pid").exists() {
            return Some(path);
        }
        if path.is_dir()
            && let Some(found) = find_postmaster(&path)
        {
            return Some(found);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_past_its_timeout_fails_and_removes_its_throwaway() {
    let mut w = world().await;
    let scratch = scratch_in(&mut w);
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int); INSERT INTO t VALUES (1);").await;
    snapshot_shop(&w.core).await.unwrap();
    w.core.config.config.drill.timeout = Duration::from_millis(300);
    let report = run(&w, DrillSource::Snapshot(None)).await;
    assert!(!report.passed);
    assert_eq!(check(&report, "timeout").status, CheckStatus::Fail);
    assert!(entries(&scratch).is_empty(), "left: {:?}", entries(&scratch));
}

/// Issue 11.4: throwaway servers (drills, and every test cluster) inherited tidemark's whole
/// environment: S3 keys, database password variables, the webhook URL. They now get
/// PATH, TZ, LC_ALL and HOME, and nothing else of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throwaway_servers_get_a_minimal_environment() {
    let cluster = tokio::task::spawn_blocking(crate::support::start_cluster).await.unwrap();
    let pid = std::fs::read_to_string(cluster.data_dir().join("postmaster.pid")).unwrap();
    let pid = pid.lines().next().unwrap().trim().to_string();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let keys: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|kv| !kv.is_empty())
        .map(|kv| String::from_utf8_lossy(kv).split('=').next().unwrap().to_string())
        .collect();
    let ours: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    assert!(ours.len() > 4, "the test runs with an environment of its own: {ours:?}");
    // pg_ctl starts the server through `sh -c`, which sets PWD; Postgres and pg_ctl set a
    // few PG* variables of their own.
    let allowed = ["PATH", "TZ", "LC_ALL", "HOME", "PWD"];
    let leaked: Vec<&String> = keys.iter().filter(|k| !allowed.contains(&k.as_str()) && ours.contains(k)).collect();
    assert!(leaked.is_empty(), "tidemark's environment reached the server: {leaked:?} (server has {keys:?})");
}

/// Issue 31.1: a grant a superuser made to the workspace's role (here EXECUTE on
/// `pg_create_restore_point`, which `pitr mark` asks for) is in every snapshot; a restore as
/// that role cannot repeat it. The restore skips it and says so, the rest comes back; the
/// drill restores as the snapshot's role too and reports the same. And where a restore as
/// the role fails (an object owned by a role it is not a member of), the drill fails with it
/// instead of passing as a superuser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_restores_as_the_workspaces_restores_run_and_skips_only_what_that_role_cannot_grant() {
    let mut w = world().await;
    scratch_in(&mut w);
    let admin = ConnSpec::parse(&w.cluster.url("postgres"), None).unwrap();
    let mut conn = admin.connect().await.unwrap();
    for sql in ["CREATE ROLE app LOGIN CREATEDB", "CREATE ROLE stranger NOLOGIN", "CREATE DATABASE shop OWNER app"] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    }
    ConnSpec::close(conn).await;
    // A function's privileges belong to its database: granted in shop, by a superuser.
    let mut conn = ConnSpec::parse(&w.cluster.url("shop"), None).unwrap().connect().await.unwrap();
    sqlx::raw_sql("GRANT EXECUTE ON FUNCTION pg_create_restore_point(text) TO app").execute(&mut conn).await.unwrap();
    ConnSpec::close(conn).await;
    let as_app = |db: &str| {
        let mut url = url::Url::parse(&w.cluster.url(db)).unwrap();
        url.set_username("app").unwrap();
        url.to_string()
    };
    let live = ConnSpec::parse(&as_app("shop"), None).unwrap();
    let mut conn = live.connect().await.unwrap();
    sqlx::raw_sql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 50) g")
        .execute(&mut conn)
        .await
        .unwrap();
    ConnSpec::close(conn).await;
    w.core.config.config.workspaces.get_mut("shop").unwrap().database_url = as_app("shop");
    let manifest = snapshot_shop(&w.core).await.unwrap();
    let taken_as = manifest.taken_as.clone().expect("the snapshot records its role");
    assert_eq!((taken_as.name.as_str(), taken_as.superuser), ("app", false));

    // A restore as app into a new database: everything but the grant.
    let restore = tidemark::ops::restore::RestoreOptions {
        snapshot: manifest.id.clone(),
        workspace: Some("shop".into()),
        target: as_app("shop_copy").into(),
        no_media: true,
        ..Default::default()
    };
    let report = tidemark::ops::restore::restore(&w.core, &restore, &crate::support::actor()).await.unwrap();
    assert_eq!(report.rows, 50);
    assert_eq!(report.skipped_privileges.len(), 1, "{:?}", report.skipped_privileges);
    assert!(report.skipped_privileges[0].contains("pg_create_restore_point"), "{:?}", report.skipped_privileges);
    assert_eq!(
        content_fingerprint(&ConnSpec::parse(&as_app("shop_copy"), None).unwrap()).await,
        content_fingerprint(&live).await
    );

    // The drill restores as app, and says what app could not give.
    let report = run(&w, DrillSource::Snapshot(None)).await;
    let failed: Vec<_> = report.checks.iter().filter(|c| c.status != CheckStatus::Pass).collect();
    assert!(report.passed, "failed or skipped checks: {failed:#?}");
    assert!(report.restored_into.ends_with("as role app"), "{}", report.restored_into);
    let privileges = check(&report, "privileges");
    assert!(privileges.details.contains("restored as role app"), "{}", privileges.details);
    assert!(privileges.details.contains("pg_create_restore_point"), "{}", privileges.details);

    // With a restore role of its own, the drill restores as that role, with the privileges
    // it has on the workspace's server (a member of app, which owns everything).
    let mut conn = admin.connect().await.unwrap();
    for sql in ["CREATE ROLE restorer LOGIN CREATEDB", "GRANT app TO restorer"] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    }
    ConnSpec::close(conn).await;
    let mut restorer = url::Url::parse(&w.cluster.url("postgres")).unwrap();
    restorer.set_username("restorer").unwrap();
    w.core.config.config.workspaces.get_mut("shop").unwrap().restore_database_url = Some(restorer.to_string());
    let report = run(&w, DrillSource::Snapshot(None)).await;
    assert!(report.passed, "{:#?}", report.checks);
    assert!(report.restored_into.ends_with("as role restorer"), "{}", report.restored_into);
    w.core.config.config.workspaces.get_mut("shop").unwrap().restore_database_url = None;

    // A table app may read but not give to its owner: a restore as app fails, and so does
    // the drill (as a superuser it would pass).
    let mut conn = ConnSpec::parse(&w.cluster.url("shop"), None).unwrap().connect().await.unwrap();
    sqlx::raw_sql("CREATE TABLE theirs (id int); ALTER TABLE theirs OWNER TO stranger; GRANT SELECT ON theirs TO app")
        .execute(&mut conn)
        .await
        .unwrap();
    ConnSpec::close(conn).await;
    snapshot_shop(&w.core).await.unwrap();
    let report = run(&w, DrillSource::Snapshot(None)).await;
    assert!(!report.passed);
    let restore = check(&report, "restore");
    assert_eq!(restore.status, CheckStatus::Fail, "{restore:?}");
    assert!(restore.details.contains("stranger"), "{}", restore.details);
    assert_eq!(check(&report, "privileges").status, CheckStatus::Skip);
}
