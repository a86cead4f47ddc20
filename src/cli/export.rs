//! `tidemark export`: a snapshot as one portable bundle file.

use std::path::PathBuf;

use clap::Args;
use tidemark::Result;
use tidemark::ops::export::{ExportOptions, export_recorded};

use super::{Global, human_bytes, human_ms};

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The workspace
    workspace: String,
    /// The bundle file to write (refused if it exists)
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
    /// A snapshot id, or `latest` (the default)
    #[arg(long, value_name = "ID")]
    snapshot: Option<String>,
    /// The schema only, no table data
    #[arg(long, conflicts_with = "table")]
    schema_only: bool,
    /// Only this table's data (schema.name; repeat for more); the schema stays whole
    #[arg(long, value_name = "SCHEMA.NAME")]
    table: Vec<String>,
    /// The snapshot's media files too
    #[arg(long)]
    with_media: bool,
    /// Encrypt to this age recipient instead of the repository's (repeat for more)
    #[arg(long, value_name = "age1...", conflicts_with = "plain")]
    recipient: Vec<String>,
    /// Do not encrypt: anyone with the file can read it
    #[arg(long)]
    plain: bool,
    /// bundle (the default), or jsonl: one live table's rows as JSON lines (with one --table)
    #[arg(long, value_name = "FORMAT", value_parser = ["bundle", "jsonl"])]
    format: Option<String>,
}

pub async fn run(global: &Global, args: ExportArgs) -> Result<()> {
    let (core, _stop) = global.job_core().await?;
    let opts = ExportOptions {
        workspace: args.workspace,
        snapshot: args.snapshot,
        to: args.to,
        schema_only: args.schema_only,
        tables: args.table,
        with_media: args.with_media,
        recipients: args.recipient,
        plain: args.plain,
        format: args.format,
    };
    let report = export_recorded(&core, &opts, &global.actor()).await?;
    if let Some(w) = &report.warning {
        eprintln!("warning: {w}");
    }
    if global.json {
        global.print_json(&report);
    } else {
        let protection = match report.encrypted_to.len() {
            0 => "plain".to_string(),
            n => format!("encrypted to {n} age recipient{}", if n == 1 { "" } else { "s" }),
        };
        println!(
            "exported snapshot {} of {} to {} ({}, {protection}): {} tables, {} rows, {} stacks, {} media files, in {}",
            report.snapshot,
            report.workspace,
            report.file,
            human_bytes(report.bytes),
            report.tables,
            report.rows,
            report.stacks,
            report.media_files,
            human_ms(report.total_ms)
        );
    }
    Ok(())
}
