//! The binary end to end, as an operator types it: init, workspace add, snapshot
//! create/list/show, restore, with `--json` and the documented exit codes.

use std::process::{Command, Output};

use tidemark::ErrorKind;

use crate::support::{content_fingerprint, create_database, start_cluster};

fn tidemark(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["--config", dir.join("tidemark.toml").to_str().unwrap()])
        .args(args)
        .env_remove("TIDEMARK_IDENTITY")
        .env_remove("TIDEMARK_IDENTITY_FILE")
        // As a person at a shell: under CI=true the command line acts as the CI job.
        .env_remove("CI")
        .output()
        .expect("run tidemark")
}

fn ok(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// Polls `sql` (a count) until it is above zero: whether that happened within `tries`.
async fn until_counted(conn: &mut sqlx::PgConnection, sql: &str, tries: u32, every: std::time::Duration) -> bool {
    for _ in 0..tries {
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(&mut *conn).await.unwrap();
        if n > 0 {
            return true;
        }
        tokio::time::sleep(every).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_round_trip_through_the_binary() {
    let cluster = tokio::task::spawn_blocking(start_cluster).await.unwrap();
    let source = create_database(&cluster, "shop", "CREATE TABLE t (id serial PRIMARY KEY, v text); INSERT INTO t (v) SELECT md5(i::text) FROM generate_series(1, 3000) i;").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");

    let init = ok(&tidemark(dir.path(), &["--json", "init", "--repo", repo.to_str().unwrap()]));
    assert_eq!(init["generated_identity"], true);
    let identity = dir.path().join("tidemark-identity.txt");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&identity).unwrap().permissions().mode() & 0o777, 0o600);
    // Issue 15.2: and a signing key, its public key pinned in the config.
    assert_eq!(init["generated_signing_key"], true);
    let signing = dir.path().join("tidemark-signing.key");
    assert_eq!(std::fs::metadata(&signing).unwrap().permissions().mode() & 0o777, 0o600);
    let shown = ok(&tidemark(dir.path(), &["--json", "signing-key", "show"]));
    assert_eq!(shown["public_key"], init["signer"]);
    let config = std::fs::read_to_string(dir.path().join("tidemark.toml")).unwrap();
    assert!(config.contains(&format!("trusted-signers = [\"{}\"]", init["signer"].as_str().unwrap())), "{config}");
    assert!(!config.contains("PRIVATE KEY"), "{config}");
    let second = dir.path().join("second.key");
    let other = ok(&tidemark(dir.path(), &["--json", "signing-key", "new", "--out", second.to_str().unwrap()]));
    assert_ne!(other["public_key"], init["signer"]);
    let again = tidemark(dir.path(), &["signing-key", "new", "--out", second.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(ErrorKind::AlreadyExists.exit_code()), "never overwritten");

    // init again: refused with the already-exists exit code, nothing overwritten.
    let again = tidemark(dir.path(), &["init", "--repo", repo.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(ErrorKind::AlreadyExists.exit_code()));

    ok(&tidemark(dir.path(), &["workspace", "add", "shop", "--database-url", &cluster.url("shop")]));
    let created = ok(&tidemark(dir.path(), &["--json", "snapshot", "create", "--workspace", "shop", "--note", "cli"]));
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["rows"], 3000);

    let list = ok(&tidemark(dir.path(), &["--json", "snapshot", "list", "--workspace", "shop"]));
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["note"], "cli");
    let show = ok(&tidemark(dir.path(), &["--json", "snapshot", "show", &id]));
    assert_eq!(show["tables"][0]["name"], "t");
    // Issue 12.9: snapshots and workspaces are named the same way by every command.
    let only = ok(&tidemark(dir.path(), &["--json", "snapshot", "list"]));
    assert_eq!(only[0]["id"], id.as_str(), "--workspace defaults to the only one configured, as for wal push");
    let latest = ok(&tidemark(dir.path(), &["--json", "snapshot", "show", "latest"]));
    assert_eq!(latest["id"], id.as_str(), "latest of the only configured workspace");
    let typo = tidemark(dir.path(), &["snapshot", "list", "-w", "shpo"]);
    assert_eq!(typo.status.code(), Some(ErrorKind::NotFound.exit_code()));
    assert!(String::from_utf8_lossy(&typo.stderr).contains("no workspace named \"shpo\""));
    let typo = tidemark(dir.path(), &["snapshot", "show", "latest", "-w", "shpo"]);
    assert_eq!(typo.status.code(), Some(ErrorKind::NotFound.exit_code()));
    assert!(show["tables"][0]["content_digest"].as_str().unwrap().len() == 32);

    let target = cluster.url("shop_copy");
    let restored = ok(&tidemark(dir.path(), &["--json", "restore", &id, "--target", &target]));
    assert_eq!(restored["created_database"], true);
    let copy = tidemark::pg::ConnSpec::parse(&target, None).unwrap();
    assert_eq!(content_fingerprint(&source).await, content_fingerprint(&copy).await);

    // Restoring over it again is refused, with the refused exit code and a JSON error.
    let refused = tidemark(dir.path(), &["--json", "restore", &id, "--target", &target]);
    assert_eq!(refused.status.code(), Some(ErrorKind::Refused.exit_code()));
    let error: serde_json::Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(error["error"]["kind"], "refused");

    // Issue 16.1: in place, with the workspace's name repeated, and undone.
    let unconfirmed = tidemark(dir.path(), &["restore", &id, "--in-place", "--workspace", "shop"]);
    assert_eq!(unconfirmed.status.code(), Some(ErrorKind::Usage.exit_code()), "--confirm is required");
    let mut conn = source.connect().await.unwrap();
    sqlx::raw_sql("DELETE FROM t WHERE id > 100").execute(&mut conn).await.unwrap();
    tidemark::pg::ConnSpec::close(conn).await;
    let args = ["--json", "restore", &id, "--in-place", "--workspace", "shop", "--confirm", "shop"];
    let in_place = ok(&tidemark(dir.path(), &args));
    assert!(in_place["previous_database"].as_str().unwrap().starts_with("shop_before_"), "{in_place}");
    assert_eq!(content_fingerprint(&source).await, content_fingerprint(&copy).await);
    let undone = ok(&tidemark(dir.path(), &["--json", "restore", "undo", "shop", "--confirm", "shop"]));
    assert_eq!(undone["restored_from"], in_place["previous_database"]);
    let mut conn = source.connect().await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM t").fetch_one(&mut conn).await.unwrap();
    assert_eq!(rows, 100, "as before the in-place restore");
    tidemark::pg::ConnSpec::close(conn).await;

    // An unknown key in the config is an error that names it.
    let config = dir.path().join("tidemark.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n[postgres]\nbindir = \"/x\"\n")).unwrap();
    let bad = tidemark(dir.path(), &["snapshot", "list", "--workspace", "shop"]);
    assert_eq!(bad.status.code(), Some(ErrorKind::Config.exit_code()));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bindir"));
}

#[test]
fn passwords_stay_out_of_listings_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    ok(&tidemark(dir.path(), &["init", "--repo", repo.to_str().unwrap()]));
    let url = "postgres://app:hunter2-secret@127.0.0.1:1/shop";
    ok(&tidemark(dir.path(), &["workspace", "add", "shop", "--database-url", url]));
    let list = tidemark(dir.path(), &["workspace", "list"]);
    assert!(list.status.success());
    assert!(!String::from_utf8_lossy(&list.stdout).contains("hunter2-secret"));
    let snap = tidemark(dir.path(), &["-vv", "snapshot", "create", "--workspace", "shop"]);
    assert_eq!(snap.status.code(), Some(ErrorKind::Unavailable.exit_code()));
    let all = format!("{}{}", String::from_utf8_lossy(&snap.stdout), String::from_utf8_lossy(&snap.stderr));
    assert!(!all.contains("hunter2-secret"), "{all}");

    // Issue 11.4: a password parameter in upper case is a password too: never printed,
    // never handed to sqlx (which logged it with its value); an unknown parameter is
    // refused by name before anything connects.
    let upper = "postgres://app@127.0.0.1:1/blog?PASSWORD=hunter3-secret";
    ok(&tidemark(dir.path(), &["workspace", "add", "blog", "--database-url", upper]));
    let list = tidemark(dir.path(), &["--json", "workspace", "list"]);
    assert!(list.status.success() && !String::from_utf8_lossy(&list.stdout).contains("hunter3"));
    let snap = tidemark(dir.path(), &["snapshot", "create", "--workspace", "blog"]);
    assert_eq!(snap.status.code(), Some(ErrorKind::Unavailable.exit_code()));
    let all = format!("{}{}", String::from_utf8_lossy(&snap.stdout), String::from_utf8_lossy(&snap.stderr));
    assert!(!all.contains("hunter3") && !all.contains("unrecognized connect parameter"), "{all}");
    let typo =
        tidemark(dir.path(), &["workspace", "add", "typo", "--database-url", "postgres://app@h/db?pasword=hunter4"]);
    assert_eq!(typo.status.code(), Some(ErrorKind::Config.exit_code()));
    let all = format!("{}{}", String::from_utf8_lossy(&typo.stdout), String::from_utf8_lossy(&typo.stderr));
    assert!(all.contains("\"pasword\"") && !all.contains("hunter4"), "{all}");
    let config = std::fs::read_to_string(dir.path().join("tidemark.toml")).unwrap();
    assert!(!config.contains("typo"), "nothing was written for the refused workspace");
}

#[test]
fn demo_stops_its_cluster_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("demo")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut port = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(p) = line.trim().strip_prefix("postgres is listening on 127.0.0.1:") {
            port = p.parse::<u16>().ok();
        }
        if line.starts_with("filling the sample workspace") {
            break;
        }
    }
    let port = port.expect("the demo prints its port");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(), "the demo cluster runs");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    let status = child.wait().unwrap();
    let rest = rest.join().unwrap();
    assert_eq!(status.code(), Some(ErrorKind::Interrupted.exit_code()), "{rest}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the demo cluster must be stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stacks_through_the_binary() {
    use std::io::Write;
    let cluster = tokio::task::spawn_blocking(start_cluster).await.unwrap();
    create_database(&cluster, "shop", "SELECT 1").await;
    let dir = tempfile::tempdir().unwrap();
    ok(&tidemark(dir.path(), &["init", "--repo", dir.path().join("repo").to_str().unwrap()]));
    ok(&tidemark(dir.path(), &["workspace", "add", "shop", "--database-url", &cluster.url("shop")]));
    let file = dir.path().join("checkout.json");
    std::fs::write(&file, r#"{"route": "/checkout"}"#).unwrap();
    let put = ok(&tidemark(
        dir.path(),
        &["--json", "stacks", "put", "-w", "shop", "api/checkout", "--file", file.to_str().unwrap()],
    ));
    assert!(put["change"].is_i64());
    ok(&tidemark(dir.path(), &["stacks", "publish", "-w", "shop", "api/checkout", "--message", "v1"]));

    // From standard input.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["--config", dir.path().join("tidemark.toml").to_str().unwrap()])
        .args(["stacks", "put", "-w", "shop", "api/checkout", "--file", "-", "--author", "cli"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(br#"{"route": "/pay"}"#).unwrap();
    assert!(child.wait_with_output().unwrap().status.success());

    let diff = tidemark(dir.path(), &["stacks", "diff", "-w", "shop", "api/checkout"]);
    assert_eq!(String::from_utf8_lossy(&diff.stdout).trim(), "~ /route: \"/checkout\" -> \"/pay\"");
    let shown =
        ok(&tidemark(dir.path(), &["--json", "stacks", "show", "-w", "shop", "api/checkout", "--version", "1"]));
    assert_eq!(shown["content"]["route"], "/checkout");
    let bad = tidemark(dir.path(), &["stacks", "put", "-w", "shop", "job/x", "--file", file.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(ErrorKind::Usage.exit_code()));

    // Issue 11.10: a hand-edited hash shorter than the 12 characters shown (or cut inside
    // a character) panicked `stacks history`.
    let spec = tidemark::pg::ConnSpec::parse(&cluster.url("shop"), None).unwrap();
    let mut conn = spec.connect().await.unwrap();
    sqlx::raw_sql("UPDATE tidemark.stack_changes SET content_sha256 = 'abc' WHERE id = (SELECT min(id) FROM tidemark.stack_changes); \
                   UPDATE tidemark.stack_changes SET content_sha256 = 'aééééééé' WHERE id = (SELECT max(id) FROM tidemark.stack_changes)")
        .execute(&mut conn)
        .await
        .unwrap();
    let history = tidemark(dir.path(), &["stacks", "history", "-w", "shop", "api/checkout"]);
    assert!(history.status.success(), "{}", String::from_utf8_lossy(&history.stderr));
    let text = String::from_utf8_lossy(&history.stdout);
    assert!(text.contains("abc") && text.contains("aééééééé"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_catalog_rebuild_and_serve_through_the_binary() {
    use std::io::{BufRead, BufReader};
    let cluster = tokio::task::spawn_blocking(start_cluster).await.unwrap();
    create_database(&cluster, "shop", "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2);").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    ok(&tidemark(dir.path(), &["init", "--repo", repo.to_str().unwrap()]));
    ok(&tidemark(dir.path(), &["workspace", "add", "shop", "--database-url", &cluster.url("shop")]));

    // A manual snapshot is recorded in the catalog beside the config.
    let created = ok(&tidemark(dir.path(), &["--json", "snapshot", "create", "--workspace", "shop"]));
    let jobs = ok(&tidemark(dir.path(), &["--json", "jobs", "--workspace", "shop"]));
    assert_eq!(jobs.as_array().unwrap().len(), 1);
    assert_eq!((jobs[0]["trigger"].as_str(), jobs[0]["status"].as_str()), (Some("cli"), Some("succeeded")));
    assert_eq!(jobs[0]["snapshot_id"], created["id"]);

    // The catalog is lost: the repository is the truth, and rebuild recreates the history.
    let catalog = dir.path().join(tidemark::catalog::DEFAULT_CATALOG_FILE);
    assert!(catalog.exists());
    std::fs::remove_file(&catalog).unwrap();
    let listed = ok(&tidemark(dir.path(), &["--json", "snapshot", "list", "--workspace", "shop"]));
    assert_eq!(listed.as_array().unwrap().len(), 1, "listing needs no catalog");
    let rebuilt = ok(&tidemark(dir.path(), &["--json", "catalog", "rebuild"]));
    assert_eq!((rebuilt["snapshots"].as_u64(), rebuilt["jobs_added"].as_u64()), (Some(1), Some(1)));
    let again = ok(&tidemark(dir.path(), &["--json", "catalog", "rebuild"]));
    assert_eq!(again["jobs_added"], 0, "rebuilding twice adds nothing");
    let jobs = ok(&tidemark(dir.path(), &["--json", "jobs"]));
    assert_eq!((jobs[0]["trigger"].as_str(), &jobs[0]["snapshot_id"]), (Some("rebuilt"), &created["id"]));
    let unknown = tidemark(dir.path(), &["jobs", "--workspace", "nope"]);
    assert_eq!(unknown.status.code(), Some(ErrorKind::NotFound.exit_code()));

    // serve: JSON logs, a graceful stop on SIGTERM, exit 0.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["--config", dir.path().join("tidemark.toml").to_str().unwrap(), "serve", "--log-format", "json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut loaded = None;
    for line in lines.by_ref() {
        let event: serde_json::Value = serde_json::from_str(&line.unwrap()).expect("every log line is JSON");
        if event["message"] == "schedule loaded" {
            loaded = Some(event);
            break;
        }
    }
    let loaded = loaded.expect("the daemon loads the built-in daily schedule");
    assert_eq!((loaded["workspace"].as_str(), loaded["policy"].as_str()), (Some("shop"), Some("daily")));
    // One daemon per catalog: a second one would take every scheduled snapshot twice.
    let second = tidemark(dir.path(), &["serve"]);
    assert_eq!(second.status.code(), Some(ErrorKind::Refused.exit_code()));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another `tidemark serve`") && stderr.contains(&format!("pid {}", child.id())), "{stderr}");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("\"stopped\"")), "{rest:?}");

    // A daemon with a bad setting refuses to start, with the config exit code.
    let config = dir.path().join("tidemark.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[daemon.webhook]\nurl = \"ftp://hooks.example/secret-token\"\n");
    std::fs::write(&config, text).unwrap();
    let refused = tidemark(dir.path(), &["serve"]);
    assert_eq!(refused.status.code(), Some(ErrorKind::Config.exit_code()));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("daemon.webhook.url") && !stderr.contains("secret-token"), "{stderr}");
}

/// A `snapshot create` killed with SIGKILL cannot record how it ended: once its process is
/// gone, `jobs` records the job as aborted instead of listing it as running forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_snapshot_is_listed_as_aborted() {
    let cluster = tokio::task::spawn_blocking(start_cluster).await.unwrap();
    let source = create_database(&cluster, "shop", "CREATE TABLE t (id int); INSERT INTO t VALUES (1);").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    ok(&tidemark(dir.path(), &["init", "--repo", repo.to_str().unwrap()]));
    ok(&tidemark(dir.path(), &["workspace", "add", "shop", "--database-url", &cluster.url("shop")]));
    // Another session holds the table: the snapshot waits for its lock, mid-job.
    let mut blocker = source.connect().await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE;").execute(&mut blocker).await.unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["--config", dir.path().join("tidemark.toml").to_str().unwrap(), "snapshot", "create", "-w", "shop"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Not on the blocker's connection: pg_stat_activity stays the same inside a transaction.
    let mut observer = source.connect().await.unwrap();
    let locked = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'";
    let waiting = until_counted(&mut observer, locked, 300, std::time::Duration::from_millis(100)).await;
    assert!(waiting, "the snapshot never reached the locked table");
    let running = ok(&tidemark(dir.path(), &["--json", "jobs"]));
    assert_eq!(running[0]["status"], "running", "its process is alive: {running}");

    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let jobs = ok(&tidemark(dir.path(), &["--json", "jobs"]));
    assert_eq!(jobs.as_array().unwrap().len(), 1);
    assert_eq!(jobs[0]["status"], "aborted", "{jobs}");
    let error = jobs[0]["error"].as_str().unwrap();
    assert!(error.contains(&format!("pid {}", child.id())), "{error}");
    sqlx::raw_sql("ROLLBACK").execute(&mut blocker).await.unwrap();
    let listed = ok(&tidemark(dir.path(), &["--json", "snapshot", "list", "-w", "shop"]));
    assert_eq!(listed.as_array().unwrap().len(), 0, "a killed snapshot never appears");
}

/// Issue 11.6: SIGTERM killed `snapshot create` and `restore` with exit 143, and an
/// interrupted restore left the database it had created. Both now stop on SIGTERM as on
/// Ctrl-C (exit 130); the restore drops its database first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_snapshot_and_a_restore_and_leaves_nothing() {
    use nix::sys::signal::{Signal, kill};
    let cluster = tokio::task::spawn_blocking(start_cluster).await.unwrap();
    let source = create_database(
        &cluster,
        "shop",
        "CREATE TABLE t (id int PRIMARY KEY, v text); \
         INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, 400000) i; CREATE INDEX ON t (v);",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    ok(&tidemark(dir.path(), &["init", "--repo", dir.path().join("repo").to_str().unwrap()]));
    ok(&tidemark(dir.path(), &["workspace", "add", "shop", "--database-url", &cluster.url("shop")]));
    let id =
        ok(&tidemark(dir.path(), &["--json", "snapshot", "create", "-w", "shop"]))["id"].as_str().unwrap().to_string();
    let spawn = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args(["--config", dir.path().join("tidemark.toml").to_str().unwrap()])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut observer = source.connect().await.unwrap();

    // A snapshot held up by a lock on its table, then SIGTERM.
    let mut blocker = source.connect().await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE;").execute(&mut blocker).await.unwrap();
    let child = spawn(&["snapshot", "create", "-w", "shop"]);
    let locked = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'";
    let waiting = until_counted(&mut observer, locked, 300, std::time::Duration::from_millis(50)).await;
    assert!(waiting, "the snapshot never reached the locked table");
    kill(nix::unistd::Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(ErrorKind::Interrupted.exit_code()), "{}", String::from_utf8_lossy(&out.stderr));
    sqlx::raw_sql("ROLLBACK").execute(&mut blocker).await.unwrap();
    let listed = ok(&tidemark(dir.path(), &["--json", "snapshot", "list", "-w", "shop"]));
    assert_eq!(listed.as_array().unwrap().len(), 1, "the interrupted snapshot never appears");
    // Issue 12.8: its job reads as interrupted, not as a process that vanished.
    let jobs = ok(&tidemark(dir.path(), &["--json", "jobs"]));
    assert_eq!(jobs[0]["status"], "aborted", "{jobs}");
    assert!(jobs[0]["error"].as_str().unwrap().contains("interrupted"), "{jobs}");

    // A restore into a new database, SIGTERM as soon as the database exists.
    let child = spawn(&["restore", &id, "--target", &cluster.url("copy")]);
    let copy = "SELECT count(*) FROM pg_database WHERE datname = 'copy'";
    let created = until_counted(&mut observer, copy, 2000, std::time::Duration::from_millis(5)).await;
    assert!(created, "the restore never created its database");
    kill(nix::unistd::Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(ErrorKind::Interrupted.exit_code()), "{stderr}");
    assert!(stderr.contains("was dropped again"), "{stderr}");
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM pg_database WHERE datname = 'copy'")
        .fetch_one(&mut observer)
        .await
        .unwrap();
    assert_eq!(n, 0, "the interrupted restore's database is gone");
}

/// The project's own CI is a restore drill: the demo workspace is snapshotted, restored and
/// drilled, and the drill's JUnit report is kept in `target/drill-reports/demo.xml`.
#[test]
fn the_demo_workspace_passes_its_restore_drill_and_the_junit_report_is_kept() {
    let reports = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../drill-reports");
    std::fs::create_dir_all(&reports).unwrap();
    let junit = reports.join("demo.xml");
    let _ = std::fs::remove_file(&junit);
    // Issue 12.10: `--keep DIR` leaves the repository, config and identity to look at.
    let kept = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["--json", "demo", "--junit"])
        .arg(&junit)
        .arg("--keep")
        .arg(kept.path().join("demo"))
        .output()
        .expect("run tidemark demo");
    let report = ok(&out);
    let dir = kept.path().join("demo");
    assert_eq!(report["kept"].as_str(), Some(dir.to_str().unwrap()));
    let listed = ok(&tidemark(&dir, &["--json", "snapshot", "list", "-w", "shop"]));
    assert_eq!(listed[0]["id"], report["snapshot"]["id"]);
    let checked = ok(&tidemark(&dir, &["--json", "check", "-w", "shop", "--read-data"]));
    assert_eq!(checked["problems"].as_array().unwrap().len(), 0, "{checked:#}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("tidemark-identity.txt")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = Command::new(env!("CARGO_BIN_EXE_tidemark")).args(["demo", "--keep"]).arg(&dir).output().unwrap();
    assert_eq!(again.status.code(), Some(ErrorKind::Refused.exit_code()), "a folder with something in it is refused");
    let drill = &report["drill"];
    assert_eq!(drill["passed"], true, "{drill:#}");
    let checks = drill["checks"].as_array().unwrap();
    for name in ["object-hashes", "schema-fingerprint", "function-stacks", "media-hashes", "sequences"] {
        assert!(checks.iter().any(|c| c["name"] == name && c["status"] == "pass"), "{name} in {checks:#?}");
    }
    assert!(checks.iter().any(|c| c["name"].as_str().unwrap().starts_with("restore-test shop.sql: ")));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(&format!("tests=\"{}\"", checks.len())) && xml.contains("failures=\"0\""), "{xml}");
}

/// Issue 12.4: the restore target's password could only be given in the URL, and the
/// error named `template1` with no hint. `--target-password env:VAR|file:PATH` now gives it,
/// and the error names the target database and the ways to pass a password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_target_password_comes_from_a_reference_and_errors_say_how() {
    let cluster = tokio::task::spawn_blocking(start_cluster).await.unwrap();
    let source = create_database(&cluster, "shop", "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2);").await;
    let mut conn = source.connect().await.unwrap();
    sqlx::raw_sql("CREATE ROLE restorer LOGIN SUPERUSER PASSWORD 'pw-9f3k'").execute(&mut conn).await.unwrap();
    // This role must authenticate with its password (everyone else: trust).
    let hba = cluster.data_dir().join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("host all restorer 127.0.0.1/32 scram-sha-256\n{rules}")).unwrap();
    sqlx::raw_sql("SELECT pg_reload_conf()").execute(&mut conn).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    ok(&tidemark(dir.path(), &["init", "--repo", dir.path().join("repo").to_str().unwrap()]));
    ok(&tidemark(dir.path(), &["workspace", "add", "shop", "--database-url", &cluster.url("shop")]));
    let id =
        ok(&tidemark(dir.path(), &["--json", "snapshot", "create", "-w", "shop"]))["id"].as_str().unwrap().to_string();
    let target = format!("postgres://restorer@127.0.0.1:{}/shop_copy", cluster.port());

    let denied = tidemark(dir.path(), &["restore", &id, "--target", &target]);
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert_eq!(denied.status.code(), Some(ErrorKind::Database.exit_code()), "{stderr}");
    assert!(stderr.contains("\"shop_copy\"") && stderr.contains("--target-password"), "{stderr}");

    let literal = tidemark(dir.path(), &["restore", &id, "--target", &target, "--target-password", "pw-9f3k"]);
    assert_eq!(literal.status.code(), Some(ErrorKind::Usage.exit_code()));
    assert!(!String::from_utf8_lossy(&literal.stderr).contains("pw-9f3k"), "the value is never repeated");

    let restored = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["--config", dir.path().join("tidemark.toml").to_str().unwrap(), "--json", "restore", &id])
        .args(["--target", &target, "--target-password", "env:RESTORE_PW"])
        .env("RESTORE_PW", "pw-9f3k")
        .output()
        .unwrap();
    assert_eq!(ok(&restored)["created_database"], true);
}

/// Issue 15.2: init never overwrites a signing key, and a refused init leaves nothing
/// behind (not the identity it generated first).
#[test]
fn init_refuses_an_existing_signing_key_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tidemark-signing.key"), "someone's key").unwrap();
    let repo = dir.path().join("repo");
    let refused = tidemark(dir.path(), &["init", "--repo", repo.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(ErrorKind::AlreadyExists.exit_code()));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--signing-key"));
    assert_eq!(std::fs::read_to_string(dir.path().join("tidemark-signing.key")).unwrap(), "someone's key");
    for left in ["tidemark-identity.txt", "tidemark.toml", "repo/repository.json"] {
        assert!(!dir.path().join(left).exists(), "{left} was left behind");
    }
}

/// Issue 17.3: `status` as a monitoring-plugin check: 0 healthy, 1 stale, 2 failing, 3 when
/// it cannot tell; one line per workspace, `--json` the same with thresholds and problems.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_exit_codes_for_healthy_stale_failing_and_unknown() {
    let cluster = tokio::task::spawn_blocking(start_cluster).await.unwrap();
    create_database(&cluster, "shop", "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    ok(&tidemark(dir.path(), &["--json", "init", "--repo", repo.to_str().unwrap()]));
    ok(&tidemark(dir.path(), &["workspace", "add", "shop", "--database-url", &cluster.url("shop")]));
    let status = |args: &[&str]| {
        let mut all = vec!["--json", "status"];
        all.extend_from_slice(args);
        let out = tidemark(dir.path(), &all);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (out.status.code(), report, String::from_utf8_lossy(&out.stderr).to_string())
    };

    // The daily policy expects a snapshot: none yet is stale.
    let (code, report, _) = status(&[]);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["state"], "stale");
    let shop = &report["workspaces"][0];
    assert_eq!(shop["problems"][0]["kind"], "snapshot-stale");
    assert_eq!(shop["thresholds"]["max_snapshot_age_seconds"], 26 * 3600, "daily: 26h");
    ok(&tidemark(dir.path(), &["snapshot", "create", "-w", "shop"]));
    let (code, report, stderr) = status(&[]);
    assert_eq!(code, Some(0), "{report} {stderr}");
    assert_eq!(report["workspaces"][0]["state"], "healthy");
    assert!(report["workspaces"][0]["rpo_seconds"].as_i64().unwrap() < 60);
    // The text: one line per workspace.
    let text = tidemark(dir.path(), &["status"]);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(text.starts_with("shop") && text.contains("healthy") && text.contains("snapshot"), "{text}");

    // Issue 31.4: a second snapshot refused while another operation holds the workspace is
    // recorded as refused, not failed, and pages nobody.
    let holder = tidemark::catalog::lock::Holder::me("snapshot", &crate::support::actor());
    let stop = tokio_util::sync::CancellationToken::new();
    let catalog = dir.path().join(tidemark::catalog::DEFAULT_CATALOG_FILE);
    let wait = tidemark::catalog::lock::Wait::No;
    let held = tidemark::catalog::lock::WorkspaceLock::acquire(&catalog, "shop", &holder, wait, &stop).await.unwrap();
    let refused = tidemark(dir.path(), &["snapshot", "create", "-w", "shop"]);
    assert_eq!(refused.status.code(), Some(ErrorKind::Busy.exit_code()));
    drop(held);
    let (code, report, stderr) = status(&[]);
    assert_eq!(code, Some(0), "a refusal is not a failure: {report} {stderr}");
    let jobs = ok(&tidemark(dir.path(), &["--json", "jobs"]));
    assert_eq!(jobs[0]["status"], "refused", "{jobs}");
    // Issue 31.7: `jobs` says what each job was.
    let listed = String::from_utf8_lossy(&tidemark(dir.path(), &["jobs"]).stdout).to_string();
    assert!(listed.lines().all(|l| l.contains("snapshot manual")), "{listed}");
    // Issue 31.10: `snapshot list` says when each was taken; `token list` the last use.
    let snapshots =
        String::from_utf8_lossy(&tidemark(dir.path(), &["snapshot", "list", "-w", "shop"]).stdout).to_string();
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(
        snapshots.contains("taken (UTC)") && snapshots.lines().nth(1).is_some_and(|l| l.contains(&today)),
        "{snapshots}"
    );
    ok(&tidemark(dir.path(), &["token", "create", "--name", "ci", "--role", "viewer"]));
    let tokens = String::from_utf8_lossy(&tidemark(dir.path(), &["token", "list"]).stdout).to_string();
    assert!(tokens.contains("never used"), "{tokens}");

    // A workspace that cannot be evaluated (a schedule that does not exist): the others
    // still are, and the answer is "cannot tell".
    let config = dir.path().join("tidemark.toml");
    let good = std::fs::read_to_string(&config).unwrap();
    let broken =
        format!("{good}\n[workspaces.broken]\ndatabase-url = \"{}\"\nschedules = [\"nope\"]\n", cluster.url("shop"));
    std::fs::write(&config, broken).unwrap();
    let (code, report, _) = status(&[]);
    assert_eq!(code, Some(3), "{report}");
    assert_eq!(report["state"], "unknown");
    assert_eq!(report["unknown"][0]["workspace"], "broken");
    assert!(report["unknown"][0]["error"].as_str().unwrap().contains("nope"), "{report}");
    assert_eq!(report["workspaces"][0]["state"], "healthy", "shop is still evaluated");
    std::fs::write(&config, &good).unwrap();

    // A threshold set in the config, and crossed.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[workspaces.shop.alerts]\nmax-snapshot-age = \"1s\"\n");
    std::fs::write(&config, &text).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (code, report, stderr) = status(&["-w", "shop"]);
    assert_eq!(code, Some(1), "{report}");
    let problem = &report["workspaces"][0]["problems"][0];
    assert!(problem["message"].as_str().unwrap().starts_with("newest snapshot is"), "{problem}");
    assert!(problem["late_by_seconds"].as_i64().unwrap() >= 1);
    assert!(stderr.contains("stale: shop"), "{stderr}");

    // A job whose newest run failed: failing, which wins over stale.
    ok(&tidemark(dir.path(), &["workspace", "add", "blog", "--database-url", &cluster.url("no_such_database")]));
    let failed = tidemark(dir.path(), &["snapshot", "create", "-w", "blog"]);
    assert!(!failed.status.success());
    let (code, report, _) = status(&[]);
    assert_eq!(code, Some(2), "{report}");
    assert_eq!(report["state"], "failing");
    let blog = report["workspaces"].as_array().unwrap().iter().find(|w| w["workspace"] == "blog").unwrap();
    assert!(blog["problems"].as_array().unwrap().iter().any(|p| p["kind"] == "job-failed"), "{blog}");

    // Cannot tell: 3.
    let (code, _, stderr) = status(&["-w", "nope"]);
    assert_eq!(code, Some(3), "{stderr}");
}

/// Issue 31.8: a second `serve` on the same config is refused naming the first (exit 6),
/// not "Address already in use" (exit 9) from the API's address; a second API-only server
/// on the same address is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_is_refused_naming_the_first() {
    use std::io::{BufRead, BufReader};
    let cluster = tokio::task::spawn_blocking(start_cluster).await.unwrap();
    create_database(&cluster, "shop", "CREATE TABLE t (id int);").await;
    let dir = tempfile::tempdir().unwrap();
    ok(&tidemark(dir.path(), &["init", "--repo", dir.path().join("repo").to_str().unwrap()]));
    ok(&tidemark(dir.path(), &["workspace", "add", "shop", "--database-url", &cluster.url("shop")]));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.path().join("tidemark.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n[api]\nlisten = \"127.0.0.1:{port}\"\n")).unwrap();
    let mut first = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["--config", config.to_str().unwrap(), "serve"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stderr.take().unwrap()).lines();
    assert!(lines.by_ref().map_while(Result::ok).any(|l| l.contains("serving the API")), "the first never served");
    let second = tidemark(dir.path(), &["serve"]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(ErrorKind::Refused.exit_code()), "{stderr}");
    assert!(stderr.contains("another `tidemark serve`") && stderr.contains(&format!("pid {}", first.id())), "{stderr}");
    // Issue 31.10: SIGHUP says the config is read only at start, and the daemon goes on.
    let pid = nix::unistd::Pid::from_raw(first.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    assert!(
        lines.by_ref().map_while(Result::ok).any(|l| l.contains("read only when `serve` starts")),
        "no word on SIGHUP"
    );
    let api_only = tidemark(dir.path(), &["serve", "--api-only"]);
    let stderr = String::from_utf8_lossy(&api_only.stderr);
    assert_eq!(api_only.status.code(), Some(ErrorKind::Refused.exit_code()), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let _rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(first.wait().unwrap().code(), Some(0));
}

/// Issue 31.10: `workspace remove` takes a workspace out of the config (confirmed, not a
/// branch, none of its branches left), keeping the rest of the file, its mode and owners.
#[test]
fn workspace_remove_is_confirmed_and_keeps_the_rest_of_the_config() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    ok(&tidemark(dir.path(), &["init", "--repo", repo.to_str().unwrap()]));
    for name in ["shop", "blog"] {
        let url = format!("postgres://app@127.0.0.1:1/{name}");
        ok(&tidemark(dir.path(), &["workspace", "add", name, "--database-url", &url]));
    }
    let path = dir.path().join("tidemark.toml");
    // A branch of shop, as `branch create` records it.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n# the try branch\n[workspaces.shop--try]\ndatabase-url = \"postgres://app@127.0.0.1:1/shop_branch_try\"\nbranch-of = \"shop\"\n");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let before = std::fs::read_to_string(&path).unwrap();

    let refused = [
        (vec!["workspace", "remove", "blog"], "--confirm blog"),
        (vec!["workspace", "remove", "shop", "--confirm", "shop"], "shop--try"),
        (vec!["workspace", "remove", "shop--try", "--confirm", "shop--try"], "branch delete"),
    ];
    for (args, says) in refused {
        let out = tidemark(dir.path(), &args);
        assert_eq!(out.status.code(), Some(ErrorKind::Usage.exit_code()), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before, "nothing changed");
    }
    let unknown = tidemark(dir.path(), &["workspace", "remove", "nope", "--confirm", "nope"]);
    assert_eq!(unknown.status.code(), Some(ErrorKind::NotFound.exit_code()));

    let out = tidemark(dir.path(), &["workspace", "remove", "blog", "--confirm", "blog"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("backups stay in the repository"));
    let after = std::fs::read_to_string(&path).unwrap();
    assert!(!after.contains("[workspaces.blog]") && after.contains("[workspaces.shop]"), "{after}");
    assert!(after.contains("# the try branch"), "comments stay: {after}");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
    let list = ok(&tidemark(dir.path(), &["--json", "workspace", "list"]));
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["shop", "shop--try"]);
}
