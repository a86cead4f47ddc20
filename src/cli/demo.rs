//! `tidemark demo`.

use clap::Args;
use tidemark::{Error, ErrorKind, Result};

use super::{Global, human_bytes, human_ms};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Write the demo's restore drill report as JUnit XML to this file (CI keeps it)
    #[arg(long, value_name = "FILE")]
    junit: Option<std::path::PathBuf>,
    /// Keep the repository, tidemark.toml and the identity in this (new or empty) folder, to try commands against
    #[arg(long, value_name = "DIR")]
    keep: Option<std::path::PathBuf>,
}

pub async fn run(global: &Global, args: DemoArgs) -> Result<()> {
    let json = global.json;
    let say = move |line: &str| {
        if !json {
            eprintln!("{line}");
        }
    };
    let report = tidemark::ops::demo::demo(
        &tidemark::actor::Actor::command_line(),
        &global.progress(),
        &say,
        args.keep.as_deref(),
    )
    .await?;
    if let Some(path) = &args.junit {
        fs_err::write(path, report.drill.junit())
            .map_err(|e| Error::from(e).context(format!("writing the JUnit report {}", path.display())))?;
    }
    if json {
        global.print_json(&report);
    } else {
        println!();
        println!("{:<28} {:>10} {:>10}  digest", "table", "source", "restored");
        for t in &report.verify.tables {
            println!(
                "{:<28} {:>10} {:>10}  {}",
                format!("{}.{}", t.schema, t.name),
                t.expected_rows,
                t.actual_rows,
                if t.ok { "identical" } else { "DIFFERENT" }
            );
        }
        let seq_ok = report.verify.sequences.iter().filter(|s| s.ok).count();
        println!("sequences: {seq_ok}/{} identical", report.verify.sequences.len());
        println!("schema (pg_dump --schema-only): {}", if report.schema_identical { "identical" } else { "DIFFERENT" });
        println!(
            "function stacks: {} with history and versions, {}",
            report.stacks,
            if report.stacks_identical { "identical" } else { "DIFFERENT" }
        );
        println!(
            "media: {} files, {}",
            report.media_files,
            if report.media_identical { "identical, byte for byte" } else { "DIFFERENT" }
        );
        println!(
            "snapshot {} in {}, restore in {}; {} of data stored as {}",
            report.snapshot.id,
            human_ms(report.snapshot_ms),
            human_ms(report.restore.timings.total_ms),
            human_bytes(report.restore.plain_bytes),
            human_bytes(report.restore.stored_bytes)
        );
        let d = &report.drill;
        let passed = d.passed_checks();
        println!(
            "restore drill into a {}: {passed}/{} checks passed, restore (RTO) {}",
            d.restored_into,
            d.checks.len(),
            human_ms(d.timings.restore_ms)
        );
        for c in d.checks.iter().filter(|c| c.status != tidemark::drill::CheckStatus::Pass) {
            println!("  {:?} {}: {}", c.status, c.name, c.details);
        }
    }
    if report.ok {
        if !json {
            println!("demo OK: the restored copy is identical to the source.");
            if let Some(dir) = &report.kept {
                let config = std::path::Path::new(dir).join("tidemark.toml");
                let c = config.display();
                println!();
                println!("kept in {dir}: the repository, tidemark.toml and the identity. Try:");
                println!("  tidemark --config {c} snapshot list -w shop");
                println!("  tidemark --config {c} snapshot show {}", report.snapshot.id);
                println!("  tidemark --config {c} check -w shop --read-data");
                println!("  tidemark --config {c} drill -w shop");
                println!("  (the demo's Postgres is gone: restore into a server of yours with");
                println!(
                    "   tidemark --config {c} restore {} --target postgres://USER@HOST/shop_copy --no-media)",
                    report.snapshot.id
                );
            }
            println!();
            println!(
                "next: back up your own database with `tidemark init --repo DIR_OR_S3_URL` (docs/guide/01-first-backup.md)"
            );
        }
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Integrity, "demo FAILED: the restored copy differs from the source"))
    }
}
