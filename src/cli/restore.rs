//! `tidemark restore`.

use clap::Args;
use tidemark::Result;
use tidemark::ops::copy::Wanted;
use tidemark::ops::inplace::{InPlaceOptions, UndoOptions, restore_in_place_recorded, undo_recorded};
use tidemark::ops::restore::{RestoreOptions, RestoreTarget, restore_recorded};

use super::{Global, human_bytes, human_ms};

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot id (see `tidemark snapshot list`), or `latest` (of --workspace, or the only one
    /// configured); or `undo` to swap back the newest in-place restore of WORKSPACE
    #[arg(required_unless_present = "time")]
    snapshot: Option<String>,
    /// A moment instead of a snapshot ('2026-11-22 10:15:00+00'): the workspace is recovered
    /// to it in a throwaway cluster and its database (or --table) copied from there
    #[arg(long, value_name = "TIME", conflicts_with_all = ["stacks_only", "media_target"])]
    time: Option<String>,
    /// With `undo`: the workspace whose in-place restore is swapped back
    #[arg(value_name = "WORKSPACE")]
    undo_workspace: Option<String>,
    /// Target database URL: created if missing, refused if not empty
    #[arg(long, value_name = "URL", required_unless_present_any = ["stacks_only", "in_place", "undo_workspace", "into_live"])]
    target: Option<String>,
    /// Only this table (schema.name; repeat for more), with its indexes, constraints,
    /// defaults, owned sequences and policies; foreign keys to other tables are left out
    #[arg(long, value_name = "SCHEMA.NAME", conflicts_with_all = ["in_place", "stacks_only", "media_target"])]
    table: Vec<String>,
    /// With --table: into the workspace's live database, beside the live tables (needs --as)
    #[arg(long, requires_all = ["table", "rename_to"], conflicts_with = "target")]
    into_live: bool,
    /// With --table: the name the table gets (one per --table, in order); never an existing table
    #[arg(long = "as", value_name = "SCHEMA.NAME", requires = "table")]
    rename_to: Vec<String>,
    /// Replace the workspace's live database (after a pre-restore snapshot; `restore undo W` swaps back)
    #[arg(long, requires_all = ["workspace", "confirm"], conflicts_with_all = ["target", "stacks_only", "media_target"])]
    in_place: bool,
    /// With --in-place or undo: repeat the workspace's name
    #[arg(long, value_name = "WORKSPACE")]
    confirm: Option<String>,
    /// With --in-place: drop the replaced database after the switch (no undo)
    #[arg(long, requires = "in_place")]
    drop_previous: bool,
    /// Only make the snapshot's function stacks live again in the workspace (as new changes)
    #[arg(long, conflicts_with_all = ["target", "media_target"])]
    stacks_only: bool,
    /// The snapshot's workspace (default: found in the repository; for `latest`, the only one configured)
    #[arg(long, short)]
    workspace: Option<String>,
    /// Parallel connections loading tables (default: one per core)
    #[arg(long, short)]
    jobs: Option<usize>,
    /// Where the snapshot's media files go (a folder, file:// or s3:// URL)
    #[arg(long, value_name = "DIR|URL")]
    media_target: Option<String>,
    /// Restore the database only
    #[arg(long, conflicts_with = "media_target")]
    no_media: bool,
    /// The target's password, for creating and filling it (else the URL, PGPASSWORD or ~/.pgpass)
    #[arg(long, value_name = "env:VAR|file:PATH")]
    target_password: Option<String>,
    /// Restore from a copy ([copies.NAME]) instead of the primary repository (into a new
    /// database, or tables beside the live ones)
    #[arg(long, value_name = "NAME", conflicts_with_all = ["in_place", "stacks_only", "undo_workspace"])]
    repository: Option<String>,
    #[command(flatten)]
    wait: super::WaitArg,
}

pub async fn run(global: &Global, args: RestoreArgs) -> Result<()> {
    let (core, _stop) = match &args.undo_workspace {
        Some(_) => global.job_core_on(None).await?,
        None => {
            let wanted = Wanted::Snapshot { workspace: args.workspace.as_deref(), snapshot: args.snapshot.as_deref() };
            global.job_core_for(args.repository.as_deref(), wanted).await?
        }
    };
    let actor = global.actor();
    if let Some(workspace) = &args.undo_workspace {
        if args.snapshot.as_deref() != Some("undo") {
            return Err(tidemark::Error::usage(format!(
                "unexpected argument {workspace:?}: only `tidemark restore undo WORKSPACE --confirm WORKSPACE` takes two"
            )));
        }
        let opts = UndoOptions {
            workspace: workspace.clone(),
            confirm: args.confirm.unwrap_or_default(),
            wait: args.wait.get(),
        };
        let report = undo_recorded(&core, &opts, &actor).await?;
        if global.json {
            global.print_json(&report);
        } else {
            println!(
                "workspace {}: database {} is {} again (switch {}); the restored one is now {}",
                report.workspace,
                report.database,
                report.restored_from,
                human_ms(report.switch_ms),
                report.replaced_moved_to
            );
        }
        return Ok(());
    }
    if args.in_place {
        let opts = InPlaceOptions {
            snapshot: args.snapshot.unwrap_or_default(),
            time: args.time,
            tidemark_command: None,
            bundle: None,
            workspace: args.workspace.unwrap_or_default(),
            confirm: args.confirm.unwrap_or_default(),
            jobs: args.jobs,
            drop_previous: args.drop_previous,
            wait: args.wait.get(),
        };
        let report = restore_in_place_recorded(&core, &opts, &actor).await?;
        if global.json {
            global.print_json(&report);
        } else {
            print_in_place(&report);
        }
        return Ok(());
    }
    if args.stacks_only {
        let out = tidemark::ops::restore::restore_stacks(
            &core,
            args.snapshot.as_deref().unwrap_or_default(),
            args.workspace.as_deref(),
            &actor,
        )
        .await?;
        if global.json {
            global.print_json(&out);
        } else {
            for o in &out {
                match o.change {
                    Some(c) => println!("{}: restored as change {c}", o.stack),
                    None => println!("{}: already as in the snapshot", o.stack),
                }
            }
        }
        return Ok(());
    }
    let opts = RestoreOptions {
        snapshot: args.snapshot.unwrap_or_default(),
        workspace: args.workspace,
        target: RestoreTarget::from_options(args.target, args.target_password, None, args.into_live)?,
        jobs: args.jobs,
        media_target: args.media_target,
        no_media: args.no_media,
        wait: args.wait.get(),
        tables: args.table,
        rename_to: args.rename_to,
        time: args.time,
        tidemark_command: None,
        table_loaded: None,
        repository: args.repository,
    };
    // Ctrl-C and SIGTERM stop the restore, which then drops a database it created.
    let report = restore_recorded(&core, &opts, &actor).await?;
    let from = match report.time {
        Some(t) => format!("workspace {} as of {}", report.workspace, t.to_rfc3339()),
        None => format!("snapshot {}", report.snapshot),
    };
    if global.json {
        global.print_json(&report);
    } else if let Some(done) = &report.table_restore {
        for t in &done.tables {
            let renamed = if t.restored_as == t.table { String::new() } else { format!(" as {}", t.restored_as) };
            println!(
                "restored table {}{renamed} from {from} into {}: {} rows, {} indexes, {} sequences",
                t.table,
                report.target,
                t.rows,
                t.indexes.len(),
                t.sequences.len()
            );
        }
        for k in &done.left_out_foreign_keys {
            println!(
                "left out: foreign key {} of {} to {} (not restored): {}",
                k.constraint, k.table, k.references, k.definition
            );
        }
        match &report.point_in_time {
            Some(p) => println!(
                "recovered from base backup {} ({} read) in a throwaway cluster; {} in all",
                p.base_backup,
                human_bytes(p.stored_bytes),
                human_ms(report.timings.total_ms)
            ),
            None => println!(
                "read {} of the snapshot's {} ({:.2}%) in {}",
                human_bytes(done.bytes_read),
                human_bytes(done.snapshot_bytes),
                100.0 * done.bytes_read as f64 / done.snapshot_bytes.max(1) as f64,
                human_ms(report.timings.total_ms)
            ),
        }
    } else if let Some(p) = &report.point_in_time {
        println!(
            "restored {from} into {}{}: {} tables and sequences compared with the recovered database, in {} \
             (recovered from base backup {} in a throwaway cluster)",
            report.target,
            if report.created_database { " (created)" } else { "" },
            report.tables,
            human_ms(report.timings.total_ms),
            p.base_backup
        );
    } else {
        let t = &report.timings;
        println!(
            "restored snapshot {} into {}{}: {} tables, {} rows, {} in {} \
             (check {}, schema {}, data {}, indexes+constraints {}, sequences+views {})",
            report.snapshot,
            report.target,
            if report.created_database { " (created)" } else { "" },
            report.tables,
            report.rows,
            human_bytes(report.plain_bytes),
            human_ms(t.total_ms),
            human_ms(t.check_ms),
            human_ms(t.pre_data_ms),
            human_ms(t.data_ms),
            human_ms(t.post_data_ms),
            human_ms(t.finish_ms)
        );
        if report.media_files > 0 {
            println!("restored {} media files in {}", report.media_files, human_ms(t.media_ms));
        }
        super::print_skipped_privileges(&report.skipped_privileges);
    }
    Ok(())
}

/// What an in-place restore did (from a snapshot, a moment or a bundle), for people.
pub fn print_in_place(report: &tidemark::ops::inplace::InPlaceReport) {
    println!("pre-restore snapshot {} of the live database", report.safety_snapshot);
    let from = match (&report.snapshot, &report.time, &report.import) {
        (Some(id), _, _) => format!("snapshot {id}"),
        (None, Some(t), _) => format!("the workspace as of {}", t.to_rfc3339()),
        (None, None, Some(import)) => format!("bundle {}", import.file),
        (None, None, None) => String::new(),
    };
    println!(
        "restored {from} into database {} of workspace {} in place: {} tables checked before the switch, switch {}",
        report.database,
        report.workspace,
        report.verified_tables,
        human_ms(report.switch_ms)
    );
    let skipped = report
        .restore
        .as_ref()
        .map(|r| &r.skipped_privileges)
        .or(report.import.as_ref().map(|i| &i.skipped_privileges));
    super::print_skipped_privileges(skipped.map(Vec::as_slice).unwrap_or_default());
    super::print_replaced(report.previous_database.as_deref(), &report.workspace);
    if let Some(media) = &report.media {
        let previous = match &media.previous {
            Some(previous) => format!("the previous ones are in {previous}"),
            None => "the previous ones were dropped".to_string(),
        };
        println!("media swapped too: {} holds the snapshot's files; {previous}", media.live);
    }
}
