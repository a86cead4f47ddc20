//! `tidemark workspace add|list`.

use clap::Subcommand;
use tidemark::Result;
use tidemark::ops::workspace::{WorkspaceAddOptions, add};

use super::Global;

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Add a workspace to tidemark.toml
    Add {
        /// Workspace name (lowercase letters, digits, '_' and '-')
        name: String,
        /// postgres://user@host:port/db (keep the password out: see --password)
        #[arg(long, value_name = "URL")]
        database_url: String,
        /// Where the password comes from: env:VARIABLE or file:/path
        #[arg(long, value_name = "env:VAR|file:PATH")]
        password: Option<String>,
        /// Media store: file:///srv/media or s3://bucket/prefix
        #[arg(long, value_name = "URL")]
        media: Option<String>,
    },
    /// List the configured workspaces
    List,
    /// Stop backing up a workspace: remove its entry from tidemark.toml (its backups stay
    /// in the repository, its database is not touched)
    Remove {
        /// Workspace name
        name: String,
        /// The workspace's name again
        #[arg(long, value_name = "NAME", default_value = "")]
        confirm: String,
    },
}

pub async fn run(global: &Global, cmd: WorkspaceCommand) -> Result<()> {
    let config = global.load_config()?;
    match cmd {
        WorkspaceCommand::Add { name, database_url, password, media } => {
            let opts = WorkspaceAddOptions { name: name.clone(), database_url, password, media };
            add(&config, &opts)?;
            if global.json {
                global.print_json(&serde_json::json!({ "added": name, "config": config.path }));
            } else {
                println!("added workspace {name} to {}", config.path.display());
            }
        }
        WorkspaceCommand::Remove { name, confirm } => {
            tidemark::ops::workspace::remove(
                &config,
                &tidemark::ops::workspace::WorkspaceRemoveOptions { name: name.clone(), confirm },
            )
            .await?;
            if global.json {
                global.print_json(&serde_json::json!({ "removed": name, "config": config.path }));
            } else {
                println!(
                    "removed workspace {name} from {}; its backups stay in the repository (add it again to restore \
                     from them or prune them); a running `tidemark serve` keeps it until restarted",
                    config.path.display()
                );
            }
        }
        WorkspaceCommand::List => {
            let list: Vec<_> = config
                .config
                .workspaces
                .iter()
                .map(|(name, ws)| serde_json::json!({ "name": name, "database": tidemark::pg::redact_url(&ws.database_url) }))
                .collect();
            if global.json {
                global.print_json(&list);
            } else {
                for item in list {
                    println!("{}\t{}", item["name"].as_str().unwrap_or(""), item["database"].as_str().unwrap_or(""));
                }
            }
        }
    }
    Ok(())
}
