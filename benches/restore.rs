//! The way back, against the real alternative on the same data in one run: `tidemark
//! restore` against `pg_restore -j N` of a `pg_dump -Fd` of the same database, and a
//! restore drill of the same snapshot against that restore; then where the time went,
//! table by table.
//!
//! ```text
//! cargo bench --bench restore                  # ~2 GB dataset (pgbench scale 100 + jsonb + bytea)
//! BENCH_SCALE=10 cargo bench --bench restore   # quicker, ~200 MB
//! BENCH_REPEAT=5 ...                           # runs of each (median kept; default 3)
//! ```
//! Needs the Postgres server binaries, pgbench and GNU time (`apt-get install time`).

mod common;

use common::{Measured, bench_dir, env_or, measure, median, sh};
use tidemark::pgcluster::{Cluster, ClusterOptions};

fn main() {
    let scale: u32 = env_or("BENCH_SCALE", 100);
    let repeat: usize = env_or("BENCH_REPEAT", 3);
    let jobs: usize =
        env_or("BENCH_JOBS", std::thread::available_parallelism().map(std::num::NonZero::get).unwrap_or(2));
    assert!(std::path::Path::new("/usr/bin/time").exists(), "GNU time is needed: apt-get install time");
    let bin = tidemark::pg::bin_dir(None);
    let tool = |name: &str| tidemark::pg::tool(bin.as_deref(), name).display().to_string();
    let tidemark_bin = env!("CARGO_BIN_EXE_tidemark");

    eprintln!("starting a cluster and generating the dataset (pgbench scale {scale})...");
    let cluster = Cluster::start(&ClusterOptions { settings: common::cluster_settings(), ..Default::default() })
        .expect("start postgres");
    let work = tempfile::Builder::new().prefix("tidemark-bench-").tempdir_in(bench_dir()).expect("temp dir");
    let w = work.path();
    let db_size = common::make_dataset(&cluster, scale);
    eprintln!("dataset: {:.2} GB in database bench", db_size as f64 / 1e9);
    let url = cluster.url("bench");
    let config = w.join("tidemark.toml");
    let tm = format!("{tidemark_bin} --config {}", config.display());
    sh(&format!(
        "{tm} init --repo {} >/dev/null && {tm} workspace add bench --database-url {url} >/dev/null",
        w.join("repo").display()
    ));
    let snapshot = measure(
        "tidemark snapshot create",
        &format!("{tm} --json snapshot create --workspace bench --jobs {jobs} > {}/snap.json", w.display()),
        Some(&w.join("repo")),
        w,
    );
    let snap: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(w.join("snap.json")).unwrap()).unwrap();
    let id = snap["id"].as_str().unwrap().to_string();
    let fd = w.join("dump.d");
    sh(&format!("{} -Fd -j {jobs} -f {} {url}", tool("pg_dump"), fd.display()));

    // Each tool meets the same server state: every restored database is dropped (and
    // checkpointed away) before the next run; the order alternates.
    let (mut ours, mut theirs, mut drills) = (Vec::new(), Vec::new(), Vec::new());
    let mut drill_reports = Vec::new();
    for run in 0..repeat.max(1) {
        let mut one = |which: usize| match which {
            0 => ours.push(measure(
                "tidemark restore",
                &format!(
                    "{tm} --json restore {id} --jobs {jobs} --target {} > {}/restore.json",
                    cluster.url("restored_tidemark"),
                    w.display()
                ),
                None,
                w,
            )),
            1 => {
                sh(&format!("{} -X -q -d {} -c 'CREATE DATABASE restored_pg'", tool("psql"), cluster.url("postgres")));
                theirs.push(measure(
                    &format!("pg_restore -j {jobs}"),
                    &format!("{} -j {jobs} -d {} {}", tool("pg_restore"), cluster.url("restored_pg"), fd.display()),
                    None,
                    w,
                ));
            }
            _ => {
                drills.push(measure(
                    "tidemark drill (throwaway cluster, every check)",
                    &format!("{tm} --json drill --workspace bench --snapshot {id} > {}/drill.json", w.display()),
                    None,
                    w,
                ));
                let text = std::fs::read_to_string(w.join("drill.json")).unwrap_or_default();
                drill_reports.push(serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default());
            }
        };
        let order = if run % 2 == 0 { [0, 1, 2] } else { [1, 0, 2] };
        for which in order {
            // What the previous run left dirty is written now, not during the next one.
            sh(&format!("{} -X -q -d {} -c 'CHECKPOINT'", tool("psql"), cluster.url("postgres")));
            one(which);
        }
        sh(&format!(
            "{psql} -X -q -d {u} -c 'DROP DATABASE restored_tidemark' -c 'DROP DATABASE restored_pg' -c 'CHECKPOINT'",
            psql = tool("psql"),
            u = cluster.url("postgres")
        ));
    }
    let drill_passed = drill_reports.iter().all(|r| r["passed"].as_bool() == Some(true));
    let walls = |runs: &[Measured]| runs.iter().map(|m| format!("{:.1}", m.wall)).collect::<Vec<_>>().join(", ");
    let every_run =
        format!("every run (s): restore {}; pg_restore {}; drill {}", walls(&ours), walls(&theirs), walls(&drills));
    let (ours, theirs, drill) = (median(repeat, ours), median(repeat, theirs), median(repeat, drills));
    let restore: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.join("restore.json")).unwrap_or_default()).unwrap_or_default();

    println!(
        "\nDataset: pgbench scale {scale} + jsonb + bytea tables, {:.2} GB on disk; {jobs} jobs; {} cores.\n",
        db_size as f64 / 1e9,
        std::thread::available_parallelism().map(std::num::NonZero::get).unwrap_or(0)
    );
    println!("| operation | wall s | client CPU s | peak client RSS MiB |");
    println!("|---|---:|---:|---:|");
    for m in [&snapshot, &ours, &theirs, &drill] {
        println!("| {} | {:.1} | {:.1} | {:.0} |", m.name, m.wall, m.cpu, m.max_rss_mib);
    }
    let ratio = |a: &Measured, b: &Measured| a.wall / b.wall;
    println!("\n| ratio | value | target |");
    println!("|---|---:|---|");
    println!("| restore / pg_restore -j {jobs} | {:.2}x | <= 0.7x |", ratio(&ours, &theirs));
    println!("| drill / restore | {:.2}x | <= 1.1x |", ratio(&drill, &ours));
    println!("| peak snapshot RSS | {:.0} MiB | < 300 MiB |", snapshot.max_rss_mib);
    println!("| peak restore RSS | {:.0} MiB | < 300 MiB |", ours.max_rss_mib);
    println!("| peak drill RSS | {:.0} MiB | < 300 MiB |", drill.max_rss_mib);
    println!("\n{every_run}\ndrills passed: {drill_passed}");

    let t = &restore["timings"];
    println!(
        "\ntidemark restore, last run (ms): pre-data {}, tables {} (indexes of loaded tables built meanwhile), \
         post-data after the last table {}, sequences and views {}, total {}",
        t["pre_data_ms"], t["data_ms"], t["post_data_ms"], t["finish_ms"], t["total_ms"]
    );
    println!("\n| table | MB | parts | frozen | load from-to s | indexes | index s | done s |");
    println!("|---|---:|---:|---|---|---:|---:|---:|");
    for p in t["tables"].as_array().into_iter().flatten() {
        let s = |k: &str| p[k].as_f64().unwrap_or(0.0) / 1000.0;
        println!(
            "| {} | {:.0} | {} | {} | {:.1}-{:.1} | {} | {:.1} | {:.1} |",
            p["table"].as_str().unwrap_or("?"),
            p["plain_bytes"].as_f64().unwrap_or(0.0) / 1e6,
            p["parts"],
            p["frozen"],
            s("load_started_ms"),
            s("loaded_ms"),
            p["indexes"],
            s("index_ms"),
            s("done_ms"),
        );
    }
    if let Some(d) = drill_reports.last() {
        println!("\ntidemark drill, last run (ms): {}", d["timings"]);
        for c in d["checks"].as_array().into_iter().flatten().filter(|c| c["duration_ms"].as_u64() > Some(100)) {
            println!("  check {}: {} ms", c["name"].as_str().unwrap_or("?"), c["duration_ms"]);
        }
    }
}
