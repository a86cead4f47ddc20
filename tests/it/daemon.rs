//! The daemon on real parts: scheduled snapshots of a real database into a real
//! repository, retention after each one, the catalog's history, webhooks delivered to a
//! real HTTP listener, and a shutdown in the middle of a snapshot. Time is a manual clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use tidemark::catalog::{Catalog, Job, JobStatus};
use tidemark::config::{Secret, WebhookConfig, WorkspaceConfig};
use tidemark::ops::Core;
use tidemark::ops::serve::serve;
use tidemark::ops::snapshot::{self, SnapshotOptions};
use tidemark::repo::manifest::SnapshotKind;
use tidemark::schedule::clock::ManualClock;
use tidemark::schedule::daemon::DaemonReport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::support::{create_database, world};

/// An HTTP endpoint that answers 500 to the first request and 200 after, keeping bodies.
struct Hook {
    url: String,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    requests: Arc<Mutex<usize>>,
}

async fn hook() -> Hook {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/tidemark?token=hook-secret", listener.local_addr().unwrap());
    let (bodies, requests) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(0usize)));
    let (b, r) = (bodies.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let body = loop {
                let mut chunk = [0u8; 4096];
                let n = socket.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + length {
                        break buf[end + 4..end + 4 + length].to_vec();
                    }
                }
                if n == 0 {
                    break Vec::new();
                }
            };
            let first = {
                let mut count = r.lock().unwrap();
                *count += 1;
                *count == 1
            };
            let status = if first { "500 Internal Server Error" } else { "200 OK" };
            if !first {
                b.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
            }
            let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = socket.write_all(reply.as_bytes()).await;
        }
    });
    Hook { url, bodies, requests }
}

/// Runs `serve` on a manual clock in the background.
pub(crate) fn start_daemon(
    core: &Core,
    clock: &ManualClock,
) -> (CancellationToken, tokio::task::JoinHandle<DaemonReport>) {
    let (core, clock, shutdown) = (core.clone(), clock.clone(), CancellationToken::new());
    let token = shutdown.clone();
    let task = tokio::spawn(async move { serve(&core, Arc::new(clock), token).await.expect("the daemon runs") });
    (shutdown, task)
}

/// Whether a file named `name` is in `dir` or a folder below it, at most `depth` deep.
fn has_file_below(dir: &std::path::Path, name: &str, depth: u32) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|e| {
        e.file_name() == name || (depth > 0 && e.path().is_dir() && has_file_below(&e.path(), name, depth - 1))
    })
}

pub(crate) async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..600 {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

pub(crate) async fn job_of(catalog: &Catalog, workspace: &str, status: JobStatus) -> Option<Job> {
    catalog.jobs(Some(workspace), 10).await.unwrap().into_iter().find(|j| j.status() == status)
}

/// The next 02:00 UTC (the built-in daily policy's slot) at least `days` from now.
pub(crate) fn daily_slot(days: i64) -> DateTime<Utc> {
    let day = Utc::now() + chrono::Duration::days(days);
    day.with_hour(2).unwrap().with_minute(0).unwrap().with_second(0).unwrap().with_nanosecond(0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_snapshots_apply_retention_record_jobs_and_notify() {
    let mut w = world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 500);").await;
    let hook = hook().await;
    let daemon = &mut w.core.config.config.daemon;
    daemon.retries = 1;
    daemon.retry_backoff = Duration::from_secs(60);
    // Freshness events have their own test (they would be deliveries here too).
    daemon.webhook = Some(WebhookConfig { url: Secret::literal(hook.url.clone()), on_success: true, on_stale: false });
    // A second workspace whose database is down (a closed port), with a password that
    // must never show up anywhere.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    w.core.config.config.workspaces.insert(
        "down".into(),
        WorkspaceConfig {
            password: Some(Secret::literal("pw-never-shown")),
            ..WorkspaceConfig::at(format!("postgres://postgres@127.0.0.1:{closed}/down"))
        },
    );

    // Two automatic snapshots and a manual one, taken "five days ago" as the clock will see it.
    let old_auto = SnapshotOptions { workspace: "shop".into(), kind: SnapshotKind::Automatic, ..Default::default() };
    let mut old = Vec::new();
    for _ in 0..2 {
        old.push(snapshot::create(&w.core, &old_auto, &crate::support::actor()).await.unwrap().id);
    }
    let manual = crate::support::snapshot_shop(&w.core).await.unwrap().id;

    let slot = daily_slot(5);
    let clock = ManualClock::new(slot - chrono::Duration::hours(1));
    let (shutdown, daemon) = start_daemon(&w.core, &clock);
    let catalog = Catalog::open_at(&w.core.config.catalog_location()).await.unwrap();
    wait_for("the schedules to register", async || catalog.last_slot("down", "daily").await.unwrap()).await;
    wait_for("the schedules to register", async || catalog.last_slot("shop", "daily").await.unwrap()).await;
    clock.set(slot);

    let done = wait_for("the shop job", async || job_of(&catalog, "shop", JobStatus::Succeeded).await).await;
    let id = done.snapshot_id.clone().unwrap();
    assert_eq!(
        (done.trigger.as_str(), done.kind.as_deref(), done.scheduled_for),
        ("schedule", Some("automatic"), Some(slot))
    );
    assert!(done.bytes.unwrap() > 0);
    assert_eq!(done.warning, None);
    let manifest = crate::support::show(&w.core, &id, Some("shop")).await.unwrap();
    assert_eq!((manifest.kind, manifest.total_rows()), (SnapshotKind::Automatic, 500));
    // Retention ran after it: the older automatic snapshots are past 3 days by the
    // daemon's clock; the manual one (90 days) and the new one stay.
    let mut left = w.core.repo.list_snapshot_ids("shop").await.unwrap();
    left.sort();
    let mut expected = vec![manual.clone(), id.clone()];
    expected.sort();
    assert_eq!(left, expected, "deleted {old:?}?");

    // The database that is down: retried once after the backoff, then failed.
    wait_for("the first attempt", async || {
        catalog.jobs(Some("down"), 1).await.unwrap().first().filter(|j| j.attempts == 2).cloned()
    })
    .await;
    clock.set(slot + chrono::Duration::minutes(1));
    let failed = wait_for("the failure", async || job_of(&catalog, "down", JobStatus::Failed).await).await;
    assert_eq!(failed.attempts, 2);
    assert!(failed.error.as_deref().unwrap().contains("127.0.0.1"), "{failed:?}");

    // Webhooks: the first delivery was refused (500) and retried; one success, one failure.
    let bodies = wait_for("two webhook deliveries", async || {
        let b = hook.bodies.lock().unwrap().clone();
        (b.len() == 2).then_some(b)
    })
    .await;
    assert_eq!(*hook.requests.lock().unwrap(), 3);
    let success = bodies.iter().find(|b| b["event"] == "job.succeeded").expect("a success event");
    assert_eq!((success["workspace"].as_str(), success["snapshot_id"].as_str()), (Some("shop"), Some(id.as_str())));
    let failure = bodies.iter().find(|b| b["event"] == "job.failed").expect("a failure event");
    assert_eq!((failure["workspace"].as_str(), failure["attempts"].as_u64()), (Some("down"), Some(2)));
    assert_eq!(failure["error"]["kind"], "unavailable");
    let everything = format!("{bodies:?} {:?}", catalog.jobs(None, 100).await.unwrap());
    assert!(!everything.contains("pw-never-shown") && !everything.contains("hook-secret"), "a secret leaked");

    shutdown.cancel();
    let report = daemon.await.unwrap();
    assert_eq!((report.schedules, report.jobs_started, report.jobs_aborted), (2, 2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_mid_snapshot_leaves_no_snapshot_and_the_next_run_succeeds() {
    let mut w = world().await;
    let source =
        create_database(&w.cluster, "shop", "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000);")
            .await;
    w.core.config.config.daemon.shutdown_timeout = Duration::from_millis(500);
    // Another session holds a lock the snapshot must wait for: the daemon stops while the
    // snapshot is in the middle of its work.
    let mut blocker = source.connect().await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE;").execute(&mut blocker).await.unwrap();
    let lock_waiters = async || {
        let mut conn = source.connect().await.unwrap();
        let (n,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM pg_stat_activity WHERE datname = 'shop' AND wait_event_type = 'Lock'")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        n
    };

    let slot = daily_slot(1);
    let clock = ManualClock::new(slot - chrono::Duration::hours(1));
    let (shutdown, daemon) = start_daemon(&w.core, &clock);
    let catalog = Catalog::open_at(&w.core.config.catalog_location()).await.unwrap();
    wait_for("the schedule to register", async || catalog.last_slot("shop", "daily").await.unwrap()).await;
    clock.set(slot);
    wait_for("the snapshot to wait for the lock", async || (lock_waiters().await > 0).then_some(())).await;

    shutdown.cancel();
    let report = daemon.await.unwrap();
    assert_eq!(report.jobs_aborted, 1);
    assert!(w.core.repo.list_snapshot_ids("shop").await.unwrap().is_empty(), "an aborted snapshot is visible");
    let aborted = job_of(&catalog, "shop", JobStatus::Aborted).await.expect("the job is recorded as aborted");
    let error = aborted.error.as_deref().unwrap();
    assert!(error.contains("aborted at shutdown") && error.contains("nothing of it is visible"), "{aborted:?}");
    // Its connections are gone, not left waiting on the lock.
    wait_for("the aborted snapshot's sessions to end", async || (lock_waiters().await == 0).then_some(())).await;

    // The lock goes; the daemon comes back an hour later and takes the missed slot at once.
    sqlx::raw_sql("COMMIT").execute(&mut blocker).await.unwrap();
    clock.set(slot + chrono::Duration::hours(1));
    let (shutdown, daemon) = start_daemon(&w.core, &clock);
    let done = wait_for("the catch-up run", async || job_of(&catalog, "shop", JobStatus::Succeeded).await).await;
    assert_eq!(done.trigger, "catch-up");
    let ids = w.core.repo.list_snapshot_ids("shop").await.unwrap();
    assert_eq!(ids, vec![done.snapshot_id.clone().unwrap()]);
    let manifest = crate::support::show(&w.core, &ids[0], Some("shop")).await.unwrap();
    assert_eq!(manifest.total_rows(), 1000);
    shutdown.cancel();
    assert_eq!(daemon.await.unwrap().jobs_aborted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_drills_run_after_snapshots_and_on_their_own_and_failures_notify() {
    let mut w = world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 500);").await;
    std::fs::set_permissions(w.dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    w.core.config.config.drill.scratch_dir = Some(w.dir.path().join("drills"));
    let schedules = w.dir.path().join("schedules");
    std::fs::create_dir_all(&schedules).unwrap();
    std::fs::write(
        schedules.join("daily.toml"),
        "kind = \"automatic\"\ncron = \"0 2 * * *\"\ndrill-after = true\n[retention]\nkeep-within = \"3d\"\n",
    )
    .unwrap();
    std::fs::write(schedules.join("drill.toml"), "action = \"drill\"\ncron = \"0 4 * * *\"\n").unwrap();
    w.core.config.config.schedules_dir = Some(schedules);
    // The business rule the restored copy breaks: the drills must fail and say so.
    let tests = w.dir.path().join("shop-tests");
    std::fs::create_dir_all(&tests).unwrap();
    std::fs::write(tests.join("rules.sql"), "-- assert: at least a thousand rows\nSELECT count(*) >= 1000 FROM t;\n")
        .unwrap();
    w.core.config.config.workspaces.get_mut("shop").unwrap().restore_tests = Some(tests.clone());
    let hook = hook().await;
    w.core.config.config.daemon.webhook =
        Some(WebhookConfig { url: Secret::literal(hook.url.clone()), on_success: false, on_stale: false });

    let slot = daily_slot(1);
    let clock = ManualClock::new(slot - chrono::Duration::hours(1));
    let (shutdown, daemon) = start_daemon(&w.core, &clock);
    let catalog = Catalog::open_at(&w.core.config.catalog_location()).await.unwrap();
    wait_for("the schedules to register", async || catalog.last_slot("shop", "drill").await.unwrap()).await;
    clock.set(slot);
    let failed = wait_for("the snapshot job", async || job_of(&catalog, "shop", JobStatus::Failed).await).await;
    assert_eq!((failed.operation.as_str(), failed.attempts), ("snapshot", 1), "a failed drill is not retried");
    let error = failed.error.clone().unwrap();
    assert!(
        error.contains("was taken, but the restore drill") && error.contains("at least a thousand rows"),
        "{error}"
    );
    let snapshots = w.core.repo.list_snapshot_ids("shop").await.unwrap();
    assert_eq!(snapshots.len(), 1, "the snapshot stays: only its drill failed");
    assert!(error.contains(&snapshots[0]));

    clock.set(slot + chrono::Duration::hours(2));
    let drill_job = wait_for("the drill job", async || {
        catalog
            .jobs(Some("shop"), 10)
            .await
            .unwrap()
            .into_iter()
            .find(|j| j.operation == "drill" && j.status != "running")
    })
    .await;
    assert_eq!(drill_job.status(), JobStatus::Failed);
    assert_eq!(drill_job.snapshot_id, None);
    let drills = catalog.drills(Some("shop"), 10).await.unwrap();
    assert_eq!(drills.len(), 2);
    assert!(drills.iter().all(|d| d.trigger == "schedule"
        && d.report["passed"] == false
        && d.report["source"] == snapshots[0].as_str()));

    let bodies = wait_for("two failure notifications", async || {
        let b = hook.bodies.lock().unwrap().clone();
        (b.len() == 2).then_some(b)
    })
    .await;
    let operations: Vec<&str> = bodies.iter().map(|b| b["operation"].as_str().unwrap()).collect();
    assert_eq!(operations, vec!["snapshot", "drill"]);
    assert!(bodies.iter().all(|b| b["event"] == "job.failed" && b["error"]["kind"] == "integrity"));
    shutdown.cancel();
    daemon.await.unwrap();

    // A drill still running when the shutdown timeout passes is asked to stop: it stops its
    // throwaway cluster and removes its folder before the daemon exits; the job is aborted,
    // not failed. (Only the drill policy is scheduled now; its next slot is due at start.)
    std::fs::write(
        w.dir.path().join("schedules/daily.toml"),
        "kind = \"automatic\"\n[retention]\nkeep-within = \"3d\"\n",
    )
    .unwrap();
    std::fs::write(tests.join("rules.sql"), "-- assert: slow\nSELECT pg_sleep(300) IS NOT NULL;\n").unwrap();
    w.core.config.config.drill.assertion_timeout = Duration::from_secs(600);
    w.core.config.config.daemon.shutdown_timeout = Duration::from_millis(100);
    let clock = ManualClock::new(slot + chrono::Duration::hours(26));
    let (shutdown, daemon) = start_daemon(&w.core, &clock);
    let drills_dir = w.dir.path().join("drills");
    wait_for("the drill's throwaway cluster", async || has_file_below(&drills_dir, "postmaster.pid", 4).then_some(()))
        .await;
    shutdown.cancel();
    let report = daemon.await.unwrap();
    assert_eq!(report.jobs_aborted, 1);
    let left: Vec<_> = std::fs::read_dir(&drills_dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "the stopped drill removed its folder: {left:?}");
    let stopped = catalog.jobs(Some("shop"), 10).await.unwrap().into_iter().next().unwrap();
    assert_eq!((stopped.operation.as_str(), stopped.status()), ("drill", JobStatus::Aborted), "{stopped:?}");
    assert!(stopped.error.as_deref().unwrap().contains("its throwaway was removed"), "{stopped:?}");
    assert_eq!(hook.bodies.lock().unwrap().len(), 2, "an aborted job sends no failure notification");
}

/// Issue 17.2: the daemon's freshness evaluation on a manual clock. Each threshold crossed
/// gives exactly one `workspace.stale` event (not one a minute), and each recovery one
/// `workspace.recovered`; the newest evaluation is what `/metrics` reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshness_crosses_each_threshold_once_and_recovers_once() {
    use tidemark::ops::alerts::{Transitions, evaluate_once};
    use tidemark::ops::drill::{DrillOptions, DrillSource, drill};
    // A workspace whose cluster archives WAL: snapshot, drill and WAL each have a threshold.
    let mut w = crate::pitr::archiving_world().await;
    let live = create_database(&w.cluster, "shop", "CREATE TABLE markers (label text PRIMARY KEY);").await;
    w.core.config.config.drill.scratch_dir = Some(w.dir.path().join("drills"));
    let shop = w.core.config.config.workspaces.get_mut("shop").unwrap();
    shop.password = Some(Secret::literal("pw-never-shown"));
    shop.schedules = Some(Vec::new());
    shop.alerts = Some(tidemark::config::AlertsConfig {
        max_snapshot_age: Some(Duration::from_secs(3600)),
        max_drill_age: Some(Duration::from_secs(2 * 3600)),
        max_wal_lag: Some(Duration::from_secs(3 * 3600)),
        max_copy_lag: None,
    });
    crate::support::basebackup(&w.core).await.unwrap();
    crate::pitr::commit_marker(&live, "a").await;
    crate::pitr::archive_everything(&live, &w.core).await;
    crate::support::snapshot_shop(&w.core).await.unwrap();
    let report =
        drill(&w.core, &DrillOptions::new("shop", DrillSource::Snapshot(None)), &crate::support::actor()).await;
    assert!(report.unwrap().passed);
    let start = Utc::now();
    let clock = ManualClock::new(start + chrono::Duration::minutes(10));
    let mut transitions = Transitions::default();
    let mut at = async |minutes: i64| {
        clock.set(start + chrono::Duration::minutes(minutes));
        evaluate_once(&w.core, &clock, &mut transitions).await
    };
    let seen = |events: &[tidemark::ops::alerts::WorkspaceEvent]| -> Vec<(String, String)> {
        events.iter().map(|e| (e.event.to_string(), e.kind.as_str().to_string())).collect()
    };
    let pair = |e: &str, k: &str| (e.to_string(), k.to_string());

    let first = at(10).await;
    assert!(first.is_empty(), "fresh: {first:?} {:?}", w.core.monitor.latest());
    assert_eq!(w.core.monitor.latest().unwrap().state, "healthy");
    let crossed = at(61).await;
    assert_eq!(seen(&crossed), [pair("workspace.stale", "snapshot-stale")]);
    assert!(crossed[0].message.contains("max 3600s") || crossed[0].message.contains("max 60m"), "{crossed:?}");
    assert!(crossed[0].late_by_seconds.unwrap() >= 1);
    assert!(at(62).await.is_empty(), "still stale: not announced again");
    assert!(at(90).await.is_empty());
    assert_eq!(seen(&at(125).await), [pair("workspace.stale", "drill-stale")]);
    assert!(at(126).await.is_empty());
    assert_eq!(w.core.monitor.latest().unwrap().workspaces[0].problems.len(), 2, "the monitor has the newest");
    let wal = at(185).await;
    assert_eq!(seen(&wal), [pair("workspace.stale", "wal-lag")]);
    assert!(wal[0].message.starts_with("newest archived WAL is"), "{wal:?}");
    assert!(at(186).await.is_empty());
    // As a clock that sees the snapshot and the drill young again (a manual clock never
    // goes back: another one, the same evaluation state): both recover, once.
    let young = ManualClock::new(start + chrono::Duration::minutes(5));
    let recovered = evaluate_once(&w.core, &young, &mut transitions).await;
    assert_eq!(
        seen(&recovered),
        [
            pair("workspace.recovered", "snapshot-stale"),
            pair("workspace.recovered", "drill-stale"),
            pair("workspace.recovered", "wal-lag")
        ]
    );
    young.set(start + chrono::Duration::minutes(6));
    assert!(evaluate_once(&w.core, &young, &mut transitions).await.is_empty());
    let text = serde_json::to_string(&(crossed, recovered)).unwrap();
    assert!(!text.contains("pw-never-shown"), "{text}");
}

/// The same transitions through `serve` and a real webhook: a workspace that is stale when
/// the daemon starts is announced once, and not again on later evaluations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_sends_a_stale_event_to_the_webhook_once() {
    let mut w = world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int PRIMARY KEY);").await;
    let hook = hook().await;
    w.core.config.config.daemon.webhook =
        Some(WebhookConfig { url: Secret::literal(hook.url.clone()), on_success: false, on_stale: true });
    let shop = w.core.config.config.workspaces.get_mut("shop").unwrap();
    shop.schedules = Some(Vec::new());
    shop.alerts = Some(tidemark::config::AlertsConfig {
        max_snapshot_age: Some(Duration::from_secs(3600)),
        ..Default::default()
    });
    let clock = ManualClock::new(Utc::now());
    let (shutdown, daemon) = start_daemon(&w.core, &clock);
    let bodies = wait_for("the stale event", async || {
        let b = hook.bodies.lock().unwrap().clone();
        (!b.is_empty()).then_some(b)
    })
    .await;
    assert_eq!(bodies[0]["event"], "workspace.stale");
    assert_eq!((bodies[0]["workspace"].as_str(), bodies[0]["kind"].as_str()), (Some("shop"), Some("snapshot-stale")));
    assert_eq!(bodies[0]["message"], "no snapshot yet");
    // Two more evaluations, a minute apart on the daemon's clock: nothing new to say.
    for minutes in [1, 2] {
        let moment = tidemark::schedule::clock::Clock::now(&clock) + chrono::Duration::minutes(minutes);
        clock.set(moment);
        wait_for("the next evaluation", async || w.core.monitor.latest().filter(|r| r.at >= moment).map(|_| ())).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(hook.bodies.lock().unwrap().len(), 1, "announced once");
    shutdown.cancel();
    daemon.await.unwrap();
}
