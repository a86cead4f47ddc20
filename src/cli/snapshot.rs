//! `tidemark snapshot create|list|show`.

use clap::Subcommand;
use tidemark::Result;
use tidemark::ops::prune::PinOptions;
use tidemark::ops::snapshot::{self, DEFAULT_SPLIT_TABLE_MIB, SnapshotOptions};
use tidemark::repo::manifest::SnapshotKind;

use super::{Global, human_bytes, human_ms};

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a manual snapshot of a workspace now
    Create {
        /// The workspace, as named in tidemark.toml (default: the only one configured)
        #[arg(long, short)]
        workspace: Option<String>,
        /// A note kept with the snapshot ("before migration 42")
        #[arg(long)]
        note: Option<String>,
        /// Parallel connections (default: one per core)
        #[arg(long, short)]
        jobs: Option<usize>,
        /// Split tables larger than this many MiB into parts copied in parallel (0: never)
        #[arg(long, default_value_t = DEFAULT_SPLIT_TABLE_MIB, value_name = "MIB")]
        split_table_mib: u64,
        /// Leave the media store out
        #[arg(long)]
        no_media: bool,
        #[command(flatten)]
        wait: super::WaitArg,
    },
    /// List a workspace's snapshots, oldest first
    List {
        /// The workspace, as named in tidemark.toml (default: the only one configured)
        #[arg(long, short)]
        workspace: Option<String>,
        /// List a copy ([copies.NAME]) instead of the primary repository
        #[arg(long, value_name = "NAME")]
        repository: Option<String>,
    },
    /// Show one snapshot: tables, sizes, digests, timings
    Show {
        /// Snapshot id (`tidemark snapshot list`), or `latest`
        id: String,
        /// The snapshot's workspace (default: found in the repository; for `latest`, the only one configured)
        #[arg(long, short)]
        workspace: Option<String>,
    },
    /// Keep a snapshot forever (retention never deletes a pinned snapshot)
    Pin {
        /// Snapshot id (`tidemark snapshot list`), or `latest`
        id: String,
        /// The snapshot's workspace (default: found in the repository; for `latest`, the only one configured)
        #[arg(long, short)]
        workspace: Option<String>,
        #[command(flatten)]
        wait: super::WaitArg,
    },
    /// Let retention decide about a pinned snapshot again
    Unpin {
        /// Snapshot id (`tidemark snapshot list`), or `latest`
        id: String,
        /// The snapshot's workspace (default: found in the repository; for `latest`, the only one configured)
        #[arg(long, short)]
        workspace: Option<String>,
        #[command(flatten)]
        wait: super::WaitArg,
    },
    /// Delete one snapshot now (never a pinned or object-locked one); its media no other
    /// snapshot uses go with the next prune
    Delete {
        /// Snapshot id (`tidemark snapshot list`)
        id: String,
        /// The snapshot's workspace (default: found in the repository)
        #[arg(long, short)]
        workspace: Option<String>,
        /// The snapshot's id again: this deletes it for good
        #[arg(long, value_name = "ID", default_value = "")]
        confirm: String,
        #[command(flatten)]
        wait: super::WaitArg,
    },
}

/// `snapshot create`'s exit code when the snapshot was committed but media files were
/// skipped (listed in the manifest and the warnings): not an error, not a full success.
pub const MEDIA_SKIPPED_EXIT: i32 = 11;

pub async fn run(global: &Global, cmd: SnapshotCommand) -> Result<()> {
    let core = match &cmd {
        SnapshotCommand::List { repository, .. } => global.core_on(repository.as_deref()).await?,
        _ => global.core().await?,
    };
    match cmd {
        SnapshotCommand::Create { workspace, note, jobs, split_table_mib, no_media, wait } => {
            let workspace = core.workspace_or_only(workspace.as_deref())?;
            let opts = SnapshotOptions {
                workspace,
                note,
                kind: SnapshotKind::Manual,
                jobs,
                split_table_mib,
                no_media,
                wait: wait.get(),
            };
            // Ctrl-C and SIGTERM stop the snapshot, which then records its job as interrupted.
            let (core, _stop) = global.job_core().await?;
            let manifest = snapshot::create_recorded(&core, &opts, &global.actor()).await?;
            if global.json {
                global.print_json(&snapshot::SnapshotSummary::of(&manifest));
            } else {
                println!(
                    "snapshot {} of {}: {} tables, {} rows, {} read, {} stored, in {}",
                    manifest.id,
                    manifest.workspace,
                    manifest.tables.len(),
                    manifest.total_rows(),
                    human_bytes(manifest.plain_bytes()),
                    human_bytes(manifest.stored_bytes()),
                    human_ms(manifest.timings.total_ms)
                );
                if let Some(m) = &manifest.media {
                    println!(
                        "media: {} files, {} ({} new files, {} uploaded)",
                        m.files.len(),
                        human_bytes(m.bytes),
                        m.new_files,
                        human_bytes(m.new_bytes)
                    );
                }
                for w in &manifest.warnings {
                    eprintln!("warning: {w}");
                }
            }
            if manifest.media.as_ref().is_some_and(|m| !m.skipped.is_empty()) {
                // Committed, but not everything was backed up: scripts must be able to tell.
                std::process::exit(MEDIA_SKIPPED_EXIT);
            }
        }
        SnapshotCommand::List { workspace, repository } => {
            let workspace = match workspace {
                Some(w) => w,
                None => core.workspace_or_only(None)?,
            };
            let opts = snapshot::ListOptions {
                workspace: workspace.clone(),
                from_repository: true,
                repository,
                ..Default::default()
            };
            let list = snapshot::list(&core, &opts, &global.actor()).await?;
            if global.json {
                global.print_json(&list);
            } else if list.is_empty() {
                println!("workspace {workspace} has no snapshots yet");
            } else {
                println!(
                    "{:<24} {:<16} {:<11} {:>7} {:>12} {:>10}  note",
                    "id", "taken (UTC)", "kind", "tables", "rows", "stored"
                );
                for s in list {
                    println!(
                        "{:<24} {:<16} {:<11} {:>7} {:>12} {:>10}  {}",
                        s.id,
                        s.finished_at.map_or_else(|| "?".into(), |t| t.format("%Y-%m-%d %H:%M").to_string()),
                        s.kind.map(|k| k.to_string()).unwrap_or_else(|| "?".into()),
                        s.tables.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
                        s.rows.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
                        s.stored_bytes.map(human_bytes).unwrap_or_else(|| "?".into()),
                        match &s.problem {
                            Some(problem) => format!("DAMAGED: {problem}"),
                            None => s.note.clone().unwrap_or_default(),
                        }
                    );
                }
                if !core.has_identities() {
                    eprintln!("(details are encrypted: configure the identity to see them)");
                }
            }
        }
        SnapshotCommand::Pin { id, workspace, wait } => {
            set_pin(global, &core, PinOptions { id, workspace, pin: true, wait: wait.get() }).await?;
        }
        SnapshotCommand::Unpin { id, workspace, wait } => {
            set_pin(global, &core, PinOptions { id, workspace, pin: false, wait: wait.get() }).await?;
        }
        SnapshotCommand::Delete { id, workspace, confirm, wait } => {
            let opts = tidemark::ops::prune::SnapshotDeleteOptions { id, workspace, confirm, wait: wait.get() };
            let report = tidemark::ops::prune::delete(&core, &opts, &global.actor()).await?;
            if global.json {
                global.print_json(&report);
            } else {
                println!(
                    "deleted snapshot {} of {}: {} ({}); media only it used go with the next prune",
                    report.id,
                    report.workspace,
                    super::count(report.deleted_objects, "object"),
                    human_bytes(report.deleted_bytes)
                );
            }
        }
        SnapshotCommand::Show { id, workspace } => {
            let m = snapshot::show(&core, &snapshot::ShowOptions { id, workspace }, &global.actor()).await?;
            if global.json {
                global.print_json(&m);
                return Ok(());
            }
            println!("snapshot   {} ({})", m.id, m.kind);
            println!("workspace  {}", m.workspace);
            if let Some(note) = &m.note {
                println!("note       {note}");
            }
            println!("taken      {} .. {} ({})", m.started_at, m.finished_at, human_ms(m.timings.total_ms));
            println!(
                "source     {} on PostgreSQL {} at LSN {}",
                m.source.database, m.source.server_version, m.source.snapshot_lsn
            );
            println!(
                "size       {} of data, {} stored, {} rows",
                human_bytes(m.plain_bytes()),
                human_bytes(m.stored_bytes()),
                m.total_rows()
            );
            println!("tables ({}):", m.tables.len());
            for t in &m.tables {
                let stored: u64 = t.parts.iter().map(|p| p.stored_size).sum();
                println!(
                    "  {}.{}  {}, {}, {} stored, digest {}",
                    t.schema,
                    t.name,
                    super::count(t.rows, "row"),
                    super::count(t.parts.len() as u64, "part"),
                    human_bytes(stored),
                    super::short(&t.content_digest, 16)
                );
            }
            println!("sequences: {}, materialized views: {}", m.sequences.len(), m.materialized_views.len());
            match &m.media {
                Some(media) => println!(
                    "media: {} files, {}; new in this snapshot: {} files, {}",
                    media.files.len(),
                    human_bytes(media.bytes),
                    media.new_files,
                    human_bytes(media.new_bytes)
                ),
                None => println!("media: not included"),
            }
            for skipped in m.media.iter().flat_map(|media| media.skipped.iter()) {
                println!("  skipped: {} ({})", skipped.path, skipped.reason);
            }
            if !m.stacks.is_empty() {
                println!("function stacks: {}", m.stacks.len());
                for s in &m.stacks {
                    let version = s.latest_version.map(|v| format!("v{v}")).unwrap_or_else(|| "unpublished".into());
                    println!(
                        "  {}  {} changes, {version}, live {}",
                        s.stack,
                        s.changes,
                        super::short(&s.live_sha256, 12)
                    );
                }
            }
        }
    }
    Ok(())
}

async fn set_pin(global: &Global, core: &tidemark::ops::Core, opts: PinOptions) -> Result<()> {
    let ws = tidemark::ops::prune::set_pin(core, &opts, &global.actor()).await?;
    let (id, pin) = (opts.id.as_str(), opts.pin);
    if global.json {
        global.print_json(&serde_json::json!({ "id": id, "workspace": ws, "pinned": pin }));
    } else {
        println!("snapshot {id} of {ws} is {}", if pin { "pinned" } else { "no longer pinned" });
    }
    Ok(())
}
