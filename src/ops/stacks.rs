//! Function stacks of a workspace: put, list, show, history, publish, diff, revert, import,
//! export. Each opens the workspace database and works on the change log in its
//! `tidemark` schema (installed on first write).
//!
//! Longer than ~300 lines: each stacks command is a few lines over the same connection and audit helpers.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnection;

use super::Core;
use crate::actor::Actor;
use crate::error::{Error, Result};
use crate::stacks::diff::{self, Change};
use crate::stacks::log::{self, ChangeInfo, ChangedBy, Published, PutOutcome, StackSummary};
use crate::stacks::{self as stk, Document, KINDS, Selector, StackRef};

/// What `stacks put` takes; the API's request body (`PUT .../stacks/{kind}/{name}`) as it
/// is: the content and a message (the workspace and the stack are the path's, the author
/// is the token's name).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StackPutOptions {
    /// The workspace (may be left out when the config has one).
    #[serde(skip)]
    pub workspace: Option<String>,
    /// `kind/name`.
    #[serde(skip)]
    pub stack: String,
    /// The new content, JSON text (a request sends the JSON itself, as `content`).
    #[serde(rename = "content", deserialize_with = "json_text")]
    #[schema(value_type = serde_json::Value)]
    pub json: String,
    /// Where the text came from, for errors ("standard input", a file name).
    #[serde(skip, default = "request_body")]
    pub origin: String,
    /// Who the change is recorded as written by; default: the actor's name.
    #[serde(skip)]
    pub author: Option<String>,
    /// Why it changed.
    #[serde(default)]
    pub message: Option<String>,
}

fn json_text<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    serde_json::Value::deserialize(d).map(|content| content.to_string())
}

fn request_body() -> String {
    "the request body".to_string()
}

/// What `stacks publish` takes; the API's request body (`POST .../publish`) as it is.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StackPublishOptions {
    #[serde(skip)]
    pub workspace: Option<String>,
    #[serde(skip)]
    pub stack: String,
    #[serde(skip)]
    pub author: Option<String>,
    /// Why it was published.
    pub message: Option<String>,
}

/// What `stacks revert` takes; the API's request body (`POST .../revert`) as it is.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StackRevertOptions {
    #[serde(skip)]
    pub workspace: Option<String>,
    #[serde(skip)]
    pub stack: String,
    /// The state to go back to: `published`, `version:N`, `change:N`.
    #[schema(pattern = "^(live|published|version:[1-9][0-9]{0,17}|change:[1-9][0-9]{0,17})$")]
    pub to: String,
    #[serde(skip)]
    pub author: Option<String>,
}

/// What `stacks import` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StackImportOptions {
    pub workspace: Option<String>,
    /// A folder of `<kind>/<name>.json` files.
    pub dir: PathBuf,
    pub author: Option<String>,
}

/// The author recorded: the one named, else the actor's name.
fn changed_by<'a>(author: Option<&'a str>, actor: &'a Actor) -> ChangedBy<'a> {
    ChangedBy { author: author.filter(|a| !a.trim().is_empty()).unwrap_or(&actor.name), actor }
}

async fn connect(core: &Core, workspace: &str, write: bool) -> Result<Option<PgConnection>> {
    let mut conn = core.workspace_or_branch(workspace).await?.conn()?.connect().await?;
    if write {
        stk::install(&mut conn).await?;
        return Ok(Some(conn));
    }
    let installed = crate::stacks::log::installed(&mut conn).await?;
    Ok(installed.then_some(conn))
}

async fn reader(core: &Core, workspace: &str, stack: &StackRef) -> Result<PgConnection> {
    connect(core, workspace, false).await?.ok_or_else(|| {
        Error::not_found(format!("there is no stack {stack}: workspace {workspace} has no function stacks yet"))
    })
}

/// Records a new live content for `stack` from JSON text (nothing when it is unchanged).
///
/// Errors: `Usage` for invalid JSON or a bad name (nothing written).
pub async fn put(core: &Core, opts: &StackPutOptions, actor: &Actor) -> Result<PutOutcome> {
    let workspace = core.workspace_or_only(opts.workspace.as_deref())?;
    let stack = StackRef::parse(&opts.stack)?;
    let doc = Document::parse(&opts.json, &opts.origin)?;
    let mut conn = connect(core, &workspace, true).await?.expect("installed");
    let out =
        log::put(&mut conn, &stack, &doc, changed_by(opts.author.as_deref(), actor), opts.message.as_deref(), None)
            .await;
    audited(core, actor, crate::operation::Operation::StackPut, &workspace, &stack, &out).await;
    out
}

/// Records a stacks change in the audit trail, with the change it made.
async fn audited<T: Serialize>(
    core: &Core,
    actor: &Actor,
    action: crate::operation::Operation,
    workspace: &str,
    stack: &StackRef,
    out: &Result<T>,
) {
    let details = out.as_ref().ok().and_then(|o| serde_json::to_value(o).ok()).unwrap_or(serde_json::json!({}));
    super::audit::record(core, actor, action, &format!("{workspace}/{stack}"), out, details).await;
}

/// Which workspace's stacks (`stacks list`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StackListOptions {
    pub workspace: Option<String>,
}

/// One stack (`stacks history`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StackOptions {
    pub workspace: Option<String>,
    /// `kind/name`.
    pub stack: String,
}

/// One state of a stack (`stacks show`): `live`, `published`, `version:N`, `change:N`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StackShowOptions {
    pub workspace: Option<String>,
    pub stack: String,
    pub state: String,
}

/// Two states of a stack (`stacks diff`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StackDiffOptions {
    pub workspace: Option<String>,
    pub stack: String,
    pub from: String,
    pub to: String,
    /// Read `to` in another workspace (a branch: `shop--try`), `from` in `workspace`.
    #[serde(default)]
    pub to_workspace: Option<String>,
}

/// `stacks export`: every stack's `live` or `published` content into a folder.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StackExportOptions {
    pub workspace: Option<String>,
    pub dir: PathBuf,
    /// `live` or `published`.
    pub state: String,
}

/// A state of a stack and the change it comes from.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StackState {
    pub change: i64,
    pub sha256: String,
    pub content: serde_json::Value,
}

pub async fn list(core: &Core, opts: &StackListOptions, _actor: &Actor) -> Result<Vec<StackSummary>> {
    let workspace = core.workspace_or_only(opts.workspace.as_deref())?;
    match connect(core, &workspace, false).await? {
        Some(mut conn) => log::list(&mut conn).await,
        None => Ok(Vec::new()),
    }
}

/// The content of a state and the change it comes from.
pub async fn show(core: &Core, opts: &StackShowOptions, _actor: &Actor) -> Result<StackState> {
    let workspace = core.workspace_or_only(opts.workspace.as_deref())?;
    let (stack, selector) = (StackRef::parse(&opts.stack)?, Selector::parse(&opts.state)?);
    let (change, doc) = log::read(&mut reader(core, &workspace, &stack).await?, &stack, selector).await?;
    Ok(StackState { change, sha256: doc.sha256, content: doc.value })
}

pub async fn history(core: &Core, opts: &StackOptions, _actor: &Actor) -> Result<Vec<ChangeInfo>> {
    let workspace = core.workspace_or_only(opts.workspace.as_deref())?;
    let stack = StackRef::parse(&opts.stack)?;
    log::history(&mut reader(core, &workspace, &stack).await?, &stack).await
}

pub async fn publish(core: &Core, opts: &StackPublishOptions, actor: &Actor) -> Result<Published> {
    let workspace = core.workspace_or_only(opts.workspace.as_deref())?;
    let stack = StackRef::parse(&opts.stack)?;
    let mut conn = connect(core, &workspace, true).await?.expect("installed");
    let out = log::publish(&mut conn, &stack, changed_by(opts.author.as_deref(), actor), opts.message.as_deref()).await;
    audited(core, actor, crate::operation::Operation::StackPublish, &workspace, &stack, &out).await;
    out
}

/// A structural diff between two states.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DiffReport {
    pub stack: String,
    pub from: String,
    pub to: String,
    pub changes: Vec<Change>,
}

pub async fn diff(core: &Core, opts: &StackDiffOptions, _actor: &Actor) -> Result<DiffReport> {
    let workspace = core.workspace_or_only(opts.workspace.as_deref())?;
    let stack = &StackRef::parse(&opts.stack)?;
    let (from, to) = (Selector::parse(&opts.from)?, Selector::parse(&opts.to)?);
    let mut conn = reader(core, &workspace, stack).await?;
    let (_, a) = log::read(&mut conn, stack, from).await?;
    let (to_text, b) = match &opts.to_workspace {
        Some(other) => {
            let mut there = reader(core, other, stack).await?;
            let (_, b) = log::read(&mut there, stack, to).await?;
            crate::pg::ConnSpec::close(there).await;
            (format!("{to} of {other}"), b)
        }
        None => (to.to_string(), log::read(&mut conn, stack, to).await?.1),
    };
    crate::pg::ConnSpec::close(conn).await;
    Ok(DiffReport {
        stack: stack.to_string(),
        from: from.to_string(),
        to: to_text,
        changes: diff::diff(&a.value, &b.value),
    })
}

/// Makes an earlier state live again, as a new change that says what it reverted to.
/// Restoring a published version is a revert to it.
pub async fn revert(core: &Core, opts: &StackRevertOptions, actor: &Actor) -> Result<PutOutcome> {
    let workspace = core.workspace_or_only(opts.workspace.as_deref())?;
    let (stack, to) = (StackRef::parse(&opts.stack)?, Selector::parse(&opts.to)?);
    let mut conn = reader(core, &workspace, &stack).await?;
    // A schema installed by an older tidemark gets the columns this one writes.
    stk::install(&mut conn).await?;
    let (_, doc) = log::read(&mut conn, &stack, to).await?;
    let message = format!("revert to {to}");
    let by = changed_by(opts.author.as_deref(), actor);
    let out = log::put(&mut conn, &stack, &doc, by, Some(&message), Some(&to.to_string())).await;
    audited(core, actor, crate::operation::Operation::StackRevert, &workspace, &stack, &out).await;
    out
}

/// What happened to one file of an import.
#[derive(Debug, Clone, Serialize)]
pub struct ImportedFile {
    pub file: PathBuf,
    pub stack: String,
    pub change: Option<i64>,
}

/// Imports `DIR/<kind>/<name>.json`: one change per changed file, nothing for unchanged
/// ones. Every file is read and parsed before anything is written.
///
/// Errors: `Usage` naming the first unknown folder, bad name or invalid JSON.
pub async fn import(core: &Core, opts: &StackImportOptions, actor: &Actor) -> Result<Vec<ImportedFile>> {
    let workspace = core.workspace_or_only(opts.workspace.as_deref())?;
    let dir = opts.dir.as_path();
    let mut docs = Vec::new();
    let mut kinds: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::usage(format!("cannot read {}: {e}", dir.display())))?
        .collect::<std::io::Result<Vec<_>>>()?;
    kinds.sort_by_key(std::fs::DirEntry::file_name);
    for kind_dir in kinds {
        let kind = kind_dir.file_name().to_string_lossy().into_owned();
        if !kind_dir.file_type()?.is_dir() || !KINDS.contains(&kind.as_str()) {
            return Err(Error::usage(format!(
                "{} is not a stack folder: an import folder holds only {} folders of <name>.json files",
                kind_dir.path().display(),
                KINDS.join("/, ")
            )));
        }
        let mut files: Vec<_> = std::fs::read_dir(kind_dir.path())?.collect::<std::io::Result<Vec<_>>>()?;
        files.sort_by_key(std::fs::DirEntry::file_name);
        for file in files {
            let path = file.path();
            let name = file.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".json").filter(|_| file.file_type().is_ok_and(|t| t.is_file())) else {
                return Err(Error::usage(format!("{} is not a <name>.json file", path.display())));
            };
            let stack = StackRef::parse(&format!("{kind}/{stem}"))?;
            let text = fs_err::read_to_string(&path)
                .map_err(|e| Error::usage(format!("cannot read {}: {e}", path.display())))?;
            let doc = Document::parse(&text, &path.display().to_string())?;
            docs.push((path, stack, doc));
        }
    }
    let mut conn = connect(core, &workspace, true).await?.expect("installed");
    let mut out = Vec::with_capacity(docs.len());
    for (file, stack, doc) in docs {
        let message = format!("import {}", file.display());
        let outcome =
            log::put(&mut conn, &stack, &doc, changed_by(opts.author.as_deref(), actor), Some(&message), None).await;
        audited(core, actor, crate::operation::Operation::StackImport, &workspace, &stack, &outcome).await;
        let outcome = outcome?;
        out.push(ImportedFile { file, stack: stack.to_string(), change: outcome.change });
    }
    Ok(out)
}

/// Writes every stack's live (or newest published) content to `DIR/<kind>/<name>.json`.
/// Returns the files written; stacks with no published version are skipped for `published`.
pub async fn export(core: &Core, opts: &StackExportOptions, _actor: &Actor) -> Result<Vec<PathBuf>> {
    let workspace = core.workspace_or_only(opts.workspace.as_deref())?;
    let dir = opts.dir.as_path();
    let selector = match opts.state.as_str() {
        "live" => Selector::Live,
        "published" => Selector::Published,
        other => return Err(Error::usage(format!("the state to export is live or published, not {other:?}"))),
    };
    let Some(mut conn) = connect(core, &workspace, false).await? else { return Ok(Vec::new()) };
    let mut written = Vec::new();
    for summary in log::list(&mut conn).await? {
        let stack = StackRef::parse(&summary.stack)?;
        if selector == Selector::Published && summary.latest_version.is_none() {
            continue;
        }
        let (_, doc) = log::read(&mut conn, &stack, selector).await?;
        let folder = dir.join(&stack.kind);
        fs_err::create_dir_all(&folder)?;
        let path = folder.join(format!("{}.json", stack.name));
        let mut text = serde_json::to_string_pretty(&doc.value).expect("a Value serializes");
        text.push('\n');
        fs_err::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}
