//! Exports made over the API, kept on the server, and private, expiring download links to
//! them: HMAC-SHA256 over the workspace, the export, the token that asked and the moment
//! the link dies, with a key that lives only in the serving process (a restart ends every
//! link). A link works until it expires (at most [`MAX_VALID`]) and only while the token
//! that asked for it is neither revoked nor expired; issuing one and every use are audited,
//! never with the signature (the link is a credential).

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use super::Core;
use crate::actor::{Actor, ActorKind};
use crate::error::{Error, ErrorKind, Result};

/// How long a link works when the request does not say.
pub const DEFAULT_VALID: Duration = Duration::from_secs(15 * 60);
/// The longest a link may work.
pub const MAX_VALID: Duration = Duration::from_secs(24 * 3600);

/// The serving process's link key (random, never stored).
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

impl LinkKey {
    pub fn generate() -> LinkKey {
        LinkKey(rand::random())
    }

    fn mac(&self, statement: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(statement.as_bytes());
        mac
    }
}

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(..)")
    }
}

/// A new export's id: 32 hex digits.
pub fn new_export_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Where export `id` of `workspace` is kept: `exports/<workspace>/<id>.tidemark` beside the
/// config file.
///
/// Errors: `Usage` for an id that is not 32 hex digits (never a path from outside).
pub fn export_file(core: &Core, workspace: &str, id: &str) -> Result<PathBuf> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return Err(Error::usage("an export id is 32 lowercase hex digits"));
    }
    Ok(exports_dir(core, workspace)?.join(format!("{id}.tidemark")))
}

/// The folder of `workspace`'s exports made over the API: `exports/<workspace>/` beside
/// the config file.
///
/// Errors: `Usage` for a name that is not a workspace name.
pub fn exports_dir(core: &Core, workspace: &str) -> Result<PathBuf> {
    crate::config::validate_workspace_name(workspace)?;
    let base = core.config.path.parent().map(PathBuf::from).unwrap_or_default();
    Ok(base.join("exports").join(workspace))
}

/// A download link.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Link {
    /// The path to GET (no token needed: the link is the credential).
    pub url: String,
    pub expires_at: DateTime<Utc>,
    pub export: String,
}

fn statement(workspace: &str, export: &str, token: &str, expires: i64) -> String {
    format!("tidemark-link-1\n{workspace}\n{export}\n{token}\n{expires}\n")
}

/// What issuing a link takes; the API's request body (`POST .../exports/{export}/links`)
/// as it is (the workspace and the export are the path's).
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LinkOptions {
    #[serde(skip)]
    pub workspace: String,
    /// The export's id.
    #[serde(skip)]
    pub export: String,
    /// How long the link works: `15m` (the default), at most `24h`.
    #[serde(with = "crate::config::optional_duration_text")]
    #[schema(value_type = Option<String>, example = "15m")]
    pub valid_for: Option<Duration>,
}

/// A new export kept on the server for links: its id, with `opts.to` set to its file
/// (its folder made).
///
/// Errors: `Usage` for a workspace name that is not one; `Unavailable`/`Refused` (named)
/// when the folder cannot be made.
pub fn place_on_server(core: &Core, opts: &mut super::export::ExportOptions) -> Result<String> {
    let id = new_export_id();
    opts.to = export_file(core, &opts.workspace, &id)?;
    if let Some(dir) = opts.to.parent() {
        fs_err::create_dir_all(dir)?;
    }
    Ok(id)
}

/// Issues a link to an export for the token `actor` came with.
///
/// Errors: `Usage` for an actor without a token, or a time of 0 or over [`MAX_VALID`];
/// `NotFound` when the export is not (or not yet) on the server.
pub async fn issue(core: &Core, key: &LinkKey, actor: &Actor, opts: &LinkOptions) -> Result<Link> {
    let (workspace, export, valid_for) = (opts.workspace.as_str(), opts.export.as_str(), opts.valid_for);
    let done = async {
        let token = actor.token_id.as_deref().ok_or_else(|| Error::usage("links are issued to API tokens only"))?;
        let valid_for = valid_for.unwrap_or(DEFAULT_VALID);
        // Whole seconds: a link's expiry is a unix time, and under a second would be dead on issue.
        if valid_for < Duration::from_secs(1) || valid_for > MAX_VALID {
            return Err(Error::usage("a link works for 1 second to 24 hours"));
        }
        if !export_file(core, workspace, export)?.is_file() {
            return Err(Error::not_found(format!(
                "export {export} of {workspace} is not on the server (yet: see its job)"
            )));
        }
        let expires = Utc::now().timestamp() + valid_for.as_secs() as i64;
        let sig = hex::encode(key.mac(&statement(workspace, export, token, expires)).finalize().into_bytes());
        Ok(Link {
            url: format!("/v1/downloads/{workspace}/{export}?token={token}&expires={expires}&sig={sig}"),
            expires_at: DateTime::from_timestamp(expires, 0).unwrap_or_default(),
            export: export.to_string(),
        })
    }
    .await;
    let details = match &done {
        Ok(link) => serde_json::json!({ "export": export, "expires_at": link.expires_at }),
        Err(_) => serde_json::json!({ "export": export }),
    };
    super::audit::record(core, actor, crate::operation::Operation::ExportLink, workspace, &done, details).await;
    done
}

/// What a download presents.
#[derive(Debug, Clone)]
pub struct Presented {
    pub workspace: String,
    pub export: String,
    pub token: String,
    pub expires: i64,
    pub sig: String,
}

/// Checks a link and returns the export's file: the signature (in constant time), the
/// expiry, and that the token it was issued to still works.
///
/// Errors: `Forbidden` for a link that is forged, altered, expired, or whose token was
/// revoked or expired; `NotFound` when the export is gone.
pub async fn redeem(core: &Core, key: &LinkKey, link: &Presented, address: Option<String>) -> Result<PathBuf> {
    // What the request says is not trusted into the audit trail until it has the shape of
    // a token id and an export id.
    let token_shaped = link.token.len() == 12
        && link.token.starts_with("tdm_")
        && link.token[4..].bytes().all(|b| b.is_ascii_alphanumeric());
    let export_shaped = link.export.len() == 32 && link.export.bytes().all(|b| b.is_ascii_hexdigit());
    if !token_shaped || !export_shaped || crate::config::validate_workspace_name(&link.workspace).is_err() {
        return Err(Error::new(ErrorKind::Forbidden, "the download link is not valid"));
    }
    let actor = Actor {
        kind: ActorKind::Api,
        name: format!("link of {}", link.token),
        token_id: Some(link.token.clone()),
        address,
        grant: None,
    };
    let done = async {
        let forbidden = |why: &str| Error::new(ErrorKind::Forbidden, format!("the download link {why}"));
        let sig = hex::decode(&link.sig).map_err(|_| forbidden("is not valid"))?;
        key.mac(&statement(&link.workspace, &link.export, &link.token, link.expires))
            .verify_slice(&sig)
            .map_err(|_| forbidden("is not valid"))?;
        if link.expires <= Utc::now().timestamp() {
            return Err(forbidden("has expired"));
        }
        let tokens = core.catalog().await?.tokens().await?;
        let alive = tokens
            .iter()
            .find(|t| t.id == link.token)
            .is_some_and(|t| t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > Utc::now()));
        if !alive {
            return Err(forbidden("was issued to a token that was revoked or has expired"));
        }
        let file = export_file(core, &link.workspace, &link.export)?;
        if !file.is_file() {
            return Err(Error::not_found(format!("export {} is no longer on the server", link.export)));
        }
        Ok(file)
    }
    .await;
    super::audit::record(
        core,
        &actor,
        crate::operation::Operation::ExportDownload,
        &link.workspace,
        &done,
        serde_json::json!({ "export": link.export }),
    )
    .await;
    done
}
