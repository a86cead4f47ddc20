//! One operation per workspace across processes: a command-line prune during a daemon's
//! snapshot of the same workspace is refused naming the snapshot (or waits with `--wait`),
//! and a lock left by a killed process is taken over at once.

use std::io::BufRead;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tidemark::ErrorKind;
use tidemark::catalog::{Catalog, JobStatus};
use tidemark::repo::faults::Faults;
use tidemark::schedule::clock::ManualClock;

use crate::daemon::{daily_slot, job_of, start_daemon, wait_for};
use crate::support::{World, create_database, world};

fn tidemark(w: &World, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    // As a person at a shell: under CI=true the command line acts as the CI job.
    cmd.args(["--config", w.core.config.path.to_str().unwrap()]).args(args).env_remove("CI");
    cmd
}

fn run(w: &World, args: &[&str]) -> Output {
    tidemark(w, args).output().expect("run tidemark")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_prune_during_a_daemon_snapshot_is_refused_naming_it_or_waits_for_it() {
    let mut w = world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 5000);")
        .await;
    // A slow store makes the daemon's snapshot last a few seconds.
    let faults = Faults::new();
    faults.delay(Duration::from_millis(400));
    w.core.repo = w.core.repo.with_faults(&faults);
    let slot = daily_slot(1);
    let clock = ManualClock::new(slot - chrono::Duration::hours(1));
    let (shutdown, daemon) = start_daemon(&w.core, &clock);
    let catalog = Catalog::open_at(&w.core.config.catalog_location()).await.unwrap();
    wait_for("the schedule to register", async || catalog.last_slot("shop", "daily").await.unwrap()).await;
    clock.set(slot);
    let running = wait_for("the daemon's snapshot", async || job_of(&catalog, "shop", JobStatus::Running).await).await;
    assert_eq!(running.actor.as_deref(), Some("schedule:daily"));

    let refused = run(&w, &["prune", "--workspace", "shop"]);
    assert_eq!(refused.status.code(), Some(ErrorKind::Busy.exit_code()), "{}", stderr(&refused));
    let text = stderr(&refused);
    assert!(text.contains("a snapshot asked by schedule:daily"), "{text}");
    assert!(text.contains(&format!("pid {}", std::process::id())), "{text}");
    // Pin changes too.
    let pin = run(&w, &["snapshot", "pin", "latest", "--workspace", "shop"]);
    assert_ne!(pin.status.code(), Some(0));

    // With --wait the prune runs once the snapshot (and the daemon's own retention) is done.
    let waited = tidemark(&w, &["--json", "prune", "--workspace", "shop", "--wait", "5m"]).output().unwrap();
    assert!(waited.status.success(), "{}", stderr(&waited));
    // The command line's prune is a job too, recorded with who asked; it ended after the
    // daemon's snapshot (it waited for it).
    // (The daemon's job goes on with its own retention, which waits for this prune.)
    let snapshot = wait_for("the daemon's job", async || {
        catalog
            .jobs(Some("shop"), 10)
            .await
            .unwrap()
            .into_iter()
            .find(|j| j.operation == "snapshot" && j.status() == JobStatus::Succeeded)
    })
    .await;
    let taken = crate::support::show(&w.core, snapshot.snapshot_id.as_deref().unwrap(), Some("shop")).await.unwrap();
    let jobs = catalog.jobs(Some("shop"), 10).await.unwrap();
    let prune = jobs.iter().find(|j| j.operation == "prune").expect("the prune is recorded");
    assert!(prune.finished_at.unwrap() >= taken.finished_at, "{prune:?} {taken:?}");
    assert!(prune.actor.as_deref().is_some_and(|a| a.starts_with("cli:")), "{prune:?}");
    assert!(prune.progress.is_some(), "its progress was recorded: {prune:?}");
    shutdown.cancel();
    daemon.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_left_by_a_killed_process_is_taken_over() {
    let w = world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int); INSERT INTO t VALUES (1);").await;
    if crate::support::on_postgres_catalog() {
        return a_lease_left_by_a_killed_process_is_taken_over(&w).await;
    }
    // Another process holds the workspace, as a tidemark process would, then is killed.
    let lock = tidemark::catalog::lock::lock_path(&w.core.config.catalog_path(), "shop");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    let script = format!(
        "import fcntl, json, os, sys, time\n\
         f = open({path:?}, 'a+')\n\
         fcntl.flock(f, fcntl.LOCK_EX)\n\
         f.truncate(0)\n\
         f.write(json.dumps({{'operation': 'prune', 'actor': 'cli:ghost', 'pid': os.getpid(), \
         'host': os.uname().nodename, 'since': '2026-11-29T08:00:00Z'}}))\n\
         f.flush()\n\
         print('held', flush=True)\n\
         time.sleep(600)\n",
        path = lock.to_str().unwrap()
    );
    let mut holder = Command::new("python3").args(["-c", &script]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(holder.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "held");

    let refused = run(&w, &["snapshot", "create", "--workspace", "shop"]);
    assert_eq!(refused.status.code(), Some(ErrorKind::Busy.exit_code()), "{}", stderr(&refused));
    let text = stderr(&refused);
    assert!(text.contains("a prune asked by cli:ghost") && text.contains(&format!("pid {}", holder.id())), "{text}");

    holder.kill().unwrap(); // SIGKILL: it cleans nothing up
    holder.wait().unwrap();
    let started = std::time::Instant::now();
    let taken = run(&w, &["--json", "snapshot", "create", "--workspace", "shop"]);
    assert!(taken.status.success(), "{}", stderr(&taken));
    assert!(started.elapsed() < Duration::from_secs(30));
    let after = tidemark::catalog::lock::holder(&w.core.config.catalog_path(), "shop").unwrap();
    assert_eq!(after.operation, "snapshot", "the new holder wrote itself in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_and_drills_are_jobs_with_who_asked_and_their_verdict() {
    let w = world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2);").await;
    let m = crate::support::snapshot_shop(&w.core).await.unwrap();
    let actor = tidemark::actor::Actor::new(tidemark::actor::ActorKind::Ci, "nightly");
    let opts = tidemark::ops::drill::DrillOptions::new("shop", tidemark::ops::drill::DrillSource::Snapshot(None));
    let report = tidemark::ops::drill::drill_recorded(&w.core, &opts, &actor).await.unwrap();
    assert!(report.passed);
    let check = tidemark::ops::check::CheckOptions { workspace: "shop".into(), ..Default::default() };
    assert!(tidemark::ops::check::check_recorded(&w.core, &check, &actor).await.unwrap().problems.is_empty());
    // An object goes missing: the next check runs to its end and is a failed job.
    let table = w.repo_dir().join(format!("workspaces/shop/snapshots/{}/tables/public.t.copy.zst.age", m.id));
    std::fs::remove_file(&table).unwrap();
    let found = tidemark::ops::check::check_recorded(&w.core, &check, &actor).await.unwrap();
    assert!(!found.problems.is_empty());

    let catalog = Catalog::open_at(&w.core.config.catalog_location()).await.unwrap();
    let jobs = catalog.jobs(Some("shop"), 10).await.unwrap();
    let by = |op: &str| jobs.iter().filter(|j| j.operation == op).collect::<Vec<_>>();
    let (drills, checks) = (by("drill"), by("check"));
    assert_eq!((drills.len(), checks.len()), (1, 2), "{jobs:?}");
    assert_eq!((drills[0].status(), drills[0].trigger.as_str()), (JobStatus::Succeeded, "ci"));
    assert_eq!(drills[0].snapshot_id.as_deref(), Some(m.id.as_str()));
    assert!(jobs.iter().all(|j| j.actor.as_deref() == Some("ci:nightly") || j.operation == "snapshot"));
    // Newest first: the check that found the missing object failed, naming it.
    assert_eq!(checks[0].status(), JobStatus::Failed);
    assert!(checks[0].error.as_deref().unwrap().contains("public.t.copy.zst.age"), "{:?}", checks[0]);
    assert_eq!(checks[1].status(), JobStatus::Succeeded);
}

/// Issue 32.3: every long operation records itself as a job whichever front end starts it:
/// an export, an in-place restore, its undo, a branch made and made live, from the command
/// line, are in `jobs` under their operations' names (they were only over the API).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_records_its_long_operations_as_jobs() {
    let w = world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 50);").await;
    let ok = |args: &[&str]| {
        let out = run(&w, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    ok(&["snapshot", "create", "-w", "shop"]);
    let bundle = w.dir.path().join("shop.tidemark");
    ok(&["export", "shop", "--to", bundle.to_str().unwrap()]);
    ok(&["restore", "latest", "--in-place", "-w", "shop", "--confirm", "shop"]);
    ok(&["restore", "undo", "shop", "--confirm", "shop"]);
    ok(&["branch", "create", "shop", "try"]);
    ok(&["branch", "set-live", "shop", "try", "--confirm", "shop"]);
    let out = run(&w, &["--json", "jobs", "--workspace", "shop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut operations: Vec<(String, String)> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["operation"].as_str().unwrap().to_string(), j["status"].as_str().unwrap().to_string()))
        .collect();
    operations.sort();
    for operation in ["export", "restore-in-place", "restore-undo", "branch-create", "branch-set-live"] {
        assert!(
            operations.iter().any(|(o, status)| o == operation && status == "succeeded"),
            "{operation} is not a succeeded job: {operations:?}"
        );
    }
}

/// With a PostgreSQL catalog the workspace's lock is a lease: a tidemark process of this
/// host holding it (a snapshot waiting for a table) and killed with SIGKILL leaves it to
/// the next operation at once, not after the lease timeout (its pid is gone from here).
async fn a_lease_left_by_a_killed_process_is_taken_over(w: &crate::support::World) {
    let spec = tidemark::pg::ConnSpec::parse(&w.cluster.url("shop"), None).unwrap();
    let mut held = spec.connect().await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE").execute(&mut held).await.unwrap();
    let mut holder = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["--config", w.core.config.path.to_str().unwrap(), "snapshot", "create", "--workspace", "shop"])
        .env_remove("CI")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let catalog = tidemark::catalog::Catalog::open_at(&w.core.config.catalog_location()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !catalog
        .jobs(Some("shop"), 5)
        .await
        .unwrap()
        .iter()
        .any(|j| j.status() == tidemark::catalog::JobStatus::Running)
    {
        assert!(std::time::Instant::now() < deadline, "the holder never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = run(w, &["snapshot", "create", "--workspace", "shop"]);
    assert_eq!(refused.status.code(), Some(ErrorKind::Busy.exit_code()), "{}", stderr(&refused));
    let text = stderr(&refused);
    assert!(text.contains("a snapshot asked by cli:") && text.contains(&format!("pid {}", holder.id())), "{text}");

    holder.kill().unwrap(); // SIGKILL: it frees nothing
    holder.wait().unwrap();
    sqlx::raw_sql("COMMIT").execute(&mut held).await.unwrap();
    let started = std::time::Instant::now();
    let taken = run(w, &["--json", "snapshot", "create", "--workspace", "shop"]);
    assert!(taken.status.success(), "{}", stderr(&taken));
    let lease = catalog.lease_timeout();
    assert!(started.elapsed() < lease, "taken at once, not after the lease timeout {lease:?}: {:?}", started.elapsed());
    let jobs = catalog.jobs(Some("shop"), 5).await.unwrap();
    assert_eq!(jobs.iter().filter(|j| j.status() == tidemark::catalog::JobStatus::Aborted).count(), 1, "{jobs:?}");
}
