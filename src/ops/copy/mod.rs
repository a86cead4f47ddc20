//! `copy`: the 3-2-1 rule's second and third copies. What the primary repository holds of a
//! workspace and a copy (`[copies.NAME]`) lacks is sent there, checked on the way
//! ([`crate::copies`]); then how far each copy is behind.

use serde::{Deserialize, Serialize};

use super::Core;
use crate::actor::Actor;
use crate::copies::{CopyTally, Lag};
use crate::error::{Error, ErrorKind, Result};

mod holders;
mod wal;
pub use holders::{Wanted, holders, primary_away};
pub use wal::{wal_forever, wal_once};

/// What `copy` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CopyOptions {
    pub workspace: String,
    /// One copy by name; default: every `[copies.NAME]` of the config.
    #[serde(default)]
    pub to: Option<String>,
}

/// What `copy` did, per copy.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CopyReport {
    pub workspace: String,
    pub copies: Vec<CopiedTo>,
}

/// One copy's part of a [`CopyReport`].
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CopiedTo {
    pub name: String,
    pub url: String,
    #[serde(flatten)]
    pub tally: CopyTally,
    /// What the copy still lacks after the run (new backups taken meanwhile, objects that
    /// could not be copied).
    pub lag: Lag,
    pub lag_seconds: u64,
}

impl CopyReport {
    pub fn problems(&self) -> impl Iterator<Item = String> + '_ {
        self.copies.iter().flat_map(|c| c.tally.problems.iter().map(move |p| format!("copy {}: {p}", c.name)))
    }
}

/// What a copy job records as its end: problems make it a failed job.
pub fn job_end(r: &CopyReport) -> crate::catalog::JobEnd {
    let problems: Vec<String> = r.problems().collect();
    crate::catalog::JobEnd {
        error: (!problems.is_empty()).then(|| format!("{} problems: {}", problems.len(), problems.join("; "))),
        bytes: Some(r.copies.iter().map(|c| c.tally.bytes).sum()),
        ..Default::default()
    }
}

/// [`copy`] as a recorded job.
pub async fn copy_recorded(core: &Core, opts: &CopyOptions, actor: &Actor) -> Result<CopyReport> {
    let spec = super::job::JobSpec {
        workspace: opts.workspace.clone(),
        operation: crate::operation::Operation::Copy,
        kind: None,
    };
    super::job::recorded(core, actor, spec, |core| async move { copy(&core, opts, actor).await }, job_end).await
}

/// The copies `opts` names: the one asked for, or every configured one.
///
/// Errors: `Usage` for an unknown copy, or when the config has none.
pub fn targets(core: &Core, to: Option<&str>) -> Result<Vec<String>> {
    let copies = &core.config.config.copies;
    match to {
        Some(name) => {
            core.config.config.repository_named(Some(name))?;
            if name == crate::config::PRIMARY {
                return Err(Error::usage("the primary is where copies come from: name a [copies.NAME] table"));
            }
            Ok(vec![name.to_string()])
        }
        None if copies.is_empty() => Err(Error::usage(
            "the config has no copies: add a [copies.NAME] table (the same keys as [repository]) for each \
             second repository, e.g. [copies.offsite] url = \"s3://other-bucket/tidemark\"",
        )),
        None => Ok(copies.keys().cloned().collect()),
    }
}

/// Copies what the primary holds of the workspace to each copy asked for. Problems with
/// single objects are in the report (and fail the job); a copy that cannot be reached is
/// an error naming it.
///
/// Errors: `Usage` (see [`targets`]); `Key` without the identity (manifests are read to
/// know what to check); `Unavailable` for a store; `Interrupted` when stopped.
pub async fn copy(core: &Core, opts: &CopyOptions, _actor: &Actor) -> Result<CopyReport> {
    core.workspace(&opts.workspace)?;
    let names = targets(core, opts.to.as_deref())?;
    let identities = core.identities()?;
    let mut copies = Vec::new();
    if core.copy_name().is_some() {
        return Err(Error::usage("copies are made from the primary repository, not from a copy"));
    }
    for name in names {
        let to = open_copy(core, &name).await?;
        core.progress().set_prefix(format!("copy {name}"));
        let reseal = own_recipients(core, &name)?;
        let tally = between(core, &to, &identities, &opts.workspace, reseal.as_ref())
            .everything()
            .await
            .map_err(|e| e.context(format!("copying workspace {} to copy {name} ({})", opts.workspace, to.url())))?;
        let lag = record_lag(core, &opts.workspace, &name, &to).await?;
        let lag_seconds = lag.seconds(chrono::Utc::now());
        copies.push(CopiedTo { name, url: to.url().to_string(), tally, lag, lag_seconds });
    }
    Ok(CopyReport { workspace: opts.workspace.clone(), copies })
}

/// What a request may set of a copy (`POST /v1/workspaces/{ws}/copies`): which copy.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CopyRequest {
    /// One copy by name (`[copies.NAME]`); default: every copy.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,40}$", example = "offsite")]
    pub to: Option<String>,
}

/// One copy of a workspace as `GET /v1/workspaces/{ws}/copies` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CopyState {
    pub name: String,
    pub url: String,
    /// What it lacks of the primary; `None` when it could not be asked (see `error`).
    pub lag: Option<Lag>,
    pub lag_seconds: Option<u64>,
    pub error: Option<String>,
}

/// How far each configured copy is behind the primary for `workspace` (one listing of
/// each repository per copy). A copy that cannot be reached is reported, not an error.
///
/// Errors: `NotFound` for an unknown workspace; `Unavailable` for the primary.
pub async fn states(core: &Core, workspace: &str) -> Result<Vec<CopyState>> {
    core.workspace(workspace)?;
    let mut out = Vec::new();
    for (name, cfg) in &core.config.config.copies {
        let asked = async {
            let to = core.open_repository(Some(name)).await?;
            crate::copies::lag(&core.repo, &to, workspace).await
        };
        let (lag, error) = match asked.await {
            Ok(lag) => (Some(lag), None),
            Err(e) => (None, Some(e.report())),
        };
        let lag_seconds = lag.as_ref().map(|l| l.seconds(chrono::Utc::now()));
        out.push(CopyState { name: name.clone(), url: cfg.url.clone(), lag, lag_seconds, error });
    }
    Ok(out)
}

/// A copy run by the daemon (to `to`, else every copy), then each copy's retention
/// (`keep-within`, `pitr-window` of `[copies.NAME]`; its failure is logged: the copy is
/// whole, only larger).
///
/// Errors: what kept the copy from running, and `Integrity` naming what could not be copied.
pub async fn scheduled(core: &Core, workspace: &str, to: Option<String>, actor: &Actor) -> Result<CopyReport> {
    use super::prune::{DEFAULT_GRACE, PruneOptions, prune};
    let opts = CopyOptions { workspace: workspace.to_string(), to };
    let report = copy(core, &opts, actor).await?;
    for c in &report.copies {
        let prune_opts = PruneOptions {
            workspace: workspace.to_string(),
            grace: DEFAULT_GRACE,
            wait: super::job::WaitFor::FOREVER,
            repository: Some(c.name.clone()),
            ..Default::default()
        };
        if let Err(e) = prune(core, &prune_opts, actor).await {
            tracing::warn!(workspace, copy = %c.name, error = %e.report(), "the copy's retention failed");
        }
    }
    let problems: Vec<String> = report.problems().collect();
    if !problems.is_empty() {
        return Err(Error::integrity(format!(
            "{} objects could not be copied: {}",
            problems.len(),
            problems.join("; ")
        )));
    }
    Ok(report)
}

/// A copy of `workspace` from this core's repository to `to` (re-sealed to `reseal`).
fn between<'a>(
    core: &'a Core,
    to: &'a crate::repo::Repository,
    identities: &'a crate::keys::Identities,
    workspace: &'a str,
    reseal: Option<&'a crate::keys::Recipients>,
) -> crate::copies::Transfer<'a> {
    crate::copies::Transfer {
        from: &core.repo,
        to,
        identities,
        workspace,
        reseal,
        progress: core.progress(),
        stop: core.stop(),
    }
}

/// The recipients of copy `name` when it has its own (its objects are re-sealed to them).
///
/// Errors: `Key`/`Config` for a malformed recipient.
fn own_recipients(core: &Core, name: &str) -> Result<Option<crate::keys::Recipients>> {
    match core.config.config.own_keys(name) {
        Some(recipients) => crate::keys::Recipients::parse(recipients).map(Some),
        None => Ok(None),
    }
}

/// Copy `name`, made a copy of the primary first if its location is empty.
///
/// Errors: `Config` when it holds another repository; those of the store.
async fn open_copy(core: &Core, name: &str) -> Result<crate::repo::Repository> {
    let to = match core.open_repository(Some(name)).await {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let cfg = core.config.config.repository_named(Some(name))?;
            crate::repo::Repository::seed_copy(&cfg, &core.repo).await?;
            core.open_repository(Some(name)).await?
        }
        other => other?,
    };
    to.same_repository_as(&core.repo)?;
    Ok(to)
}

/// Compares the copy with the primary and records in the catalog how far it is.
///
/// Errors: `Unavailable` for either store or the catalog.
async fn record_lag(core: &Core, workspace: &str, name: &str, to: &crate::repo::Repository) -> Result<Lag> {
    let listed_at = chrono::Utc::now();
    let lag = crate::copies::lag(&core.repo, to, workspace).await?;
    let state = crate::catalog::copy_states::CopyStateRow {
        workspace: workspace.to_string(),
        copy: name.to_string(),
        caught_up_to: lag.oldest_missing.map_or(listed_at, |t| t.min(listed_at)),
        copied_at: chrono::Utc::now(),
        missing_objects: lag.missing_objects as i64,
        snapshots: to.list_snapshot_ids(workspace).await?.len() as i64,
    };
    match core.catalog().await {
        Ok(catalog) => catalog.record_copy_state(&state).await?,
        Err(e) => tracing::warn!(error = %e.report(), "no catalog: the copy's state is not recorded"),
    }
    Ok(lag)
}
