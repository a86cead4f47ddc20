//! Issue 33.3–5: `tidemark serve` processes sharing one PostgreSQL catalog, with real
//! signals. A daemon killed (SIGKILL) in the middle of a scheduled snapshot: another one
//! aborts its job within the lease timeout and does the slot's work once; nothing is half
//! visible and prune works after. A daemon paused (SIGSTOP) past its lease while it holds
//! the workspace: another takes over; resumed (SIGCONT), the first commits nothing and says
//! so in its log (fencing).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnection;

use crate::catalog_postgres::{ok, tidemark};
use crate::support::{World, create_database, world};

/// The lease timeout of these fleets: short, so a takeover comes within seconds.
const LEASE: Duration = Duration::from_secs(3);

/// A `tidemark serve` whose log goes to a file of its own.
struct Daemon {
    child: Child,
    log: std::path::PathBuf,
}

impl Daemon {
    fn start(w: &World, name: &str) -> Daemon {
        let log = w.dir.path().join(format!("serve-{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args(["--config", w.core.config.path.to_str().unwrap(), "serve"])
            .env("TIDEMARK_LOG", "tidemark=info")
            .env_remove("CI")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start tidemark serve");
        Daemon { child, log }
    }

    fn pid(&self) -> i64 {
        i64::from(self.child.id())
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- log of daemon pid {} ---\n{}", self.child.id(), self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A workspace whose table a test can hold (a snapshot waits for it), a PostgreSQL
/// catalog with a short lease, and the daily slot missed three days ago (so a daemon
/// catches up at once).
async fn fleet_world() -> (World, PgConnection) {
    let w = world().await;
    create_database(
        &w.cluster,
        "shop",
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 500);",
    )
    .await;
    let catalog = create_database(&w.cluster, "tidemark_catalog", "SELECT 1").await;
    let path = &w.core.config.path;
    let url = w.cluster.url("tidemark_catalog");
    crate::support::set_catalog_lines(path, &format!("catalog = \"{url}\""));
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, format!("{text}\n[fleet]\nlease-timeout = \"{}s\"\n", LEASE.as_secs())).unwrap();
    ok(&tidemark(&w, &["jobs"]));
    let mut conn = catalog.connect().await.unwrap();
    sqlx::query(
        "INSERT INTO schedule_runs (workspace, policy, last_slot, last_status) \
         VALUES ('shop', 'daily', now() - interval '3 days', 'succeeded')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    (w, conn)
}

/// Holds table `t` of the workspace: a snapshot waits for it until the returned
/// transaction ends.
async fn hold_table(w: &World) -> PgConnection {
    let spec = tidemark::pg::ConnSpec::parse(&w.cluster.url("shop"), None).unwrap();
    let mut conn = spec.connect().await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE").execute(&mut conn).await.unwrap();
    conn
}

async fn wait_for<T>(what: &str, limit: Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "waited {limit:?} for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status of the newest job of process `pid`.
async fn job_of(conn: &mut PgConnection, pid: i64) -> Option<String> {
    sqlx::query_scalar("SELECT status FROM jobs WHERE pid = $1 ORDER BY id DESC LIMIT 1")
        .bind(pid)
        .fetch_optional(conn)
        .await
        .unwrap()
}

async fn live_members(conn: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM fleet_members WHERE stopped_at IS NULL AND role = 'daemon'")
        .fetch_one(conn)
        .await
        .unwrap()
}

/// Waits until the newest job of process `pid` has `status`.
async fn wait_for_job(conn: &mut PgConnection, pid: i64, status: &str, what: &str, limit: Duration) {
    wait_for(what, limit, async || (job_of(conn, pid).await.as_deref() == Some(status)).then_some(())).await;
}

/// Daemon `a` running the missed slot (its snapshot waiting for the held table), and
/// daemon `b` joined beside it.
async fn a_running_b_beside(w: &World, catalog: &mut PgConnection) -> (Daemon, Daemon) {
    let a = Daemon::start(w, "a");
    wait_for_job(catalog, a.pid(), "running", "daemon a runs the missed slot", Duration::from_secs(30)).await;
    let b = Daemon::start(w, "b");
    wait_for("daemon b joins", Duration::from_secs(30), async || (live_members(catalog).await == 2).then_some(()))
        .await;
    (a, b)
}

fn snapshots(w: &World) -> Vec<serde_json::Value> {
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&tidemark(w, &["--json", "snapshot", "list", "-w", "shop"]))).unwrap();
    listed.as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemons_slot_is_done_once_by_another() {
    let (w, mut catalog) = fleet_world().await;
    let mut held = hold_table(&w).await;
    let (a, b) = a_running_b_beside(&w, &mut catalog).await;

    a.signal(nix::sys::signal::Signal::SIGKILL);
    let killed = Instant::now();
    wait_for_job(&mut catalog, a.pid(), "aborted", "daemon b aborts a's job", LEASE + Duration::from_secs(10)).await;
    let failover = killed.elapsed();
    wait_for("daemon b takes the slot over", Duration::from_secs(30), async || {
        job_of(&mut catalog, b.pid()).await.map(drop)
    })
    .await;
    eprintln!("failover: a's job aborted {failover:?} after SIGKILL (lease timeout {LEASE:?})");
    assert!(failover <= LEASE + Duration::from_secs(5), "failover took {failover:?}");
    let error: String = sqlx::query_scalar("SELECT error FROM jobs WHERE pid = $1")
        .bind(a.pid())
        .fetch_one(&mut catalog)
        .await
        .unwrap();
    assert!(error.contains("stopped renewing its lease"), "{error}");

    sqlx::raw_sql("COMMIT").execute(&mut held).await.unwrap();
    wait_for_job(&mut catalog, b.pid(), "succeeded", "daemon b's snapshot succeeds", Duration::from_secs(60)).await;
    // The slot's work was done once: one snapshot, one claim, served.
    assert_eq!(snapshots(&w).len(), 1, "one snapshot for the slot");
    let claims: Vec<(String, bool)> =
        sqlx::query_as("SELECT policy, done FROM slot_claims").fetch_all(&mut catalog).await.unwrap();
    assert_eq!(claims, vec![("daily".to_string(), true)]);
    // What a's job left is garbage for prune, which works as before (b holds nothing now).
    ok(&tidemark(&w, &["prune", "-w", "shop", "--wait", "30s"]));
    assert_eq!(snapshots(&w).len(), 1);
    let fleet: serde_json::Value = serde_json::from_str(&ok(&tidemark(&w, &["--json", "fleet"]))).unwrap();
    let dead = fleet["members"].as_array().unwrap().iter().find(|m| m["pid"] == a.pid()).expect("a is listed");
    assert_eq!(dead["alive"], false, "{fleet}");
    let alive = fleet["members"].as_array().unwrap().iter().find(|m| m["pid"] == b.pid()).expect("b is listed");
    assert_eq!((alive["alive"].as_bool(), alive["takeovers"].as_i64()), (Some(true), Some(1)), "{fleet}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_daemon_commits_nothing_when_it_comes_back() {
    let (w, mut catalog) = fleet_world().await;
    let mut held = hold_table(&w).await;
    let (a, b) = a_running_b_beside(&w, &mut catalog).await;

    // Paused past its lease while it holds the workspace: b takes over.
    a.signal(nix::sys::signal::Signal::SIGSTOP);
    wait_for_job(&mut catalog, a.pid(), "aborted", "daemon b aborts a's job", LEASE + Duration::from_secs(10)).await;
    sqlx::raw_sql("COMMIT").execute(&mut held).await.unwrap();
    wait_for_job(&mut catalog, b.pid(), "succeeded", "daemon b's snapshot succeeds", Duration::from_secs(60)).await;
    assert_eq!(snapshots(&w).len(), 1);

    // Resumed, a finishes reading and reaches its commit: fenced, it commits nothing.
    a.signal(nix::sys::signal::Signal::SIGCONT);
    // The fencing check logs first, then the job its refusal ends.
    let fenced = |log: &str| log.contains("fenced") && log.contains("not committing snapshot");
    wait_for("daemon a says it was fenced", Duration::from_secs(60), async || fenced(&a.log()).then_some(())).await;
    assert_eq!(snapshots(&w).len(), 1, "the paused daemon committed nothing");
    assert_eq!(job_of(&mut catalog, a.pid()).await.as_deref(), Some("aborted"), "its job keeps the end b gave it");
    drop(b);
}

/// A `tidemark serve --api-only` of its own config (the same repository and catalog, its
/// own listener): one of several stateless API servers.
fn api_server(w: &World, name: &str) -> (Daemon, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let text = std::fs::read_to_string(&w.core.config.path).unwrap();
    let config = w.dir.path().join(format!("tidemark-{name}.toml"));
    std::fs::write(&config, format!("{text}\n[api]\nlisten = \"127.0.0.1:{port}\"\nrequests-per-second = 20\n"))
        .unwrap();
    let log = w.dir.path().join(format!("serve-{name}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["--config", config.to_str().unwrap(), "serve", "--api-only"])
        .env("TIDEMARK_LOG", "tidemark=info")
        .env_remove("CI")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start tidemark serve --api-only");
    (Daemon { child, log }, format!("http://127.0.0.1:{port}"))
}

async fn get(base: &str, path: &str, secret: &str) -> reqwest::Response {
    reqwest::Client::new().get(format!("{base}{path}")).bearer_auth(secret).send().await.unwrap()
}

fn created_token(w: &World, name: &str) -> (String, String) {
    let made: serde_json::Value =
        serde_json::from_str(&ok(&tidemark(w, &["--json", "token", "create", "--name", name, "--role", "admin"])))
            .unwrap();
    (made["id"].as_str().unwrap().to_string(), made["secret"].as_str().unwrap().to_string())
}

/// Issue 33.6: two API servers on one catalog answer alike. A job started through one is
/// followed and stopped through the other; a token revoked on one is refused by the other
/// at once; concurrent audited writes through both leave one audit chain that verifies;
/// rate limits are per server (one refusing a token does not make the other refuse it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_servers_share_jobs_tokens_and_one_audit_chain() {
    let (w, mut catalog) = fleet_world().await;
    // No daemon here: the slot missed long ago stays missed.
    sqlx::query("DELETE FROM schedule_runs").execute(&mut catalog).await.unwrap();
    let (admin_id, admin) = created_token(&w, "admin-a");
    let (a, base_a) = api_server(&w, "a");
    let (b, base_b) = api_server(&w, "b");
    for base in [&base_a, &base_b] {
        wait_for("the API server answers", Duration::from_secs(30), async || {
            let r =
                reqwest::Client::new().get(format!("{base}/v1/workspaces")).bearer_auth(&admin).send().await.ok()?;
            (r.status() == reqwest::StatusCode::OK).then_some(())
        })
        .await;
    }
    let fleet = crate::api::json(get(&base_b, "/v1/fleet", &admin).await).await;
    assert_eq!(fleet["api_servers_alive"], 2, "{fleet}");

    // A snapshot started on A waits for the table; B lists it and stops it.
    let mut held = hold_table(&w).await;
    let started = reqwest::Client::new()
        .post(format!("{base_a}/v1/workspaces/shop/snapshots"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), reqwest::StatusCode::ACCEPTED);
    let location = started.headers()["location"].to_str().unwrap().to_string();
    let seen = crate::api::json(get(&base_b, &location, &admin).await).await;
    assert_eq!(seen["status"], "running", "{seen}");
    let stop = reqwest::Client::new().delete(format!("{base_b}{location}")).bearer_auth(&admin).send().await.unwrap();
    assert!(stop.status().is_success(), "{}", stop.text().await.unwrap());
    wait_for("the job on A stops", Duration::from_secs(30), async || {
        let job = crate::api::json(get(&base_b, &location, &admin).await).await;
        (job["status"] == "aborted").then_some(())
    })
    .await;
    sqlx::raw_sql("COMMIT").execute(&mut held).await.unwrap();
    assert!(snapshots(&w).is_empty(), "the stopped snapshot committed nothing");

    // A token revoked through A is refused by B at once.
    let (other_id, other) = created_token(&w, "other");
    assert_eq!(get(&base_b, "/v1/workspaces", &other).await.status(), reqwest::StatusCode::OK);
    let revoked = reqwest::Client::new()
        .delete(format!("{base_a}/v1/tokens/{other_id}"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success());
    assert_eq!(get(&base_b, "/v1/workspaces", &other).await.status(), reqwest::StatusCode::UNAUTHORIZED);

    // Audited writes through both at once: one chain, and it verifies.
    let writes = (0..12).map(|i| {
        let (base, admin) = (if i % 2 == 0 { base_a.clone() } else { base_b.clone() }, admin.clone());
        async move {
            reqwest::Client::new()
                .post(format!("{base}/v1/tokens"))
                .bearer_auth(&admin)
                .header("content-type", "application/json")
                .body(format!("{{\"name\": \"t{i}\", \"role\": \"viewer\"}}"))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    let answers = futures::future::join_all(writes).await;
    assert!(answers.iter().all(reqwest::StatusCode::is_success), "{answers:?}");
    let made = answers.len();
    let verified: serde_json::Value = serde_json::from_str(&ok(&tidemark(&w, &["--json", "audit", "verify"]))).unwrap();
    let listed = ok(&tidemark(&w, &["--json", "audit", "list"]));
    let audited = serde_json::from_str::<serde_json::Value>(&listed)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.to_string().contains("token.create"))
        .count();
    assert!(audited >= made + 2, "{audited} token.create records for {made} tokens made over the API: {listed}");
    assert!(verified["records"].as_u64().unwrap() >= audited as u64, "{verified}");

    // Rate limits are per server: A refusing the admin token leaves B answering it.
    let mut limited = false;
    for _ in 0..200 {
        if get(&base_a, "/v1/workspaces", &admin).await.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
            limited = true;
            break;
        }
    }
    assert!(limited, "A limits a token that floods it");
    assert_eq!(get(&base_b, "/v1/workspaces", &admin).await.status(), reqwest::StatusCode::OK, "B has its own limit");
    let _ = admin_id;
    drop((a, b));
}

/// Issue 33.3 with real processes and a real clock: three `serve` on one catalog, thirteen
/// workspaces, a schedule every minute. Over two slots each (workspace, slot) is
/// snapshotted exactly once — counted in the catalog and in the repository — and each
/// daemon ran some of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_snapshot_each_slot_of_each_workspace_once() {
    let (w, mut catalog) = fleet_world().await;
    sqlx::query("DELETE FROM schedule_runs").execute(&mut catalog).await.unwrap();
    let schedules = w.dir.path().join("schedules");
    std::fs::create_dir_all(&schedules).unwrap();
    std::fs::write(schedules.join("minutely.toml"), "kind = \"automatic\"\ncron = \"* * * * *\"\n").unwrap();
    let path = &w.core.config.path;
    let mut text = std::fs::read_to_string(path).unwrap();
    text = format!("schedules-dir = \"{}\"\n{text}", schedules.display());
    let names: Vec<String> = (0..12).map(|i| format!("w{i:02}")).collect();
    for name in &names {
        create_database(&w.cluster, name, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);").await;
        text.push_str(&format!("\n[workspaces.{name}]\ndatabase-url = \"{}\"\n", w.cluster.url(name)));
    }
    std::fs::write(path, text).unwrap();
    std::fs::write(path, format!("{}\n[daemon]\nshutdown-timeout = \"30s\"\n", std::fs::read_to_string(path).unwrap()))
        .unwrap();
    let mut daemons: Vec<Daemon> = ["a", "b", "c"].iter().map(|n| Daemon::start(&w, n)).collect();
    let workspaces = names.len() as i64 + 1; // and shop
    let slots: Vec<chrono::DateTime<chrono::Utc>> =
        wait_for("two slots served everywhere", Duration::from_secs(240), async || {
            let served: Vec<(chrono::DateTime<chrono::Utc>, i64)> = sqlx::query_as(
                "SELECT slot, count(*) FROM slot_claims WHERE done GROUP BY slot HAVING count(*) = $1 ORDER BY slot",
            )
            .bind(workspaces)
            .fetch_all(&mut catalog)
            .await
            .unwrap();
            (served.len() >= 2).then(|| served.into_iter().take(2).map(|(slot, _)| slot).collect())
        })
        .await;
    // Stopped, with whatever they were running ended, before anything is counted.
    for d in &daemons {
        d.signal(nix::sys::signal::Signal::SIGTERM);
    }
    for d in &mut daemons {
        let deadline = Instant::now() + Duration::from_secs(60);
        while d.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "a daemon did not stop");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let runs: Vec<(String, chrono::DateTime<chrono::Utc>, i64)> = sqlx::query_as(
        "SELECT workspace, scheduled_for, pid FROM jobs WHERE status = 'succeeded' AND scheduled_for = ANY($1)",
    )
    .bind(&slots)
    .fetch_all(&mut catalog)
    .await
    .unwrap();
    let mut once = std::collections::HashSet::new();
    for (workspace, slot, _) in &runs {
        assert!(once.insert((workspace.clone(), *slot)), "{workspace} at {slot} ran twice: {runs:?}");
    }
    assert_eq!(once.len() as i64, 2 * workspaces, "{runs:?}");
    for d in &daemons {
        assert!(runs.iter().any(|r| r.2 == d.pid()), "daemon {} ran nothing: {runs:?}", d.pid());
    }
    // The repository holds one snapshot per slot served (and no more: none ran twice).
    for name in names.iter().chain(["shop".to_string()].iter()) {
        let listed: serde_json::Value =
            serde_json::from_str(&ok(&tidemark(&w, &["--json", "snapshot", "list", "-w", name]))).unwrap();
        let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE workspace = $1 AND status = 'succeeded'")
            .bind(name)
            .fetch_one(&mut catalog)
            .await
            .unwrap();
        assert_eq!(listed.as_array().unwrap().len() as i64, jobs, "{name}: one snapshot per job");
    }
}

/// Issue 33.4: a workspace's WAL stream is held by one daemon of the fleet (its
/// `wal-stream` lease), and another daemon takes it over when that one is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_daemon_streams_a_workspace_and_another_takes_the_stream_over() {
    let (w, mut catalog) = fleet_world().await;
    sqlx::query("DELETE FROM schedule_runs").execute(&mut catalog).await.unwrap();
    let path = &w.core.config.path;
    let text =
        std::fs::read_to_string(path).unwrap().replace("[workspaces.shop]\n", "[workspaces.shop]\nwal-stream = true\n");
    assert!(text.contains("wal-stream = true"), "{text}");
    std::fs::write(path, text).unwrap();
    let a = Daemon::start(&w, "a");
    let b = Daemon::start(&w, "b");
    let holder = async |conn: &mut PgConnection| -> Vec<i64> {
        sqlx::query_scalar(
            "SELECT m.pid FROM leases l JOIN fleet_members m ON m.id = l.member \
             WHERE l.name = 'wal-stream shop' AND m.stopped_at IS NULL",
        )
        .fetch_all(conn)
        .await
        .unwrap()
    };
    let first = wait_for("one daemon streams shop", Duration::from_secs(30), async || {
        let held = holder(&mut catalog).await;
        (held.len() == 1).then(|| held[0])
    })
    .await;
    let (gone, other) = if first == a.pid() { (&a, &b) } else { (&b, &a) };
    assert!([a.pid(), b.pid()].contains(&first));
    gone.signal(nix::sys::signal::Signal::SIGKILL);
    wait_for("the other daemon takes the stream over", LEASE + Duration::from_secs(10), async || {
        (holder(&mut catalog).await == vec![other.pid()]).then_some(())
    })
    .await;
    let log = other.log();
    assert!(log.contains("wal-stream shop") && log.contains("this daemon holds it for the fleet"), "{log}");
}
