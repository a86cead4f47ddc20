//! The HTTP API under load: `tidemark serve --api-only` as its own process, a workspace
//! with 1,000 snapshots in the repository and the catalog's index, and wrk (Debian package
//! `wrk`) as a second process on loopback, with a viewer token (handed to wrk's Lua script
//! in its environment, not its arguments) and the rate limits off. Measured in one run:
//! `GET /healthz` (no token, no catalog: the server's floor), a page of snapshots (the
//! default 100, newest first), all 1,000 at once, one job with its progress, and the
//! Prometheus scrape (`/metrics`, with 10,000 WAL segments in the repository too). Also
//! the server's resident memory when idle, before and after the load.
//!
//! ```text
//! cargo bench --bench api                  # 10 s per route, 2 threads, 8 and then 32 connections
//! BENCH_SECS=30 BENCH_CONNECTIONS=64 cargo bench --bench api
//! ```

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, field, millis, sh};
use tidemark::pgcluster::{Cluster, ClusterOptions};

const SNAPSHOTS: usize = 1000;
const WAL_SEGMENTS: usize = 10_000;

fn main() {
    let secs: u64 = std::env::var("BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let levels: Vec<u32> = match std::env::var("BENCH_CONNECTIONS").ok().and_then(|s| s.parse().ok()) {
        Some(n) => vec![n],
        None => vec![8, 32],
    };
    assert!(Command::new("wrk").arg("--version").output().is_ok(), "wrk is needed: apt-get install wrk");
    let tidemark = env!("CARGO_BIN_EXE_tidemark");
    let work = tempfile::Builder::new().prefix("tidemark-api-bench-").tempdir().expect("temp dir");
    let w = work.path().display().to_string();
    let config = format!("{w}/tidemark.toml");

    eprintln!("a cluster, a workspace, a snapshot...");
    let cluster = Cluster::start(&ClusterOptions::default()).expect("a throwaway cluster");
    sh(&format!(
        "psql -q -d '{}' -c 'CREATE DATABASE shop' && psql -q -d '{}' -c \
         \"CREATE TABLE orders (id int PRIMARY KEY, note text); INSERT INTO orders SELECT g, 'n' || g FROM generate_series(1, 1000) g\"",
        cluster.url("postgres"),
        cluster.url("shop")
    ));
    sh(&format!("{tidemark} --config {config} init --repo {w}/repo >/dev/null"));
    sh(&format!("{tidemark} --config {config} workspace add shop --database-url '{}' >/dev/null", cluster.url("shop")));
    sh(&format!("{tidemark} --config {config} snapshot create -w shop >/dev/null 2>&1"));

    eprintln!("{} more snapshots (the first one's manifest under new ids; no objects)...", SNAPSHOTS - 1);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let loaded = tidemark::config::LoadedConfig::load(Some(std::path::Path::new(&config))).expect("the config");
        let core = tidemark::ops::Core::open(loaded).await.expect("the core");
        let identities = core.identities().expect("the identity");
        let ids = core.repo.list_snapshot_ids("shop").await.expect("a listing");
        let first = core.repo.read_manifest("shop", &ids[0], &identities).await.expect("the manifest");
        for i in 1..SNAPSHOTS {
            let mut copy = first.clone();
            let at = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().to_utc()
                + chrono::Duration::minutes(i as i64);
            copy.id = format!("{}-{i:06x}", at.format("%Y%m%dT%H%M%SZ"));
            // The manifest alone (its objects are the first snapshot's, under its id): what a
            // listing reads.
            let key = tidemark::repo::layout::manifest("shop", &copy.id);
            core.repo.put_sealed(&key, &copy, core.recipients().unwrap()).await.expect("a manifest");
        }
    });
    // 10,000 WAL segments in the repository (empty objects under real names): a scrape of
    // /metrics must not read them (it answers from the catalog and the daemon's state).
    for i in 0..WAL_SEGMENTS {
        let name = format!("00000001{:08X}{:08X}", i / 256, i % 256);
        let key = tidemark::repo::layout::wal_object("shop", &name, &"0".repeat(64)).expect("a WAL key");
        let path = std::path::Path::new(&w).join("repo").join(key.as_ref());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"").unwrap();
    }
    let secret = sh(&format!("{tidemark} --config {config} token create --name bench --role viewer"));
    let secret = secret.trim().to_string();
    let port = free_port();
    std::fs::write(
        &config,
        format!(
            "{}\n[api]\nlisten = \"127.0.0.1:{port}\"\nrequests-per-second = 0\nfailed-auth-per-minute = 0\n",
            std::fs::read_to_string(&config).unwrap()
        ),
    )
    .unwrap();

    let mut server = Server::api_only(tidemark, &config);
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while Command::new("curl").args(["-sf", &format!("{base}/healthz")]).output().map_or(true, |o| !o.status.success())
    {
        assert!(started.elapsed() < Duration::from_secs(30), "the server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let idle_before = rss_mib(server.0.id());

    // The first listing reads the 1,000 manifests into the catalog's index.
    let script = format!("{w}/auth.lua");
    std::fs::write(&script, "wrk.headers[\"Authorization\"] = \"Bearer \" .. os.getenv(\"TIDEMARK_BENCH_TOKEN\")\n")
        .unwrap();
    let t = Instant::now();
    let first = Command::new("curl")
        .args(["-sf", "-o", "/dev/null", "-K", "-", &format!("{base}/v1/workspaces/shop/snapshots?limit=1000")])
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(format!("header = \"Authorization: Bearer {secret}\"\n").as_bytes())?;
            c.wait()
        })
        .expect("curl");
    assert!(first.success(), "the first listing failed");
    let index_ms = t.elapsed().as_millis();

    let routes = [
        ("GET /healthz (no token: the floor)", "/healthz"),
        ("GET snapshots, a page of 100", "/v1/workspaces/shop/snapshots"),
        ("GET snapshots, all 1,000", "/v1/workspaces/shop/snapshots?limit=1000"),
        ("GET /v1/jobs/1", "/v1/jobs/1"),
        ("GET /metrics (1,000 snapshots, 10,000 WAL segments)", "/metrics"),
    ];
    let mut rows = Vec::new();
    for &connections in &levels {
        for (name, path) in routes {
            eprintln!("wrk, {connections} connections: {name}...");
            let out = Command::new("wrk")
                .args(["-t2", &format!("-c{connections}"), &format!("-d{secs}s"), "--latency", "-s", &script])
                .arg(format!("{base}{path}"))
                .env("TIDEMARK_BENCH_TOKEN", &secret)
                .output()
                .expect("wrk");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let rps = field(&text, "Requests/sec:").unwrap_or(0.0);
            let at = |p: &str| {
                text.lines().find(|l| l.trim_start().starts_with(p)).and_then(|l| millis(l.split_whitespace().nth(1)?))
            };
            let non_2xx = text.lines().find(|l| l.contains("Non-2xx")).map(str::trim).unwrap_or("").to_string();
            assert!(non_2xx.is_empty(), "{name}: {non_2xx}\n{text}");
            rows.push((connections, name, rps, at("50%"), at("99%")));
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let idle_after = rss_mib(server.0.id());

    println!("\nAPI under wrk (2 threads, {secs} s per route, this machine):\n");
    println!("| route | connections | requests/s | p50 | p99 |");
    println!("|---|---:|---:|---:|---:|");
    for (connections, name, rps, p50, p99) in &rows {
        let ms = |v: &Option<f64>| v.map_or("?".into(), |v| format!("{v:.2} ms"));
        println!("| {name} | {connections} | {rps:.0} | {} | {} |", ms(p50), ms(p99));
    }
    println!(
        "\nidle RSS: {idle_before:.1} MiB after start, {idle_after:.1} MiB after the load; first listing (reads \
         {SNAPSHOTS} manifests into the index): {index_ms} ms"
    );
    for (connections, name, rps, _, _) in &rows {
        let floor = rows.iter().find(|r| r.0 == *connections).map_or(1.0, |r| r.2);
        println!("{name}, {connections} connections: {:.2}x the floor's requests/s", rps / floor);
    }
    server.stop();
    drop(cluster);
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
