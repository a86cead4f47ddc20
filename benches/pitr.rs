//! Point-in-time restore against the real alternatives, on the same data and the same WAL,
//! in one run: tidemark (base backup + archived WAL, compressed and encrypted, restored with
//! `pitr restore --latest --start`), `pg_basebackup -Ft` + a plain local WAL archive +
//! manual recovery (`restore_command = cp`), and pgBackRest (zstd level 1, AES-256
//! encryption, `backup --type=full`, `restore`, asynchronous archive-get). One
//! archive_command feeds all three. tidemark restores twice: reading WAL ahead (the
//! default, `--prefetch 8`) and fetching each segment when Postgres asks (`--prefetch 0`).
//! Also the RPO of the archive under a pgbench load: bytes and seconds between the
//! server's WAL position and the newest segment in the repository, sampled every second.
//!
//! ```text
//! cargo bench --bench pitr                    # pgbench scale 20 (~300 MB), 20 s of load
//! BENCH_SCALE=100 BENCH_LOAD_SECS=60 cargo bench --bench pitr
//! ```
//! Needs the Postgres server binaries, pgbench, pgbackrest and GNU time; runs as root (the
//! server as `postgres`) or as a user who may run Postgres.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Measured, bench_dir, sh};
use tidemark::pgcluster::{Cluster, ClusterOptions};

fn main() {
    let scale: u32 = std::env::var("BENCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let load_secs: u64 = std::env::var("BENCH_LOAD_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    assert!(Path::new("/usr/bin/time").exists(), "GNU time is needed: apt-get install time");
    common::need("pgbackrest", "version");
    let bin = tidemark::pg::bin_dir(None).expect("postgres binaries");
    let tool = |name: &str| bin.join(name).display().to_string();
    let tidemark_bin = env!("CARGO_BIN_EXE_tidemark");
    let as_pg = common::as_postgres();

    let work = tempfile::Builder::new().prefix("tidemark-pitr-bench-").tempdir_in(bench_dir()).expect("temp dir");
    let w = work.path().display().to_string();
    sh(&format!("chmod 755 {w}; mkdir -p {w}/archive {w}/pgbr {w}/pgbr-run {w}/pgbb"));
    // tidemark: a repository and a key the server's user can use.
    sh(&format!("{tidemark_bin} --config {w}/tidemark.toml init --repo {w}/repo >/dev/null"));

    let archive_command = format!(
        "{tidemark_bin} --config {w}/tidemark.toml wal push --workspace bench %p && cp %p {w}/archive/%f && \
         pgbackrest --config={w}/pgbackrest.conf --stanza=bench archive-push %p"
    );
    eprintln!("starting a cluster and generating the dataset (pgbench scale {scale})...");
    let cluster = Cluster::start(&ClusterOptions {
        bin_dir: None,
        parent: None,
        data_checksums: false,
        settings: vec![
            ("wal_level".into(), "replica".into()),
            ("archive_mode".into(), "on".into()),
            ("archive_command".into(), archive_command),
            ("archive_timeout".into(), "10s".into()),
            ("shared_buffers".into(), "256MB".into()),
            ("max_wal_size".into(), "4GB".into()),
            // The throwaway cluster turns these off for speed; a PITR source keeps them on.
            ("fsync".into(), "on".into()),
            ("full_page_writes".into(), "on".into()),
        ],
    })
    .expect("start postgres");
    let url = cluster.url("bench");
    common::pgbackrest_conf(&w, &cluster);
    sh(&format!(
        "{tidemark_bin} --config {w}/tidemark.toml workspace add bench --database-url {url} >/dev/null\n\
         mkdir -p {w}/repo/workspaces/bench/wal; chmod 644 {w}/tidemark.toml\n\
         if [ \"$(id -u)\" = 0 ]; then chown -R postgres {w}/repo {w}/archive {w}/pgbr {w}/pgbr-run {w}/pgbb {w}/tidemark-identity.txt {w}/tidemark-signing.key; fi"
    ));
    sh(&format!("{} -X -q -d {} -c 'CREATE DATABASE bench'", tool("psql"), cluster.url("postgres")));
    sh(&format!("{} -i -q -s {scale} {url} 2>&1 | tail -1", tool("pgbench")));
    sh(&format!("{as_pg} pgbackrest --config={w}/pgbackrest.conf --stanza=bench stanza-create"));
    let db_size: u64 = sh(&format!("{} -X -At -d {url} -c \"SELECT pg_database_size('bench')\"", tool("psql")))
        .trim()
        .parse()
        .unwrap();

    let mut results = Vec::new();
    let tm = format!("{tidemark_bin} --config {w}/tidemark.toml");
    results.push(measure(
        "tidemark basebackup",
        &format!("{tm} basebackup --workspace bench >/dev/null"),
        Some(&format!("{w}/repo/workspaces/bench/base")),
        &w,
    ));
    results.push(measure(
        "pg_basebackup -Ft -X none (uncompressed, unencrypted)",
        &format!("{as_pg} {} -d {url} -D {w}/pgbb -Ft -X none -c fast", tool("pg_basebackup")),
        Some(&format!("{w}/pgbb")),
        &w,
    ));
    results.push(measure(
        "pgbackrest backup --type=full (zstd 1, aes-256)",
        &format!("{as_pg} pgbackrest --config={w}/pgbackrest.conf --stanza=bench --type=full backup"),
        Some(&format!("{w}/pgbr/backup")),
        &w,
    ));

    // Load, and the archive's RPO while it runs.
    eprintln!("pgbench load for {load_secs} s...");
    let mut load = start_load(&tool("pgbench"), &url, load_secs);
    let psql = tool("psql");
    let mut behind_bytes = sample_rpo(&psql, &url, load_secs, || {
        let name = sh(&format!("{psql} -X -At -d {url} -c \"SELECT last_archived_wal FROM pg_stat_archiver\""));
        segment_end(name.trim())
    });
    assert!(load.wait().unwrap().success(), "pgbench failed");
    sh(&format!("{} -X -q -d {url} -c 'SELECT pg_switch_wal()' >/dev/null; sleep 3", tool("psql")));
    let wal_bytes = sh(&format!("du -sb {w}/archive | cut -f1")).trim().parse::<u64>().unwrap_or(0);

    // Restores to the latest moment, each started and waited for until promoted.
    let stop = |dir: &str| format!("{as_pg} {} -D {dir} -m fast -w stop >/dev/null", tool("pg_ctl"));
    let p1 = tidemark::pgcluster::free_port().unwrap();
    results.push(measure(
        "tidemark pitr restore --latest --start",
        &format!("{tm} pitr restore --workspace bench --pgdata {w}/r1 --latest --start --port {p1} >/dev/null"),
        None,
        &w,
    ));
    let mut redo = vec![("tidemark (read ahead)", redo_secs(&format!("{w}/r1/tidemark-recovery.log")))];
    sh(&stop(&format!("{w}/r1")));
    let p0 = tidemark::pgcluster::free_port().unwrap();
    results.push(measure(
        "tidemark pitr restore --latest --start --prefetch 0",
        &format!(
            "{tm} pitr restore --workspace bench --pgdata {w}/r0 --latest --start --port {p0} --prefetch 0 >/dev/null"
        ),
        None,
        &w,
    ));
    redo.push(("tidemark (--prefetch 0)", redo_secs(&format!("{w}/r0/tidemark-recovery.log"))));
    sh(&stop(&format!("{w}/r0")));
    let p2 = tidemark::pgcluster::free_port().unwrap();
    results.push(measure(
        "tar -x + recovery from a local archive (cp)",
        &format!(
            "mkdir -m 700 {w}/r2 && tar -xf {w}/pgbb/base.tar -C {w}/r2 && touch {w}/r2/recovery.signal && \
             printf \"restore_command = 'cp {w}/archive/%%f %%p'\\nport = {p2}\\narchive_mode = off\\nrecovery_target_action = promote\\nunix_socket_directories = ''\\nlisten_addresses = 'localhost'\\n\" >> {w}/r2/postgresql.auto.conf && \
             chown -R postgres {w}/r2 2>/dev/null || true; {as_pg} {} -D {w}/r2 -l {w}/pgbr-run/r2.log -w -t 3600 start >/dev/null && {}",
            tool("pg_ctl"),
            common::wait_promoted(p2)
        ),
        None,
        &w,
    ));
    redo.push(("local archive (cp)", redo_secs(&format!("{w}/pgbr-run/r2.log"))));
    sh(&stop(&format!("{w}/r2")));
    let p3 = tidemark::pgcluster::free_port().unwrap();
    results.push(measure(
        "pgbackrest restore + recovery",
        &format!(
            "{} && {}",
            common::pgbackrest_restore(&w, &format!("{w}/r3"), p3, "r3.log"),
            common::wait_promoted(p3)
        ),
        None,
        &w,
    ));
    redo.push(("pgbackrest (async archive-get)", redo_secs(&format!("{w}/pgbr-run/r3.log"))));
    sh(&stop(&format!("{w}/r3")));

    // The stream's RPO: archive_command off, `tidemark wal stream` on, the same load.
    sh(&format!(
        "{psql} -X -q -d {url} -c \"ALTER SYSTEM SET archive_command = 'exit 1'\" -c 'SELECT pg_reload_conf()' >/dev/null"
    ));
    let mut stream = Command::new(tidemark_bin)
        .args(["--config", &format!("{w}/tidemark.toml"), "wal", "stream", "--workspace", "bench", "--spool"])
        .arg(format!("{w}/spool"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    eprintln!("pgbench load for {load_secs} s with the WAL stream...");
    let mut load = start_load(&tool("pgbench"), &url, load_secs);
    let repo_wal = format!("{w}/repo/workspaces/bench/wal/00000001");
    let mut stream_behind = sample_rpo(&psql, &url, load_secs, || {
        let newest = std::fs::read_dir(&repo_wal)
            .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.len() == 24).max())
            .ok()
            .flatten()
            .unwrap_or_default();
        segment_end(&newest)
    });
    assert!(load.wait().unwrap().success(), "pgbench failed");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(stream.id() as i32), nix::sys::signal::Signal::SIGTERM);
    stream.wait().unwrap();

    let find = |prefix: &str| results.iter().find(|m| m.name.starts_with(prefix)).unwrap();
    println!(
        "\nDataset: pgbench scale {scale}, {:.2} GB; {load_secs} s of pgbench load (2 clients) replayed: {:.0} MiB of WAL.\n",
        db_size as f64 / 1e9,
        wal_bytes as f64 / 1048576.0
    );
    println!("| operation | wall s | client CPU s | peak client RSS MiB | size MiB |");
    println!("|---|---:|---:|---:|---:|");
    for m in &results {
        println!(
            "| {} | {:.1} | {:.1} | {:.0} | {} |",
            m.name,
            m.wall,
            m.cpu,
            m.max_rss_mib,
            m.bytes.map(|b| format!("{:.0}", b as f64 / 1048576.0)).unwrap_or_else(|| "-".into())
        );
    }
    let (t, t0, b, r) = (
        find("tidemark pitr restore --latest --start"),
        find("tidemark pitr restore --latest --start --prefetch 0"),
        find("tar -x"),
        find("pgbackrest restore"),
    );
    println!("\n| ratio | value |\n|---|---:|");
    println!("| tidemark restore / pg_basebackup + cp recovery | {:.2}x |", t.wall / b.wall);
    println!("| tidemark restore / pgbackrest restore (async archive-get) | {:.2}x |", t.wall / r.wall);
    println!("| tidemark restore without prefetch / with | {:.2}x |", t0.wall / t.wall);
    let (tb, pb) = (find("tidemark basebackup"), find("pgbackrest backup"));
    println!("| tidemark base backup / pgbackrest backup (time) | {:.2}x |", tb.wall / pb.wall);
    println!(
        "| tidemark base backup / pgbackrest backup (size) | {:.2} |",
        tb.bytes.unwrap_or(0) as f64 / pb.bytes.unwrap_or(1) as f64
    );
    println!("\nReplay: the server's own \"redo done\" time (its log), and the WAL rate it makes.\n");
    println!("| restore | redo s | WAL MB/s |\n|---|---:|---:|");
    for (name, secs) in &redo {
        match secs {
            Some(s) => println!("| {name} | {s:.2} | {:.0} |", wal_bytes as f64 / 1e6 / s),
            None => println!("| {name} | - | - |"),
        }
    }
    println!("\nRPO under load: WAL not yet in the repository, sampled every second.\n");
    println!("| shipping | median MiB | p95 MiB | max MiB |\n|---|---:|---:|---:|");
    for (name, samples) in
        [("archive_command (archive_timeout 10 s)", &mut behind_bytes), ("tidemark wal stream", &mut stream_behind)]
    {
        samples.sort_unstable();
        let p =
            |q: f64| samples.get(((samples.len() as f64 - 1.0) * q) as usize).copied().unwrap_or(0) as f64 / 1048576.0;
        println!("| {name} | {:.1} | {:.1} | {:.1} |", p(0.5), p(0.95), p(1.0));
    }
    drop(cluster);
}

/// The `elapsed` of the server's "redo done at ... system usage: ... elapsed: N s" line.
fn redo_secs(log: &str) -> Option<f64> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains("redo done at"))?;
    line.rsplit("elapsed: ").next()?.trim().trim_end_matches(" s").trim().parse().ok()
}

/// pgbench with 2 clients for `secs` seconds, in the background.
fn start_load(pgbench: &str, url: &str, secs: u64) -> std::process::Child {
    Command::new(pgbench)
        .args(["-c", "2", "-T", &secs.to_string(), url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("pgbench")
}

/// Samples, once a second for `secs`, how many bytes the server's WAL position is ahead
/// of `shipped()` (the LSN just past the newest WAL in the repository).
fn sample_rpo(psql: &str, url: &str, secs: u64, shipped: impl Fn() -> i64) -> Vec<i64> {
    let mut behind = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        let current: i64 =
            sh(&format!("{psql} -X -At -d {url} -c \"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint\""))
                .trim()
                .parse()
                .unwrap();
        behind.push((current - shipped()).max(0));
    }
    behind
}

/// The LSN just past a WAL segment (16 MiB segments).
fn segment_end(name: &str) -> i64 {
    if name.len() < 24 {
        return 0;
    }
    let log = i64::from_str_radix(&name[8..16], 16).unwrap_or(0);
    let seg = i64::from_str_radix(&name[16..24], 16).unwrap_or(0);
    (log << 32) + (seg + 1) * 16 * 1024 * 1024
}

/// `common::measure` with the paths as text (how this bench builds them).
fn measure(name: &str, script: &str, output: Option<&str>, work: &str) -> Measured {
    common::measure(name, script, output.map(Path::new), Path::new(work))
}
