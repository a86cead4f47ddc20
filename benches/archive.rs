//! WAL archiving against the real alternatives, on the same server in one run: how fast a
//! backlog of WAL segments drains through each archive_command — `tidemark wal push` (one
//! process per segment), `tidemark wal push --async` (a background pusher, several segments
//! at once), pgBackRest's asynchronous `archive-push` (zstd level 1, AES-256, the same
//! number of processes) and a plain `cp` — and how far the asynchronous archiver falls
//! behind under a steady pgbench load.
//!
//! ```text
//! cargo bench --bench archive                      # 120 segments of backlog, 60 s of load
//! BENCH_SEGMENTS=40 BENCH_LOAD_SECS=20 cargo bench --bench archive
//! ```
//! Needs the Postgres server binaries, pgbench and pgbackrest; runs as root (the server as
//! `postgres`) or as a user who may run Postgres.

mod common;

use std::time::{Duration, Instant};

use common::{bench_dir, env_or, sh};
use tidemark::pgcluster::{Cluster, ClusterOptions};

fn main() {
    let segments: u64 = env_or("BENCH_SEGMENTS", 120);
    let load_secs: u64 = env_or("BENCH_LOAD_SECS", 60);
    let parallel: u32 = env_or("BENCH_PARALLEL", 4);
    common::need("pgbackrest", "version");
    let bin = tidemark::pg::bin_dir(None);
    let tool = |name: &str| tidemark::pg::tool(bin.as_deref(), name).display().to_string();
    let tidemark_bin = env!("CARGO_BIN_EXE_tidemark");
    let as_pg = common::as_postgres();

    let work = tempfile::Builder::new().prefix("tidemark-archive-bench-").tempdir_in(bench_dir()).expect("temp dir");
    let w = work.path().display().to_string();
    sh(&format!("chmod 755 {w}; mkdir -p {w}/cp {w}/pgbr {w}/pgbr-run"));
    sh(&format!("{tidemark_bin} --config {w}/tidemark.toml init --repo {w}/repo >/dev/null"));
    let cluster = Cluster::start(&ClusterOptions {
        settings: vec![
            ("wal_level".into(), "replica".into()),
            ("archive_mode".into(), "on".into()),
            // Empty: archiving paused, so a backlog builds up.
            ("archive_command".into(), String::new()),
            ("shared_buffers".into(), "256MB".into()),
            ("max_wal_size".into(), "16GB".into()),
            ("checkpoint_timeout".into(), "30min".into()),
            // An archive source keeps these on (the throwaway default turns them off).
            ("fsync".into(), "on".into()),
            ("full_page_writes".into(), "on".into()),
        ],
        ..Default::default()
    })
    .expect("start postgres");
    let (data, port, url) = (cluster.data_dir().display().to_string(), cluster.port(), cluster.url("bench"));
    let psql = tool("psql");
    sh(&format!(
        "{tidemark_bin} --config {w}/tidemark.toml workspace add bench --database-url {url} >/dev/null\n\
         cat > {w}/pgbackrest.conf <<EOF\n[global]\nrepo1-path={w}/pgbr\ncompress-type=zst\ncompress-level=1\n\
         repo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=bench-only-passphrase\nlog-level-console=warn\n\
         log-path={w}/pgbr-run\nlock-path={w}/pgbr-run\nspool-path={w}/pgbr-run\nprocess-max={parallel}\n\
         archive-async=y\n[bench]\npg1-path={data}\npg1-port={port}\npg1-user=postgres\npg1-socket-path={socket}\nEOF\n\
         mkdir -p {w}/repo/workspaces/bench/wal\n\
         if [ \"$(id -u)\" = 0 ]; then chown -R postgres {w}; fi",
        socket = cluster.data_dir().parent().unwrap().display()
    ));
    sh(&format!("{psql} -X -q -d {} -c 'CREATE DATABASE bench'", cluster.url("postgres")));
    sh(&format!("{as_pg} pgbackrest --config={w}/pgbackrest.conf --stanza=bench stanza-create"));
    sh(&format!("{psql} -X -q -d {url} -c 'CREATE TABLE fill (id bigint, pad text)'"));

    let tm = format!("{tidemark_bin} --config {w}/tidemark.toml");
    let commands = [
        ("tidemark wal push (a process per segment)", format!("{tm} wal push --workspace bench %p")),
        ("tidemark wal push --async", format!("{tm} wal push --async --parallel {parallel} --workspace bench %p")),
        (
            "pgbackrest archive-push (async)",
            format!("pgbackrest --config={w}/pgbackrest.conf --stanza=bench archive-push %p"),
        ),
        ("cp (no compression, no encryption)", format!("test ! -f {w}/cp/%f && cp %p {w}/cp/%f")),
    ];
    let set_command = |command: &str| {
        sh(&format!(
            "{psql} -X -q -d {url} -c \"ALTER SYSTEM SET archive_command = '{}'\" -c 'SELECT pg_reload_conf()' >/dev/null",
            command.replace('\'', "''")
        ));
    };
    let waiting = || -> u64 {
        sh(&format!(
            "{psql} -X -At -d {url} -c \"SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'\""
        ))
        .trim()
        .parse()
        .unwrap_or(u64::MAX)
    };

    let mut drained = Vec::new();
    for (name, command) in &commands {
        eprintln!("building a backlog of {segments} segments for {name}...");
        set_command("");
        // About 16 MiB of WAL per 100,000 rows of this table; written out before the clock
        // starts, so the archivers do not compete with the page cache's writeback.
        sh(&format!(
            "{psql} -X -q -d {url} -c 'TRUNCATE fill' -c \"INSERT INTO fill SELECT g, repeat(md5(g::text), 3) \
             FROM generate_series(1, {rows}) g\" -c 'SELECT pg_switch_wal()' -c 'CHECKPOINT' >/dev/null; sync",
            rows = segments * 100_000
        ));
        let backlog = waiting();
        set_command(command);
        let clock = Instant::now();
        while waiting() > 0 {
            assert!(clock.elapsed() < Duration::from_secs(1800), "{name} did not drain the backlog");
            std::thread::sleep(Duration::from_millis(100));
        }
        let secs = clock.elapsed().as_secs_f64();
        eprintln!("{name}: {backlog} segments in {secs:.1} s");
        drained.push((name.to_string(), backlog, secs));
    }

    // Under load, with the asynchronous archive_command: how many segments wait, each second.
    eprintln!("pgbench -c4 for {load_secs} s with tidemark wal push --async...");
    set_command(&commands[1].1);
    sh(&format!("{} -i -q -s 20 {url} 2>&1 | tail -1", tool("pgbench")));
    let mut load = std::process::Command::new(tool("pgbench"))
        .args(["-n", "-c", "4", "-j", "2", "-T", &load_secs.to_string(), &url])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("pgbench");
    let mut behind = Vec::new();
    let clock = Instant::now();
    while clock.elapsed() < Duration::from_secs(load_secs) {
        behind.push(waiting());
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(load.wait().unwrap().success(), "pgbench failed");
    let wal_written = sh(&format!("{psql} -X -At -d {url} -c \"SELECT archived_count FROM pg_stat_archiver\""));

    println!(
        "\nWAL backlog drained by each archive_command (same server, one run; {parallel} at once where parallel):\n"
    );
    println!("| archive_command | segments | seconds | segments/s |");
    println!("|---|---:|---:|---:|");
    for (name, n, secs) in &drained {
        println!("| {name} | {n} | {secs:.1} | {:.1} |", *n as f64 / secs);
    }
    let rate = |i: usize| drained[i].1 as f64 / drained[i].2;
    println!("\n| ratio | value | target |");
    println!("|---|---:|---|");
    println!("| tidemark --async / pgBackRest async (segments/s) | {:.2}x | >= 2x |", rate(1) / rate(2));
    println!("| tidemark --async / tidemark one process per segment | {:.2}x | - |", rate(1) / rate(0));
    println!("| tidemark --async / cp | {:.2}x | - |", rate(1) / rate(3));
    behind.sort_unstable();
    println!(
        "\nUnder pgbench -c4 for {load_secs} s ({} segments archived in all so far): segments waiting, sampled each second: \
         median {}, max {} (target: never more than 2)",
        wal_written.trim(),
        behind[behind.len() / 2],
        behind.last().copied().unwrap_or(0)
    );
}
