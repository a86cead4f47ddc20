//! `tidemark import`: a bundle from `export` into a new database.

use std::path::PathBuf;

use clap::Args;
use tidemark::Result;
use tidemark::ops::import::{ImportOptions, import};
use tidemark::ops::restore::RestoreTarget;

use super::{Global, human_ms};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The bundle file (from `tidemark export`)
    file: PathBuf,
    /// Target database URL: created if missing, refused if not empty
    #[arg(long, value_name = "URL", required_unless_present = "replace")]
    target: Option<String>,
    /// Replace the workspace's live database with the bundle (a pre-restore snapshot first;
    /// `restore undo W` swaps back)
    #[arg(long, requires_all = ["workspace", "confirm"], conflicts_with_all = ["target", "table", "media_target"])]
    replace: bool,
    /// With --replace: the workspace
    #[arg(long, short)]
    workspace: Option<String>,
    /// With --replace: repeat the workspace's name
    #[arg(long, value_name = "WORKSPACE")]
    confirm: Option<String>,
    /// With --replace: drop the replaced database after the switch (no undo then)
    #[arg(long, requires = "replace")]
    drop_previous: bool,
    /// The target's password (else the URL, PGPASSWORD or ~/.pgpass)
    #[arg(long, value_name = "env:VAR|file:PATH")]
    target_password: Option<String>,
    /// Where the bundle's media files go (a folder, file:// or s3:// URL); else they are checked and skipped
    #[arg(long, value_name = "DIR|URL")]
    media_target: Option<String>,
    /// Parallel connections building indexes (default: one per core)
    #[arg(long, short)]
    jobs: Option<usize>,
    /// The file holds JSON lines (export --format jsonl): load them into this existing table
    #[arg(long, value_name = "SCHEMA.NAME", conflicts_with = "media_target")]
    table: Option<String>,
}

pub async fn run(global: &Global, args: ImportArgs) -> Result<()> {
    let (core, _stop) = global.job_core().await?;
    if args.replace {
        let opts = tidemark::ops::inplace::InPlaceOptions {
            workspace: args.workspace.unwrap_or_default(),
            confirm: args.confirm.unwrap_or_default(),
            bundle: Some(args.file),
            jobs: args.jobs,
            drop_previous: args.drop_previous,
            ..Default::default()
        };
        let report = tidemark::ops::inplace::restore_in_place_recorded(&core, &opts, &global.actor()).await?;
        if global.json {
            global.print_json(&report);
        } else {
            super::restore::print_in_place(&report);
        }
        return Ok(());
    }
    let opts = ImportOptions {
        file: args.file,
        target: RestoreTarget::from_options(args.target, args.target_password, None, false)?,
        media_target: args.media_target,
        jobs: args.jobs,
        table: args.table,
    };
    let report = import(&core, &opts, &global.actor()).await?;
    if global.json {
        global.print_json(&report);
    } else {
        match report.snapshot.is_empty() {
            true => println!(
                "loaded {} rows from {} into {} in {}",
                report.rows,
                report.file,
                report.target,
                human_ms(report.total_ms)
            ),
            false => println!(
                "imported {} (snapshot {} of {}) into {}{}: {} tables, {} rows checked, {} media files, in {}",
                report.file,
                report.snapshot,
                report.workspace,
                report.target,
                if report.created_database { " (created)" } else { "" },
                report.tables,
                report.rows,
                report.media_files,
                human_ms(report.total_ms)
            ),
        }
        super::print_skipped_privileges(&report.skipped_privileges);
    }
    Ok(())
}
