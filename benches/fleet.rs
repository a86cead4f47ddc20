//! A fleet on one PostgreSQL catalog: three `tidemark serve` processes, many small
//! workspaces (500 by default) whose daily slot comes at the same minute. Measured in one
//! run:
//!
//! - the claim itself: 1,000 claims of fresh slots through the catalog API (p50, p99), the
//!   floor being a bare `SELECT 1` on the same pool;
//! - the burst: how long after its due time each slot was claimed (p50, p99: queueing
//!   behind the daemons' job slots), which daemon ran how many, and the time until every
//!   slot is served;
//! - failover: one daemon SIGKILLed while it runs jobs, and the time until another has
//!   recorded its jobs as aborted and taken its slots over (goal: the lease timeout + 5 s);
//! - idle: catalog transactions per minute per daemon once everything is served (goal: a
//!   few per workspace per hour at most), and each daemon's CPU and resident memory.
//!
//! ```text
//! cargo bench --bench fleet                       # 500 workspaces, lease timeout 10 s
//! BENCH_WORKSPACES=100 cargo bench --bench fleet
//! BENCH_LEASE_SECS=30 cargo bench --bench fleet    # the default lease timeout
//! ```

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Timelike;
use tidemark::pgcluster::{Cluster, ClusterOptions};

const DAEMONS: usize = 3;
/// The lease timeout unless `BENCH_LEASE_SECS` says otherwise (short, so failover is quick
/// to measure; the fleet's own idle statements scale with its inverse).
const LEASE_SECS: u64 = 10;

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let workspaces: usize = std::env::var("BENCH_WORKSPACES").ok().and_then(|s| s.parse().ok()).unwrap_or(500);
    let lease_secs: u64 = std::env::var("BENCH_LEASE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(LEASE_SECS);
    let tidemark = env!("CARGO_BIN_EXE_tidemark");
    let work = tempfile::Builder::new().prefix("tidemark-fleet-bench-").tempdir().expect("temp dir");
    let w = work.path().display().to_string();
    let config = format!("{w}/tidemark.toml");
    let cluster = Cluster::start(&ClusterOptions {
        settings: match std::env::var_os("BENCH_LOG_STATEMENTS") {
            // Every statement in the server's log, to see where the idle ones go.
            Some(_) => vec![
                ("max_connections".into(), "200".into()),
                ("log_statement".into(), "all".into()),
                ("log_line_prefix".into(), "%m [%p] ".into()),
            ],
            None => vec![("max_connections".into(), "200".into())],
        },
        ..ClusterOptions::default()
    })
    .expect("a throwaway cluster");
    sh(&format!(
        "psql -q -d '{0}' -c 'CREATE DATABASE shop' -c 'CREATE DATABASE tidemark' && psql -q -d '{1}' -c \
         \"CREATE TABLE orders (id int PRIMARY KEY, note text); INSERT INTO orders SELECT g, 'n' || g FROM generate_series(1, 100) g\"",
        cluster.url("postgres"),
        cluster.url("shop")
    ));
    sh(&format!("{tidemark} --config {config} init --repo {w}/repo >/dev/null"));
    // Every workspace's slot comes at the same minute, a little over a minute from now.
    let due = (chrono::Utc::now() + chrono::Duration::seconds(90)).with_second(0).unwrap().with_nanosecond(0).unwrap();
    std::fs::create_dir_all(format!("{w}/schedules")).unwrap();
    std::fs::write(
        format!("{w}/schedules/daily.toml"),
        format!(
            "kind = \"automatic\"\ncron = \"{} {} * * *\"\ntime-zone = \"UTC\"\n\n[retention]\nkeep-within = \"3d\"\n",
            due.minute(),
            due.hour()
        ),
    )
    .unwrap();
    let mut text = format!("catalog = \"{}\"\n", cluster.url("tidemark"));
    text.push_str(&std::fs::read_to_string(&config).unwrap());
    for i in 0..workspaces {
        text.push_str(&format!(
            "\n[workspaces.w{i:03}]\ndatabase-url = \"{}\"\nschedules = [\"daily\"]\n",
            cluster.url("shop")
        ));
    }
    text.push_str(&format!(
        "\n[fleet]\nlease-timeout = \"{lease_secs}s\"\n\n[daemon]\nmax-concurrent-jobs = 2\nretry-backoff = \"1s\"\n"
    ));
    std::fs::write(&config, text).unwrap();
    sh(&format!("{tidemark} --config {config} jobs >/dev/null"));

    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let catalog = runtime.block_on(async {
        let loaded = tidemark::config::LoadedConfig::load(Some(std::path::Path::new(&config))).expect("the config");
        tidemark::catalog::Catalog::open_at(&loaded.catalog_location()).await.expect("the catalog")
    });

    // The claim itself, against a bare round trip on the same pool.
    let (claim, floor) = runtime.block_on(async {
        let me = catalog.join(tidemark::catalog::fleet::Role::Cli).await.unwrap();
        let mut claims = Vec::new();
        let mut floor = Vec::new();
        let base = chrono::DateTime::parse_from_rfc3339("2000-01-01T00:00:00Z").unwrap().to_utc();
        let bare = sqlx::PgPool::connect(&cluster.url("tidemark")).await.expect("a pool of the catalog");
        for i in 0..1000 {
            let t = Instant::now();
            sqlx::query("SELECT 1").execute(&bare).await.unwrap();
            floor.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            assert!(catalog.claim_slot(me, "bench", "p", base + chrono::Duration::minutes(i)).await.unwrap());
            claims.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        catalog.leave("bench").await;
        (quantiles(claims), quantiles(floor))
    });

    eprintln!("{DAEMONS} daemons, {workspaces} workspaces due at {due}...");
    let mut daemons: Vec<Option<Daemon>> = (0..DAEMONS)
        .map(|i| {
            let log = std::fs::File::create(format!("{w}/daemon-{i}.log")).unwrap();
            Some(Daemon(
                Command::new(tidemark)
                    .args(["--config", &config, "serve"])
                    .env("TIDEMARK_LOG", "tidemark=info")
                    .env_remove("CI")
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("tidemark serve"),
            ))
        })
        .collect();
    let pids: Vec<u32> = daemons.iter().map(|d| d.as_ref().unwrap().0.id()).collect();
    std::thread::sleep(Duration::from_secs(3));
    for (i, d) in daemons.iter_mut().enumerate() {
        if let Ok(Some(status)) = d.as_mut().unwrap().0.try_wait() {
            panic!(
                "daemon {i} ended at start ({status}): {}",
                std::fs::read_to_string(format!("{w}/daemon-{i}.log")).unwrap()
            );
        }
    }
    let q = |sql: &str| sh(&format!("psql -qAt -d '{}' -c \"{sql}\"", cluster.url("tidemark"))).trim().to_string();
    while chrono::Utc::now() < due {
        std::thread::sleep(Duration::from_millis(200));
    }
    // Failover: the first daemon dies ten seconds into the burst, holding jobs.
    std::thread::sleep(Duration::from_secs(10));
    let victim = pids[0];
    let running_before = q(&format!("SELECT count(*) FROM jobs WHERE status = 'running' AND pid = {victim}"));
    daemons[0] = None;
    let killed = Instant::now();
    let failover = loop {
        let left = q(&format!("SELECT count(*) FROM jobs WHERE status = 'running' AND pid = {victim}"));
        if left == "0" {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < Duration::from_secs(120), "the dead daemon's jobs were never aborted");
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("failover: {running_before} running job(s) of the killed daemon aborted after {failover:?}");
    let burst_start = Instant::now();
    loop {
        let served = q(&format!("SELECT count(*) FROM slot_claims WHERE done AND slot = '{}'", due.to_rfc3339()));
        if served.parse::<usize>().unwrap_or(0) >= workspaces {
            break;
        }
        assert!(burst_start.elapsed() < Duration::from_secs(3600), "the burst never finished: {served} served");
        std::thread::sleep(Duration::from_secs(1));
    }
    let burst = (chrono::Utc::now() - due).to_std().unwrap_or_default();
    let delays: Vec<f64> = q(&format!(
        "SELECT EXTRACT(EPOCH FROM claimed_at - slot) FROM slot_claims WHERE slot = '{}'",
        due.to_rfc3339()
    ))
    .lines()
    .filter_map(|l| l.parse().ok())
    .collect();
    let delay = quantiles(delays);
    let per_daemon: Vec<String> = pids
        .iter()
        .map(|pid| q(&format!("SELECT count(*) FROM jobs WHERE status = 'succeeded' AND pid = {pid}")))
        .collect();
    let doubled = q("SELECT count(*) FROM (SELECT workspace FROM jobs WHERE status = 'succeeded' \
         AND scheduled_for IS NOT NULL GROUP BY workspace HAVING count(*) > 1) d");

    // Idle: the catalog's transactions over a minute, and the daemons' CPU and memory.
    let xacts = || {
        q("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'tidemark'")
            .parse::<u64>()
            .unwrap_or(0)
    };
    let live: Vec<u32> = pids[1..].to_vec();
    let cpu_before: Vec<u64> = live.iter().map(|p| cpu_ticks(*p)).collect();
    let (x0, t0) = (xacts(), Instant::now());
    let idle_from = chrono::Utc::now();
    std::thread::sleep(Duration::from_secs(60));
    let (x1, idle_secs) = (xacts(), t0.elapsed().as_secs_f64());
    let cpu: Vec<f64> =
        live.iter().zip(&cpu_before).map(|(p, b)| (cpu_ticks(*p) - b) as f64 / 100.0 / idle_secs * 100.0).collect();
    let rss: Vec<u64> = live.iter().map(|p| rss_mib(*p)).collect();
    // Two psql calls a second of this bench's own are in the count: take them off.
    let per_minute = (x1.saturating_sub(x0) as f64 - 2.0 * idle_secs) / idle_secs * 60.0 / live.len() as f64;

    println!("\n| fleet: {DAEMONS} daemons, {workspaces} workspaces, lease timeout {lease_secs} s | figure |");
    println!("|---|---|");
    println!(
        "| a claim through the catalog, p50 / p99 | {:.2} / {:.2} ms (floor, a bare round trip: {:.2} / {:.2} ms) |",
        claim.0, claim.1, floor.0, floor.1
    );
    println!(
        "| slot claimed after its due time, p50 / p99 | {:.1} / {:.1} s (queueing behind 2 job slots per daemon) |",
        delay.0, delay.1
    );
    println!(
        "| every slot served | {:.0} s after the due time; jobs per daemon {} (the first killed); slots run twice: {doubled} |",
        burst.as_secs_f64(),
        per_daemon.join(" / ")
    );
    println!(
        "| failover: SIGKILL to the dead daemon's jobs aborted and its slots taken over | {:.1} s ({running_before} jobs running) |",
        failover.as_secs_f64()
    );
    println!(
        "| idle catalog transactions per daemon | {per_minute:.1} a minute ({:.2} per workspace an hour) |",
        per_minute * 60.0 / workspaces as f64
    );
    println!(
        "| idle CPU / RSS per daemon | {} / {} MiB |",
        cpu.iter().map(|c| format!("{c:.2}%")).collect::<Vec<_>>().join(", "),
        rss.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
    );
    if std::env::var_os("BENCH_LOG_STATEMENTS").is_some() {
        let log = cluster.data_dir().with_file_name("server.log");
        std::fs::copy(&log, "/tmp/fleet-bench-server.log").expect("the server's log");
        eprintln!("the server's log: /tmp/fleet-bench-server.log (idle from {idle_from})");
    }
    drop(daemons);
}

/// (p50, p99) of `values`.
fn quantiles(mut values: Vec<f64>) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

fn sh(script: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(script).output().expect("sh");
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// User + system CPU ticks (1/100 s) of a process.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}
