//! The command line: clap definitions and rendering. Each subcommand's file turns its
//! arguments into the operation's `*Options`, calls `ops::*`, and prints the result as text
//! or, with `--json`, as one JSON document on stdout.

pub mod audit;
pub mod basebackup;
pub mod branch;
pub mod catalog;
pub mod check;
pub mod copy;
pub mod demo;
#[cfg(test)]
mod docs_check;
pub mod drill;
pub mod export;
pub mod fleet;
pub mod import;
pub mod init;
pub mod pitr;
pub mod prune;
pub mod restore;
pub mod serve;
pub mod signing;
pub mod snapshot;
pub mod stacks;
pub mod status;
pub mod token;
pub mod wal;
pub mod workspace;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tidemark::Result;
use tidemark::config::LoadedConfig;
use tidemark::ops::Core;

#[derive(Debug, Parser)]
#[command(
    name = "tidemark",
    version,
    about = "Backups, versioning and disaster recovery for Postgres-backed workspaces"
)]
pub struct Cli {
    /// Config file (default: $TIDEMARK_CONFIG, else ./tidemark.toml)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print results as JSON on stdout (and no progress)
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (-v info, -vv debug); TIDEMARK_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log lines as text or as one JSON object per line (for log collectors)
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Accept unsigned manifests, records and WAL (a repository written before tidemark
    /// signed), and write unsigned ones when no signing key is set. Weakens what restores
    /// trust: anyone with the bucket's credentials and the recipients can write those
    #[arg(long, global = true)]
    pub allow_unsigned: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a repository, an age identity and tidemark.toml
    Init(init::InitArgs),
    /// Manage the workspaces in tidemark.toml
    #[command(subcommand)]
    Workspace(workspace::WorkspaceCommand),
    /// Take, list and inspect snapshots
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Restore a snapshot into a new or empty database
    Restore(restore::RestoreArgs),
    /// Branches: a workspace's database from a snapshot or a moment, beside the live one
    #[command(subcommand)]
    Branch(branch::BranchCommand),
    /// Write a snapshot as one portable bundle file (schema, data, stacks, media; age-encrypted)
    Export(export::ExportArgs),
    /// Load a bundle from `export` into a new database, checking every file and row
    Import(import::ImportArgs),
    /// Apply retention: delete the snapshots no policy keeps, collect garbage
    Prune(prune::PruneArgs),
    /// Function stacks: versioned logic documents kept in the workspace database
    #[command(subcommand)]
    Stacks(stacks::StacksCommand),
    /// WAL archiving: archive_command and restore_command
    #[command(subcommand)]
    Wal(wal::WalCommand),
    /// Take a base backup of a workspace's cluster (the start of point-in-time restores)
    Basebackup(basebackup::BasebackupArgs),
    /// Point-in-time restore: window, restore, restore points
    #[command(subcommand)]
    Pitr(pitr::PitrCommand),
    /// Is every workspace's backup fresh? One line each; exit 0 healthy, 1 stale, 2 failing, 3 unknown
    Status(status::StatusArgs),
    /// Verify that every backup of a workspace is whole: objects, media, base backups, WAL continuity
    Check(check::CheckArgs),
    /// Prove a backup restores: restore into a throwaway, check, time, report, remove
    Drill(drill::DrillArgs),
    /// Copy what the primary repository holds to the copies ([copies.NAME]), checked on the way
    Copy(copy::CopyArgs),
    /// Run the daemon: scheduled snapshots and retention, until SIGTERM/SIGINT
    Serve(serve::ServeArgs),
    /// The job history from the catalog, newest first
    Jobs(catalog::JobsArgs),
    /// The tidemark processes sharing the catalog: daemons, API servers, their heartbeats and what each holds
    Fleet(fleet::FleetArgs),
    /// The catalog (tidemark's own state; the repository stays the truth)
    #[command(subcommand)]
    Catalog(catalog::CatalogCommand),
    /// The audit trail: who changed what, hash-chained and checkpointed into the repository
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// API tokens: create (the secret is shown once), list, revoke
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Try tidemark end to end on a throwaway Postgres it starts itself
    Demo(demo::DemoArgs),
    /// The Ed25519 key that signs manifests and WAL: create one, show its public key
    #[command(subcommand)]
    SigningKey(signing::SigningKeyCommand),
}

/// Global flags every subcommand sees.
pub struct Global {
    pub config: Option<PathBuf>,
    pub json: bool,
    /// `--allow-unsigned`.
    pub allow_unsigned: bool,
    /// Who the command line acts as (see [`tidemark::actor::Actor::command_line`]).
    pub actor: tidemark::actor::Actor,
}

impl Global {
    pub fn load_config(&self) -> Result<LoadedConfig> {
        let mut loaded = LoadedConfig::load(self.config.as_deref())?;
        if self.allow_unsigned {
            tracing::warn!(
                "--allow-unsigned: unsigned manifests, records and WAL are accepted, and written without a signing key"
            );
            loaded.config.repository.allow_unsigned = true;
        }
        Ok(loaded)
    }

    /// The core, with the catalog's branches as workspaces (`-w shop--try`).
    pub async fn core(&self) -> Result<Core> {
        self.core_on(None).await
    }

    /// [`Self::core`] reading the repository called `repository` (`--repository NAME`:
    /// a copy), which works while the primary is away.
    pub async fn core_on(&self, repository: Option<&str>) -> Result<Core> {
        Ok(Core::open_at(self.load_config()?, repository).await?.with_branches().await)
    }

    /// The core `wal fetch` and its prefetcher read: the copy a restored server was started
    /// from (`TIDEMARK_REPOSITORY`, set by `pitr restore --repository`), else the primary.
    pub async fn fetch_core(&self) -> Result<Core> {
        let copy = std::env::var(tidemark::wal::recovery::REPOSITORY_ENV).ok();
        Core::open_at(self.load_config()?, copy.as_deref().filter(|c| !c.is_empty())).await
    }

    /// The core without touching the catalog: what `wal push`/`wal fetch` run as the
    /// server's OS user (the catalog is tidemark's, not theirs to open).
    pub async fn bare_core(&self) -> Result<Core> {
        Core::open(self.load_config()?).await
    }

    pub fn progress(&self) -> tidemark::progress::Progress {
        tidemark::progress::Progress::new(!self.json)
    }

    /// Who the command line acts as: the OS user (or the CI job).
    pub fn actor(&self) -> tidemark::actor::Actor {
        self.actor.clone()
    }

    /// The core for a long operation: progress on the terminal (not under `--json`), and
    /// Ctrl-C / SIGTERM stopping it (while the returned guard lives) so that it ends
    /// cleanly and is recorded as interrupted.
    pub async fn job_core(&self) -> Result<(Core, StopOnSignal)> {
        self.job_core_on(None).await
    }

    /// [`Self::job_core`] reading the repository called `repository` (see [`Self::core_on`]).
    pub async fn job_core_on(&self, repository: Option<&str>) -> Result<(Core, StopOnSignal)> {
        let stop = tokio_util::sync::CancellationToken::new();
        let core = self.core_on(repository).await?.with_progress(self.progress()).with_stop(stop.clone());
        Ok((core, StopOnSignal(tokio::spawn(serve::stop_on_signal(stop)))))
    }

    /// [`Self::job_core_on`]; when the primary was asked for and cannot be used, the error
    /// names the copies that hold what the command wants.
    pub async fn job_core_for(
        &self,
        repository: Option<&str>,
        wanted: tidemark::ops::copy::Wanted<'_>,
    ) -> Result<(Core, StopOnSignal)> {
        match self.job_core_on(repository).await {
            Err(e) if repository.is_none() && e.kind() != tidemark::ErrorKind::Usage => {
                Err(tidemark::ops::copy::primary_away(&self.load_config()?, wanted, e).await)
            }
            other => other,
        }
    }

    /// Prints a value as pretty JSON on stdout.
    #[allow(clippy::unused_self, reason = "--json output has one place, beside the flag that asks for it")]
    pub fn print_json(&self, value: &impl serde::Serialize) {
        println!("{}", serde_json::to_string_pretty(value).expect("serializable"));
    }
}

/// Listens for Ctrl-C and SIGTERM for a long operation; stops listening when dropped.
pub struct StopOnSignal(tokio::task::JoinHandle<()>);

impl Drop for StopOnSignal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `--wait [DURATION]`: what an operation does when another one holds its workspace.
#[derive(Debug, Clone, clap::Args)]
pub struct WaitArg {
    /// When another operation holds the workspace, wait for it to finish (up to DURATION,
    /// e.g. 10m; without one, as long as it takes) instead of refusing
    #[arg(long, value_name = "DURATION", num_args = 0..=1, default_missing_value = "0s",
          value_parser = humantime::parse_duration)]
    wait: Option<std::time::Duration>,
}

impl WaitArg {
    pub fn get(&self) -> tidemark::ops::job::WaitFor {
        tidemark::ops::job::WaitFor(self.wait)
    }
}

pub async fn run(cli: Cli) -> Result<()> {
    let global = Global {
        config: cli.config,
        json: cli.json,
        allow_unsigned: cli.allow_unsigned,
        actor: tidemark::actor::Actor::command_line(),
    };
    match cli.command {
        Command::Init(args) => init::run(&global, args).await,
        Command::Workspace(cmd) => workspace::run(&global, cmd).await,
        Command::Snapshot(cmd) => snapshot::run(&global, cmd).await,
        Command::Restore(args) => restore::run(&global, args).await,
        Command::Branch(cmd) => branch::run(&global, cmd).await,
        Command::Export(args) => export::run(&global, args).await,
        Command::Import(args) => import::run(&global, args).await,
        Command::Prune(args) => prune::run(&global, args).await,
        Command::Stacks(cmd) => stacks::run(&global, cmd).await,
        Command::Wal(cmd) => wal::run(&global, cmd).await,
        Command::Basebackup(args) => basebackup::run(&global, args).await,
        Command::Pitr(cmd) => pitr::run(&global, cmd).await,
        Command::Status(args) => status::run(&global, args).await,
        Command::Check(args) => check::run(&global, args).await,
        Command::Drill(args) => drill::run(&global, args).await,
        Command::Copy(args) => copy::run(&global, args).await,
        Command::Serve(args) => serve::run(&global, args).await,
        Command::Jobs(args) => catalog::jobs(&global, args).await,
        Command::Fleet(args) => fleet::run(&global, args).await,
        Command::Catalog(cmd) => catalog::run(&global, cmd).await,
        Command::Audit(cmd) => audit::run(&global, cmd).await,
        Command::Token(cmd) => token::run(&global, cmd).await,
        Command::Demo(args) => demo::run(&global, args).await,
        Command::SigningKey(cmd) => signing::run(&global, cmd),
    }
}

/// Where the database a switch replaced went, and how to get it back.
pub fn print_replaced(previous: Option<&str>, workspace: &str) {
    match previous {
        Some(p) => println!(
            "the replaced database is {p}: `tidemark restore undo {workspace} --confirm {workspace}` swaps it back"
        ),
        None => println!("the replaced database was dropped (--drop-previous)"),
    }
}

/// The snapshot's grants the restoring role could not give (everything else came back).
pub fn print_skipped_privileges(skipped: &[String]) {
    if skipped.is_empty() {
        return;
    }
    println!(
        "{} the restoring role may not give {} skipped; a superuser can apply {}:",
        count(skipped.len() as u64, "privilege statement"),
        if skipped.len() == 1 { "was" } else { "were" },
        if skipped.len() == 1 { "it" } else { "them" }
    );
    for statement in skipped {
        println!("  {statement}");
    }
}

/// `1 part`, `2 parts`, `1 base backup`: a count and its noun.
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// The first `n` bytes of a stored string for display (a hash prefix), or all of it when
/// it is shorter or not cut at a character boundary: stored text may be hand-edited.
pub fn short(s: &str, n: usize) -> &str {
    s.get(..n).unwrap_or(s)
}

/// `1234567` -> `1.2 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// `1234` ms -> `1.2s`.
pub fn human_ms(ms: u64) -> String {
    if ms < 1000 { format!("{ms}ms") } else { format!("{:.1}s", ms as f64 / 1000.0) }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Issue 12.9: every argument of every command says what it is.
    #[test]
    fn every_argument_has_a_help_line() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "tidemark", &mut missing);
        assert!(missing.is_empty(), "arguments without help:\n{}", missing.join("\n"));
    }
}
