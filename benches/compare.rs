//! Snapshot and restore against the real alternatives, on the same data, in one run:
//! the raw COPY floor, `pg_dump -Fd -j N`, `pg_dump -Fc`, `pg_restore -j N`.
//!
//! ```text
//! cargo bench --bench compare                  # ~2 GB dataset (pgbench scale 100 + jsonb + bytea)
//! BENCH_SCALE=10 cargo bench --bench compare   # quicker, ~200 MB
//! BENCH_REPEAT=5 ...                           # runs of the floor and the snapshot (median kept; default 3)
//! ```
//! Needs the Postgres server binaries, pgbench and GNU time (`apt-get install time`).
//! Prints a Markdown table: wall time, client CPU time, peak client memory, size, ratios.

mod common;

use std::path::Path;

use common::{Measured, bench_dir, measure, median_of, sh};
use tidemark::pgcluster::{Cluster, ClusterOptions};

fn main() {
    let scale: u32 = std::env::var("BENCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    let jobs: usize = std::env::var("BENCH_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map(std::num::NonZero::get).unwrap_or(2));
    assert!(Path::new("/usr/bin/time").exists(), "GNU time is needed: apt-get install time");
    let bin = tidemark::pg::bin_dir(None);
    let tool = |name: &str| tidemark::pg::tool(bin.as_deref(), name).display().to_string();
    let tidemark_bin = env!("CARGO_BIN_EXE_tidemark");

    eprintln!("starting a cluster and generating the dataset (pgbench scale {scale})...");
    let cluster = Cluster::start(&ClusterOptions { settings: common::cluster_settings(), ..Default::default() })
        .expect("start postgres");
    let work = tempfile::Builder::new().prefix("tidemark-bench-").tempdir_in(bench_dir()).expect("temp dir");
    let url = cluster.url("bench");
    let db_size = common::make_dataset(&cluster, scale);
    eprintln!("dataset: {:.2} GB in database bench", db_size as f64 / 1e9);

    let tables = sh(&format!(
        "{} -X -At -d {url} -c \"SELECT quote_ident(relname) FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace ORDER BY pg_relation_size(oid) DESC\"",
        tool("psql")
    ));
    let mut results = Vec::new();

    // The floor: every table COPYed to /dev/null over N connections (what a logical backup cannot beat).
    let list = work.path().join("tables.txt");
    std::fs::write(&list, &tables).unwrap();
    let repeat: usize = std::env::var("BENCH_REPEAT").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    results.push(median_of(repeat, || {
        measure(
            "raw COPY floor",
            &format!(
                "xargs -P {jobs} -I{{}} {} -X -q -d {url} -c 'COPY {{}} TO STDOUT' < {} > /dev/null",
                tool("psql"),
                list.display()
            ),
            None,
            work.path(),
        )
    }));

    // tidemark snapshot.
    let repo = work.path().join("repo");
    let config = work.path().join("tidemark.toml");
    sh(&format!(
        "{tidemark_bin} --config {c} init --repo {r} >/dev/null && {tidemark_bin} --config {c} workspace add bench --database-url {url} >/dev/null",
        c = config.display(),
        r = repo.display()
    ));
    let mut snap = median_of(repeat, || {
        measure(
            "tidemark snapshot",
            &format!(
                "{tidemark_bin} --config {} --json snapshot create --workspace bench --jobs {jobs} > {}/snap.json",
                config.display(),
                work.path().display()
            ),
            None,
            work.path(),
        )
    });
    let snap_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.path().join("snap.json")).unwrap()).unwrap();
    snap.bytes = snap_json["stored_bytes"].as_u64();
    results.push(snap);
    let id = snap_json["id"].as_str().unwrap().to_string();

    let fd = work.path().join("dump.d");
    results.push(measure(
        &format!("pg_dump -Fd -j {jobs}"),
        &format!("{} -Fd -j {jobs} -f {} {url}", tool("pg_dump"), fd.display()),
        Some(&fd),
        work.path(),
    ));
    let fc = work.path().join("dump.fc");
    results.push(measure(
        "pg_dump -Fc",
        &format!("{} -Fc -f {} {url}", tool("pg_dump"), fc.display()),
        Some(&fc),
        work.path(),
    ));

    // Restores alternate, each into a fresh database that is dropped (and checkpointed away)
    // before the next run, so both tools meet the same server state.
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..repeat.max(1) {
        ours.push(measure(
            "tidemark restore",
            &format!(
                "{tidemark_bin} --config {} --json restore {id} --jobs {jobs} --target {} > {}/restore.json",
                config.display(),
                cluster.url("restored_tidemark"),
                work.path().display()
            ),
            None,
            work.path(),
        ));
        // tidemark's restore left dirty pages: written now, not during pg_restore.
        sh(&format!(
            "{} -X -q -d {} -c 'CHECKPOINT' -c 'CREATE DATABASE restored_pg'",
            tool("psql"),
            cluster.url("postgres")
        ));
        theirs.push(measure(
            &format!("pg_restore -j {jobs}"),
            &format!("{} -j {jobs} -d {} {}", tool("pg_restore"), cluster.url("restored_pg"), fd.display()),
            None,
            work.path(),
        ));
        sh(&format!(
            "{psql} -X -q -d {url} -c 'DROP DATABASE restored_tidemark' -c 'DROP DATABASE restored_pg' -c 'CHECKPOINT'",
            psql = tool("psql"),
            url = cluster.url("postgres")
        ));
    }
    let mut ours = ours.into_iter();
    results.push(median_of(repeat, || ours.next().expect("one run per repeat")));
    let mut theirs = theirs.into_iter();
    results.push(median_of(repeat, || theirs.next().expect("one run per repeat")));

    // Issue 16: export against pg_dump -Fd of the same database (measured above), one
    // small table back from the snapshot, and the switch window of an in-place restore.
    let exports = (0..repeat.max(1)).map(|i| work.path().join(format!("export-{i}.tidemark"))).collect::<Vec<_>>();
    let mut next_export = exports.iter();
    let export = median_of(repeat, || {
        let file = next_export.next().expect("one file per run");
        measure(
            "tidemark export (bundle)",
            &format!(
                "{tidemark_bin} --config {} export bench --snapshot {id} --to {}",
                config.display(),
                file.display()
            ),
            Some(file),
            work.path(),
        )
    });
    results.push(export);
    let table_target = cluster.url("one_table");
    let one_table = measure(
        "one table back (pgbench_branches)",
        &format!(
            "{tidemark_bin} --config {} --json restore {id} --table public.pgbench_branches --target {table_target} > {}/table.json",
            config.display(),
            work.path().display()
        ),
        None,
        work.path(),
    );
    let table: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.path().join("table.json")).unwrap_or_default())
            .unwrap_or_default();
    results.push(one_table);
    let in_place = measure(
        "in-place restore (whole command)",
        &format!(
            "{tidemark_bin} --config {} --json restore {id} --in-place --workspace bench --confirm bench \
             --drop-previous --jobs {jobs} > {}/inplace.json",
            config.display(),
            work.path().display()
        ),
        None,
        work.path(),
    );
    let inplace: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.path().join("inplace.json")).unwrap_or_default())
            .unwrap_or_default();
    results.push(in_place);

    report(&results, db_size, scale, jobs);
    let done = &table["table_restore"];
    println!(
        "\none table back: read {} of the snapshot's {} bytes ({:.3}%)",
        done["bytes_read"],
        done["snapshot_bytes"],
        100.0 * done["bytes_read"].as_f64().unwrap_or(0.0) / done["snapshot_bytes"].as_f64().unwrap_or(1.0)
    );
    println!("in-place restore: the live database was unavailable for {} ms (the switch)", inplace["switch_ms"]);
    let restore_json = std::fs::read_to_string(work.path().join("restore.json")).unwrap_or_default();
    let restore: serde_json::Value = serde_json::from_str(&restore_json).unwrap_or_default();
    println!("\ntidemark restore phases, last run (ms): {}", restore["timings"]);
}

fn report(results: &[Measured], db_size: u64, scale: u32, jobs: usize) {
    let find = |prefix: &str| results.iter().find(|m| m.name.starts_with(prefix)).expect("measured");
    let floor = find("raw COPY floor");
    let snap = find("tidemark snapshot");
    let fd = find("pg_dump -Fd");
    let fc = find("pg_dump -Fc");
    let tr = find("tidemark restore");
    let pr = find("pg_restore");
    println!(
        "\nDataset: pgbench scale {scale} + jsonb + bytea tables, {:.2} GB on disk; {jobs} jobs; {} cores.\n",
        db_size as f64 / 1e9,
        std::thread::available_parallelism().map(std::num::NonZero::get).unwrap_or(0)
    );
    println!("| operation | wall s | client CPU s | peak client RSS MiB | size MiB |");
    println!("|---|---:|---:|---:|---:|");
    for m in results {
        println!(
            "| {} | {:.1} | {:.1} | {:.0} | {} |",
            m.name,
            m.wall,
            m.cpu,
            m.max_rss_mib,
            m.bytes.map(|b| format!("{:.0}", b as f64 / 1048576.0)).unwrap_or_else(|| "-".into())
        );
    }
    let size = |m: &Measured| m.bytes.unwrap_or(0) as f64;
    println!("\n| ratio | value | target |");
    println!("|---|---:|---|");
    println!("| snapshot / raw COPY floor | {:.2}x | <= 1.3x |", snap.wall / floor.wall);
    println!("| pg_dump -Fc / snapshot | {:.2}x faster | >= 3x |", fc.wall / snap.wall);
    println!("| pg_dump -Fd -j / snapshot | {:.2}x faster | >= 1.5x |", fd.wall / snap.wall);
    println!("| snapshot size / pg_dump -Fd size | {:.2} | <= 1.0 |", size(snap) / size(fd));
    println!("| snapshot size / pg_dump -Fc size | {:.2} | <= 1.0 |", size(snap) / size(fc));
    println!("| restore / pg_restore -j | {:.2}x | <= 1.0x |", tr.wall / pr.wall);
    println!("| peak snapshot RSS | {:.0} MiB | < 300 MiB |", snap.max_rss_mib);
    println!("| peak restore RSS | {:.0} MiB | < 300 MiB |", tr.max_rss_mib);
}
