//! `tidemark stacks put|list|show|history|publish|diff|revert|import|export`.

use std::path::PathBuf;

use clap::Subcommand;
use tidemark::Result;
use tidemark::actor::Actor;
use tidemark::ops::stacks as ops;
use tidemark::stacks::Selector;

use super::Global;

#[derive(Debug, Subcommand)]
pub enum StacksCommand {
    /// Record new content for a stack (nothing if it is unchanged)
    Put {
        /// The workspace, as named in tidemark.toml (default: the only one configured)
        #[arg(long, short)]
        workspace: Option<String>,
        /// kind/name, e.g. api/checkout
        stack: String,
        /// JSON file ("-" for standard input)
        #[arg(long)]
        file: PathBuf,
        /// Who makes the change, recorded in the history (default: the OS user, or the CI job)
        #[arg(long)]
        author: Option<String>,
        /// Why: recorded with the change or version
        #[arg(long)]
        message: Option<String>,
    },
    /// List the stacks with their live state and newest version
    List {
        /// The workspace, as named in tidemark.toml (default: the only one configured)
        #[arg(long, short)]
        workspace: Option<String>,
    },
    /// Print a stack's content (live by default)
    Show {
        /// The workspace, as named in tidemark.toml (default: the only one configured)
        #[arg(long, short)]
        workspace: Option<String>,
        /// The function stack: kind/name, e.g. api/checkout
        stack: String,
        #[arg(long, conflicts_with = "change")]
        version: Option<i32>,
        /// A change number (`tidemark stacks history`)
        #[arg(long)]
        change: Option<i64>,
    },
    /// Every change of a stack, with the versions published from it
    History {
        /// The workspace, as named in tidemark.toml (default: the only one configured)
        #[arg(long, short)]
        workspace: Option<String>,
        /// The function stack: kind/name, e.g. api/checkout
        stack: String,
    },
    /// Publish the live content as the next numbered version
    Publish {
        /// The workspace, as named in tidemark.toml (default: the only one configured)
        #[arg(long, short)]
        workspace: Option<String>,
        /// The function stack: kind/name, e.g. api/checkout
        stack: String,
        /// Who makes the change, recorded in the history (default: the OS user, or the CI job)
        #[arg(long)]
        author: Option<String>,
        /// Why: recorded with the change or version
        #[arg(long)]
        message: Option<String>,
    },
    /// Structural diff between two states (default: newest published -> live)
    Diff {
        /// The workspace, as named in tidemark.toml (default: the only one configured)
        #[arg(long, short)]
        workspace: Option<String>,
        /// The function stack: kind/name, e.g. api/checkout
        stack: String,
        /// live, published, version:N or change:N
        #[arg(long, default_value = "published")]
        from: String,
        /// live, published, version:N or change:N
        #[arg(long, default_value = "live")]
        to: String,
        /// Read --to in another workspace, e.g. a branch (shop--try)
        #[arg(long, value_name = "WORKSPACE")]
        to_workspace: Option<String>,
    },
    /// Make an earlier state live again (a new change; history is kept)
    Revert {
        /// The workspace, as named in tidemark.toml (default: the only one configured)
        #[arg(long, short)]
        workspace: Option<String>,
        /// The function stack: kind/name, e.g. api/checkout
        stack: String,
        /// version:N or change:N
        #[arg(long)]
        to: String,
        /// Who makes the change, recorded in the history (default: the OS user, or the CI job)
        #[arg(long)]
        author: Option<String>,
    },
    /// Import DIR/<kind>/<name>.json: one change per changed file
    Import {
        /// The workspace, as named in tidemark.toml (default: the only one configured)
        #[arg(long, short)]
        workspace: Option<String>,
        /// The folder of stack files (kind/name.json)
        dir: PathBuf,
        /// Who makes the change, recorded in the history (default: the OS user, or the CI job)
        #[arg(long)]
        author: Option<String>,
    },
    /// Export every stack to DIR/<kind>/<name>.json
    Export {
        /// The workspace, as named in tidemark.toml (default: the only one configured)
        #[arg(long, short)]
        workspace: Option<String>,
        /// The folder of stack files (kind/name.json)
        dir: PathBuf,
        /// live or published
        #[arg(long, default_value = "live")]
        version: String,
    },
}

pub async fn run(global: &Global, cmd: StacksCommand) -> Result<()> {
    let core = global.core().await?;
    let actor = Actor::command_line();
    match cmd {
        StacksCommand::Put { workspace, stack, file, author, message } => {
            let (json, origin) = if file.as_os_str() == "-" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
                (text, "standard input".to_string())
            } else {
                let text = fs_err::read_to_string(&file)
                    .map_err(|e| tidemark::Error::usage(format!("cannot read {}: {e}", file.display())))?;
                (text, file.display().to_string())
            };
            let opts = ops::StackPutOptions { workspace, stack, json, origin, author, message };
            let out = ops::put(&core, &opts, &actor).await?;
            if global.json {
                global.print_json(&out);
            } else {
                match out.change {
                    Some(id) => println!("{} changed (change {id})", out.stack),
                    None => println!("{} unchanged: nothing recorded", out.stack),
                }
            }
        }
        StacksCommand::List { workspace } => {
            let list = ops::list(&core, &ops::StackListOptions { workspace }, &actor).await?;
            if global.json {
                global.print_json(&list);
            } else {
                for s in list {
                    let version = s.latest_version.map(|v| format!("v{v}")).unwrap_or_else(|| "unpublished".into());
                    println!("{:<40} {:>6} changes  live change {:<6} {version}", s.stack, s.changes, s.live_change);
                }
            }
        }
        StacksCommand::Show { workspace, stack, version, change } => {
            let state = match (version, change) {
                (Some(v), _) => Selector::Version(v),
                (_, Some(c)) => Selector::Change(c),
                _ => Selector::Live,
            };
            let opts = ops::StackShowOptions { workspace, stack, state: state.to_string() };
            let shown = ops::show(&core, &opts, &actor).await?;
            if global.json {
                global.print_json(&shown);
            } else {
                println!("{}", serde_json::to_string_pretty(&shown.content).expect("a Value serializes"));
            }
        }
        StacksCommand::History { workspace, stack } => {
            let history = ops::history(&core, &ops::StackOptions { workspace, stack }, &actor).await?;
            if global.json {
                global.print_json(&history);
            } else {
                for c in history {
                    let versions: Vec<String> = c.versions.iter().map(|v| format!("v{v}")).collect();
                    println!(
                        "change {:<6} {} {:<12} {} {}{}",
                        c.id,
                        c.at.format("%Y-%m-%d %H:%M:%S"),
                        c.author,
                        super::short(&c.content_sha256, 12),
                        c.message.unwrap_or_default(),
                        if versions.is_empty() { String::new() } else { format!("  [{}]", versions.join(", ")) }
                    );
                }
            }
        }
        StacksCommand::Publish { workspace, stack, author, message } => {
            let out =
                ops::publish(&core, &ops::StackPublishOptions { workspace, stack, author, message }, &actor).await?;
            if global.json {
                global.print_json(&out);
            } else {
                println!("published {} version {} (change {})", out.stack, out.version, out.change);
            }
        }
        StacksCommand::Diff { workspace, stack, from, to, to_workspace } => {
            let opts = ops::StackDiffOptions { workspace, stack, from, to, to_workspace };
            let report = ops::diff(&core, &opts, &actor).await?;
            if global.json {
                global.print_json(&report);
            } else if report.changes.is_empty() {
                println!("{} {} and {} are identical", report.stack, report.from, report.to);
            } else {
                for c in &report.changes {
                    println!("{}", c.render());
                }
            }
        }
        StacksCommand::Revert { workspace, stack, to, author } => {
            let out = ops::revert(&core, &ops::StackRevertOptions { workspace, stack, to: to.clone(), author }, &actor)
                .await?;
            if global.json {
                global.print_json(&out);
            } else {
                match out.change {
                    Some(id) => println!("{} reverted to {to} (change {id})", out.stack),
                    None => println!("{} already has the content of {to}: nothing recorded", out.stack),
                }
            }
        }
        StacksCommand::Import { workspace, dir, author } => {
            let files = ops::import(&core, &ops::StackImportOptions { workspace, dir, author }, &actor).await?;
            if global.json {
                global.print_json(&files);
            } else {
                let changed = files.iter().filter(|f| f.change.is_some()).count();
                for f in &files {
                    println!("{:<40} {}", f.stack, if f.change.is_some() { "changed" } else { "unchanged" });
                }
                println!("{changed} of {} files changed", files.len());
            }
        }
        StacksCommand::Export { workspace, dir, version } => {
            let opts = ops::StackExportOptions { workspace, dir: dir.clone(), state: version };
            let files = ops::export(&core, &opts, &actor).await?;
            if global.json {
                global.print_json(&files);
            } else {
                println!("wrote {} files to {}", files.len(), dir.display());
            }
        }
    }
    Ok(())
}
