//! A base backup against the pipeline an operator would build by hand, on the same cluster
//! in one run: `tidemark basebackup` (pg_basebackup's tar read on a thread of its own, then
//! BLAKE3, zstd level 1, age and SHA-256 into a local repository) and `pg_basebackup -Ft -X
//! none -D - | zstd -3 -T<cores> | age -r <recipient> > file`, alternating, median of
//! `BENCH_REPEAT` runs.
//!
//! ```text
//! cargo bench --bench base                  # pgbench scale 100 (~1.5 GB)
//! BENCH_SCALE=20 BENCH_REPEAT=5 cargo bench --bench base
//! ```
//! Needs the Postgres server binaries, pgbench, zstd, age and GNU time.

mod common;

use std::path::Path;

use common::{env_or, measure, median, sh};
use tidemark::pgcluster::{Cluster, ClusterOptions};

fn main() {
    let scale: u32 = env_or("BENCH_SCALE", 100);
    let repeat: usize = env_or("BENCH_REPEAT", 3);
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    assert!(Path::new("/usr/bin/time").exists(), "GNU time is needed: apt-get install time");
    for tool in ["zstd", "age"] {
        common::need(tool, "--version");
    }
    let bin = tidemark::pg::bin_dir(None);
    let tool = |name: &str| tidemark::pg::tool(bin.as_deref(), name).display().to_string();
    let tm = env!("CARGO_BIN_EXE_tidemark");

    eprintln!("a cluster and pgbench scale {scale}...");
    let cluster = Cluster::start(&ClusterOptions {
        // Archiving on (a base backup needs it); the WAL itself is not part of the measure.
        settings: vec![
            ("max_wal_size".into(), "4GB".into()),
            ("checkpoint_timeout".into(), "30min".into()),
            ("archive_mode".into(), "on".into()),
            ("archive_command".into(), "true".into()),
        ],
        ..Default::default()
    })
    .expect("start postgres");
    let work = tempfile::Builder::new().prefix("tidemark-base-bench-").tempdir().expect("temp dir");
    let (wp, w) = (work.path(), work.path().display().to_string());
    let url = cluster.url("bench");
    sh(&format!("{} -X -q -d {} -c 'CREATE DATABASE bench'", tool("psql"), cluster.url("postgres")));
    sh(&format!("{} -i -q -s {scale} {url} 2>&1 | tail -1", tool("pgbench")));
    let size: u64 =
        sh(&format!("{} -X -q -At -d {url} -c 'SELECT sum(pg_database_size(oid)) FROM pg_database'", tool("psql")))
            .trim()
            .parse()
            .unwrap_or(0);
    let config = format!("{w}/tidemark.toml");
    sh(&format!("{tm} --config {config} init --repo {w}/repo >/dev/null"));
    sh(&format!("{tm} --config {config} workspace add bench --database-url '{url}' >/dev/null"));
    let recipient = sh(&format!("grep -m1 '^# public key: ' {w}/tidemark-identity.txt | cut -d' ' -f4"));
    let recipient = recipient.trim();
    assert!(recipient.starts_with("age1"), "no recipient in the identity file");

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for run in 0..repeat.max(1) {
        eprintln!("run {} of {repeat}...", run + 1);
        sh(&format!("rm -rf {w}/repo/workspaces/bench/base {w}/piped.tar.zst.age"));
        ours.push(measure(
            "tidemark basebackup",
            &format!("{tm} --config {config} basebackup --workspace bench >/dev/null"),
            Some(&wp.join("repo/workspaces/bench/base")),
            wp,
        ));
        theirs.push(measure(
            &format!("pg_basebackup -Ft -X none \\| zstd -3 -T{cores} \\| age"),
            &format!(
                "{} -d {url} -D - -Ft -X none -c fast | zstd -q -3 -T{cores} | age -r {recipient} > {w}/piped.tar.zst.age",
                tool("pg_basebackup")
            ),
            Some(&wp.join("piped.tar.zst.age")),
            wp,
        ));
    }
    let (ours, theirs) = (median(repeat, ours), median(repeat, theirs));
    println!(
        "\nBase backup of {:.2} GB (pgbench scale {scale}), {cores} cores, median of {repeat}:\n",
        size as f64 / 1e9
    );
    println!("| | wall s | client CPU s | peak client RSS MiB | size MiB |");
    println!("|---|---:|---:|---:|---:|");
    for m in [&ours, &theirs] {
        println!(
            "| {} | {:.2} | {:.2} | {:.0} | {:.1} |",
            m.name,
            m.wall,
            m.cpu,
            m.max_rss_mib,
            m.bytes.unwrap_or(0) as f64 / 1048576.0
        );
    }
    println!(
        "\ntidemark / pipeline: {:.2}x the time, {:.2}x the size",
        ours.wall / theirs.wall,
        ours.bytes.unwrap_or(0) as f64 / theirs.bytes.unwrap_or(0).max(1) as f64
    );
    drop(cluster);
}
