//! Copies (#35): `tidemark copy` of a snapshot and a base backup (pgbench scale 100 by
//! default, with the jsonb and partly incompressible tables of the other benches) against
//! the raw object copy of the same objects, in the same run, alternating, median of
//! `BENCH_REPEAT`:
//!
//! - between two local repositories: against `cp -r` of the workspace's folder;
//! - from a local repository to S3 (moto on loopback): against `aws s3 sync` of it.
//!
//! tidemark's copy checks every object on the way (the stored bytes' SHA-256 against the
//! manifests; media and WAL decrypted against the SHA-256 their keys name; signatures);
//! the floor checks nothing.
//!
//! ```text
//! cargo bench --bench copy                      # pgbench scale 100
//! BENCH_SCALE=20 BENCH_REPEAT=3 cargo bench --bench copy
//! ```
//! Needs the Postgres server binaries, pgbench, moto_server, the aws CLI and GNU time.

mod common;

use std::path::Path;

use common::{env_or, measure, median, sh};
use tidemark::pgcluster::{Cluster, ClusterOptions};

fn main() {
    let scale: u32 = env_or("BENCH_SCALE", 100);
    let repeat: usize = env_or("BENCH_REPEAT", 3);
    assert!(Path::new("/usr/bin/time").exists(), "GNU time is needed: apt-get install time");
    common::need("aws", "--version");
    common::need("moto_server", "--help");
    let tm = env!("CARGO_BIN_EXE_tidemark");

    eprintln!("a cluster and pgbench scale {scale}...");
    let mut settings = common::cluster_settings();
    settings.push(("archive_mode".into(), "on".into()));
    settings.push(("archive_command".into(), "true".into()));
    let cluster = Cluster::start(&ClusterOptions { settings, ..Default::default() }).expect("start postgres");
    let size = common::make_dataset(&cluster, scale);
    let work = tempfile::Builder::new().prefix("tidemark-copy-bench-").tempdir().expect("temp dir");
    let (wp, w) = (work.path(), work.path().display().to_string());
    let url = cluster.url("bench");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut moto = std::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("moto_server");
    let endpoint = format!("http://127.0.0.1:{port}");
    let aws = format!(
        "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 aws --endpoint-url {endpoint}"
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    sh(&format!("{aws} s3 mb s3://copies >/dev/null && {aws} s3 mb s3://floor >/dev/null"));

    let config = format!("{w}/tidemark.toml");
    sh(&format!("{tm} --config {config} init --repo {w}/repo >/dev/null"));
    sh(&format!("{tm} --config {config} workspace add bench --database-url '{url}' >/dev/null"));
    sh(&format!(
        "cat >> {config} <<'TOML'\n\
         [copies.local]\nurl = \"file://{w}/copy\"\n\
         [copies.s3]\nurl = \"s3://copies/tidemark\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\n\
         path-style = true\nallow-http = true\naccess-key-id = \"testing\"\nsecret-access-key = \"testing\"\n\
         part-size-mib = 8\nTOML"
    ));
    eprintln!("a snapshot and a base backup...");
    sh(&format!("{tm} --config {config} snapshot create --workspace bench >/dev/null"));
    sh(&format!("{tm} --config {config} basebackup --workspace bench >/dev/null"));
    let objects = format!("{w}/repo/workspaces/bench");
    let stored: u64 = sh(&format!("du -sb {objects} | cut -f1")).trim().parse().unwrap_or(0);

    let (mut local, mut cp, mut s3, mut sync) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..repeat.max(1) {
        eprintln!("run {} of {repeat}...", run + 1);
        sh(&format!("rm -rf {w}/copy {w}/floor"));
        sh(&format!("{aws} s3 rm --recursive --quiet s3://copies/ && {aws} s3 rm --recursive --quiet s3://floor/"));
        local.push(measure(
            "tidemark copy, local to local",
            &format!("{tm} --config {config} copy --workspace bench --to local >/dev/null"),
            None,
            wp,
        ));
        cp.push(measure(
            "cp -r, local to local",
            &format!("mkdir -p {w}/floor && cp -r {objects} {w}/floor/"),
            None,
            wp,
        ));
        s3.push(measure(
            "tidemark copy, local to S3",
            &format!("{tm} --config {config} copy --workspace bench --to s3 >/dev/null"),
            None,
            wp,
        ));
        sync.push(measure(
            "aws s3 sync, local to S3",
            &format!("{aws} s3 sync --quiet {objects} s3://floor/workspaces/bench"),
            None,
            wp,
        ));
    }
    let m = [median(repeat, local), median(repeat, cp), median(repeat, s3), median(repeat, sync)];
    println!(
        "\nCopy of a snapshot and a base backup of {:.2} GB (pgbench scale {scale}; {:.0} MiB stored), median of \
         {repeat}:\n",
        size as f64 / 1e9,
        stored as f64 / 1048576.0
    );
    println!("| | wall s | MiB/s | client CPU s | peak RSS MiB |");
    println!("|---|---:|---:|---:|---:|");
    for x in &m {
        println!(
            "| {} | {:.2} | {:.0} | {:.2} | {:.0} |",
            x.name,
            x.wall,
            stored as f64 / 1048576.0 / x.wall,
            x.cpu,
            x.max_rss_mib
        );
    }
    println!(
        "\nthroughput against the floor: local {:.2}x `cp -r`, S3 {:.2}x `aws s3 sync` (goal 0.9x, checks included)",
        m[1].wall / m[0].wall,
        m[3].wall / m[2].wall
    );
    let _ = moto.kill();
    let _ = moto.wait();
    drop(cluster);
}
