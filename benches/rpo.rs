//! What a crash of the source loses (RPO), and what zero loss costs (issue #19). For each
//! way of shipping WAL — `archive_command` only (`archive_timeout = 60s`), `wal-stream =
//! true` and `wal-stream = "synchronous"` — a fresh cluster (fsync and synchronous_commit
//! on) takes a base backup, one client inserts rows as fast as it can and remembers each
//! commit the server acknowledged, then the source and the stream are killed together
//! (SIGKILL) and `pitr restore --latest --start` brings the database back: from the
//! repository alone (`--repository-only`: tidemark's host lost too) and with the stream's
//! spool (tidemark's host survived). Reported: acknowledged commits lost and the seconds of
//! commits they span. Then the cost: `pgbench -c4` commit latency and TPS without a
//! stream, with an asynchronous stream and with a synchronous one.
//!
//! ```text
//! cargo bench --bench rpo                           # 3 runs of each, 10 s of inserts
//! BENCH_RUNS=5 BENCH_LOAD_SECS=20 cargo bench --bench rpo
//! ```
//! Needs the Postgres server binaries and pgbench; runs as root (the server as `postgres`)
//! or as a user who may run Postgres.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{bench_dir, env_or, sh};
use tidemark::pgcluster::{Cluster, ClusterOptions};

#[derive(Clone, Copy, PartialEq)]
enum Shipping {
    Archive,
    Stream,
    Synchronous,
}

impl Shipping {
    fn name(self) -> &'static str {
        match self {
            Shipping::Archive => "archive_command only (archive_timeout 60 s)",
            Shipping::Stream => "wal-stream = true",
            Shipping::Synchronous => "wal-stream = \"synchronous\"",
        }
    }
}

/// One crash: acknowledged commits, and what each restore lost of them.
struct Crash {
    acked: usize,
    /// (lost commits, seconds of commits lost) from the repository alone, then with the spool.
    repository_only: (usize, f64),
    with_spool: (usize, f64),
}

fn main() {
    let runs: usize = env_or("BENCH_RUNS", 3);
    let load_secs: u64 = env_or("BENCH_LOAD_SECS", 10);
    let tidemark_bin = env!("CARGO_BIN_EXE_tidemark");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut crashes: Vec<(Shipping, Crash)> = Vec::new();
    for run in 1..=runs {
        for shipping in [Shipping::Archive, Shipping::Stream, Shipping::Synchronous] {
            eprintln!("run {run}: {}...", shipping.name());
            let crash = crash_once(&runtime, tidemark_bin, shipping, load_secs);
            eprintln!(
                "  {} acknowledged; lost {} ({:.2} s) from the repository, {} ({:.2} s) with the spool",
                crash.acked, crash.repository_only.0, crash.repository_only.1, crash.with_spool.0, crash.with_spool.1
            );
            crashes.push((shipping, crash));
        }
    }
    let latency = commit_latency(tidemark_bin, load_secs.max(10));

    println!("\nRPO: the source and the WAL stream killed together (SIGKILL) under one inserting client,");
    println!(
        "{load_secs} s of inserts, {runs} runs each; acknowledged commits missing after `pitr restore --latest`.\n"
    );
    println!(
        "| shipping | acked commits | lost, repository only | s lost, repository only | lost, with spool | s lost, with spool |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for shipping in [Shipping::Archive, Shipping::Stream, Shipping::Synchronous] {
        let of: Vec<&Crash> = crashes.iter().filter(|(s, _)| *s == shipping).map(|(_, c)| c).collect();
        let range = |f: &dyn Fn(&Crash) -> f64, digits: usize| {
            let (lo, hi) = of.iter().map(|c| f(c)).fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
            if (hi - lo).abs() < 1e-9 { format!("{lo:.digits$}") } else { format!("{lo:.digits$}-{hi:.digits$}") }
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            shipping.name(),
            range(&|c| c.acked as f64, 0),
            range(&|c| c.repository_only.0 as f64, 0),
            range(&|c| c.repository_only.1, 2),
            range(&|c| c.with_spool.0 as f64, 0),
            range(&|c| c.with_spool.1, 2)
        );
    }
    println!("\nThe cost: pgbench -c4 (TPC-B-like, scale 10) for {} s each.\n", load_secs.max(10));
    println!("| source | TPS | latency average ms | vs no stream |\n|---|---:|---:|---:|");
    let base = latency[0].2;
    for (name, tps, ms) in &latency {
        println!("| {name} | {tps:.0} | {ms:.2} | {:.2}x |", ms / base);
    }
}

/// A cluster shipping WAL the given way, tidemark's config beside it, a base backup taken.
struct Source {
    cluster: Cluster,
    work: tempfile::TempDir,
    stream: Option<Child>,
}

fn source(tidemark_bin: &str, shipping: Shipping) -> Source {
    let work = tempfile::Builder::new().prefix("tidemark-rpo-bench-").tempdir_in(bench_dir()).unwrap();
    let w = work.path().display().to_string();
    sh(&format!("chmod 755 {w}; {tidemark_bin} --config {w}/tidemark.toml init --repo {w}/repo >/dev/null"));
    let mut settings = vec![
        ("wal_level".to_string(), "replica".to_string()),
        ("fsync".into(), "on".into()),
        ("full_page_writes".into(), "on".into()),
        ("synchronous_commit".into(), "on".into()),
        ("shared_buffers".into(), "256MB".into()),
    ];
    match shipping {
        Shipping::Archive => {
            settings.push(("archive_mode".into(), "on".into()));
            settings.push(("archive_timeout".into(), "60s".into()));
            settings.push((
                "archive_command".into(),
                format!("{tidemark_bin} --config {w}/tidemark.toml wal push --workspace bench %p"),
            ));
        }
        // Synchronous: named once the stream runs (every commit would wait till then).
        Shipping::Stream | Shipping::Synchronous => {}
    }
    let cluster = Cluster::start(&ClusterOptions { settings, ..Default::default() }).expect("start postgres");
    let bin = tidemark::pg::bin_dir(None).expect("postgres binaries");
    let psql = bin.join("psql").display().to_string();
    sh(&format!("{psql} -X -q -d {} -c 'CREATE DATABASE bench'", cluster.url("postgres")));
    sh(&format!(
        "{psql} -X -q -d {} -c 'CREATE TABLE acked (id bigint PRIMARY KEY, at timestamptz NOT NULL)'",
        cluster.url("bench")
    ));
    let mode = match shipping {
        Shipping::Archive => "",
        Shipping::Stream => "wal-stream = true",
        Shipping::Synchronous => "wal-stream = \"synchronous\"",
    };
    sh(&format!(
        "{tidemark_bin} --config {w}/tidemark.toml workspace add bench --database-url {} >/dev/null\n\
         sed -i 's/^\\[workspaces.bench\\]$/[workspaces.bench]\\n{mode}/' {w}/tidemark.toml\n\
         mkdir -p {w}/repo/workspaces/bench/wal; chmod 644 {w}/tidemark.toml\n\
         if [ \"$(id -u)\" = 0 ]; then chown -R postgres {w}/repo {w}/tidemark-identity.txt {w}/tidemark-signing.key; fi",
        cluster.url("bench")
    ));
    let stream = (shipping != Shipping::Archive).then(|| {
        Command::new(tidemark_bin)
            .args(["--config", &format!("{w}/tidemark.toml"), "wal", "stream", "--workspace", "bench"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("wal stream")
    });
    std::thread::sleep(Duration::from_secs(2));
    if shipping == Shipping::Synchronous {
        sh(&format!(
            "{psql} -X -q -d {} -c \"ALTER SYSTEM SET synchronous_standby_names = 'tidemark_bench'\" \
             -c 'SELECT pg_reload_conf()' >/dev/null",
            cluster.url("postgres")
        ));
        let state = sh(&format!(
            "for i in $(seq 50); do s=$({psql} -X -At -d {} -c \"SELECT sync_state FROM pg_stat_replication \
             WHERE application_name = 'tidemark_bench'\"); [ \"$s\" = sync ] && break; sleep 0.2; done; echo $s",
            cluster.url("postgres")
        ));
        assert_eq!(state.trim(), "sync", "the stream became a synchronous standby");
    }
    sh(&format!("{tidemark_bin} --config {w}/tidemark.toml basebackup --workspace bench >/dev/null"));
    Source { cluster, work, stream }
}

fn crash_once(runtime: &tokio::runtime::Runtime, tidemark_bin: &str, shipping: Shipping, load_secs: u64) -> Crash {
    let mut src = source(tidemark_bin, shipping);
    let url = src.cluster.url("bench");
    // One client, each commit remembered once the server acknowledged it.
    let acked: Vec<(i64, f64)> = runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let mut acked = Vec::new();
        let started = Instant::now();
        let pid = std::fs::read_to_string(src.cluster.data_dir().join("postmaster.pid")).unwrap();
        let pid: i32 = pid.lines().next().unwrap().trim().parse().unwrap();
        let mut killed = false;
        for id in 1i64.. {
            if !killed && started.elapsed() >= Duration::from_secs(load_secs) {
                // The source and the stream die together.
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                if let Some(stream) = &src.stream {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(stream.id() as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                killed = true;
            }
            let done = sqlx::query("INSERT INTO acked VALUES ($1, clock_timestamp())").bind(id).execute(&mut conn);
            match tokio::time::timeout(Duration::from_secs(5), done).await {
                Ok(Ok(_)) => acked.push((id, started.elapsed().as_secs_f64())),
                _ => break,
            }
        }
        acked
    });
    if let Some(mut stream) = src.stream.take() {
        let _ = stream.wait();
    }
    // pg_receivewal, orphaned by the stream's death, dies with the server's connection.
    std::thread::sleep(Duration::from_secs(1));
    let w = src.work.path();
    let lost = |repository_only: bool| {
        let pgdata = w.join(if repository_only { "restored-repo" } else { "restored-spool" });
        let flag = if repository_only { "--repository-only" } else { "" };
        let report = sh(&format!(
            "{tidemark_bin} --config {}/tidemark.toml --json pitr restore --workspace bench --pgdata {} --latest \
             --start --prefetch 0 {flag}",
            w.display(),
            pgdata.display()
        ));
        let report: serde_json::Value = serde_json::from_str(&report).unwrap();
        let port = report["port"].as_u64().unwrap();
        let restored = runtime.block_on(async {
            use sqlx::Connection;
            let url = format!("postgres://postgres@127.0.0.1:{port}/bench");
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM acked").fetch_all(&mut conn).await.unwrap();
            ids.into_iter().collect::<std::collections::HashSet<i64>>()
        });
        stop(&pgdata);
        let missing: Vec<&(i64, f64)> = acked.iter().filter(|(id, _)| !restored.contains(id)).collect();
        let span = match (missing.first(), acked.last()) {
            (Some(first), Some(last)) => last.1 - first.1,
            _ => 0.0,
        };
        (missing.len(), span)
    };
    let repository_only = lost(true);
    let with_spool = if shipping == Shipping::Archive { repository_only } else { lost(false) };
    Crash { acked: acked.len(), repository_only, with_spool }
}

fn stop(pgdata: &Path) {
    let _ = tidemark::pgcluster::stop_data_dir_now(None, pgdata);
}

/// pgbench -c4 latency and TPS: no stream, an asynchronous one, a synchronous one.
fn commit_latency(tidemark_bin: &str, secs: u64) -> Vec<(String, f64, f64)> {
    let bin = tidemark::pg::bin_dir(None).expect("postgres binaries");
    let pgbench = bin.join("pgbench").display().to_string();
    let mut out = Vec::new();
    for (name, shipping) in [
        ("no stream (archive_command)", Shipping::Archive),
        ("wal-stream = true", Shipping::Stream),
        ("wal-stream = \"synchronous\"", Shipping::Synchronous),
    ] {
        eprintln!("pgbench: {name}...");
        let mut src = source(tidemark_bin, shipping);
        let url = src.cluster.url("bench");
        sh(&format!("{pgbench} -i -q -s 10 {url} 2>&1 | tail -1"));
        let text = sh(&format!("{pgbench} -c 4 -j 2 -T {secs} {url} 2>/dev/null"));
        let number = |key: &str| -> f64 {
            let line = text.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("{key} in {text}"));
            line.split('=').nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap()
        };
        out.push((name.to_string(), number("tps"), number("latency average")));
        if let Some(mut stream) = src.stream.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(stream.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = stream.wait();
        }
    }
    out
}
