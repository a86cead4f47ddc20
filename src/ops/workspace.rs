//! `workspace add` / `workspace list`: the workspaces tidemark backs up, kept in tidemark.toml.

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::config::{Config, LoadedConfig, Secret, WorkspaceConfig, render_workspace, validate_workspace_name};
use crate::error::{Error, ErrorKind, Result};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct WorkspaceAddOptions {
    pub name: String,
    pub database_url: String,
    /// `env:VAR` or `file:/path` (a literal password belongs in neither a flag nor a config).
    pub password: Option<String>,
    /// The media store URL (`file:///srv/media`, `s3://bucket/prefix`).
    pub media: Option<String>,
}

/// Adds a workspace to the config file, keeping the file's comments and layout.
///
/// Errors: `Usage` for a bad name or a password given as is (not `env:`/`file:`),
/// `AlreadyExists` for a taken one, `Config` for a bad URL.
pub fn add(config: &LoadedConfig, opts: &WorkspaceAddOptions) -> Result<()> {
    validate_workspace_name(&opts.name)?;
    let password = opts.password.as_deref().map(|p| Secret::reference("--password", p)).transpose()?;
    if config.config.workspaces.contains_key(&opts.name) {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("workspace {} is already in {}", opts.name, config.path.display()),
        ));
    }
    let ws = WorkspaceConfig { password, media: opts.media.clone(), ..WorkspaceConfig::at(opts.database_url.clone()) };
    let text = render_workspace(&opts.name, &ws);
    // Validate the whole file as it will be before touching it.
    let current = std::fs::read_to_string(&config.path)?;
    Config::parse(&format!("{current}{text}"))?;
    let mut file = std::fs::OpenOptions::new().append(true).open(&config.path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}
