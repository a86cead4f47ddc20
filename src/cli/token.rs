//! `tidemark token create|list|revoke`: API tokens. The secret is printed once.

use clap::Subcommand;
use tidemark::Result;
use tidemark::access::Role;
use tidemark::ops::token;

use super::Global;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token and print its secret, once
    Create {
        /// A name for it (1-64 of A-Za-z0-9_.-), e.g. ci-drills
        #[arg(long)]
        name: String,
        /// viewer, operator, developer, admin or auditor (docs/reference/roles.md has the matrix)
        #[arg(long)]
        role: Role,
        /// A workspace it may touch (repeat for more; default: all)
        #[arg(long, short)]
        workspace: Vec<String>,
        /// How long it lives, e.g. 30d (default 7d, at most 366d)
        #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "never_expires")]
        expires: Option<std::time::Duration>,
        /// A token that never expires
        #[arg(long)]
        never_expires: bool,
        /// An address or CIDR range it may be used from (repeat for more; default: any)
        #[arg(long, value_name = "CIDR")]
        allow_ip: Vec<String>,
    },
    /// Every token (never a secret), newest first
    List,
    /// Revoke a token at once
    Revoke {
        /// Its name, or its id (tdm_xxxxxxxx)
        token: String,
    },
}

pub async fn run(global: &Global, cmd: TokenCommand) -> Result<()> {
    let core = global.core().await?;
    let actor = global.actor();
    match cmd {
        TokenCommand::Create { name, role, workspace, expires, never_expires, allow_ip } => {
            let opts = token::TokenCreateOptions {
                name,
                role,
                workspaces: workspace,
                expires,
                never_expires,
                allow_ips: allow_ip,
            };
            let created = token::create(&core, &opts, &actor).await?;
            if global.json {
                global.print_json(&created);
            } else {
                let t = &created.token;
                let until = t.expires_at.map(|e| e.to_rfc3339()).unwrap_or_else(|| "never".into());
                eprintln!(
                    "token {} ({}, role {}, expires {until}); the secret, shown this once:",
                    t.name, t.id, t.role
                );
                println!("{}", created.secret);
            }
        }
        TokenCommand::List => {
            let tokens = token::list(&core, &actor).await?;
            if global.json {
                global.print_json(&tokens);
            } else {
                for t in &tokens {
                    let state = match (&t.revoked_at, &t.expires_at) {
                        (Some(r), _) => format!("revoked {}", r.format("%Y-%m-%d")),
                        (None, Some(e)) if *e <= chrono::Utc::now() => format!("expired {}", e.format("%Y-%m-%d")),
                        (None, Some(e)) => format!("expires {}", e.format("%Y-%m-%d")),
                        (None, None) => "never expires".into(),
                    };
                    let workspaces = if t.workspaces.is_empty() { "all".to_string() } else { t.workspaces.join(",") };
                    let used = match (&t.last_used_at, &t.last_used_address) {
                        (Some(at), Some(from)) => format!("used {} from {from}", at.format("%Y-%m-%d %H:%M")),
                        (Some(at), None) => format!("used {}", at.format("%Y-%m-%d %H:%M")),
                        (None, _) => "never used".into(),
                    };
                    println!("{:<14} {:<24} {:<10} {:<20} {state:<18} {used}", t.id, t.name, t.role, workspaces);
                }
            }
        }
        TokenCommand::Revoke { token: which } => {
            let t = token::revoke(&core, &token::TokenRevokeOptions { token: which }, &actor).await?;
            if global.json {
                global.print_json(&t);
            } else {
                println!("token {} ({}) is revoked", t.name, t.id);
            }
        }
    }
    Ok(())
}
