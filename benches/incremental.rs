//! Incremental base backups (#36) against full ones and against pgBackRest's incrementals,
//! on the same cluster and the same changes in one run:
//!
//! - pgbench at `BENCH_SCALE` (100: 1.5 GB); a full base backup by each tool (tidemark:
//!   zstd level 1 and age; pgBackRest: zstd level 1 and AES-256, `process-max=2`);
//! - three rounds, each updating 5 % of `pgbench_accounts` (a range of `aid` of its own per
//!   round, as a day's changes cluster on recent rows), each followed by `tidemark
//!   basebackup --incremental` and `pgbackrest backup --type=incr`;
//! - the restore of the newest state from tidemark's chain (full + 3 incrementals) and from
//!   a full base backup of the same state, alternating, median of `BENCH_REPEAT`: `pitr
//!   restore --start` (to the chain's end, and to the latest moment), waited for until
//!   promoted, the content checked against the source's; pgBackRest's restore of its
//!   incremental beside them, once;
//! - one more round that updates 5 % of rows spread over the whole table (every 20th row:
//!   every page changes), the worst case of any page-level incremental.
//!
//! ```text
//! cargo bench --bench incremental                 # pgbench scale 100
//! BENCH_SCALE=20 cargo bench --bench incremental
//! ```
//! Needs the Postgres server binaries, pgbench, pgbackrest and GNU time; runs as root (the
//! server as `postgres`) or as a user who may run Postgres.

mod common;

use std::path::Path;

use common::{Measured, bench_dir, env_or, median, sh};
use tidemark::pgcluster::{Cluster, ClusterOptions};

/// One backup: its time and what it stored.
struct Backup {
    measured: Measured,
    stored: u64,
    end_lsn: String,
}

fn main() {
    let scale: u32 = env_or("BENCH_SCALE", 100);
    let repeat: usize = env_or("BENCH_REPEAT", 3);
    assert!(Path::new("/usr/bin/time").exists(), "GNU time is needed: apt-get install time");
    common::need("pgbackrest", "version");
    let bin = tidemark::pg::bin_dir(None).expect("postgres binaries");
    let tool = |name: &str| bin.join(name).display().to_string();
    let tidemark_bin = env!("CARGO_BIN_EXE_tidemark");
    let as_pg = common::as_postgres();

    let work = tempfile::Builder::new().prefix("tidemark-incr-bench-").tempdir_in(bench_dir()).expect("temp dir");
    let (wp, w) = (work.path(), work.path().display().to_string());
    sh(&format!("chmod 755 {w}; mkdir -p {w}/pgbr {w}/pgbr-run"));
    sh(&format!("{tidemark_bin} --config {w}/tidemark.toml init --repo {w}/repo >/dev/null"));
    let archive_command = format!(
        "{tidemark_bin} --config {w}/tidemark.toml wal push --workspace bench %p && \
         pgbackrest --config={w}/pgbackrest.conf --stanza=bench archive-push %p"
    );
    eprintln!("a cluster and pgbench scale {scale}...");
    let cluster = Cluster::start(&ClusterOptions {
        settings: vec![
            ("wal_level".into(), "replica".into()),
            ("archive_mode".into(), "on".into()),
            ("archive_command".into(), archive_command),
            ("shared_buffers".into(), "256MB".into()),
            ("max_wal_size".into(), "8GB".into()),
            ("checkpoint_timeout".into(), "30min".into()),
            // The throwaway cluster turns these off for speed; an incremental needs them on.
            ("fsync".into(), "on".into()),
            ("full_page_writes".into(), "on".into()),
            ("autovacuum".into(), "off".into()),
        ],
        ..Default::default()
    })
    .expect("start postgres");
    let (data, url) = (cluster.data_dir().display().to_string(), cluster.url("bench"));
    common::pgbackrest_conf(&w, &cluster);
    sh(&format!(
        "{tidemark_bin} --config {w}/tidemark.toml workspace add bench --database-url {url} >/dev/null\n\
         mkdir -p {w}/repo/workspaces/bench/wal; chmod 644 {w}/tidemark.toml\n\
         if [ \"$(id -u)\" = 0 ]; then chown -R postgres {w}/repo {w}/pgbr {w}/pgbr-run {w}/tidemark-identity.txt {w}/tidemark-signing.key; fi"
    ));
    let psql = |sql: &str| sh(&format!("{} -X -q -At -v ON_ERROR_STOP=1 -d {url} -c \"{sql}\"", tool("psql")));
    sh(&format!("{} -X -q -d {} -c 'CREATE DATABASE bench'", tool("psql"), cluster.url("postgres")));
    sh(&format!("{} -i -q -s {scale} {url} 2>&1 | tail -1", tool("pgbench")));
    psql("CHECKPOINT");
    sh(&format!("{as_pg} pgbackrest --config={w}/pgbackrest.conf --stanza=bench stanza-create"));
    let db_size: u64 = psql("SELECT pg_database_size('bench')").trim().parse().unwrap();

    let tm = format!("{tidemark_bin} --config {w}/tidemark.toml --json");
    let pgbr = format!("{as_pg} pgbackrest --config={w}/pgbackrest.conf --stanza=bench");
    let ours = |name: &str, incremental: bool| -> Backup {
        let flag = if incremental { " --incremental" } else { "" };
        let measured = measure(name, &format!("{tm} basebackup --workspace bench{flag} > {w}/manifest.json"), wp);
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(wp.join("manifest.json")).unwrap())
                .expect("basebackup --json");
        assert_eq!(manifest["parent"].is_string(), incremental, "{name}: {manifest}");
        let end_lsn = manifest["end_lsn"].as_str().expect("end_lsn").to_string();
        Backup { measured, stored: manifest["tar"]["stored_size"].as_u64().expect("stored_size"), end_lsn }
    };
    let theirs = |name: &str, kind: &str| -> Backup {
        let measured = measure(name, &format!("{pgbr} --type={kind} backup"), wp);
        let info: serde_json::Value =
            serde_json::from_str(&sh(&format!("{pgbr} --output=json info"))).expect("pgbackrest info");
        let newest = info[0]["backup"].as_array().and_then(|b| b.last()).cloned().expect("a pgbackrest backup");
        assert_eq!(newest["type"], kind, "{name}: {newest}");
        let stored = newest["info"]["repository"]["delta"].as_u64().expect("repository delta");
        Backup { measured, stored, end_lsn: String::new() }
    };

    // The load's WAL archived first: the first backups measure themselves, not the archive.
    wait_archived(&psql);
    let full = ours("tidemark basebackup (full)", false);
    let their_full = theirs("pgbackrest backup --type=full", "full");
    let rows = u64::from(scale) * 100_000;
    let mut rounds = Vec::new();
    for round in 1..=3u64 {
        eprintln!("round {round}: 5 % of pgbench_accounts updated...");
        let (from, to) = ((round - 1) * rows / 20, round * rows / 20);
        psql(&format!("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid > {from} AND aid <= {to}"));
        rounds.push((
            ours(&format!("tidemark basebackup --incremental ({round})"), true),
            theirs(&format!("pgbackrest backup --type=incr ({round})"), "incr"),
        ));
    }
    // The floor of an incremental that reads every relation file: reading them.
    let read_floor = measure(
        "tar -c of the data directory's base/ to /dev/null (the read floor)",
        &format!("tar -cf - -C {data} base | cat > /dev/null"),
        wp,
    );
    let fingerprint = "SELECT count(*) || ':' || sum(abalance) || ':' || max(aid) FROM pgbench_accounts";
    let expected = psql(fingerprint);
    wait_archived(&psql);

    // The newest state restored: from the chain, from pgBackRest's incremental, and (after
    // taking it) from a full base backup of the same state.
    let restore = |name: &str, dir: &str, script: &dyn Fn(&str, u16) -> String| -> Measured {
        let (p, dir) = (tidemark::pgcluster::free_port().unwrap(), format!("{w}/{dir}"));
        let measured = measure(name, &format!("{} && {}", script(&dir, p), common::wait_promoted(p)), wp);
        let got =
            sh(&format!("{} -X -q -At -h 127.0.0.1 -p {p} -U postgres -d bench -c \"{fingerprint}\"", tool("psql")));
        assert_eq!(got, expected, "{name}: the restored content differs from the source's");
        sh(&format!("{as_pg} {} -D {dir} -m fast -w stop >/dev/null; rm -rf {dir}", tool("pg_ctl")));
        measured
    };
    let their_restore = restore("pgbackrest restore (full + 3 incrementals)", "r-pgbr", &|dir, port| {
        common::pgbackrest_restore(&w, dir, port, "restore.log")
    });
    let same_state = ours("tidemark basebackup (full, the same state)", false);
    wait_archived(&psql);
    // Alternating: the chain (to the newest link's end, which the full one of the same state
    // cannot serve) and the full one (to the latest moment); each report names its chain.
    let tidemark_restore = |name: &str, target: &str, links: usize| {
        let measured = restore(name, "r-tidemark", &|dir, port| {
            format!(
                "{tm} pitr restore --workspace bench --pgdata {dir} {target} --start --port {port} > {w}/restore.json"
            )
        });
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(wp.join("restore.json")).unwrap())
                .expect("pitr restore --json");
        assert_eq!(report["chain"].as_array().map_or(0, Vec::len), links, "{name}: {report}");
        measured
    };
    let (mut chains, mut fulls) = (Vec::new(), Vec::new());
    for _ in 0..repeat.max(1) {
        let target = format!("--lsn {}", rounds[2].0.end_lsn);
        chains.push(tidemark_restore("tidemark pitr restore (full + 3 incrementals)", &target, 3));
        fulls.push(tidemark_restore("tidemark pitr restore (full of the same state)", "--latest", 0));
    }
    let (chain_restore, full_restore) = (median(repeat, chains), median(repeat, fulls));

    eprintln!("round 4: 5 % of pgbench_accounts updated, every 20th row...");
    psql("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 20 = 0");
    let spread = (
        ours("tidemark basebackup --incremental (spread)", true),
        theirs("pgbackrest backup --type=incr (spread)", "incr"),
    );

    println!(
        "\npgbench scale {scale} ({:.2} GB); each round updates 5 % of pgbench_accounts ({} rows); 2 cores.\n",
        db_size as f64 / 1e9,
        rows / 20
    );
    println!("| backup | wall s | client CPU s | peak client RSS MiB | stored MiB |");
    println!("|---|---:|---:|---:|---:|");
    let all = [&full, &their_full].into_iter().chain(rounds.iter().flat_map(|(a, b)| [a, b])).chain([
        &same_state,
        &spread.0,
        &spread.1,
    ]);
    for b in all {
        let m = &b.measured;
        println!(
            "| {} | {:.1} | {:.1} | {:.0} | {:.1} |",
            m.name,
            m.wall,
            m.cpu,
            m.max_rss_mib,
            b.stored as f64 / 1048576.0
        );
    }
    println!(
        "\n| incremental / its tool's full before it | tidemark time | tidemark size | pgBackRest time | pgBackRest size |"
    );
    println!("|---|---:|---:|---:|---:|");
    let ratio = |b: &Backup, f: &Backup| (b.measured.wall / f.measured.wall, b.stored as f64 / f.stored.max(1) as f64);
    let named = rounds.iter().enumerate().map(|(i, r)| (format!("round {} (a range of aid)", i + 1), r));
    // Round 4's parent is the full one of the same state, taken just before it.
    let parents = [&full, &full, &full, &same_state];
    for ((name, (a, b)), parent) in named.chain([("round 4 (every 20th row)".to_string(), &spread)]).zip(parents) {
        let (t, s) = ratio(a, parent);
        let (pt, ps) = ratio(b, &their_full);
        println!("| {name} | {t:.2}x | {s:.3}x | {pt:.2}x | {ps:.3}x |");
    }
    println!(
        "\nReading the data directory's base/ (tar -c to /dev/null): {:.1} s; round 3's incremental: {:.2}x that.",
        read_floor.wall,
        rounds[2].0.measured.wall / read_floor.wall
    );
    println!(
        "\n| restore of the newest state (started, promoted, content checked) | wall s | client CPU s | peak client RSS MiB |"
    );
    println!("|---|---:|---:|---:|");
    for m in [&chain_restore, &full_restore, &their_restore] {
        println!("| {} | {:.1} | {:.1} | {:.0} |", m.name, m.wall, m.cpu, m.max_rss_mib);
    }
    println!("\nchain restore / restore of a full of the same state: {:.2}x", chain_restore.wall / full_restore.wall);
    println!("tidemark chain restore / pgBackRest's: {:.2}x", chain_restore.wall / their_restore.wall);
    drop(cluster);
}

/// Ends the current WAL segment and waits until the archive has it (a restore to the
/// latest moment reaches the last backup's end).
fn wait_archived(psql: &impl Fn(&str) -> String) {
    let segment = psql("SELECT pg_walfile_name(pg_switch_wal())");
    let segment = segment.trim();
    for _ in 0..3000 {
        let archived = psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
        if archived.trim() >= segment {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("WAL segment {segment} was not archived in 5 minutes");
}

fn measure(name: &str, script: &str, work: &Path) -> Measured {
    common::measure(name, script, None, work)
}
