//! The audit trail as operations use it: every state-changing operation appends what it
//! did (who, what, on what, how it ended) to the catalog's hash-chained log, and the
//! chain's head is checkpointed into the repository (write-once, encrypted) after each, so
//! a catalog edited or rolled back behind tidemark's back is found. `audit list` and
//! `audit verify` read it back.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Core;
use crate::actor::Actor;
use crate::catalog::audit::{self, AuditEntry, AuditHead, AuditRecord};
use crate::error::{Error, ErrorKind, Result};
use crate::repo::layout;

/// Records what an operation did, and checkpoints the chain's head (after anything that
/// ran; a refusal waits for the next checkpoint, so a flood of refused requests cannot
/// turn into a flood of repository writes: the API also checkpoints every few minutes).
/// Never fails the operation: a trail that cannot be written is logged as an error.
pub async fn record<T>(
    core: &Core,
    actor: &Actor,
    action: &str,
    target: &str,
    result: &Result<T>,
    details: serde_json::Value,
) {
    let (outcome, details) = match result {
        Ok(_) => ("ok", details),
        Err(e) => {
            let mut d = details;
            if let Some(map) = d.as_object_mut() {
                map.insert("error".into(), serde_json::json!({"kind": e.kind().name(), "message": e.message()}));
            }
            (if e.kind() == ErrorKind::Refused { "denied" } else { "failed" }, d)
        }
    };
    let entry = AuditEntry {
        actor: actor.clone(),
        action: action.to_string(),
        target: target.to_string(),
        outcome: outcome.to_string(),
        details,
    };
    let denied = outcome == "denied";
    let appended = async {
        core.catalog().await?.append_audit(&entry).await?;
        if denied { Ok(()) } else { checkpoint(core).await }
    };
    if let Err(e) = appended.await {
        tracing::error!(action, target, error = %e.report(), "the audit trail could not be written");
    }
}

/// Writes the chain's head into the repository (once per head; a head already there is
/// left as it is). Errors: those of the catalog and the repository.
pub async fn checkpoint(core: &Core) -> Result<()> {
    let Some(head) = core.catalog().await?.audit_head().await? else { return Ok(()) };
    let key = layout::audit_checkpoint(&head.chain, head.seq);
    match core.repo.put_sealed(&key, &head, core.recipients()?).await {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// What `audit list` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditListOptions {
    /// Records from this moment on (default: all).
    pub since: Option<DateTime<Utc>>,
}

/// The trail, oldest first. Errors: `Unavailable` for the catalog.
pub async fn list(core: &Core, opts: &AuditListOptions, _actor: &Actor) -> Result<Vec<AuditRecord>> {
    core.catalog().await?.audit_records(opts.since).await
}

/// What `audit verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub chain: Option<String>,
    pub records: usize,
    /// The newest checkpoint in the repository the trail was checked against.
    pub checkpoint: Option<AuditHead>,
}

/// Checks the whole trail, and that it still reaches the newest checkpoint of its chain in
/// the repository.
///
/// Errors: `Integrity` naming the first bad record (edited, deleted, reordered, inserted)
/// or a cut tail; `Key` without the identity (checkpoints are encrypted).
pub async fn verify(core: &Core, _actor: &Actor) -> Result<AuditReport> {
    let catalog = core.catalog().await?;
    let records = catalog.audit_records(None).await?;
    let chain = if records.is_empty() { None } else { Some(catalog.audit_chain().await?) };
    let checkpoint = match &chain {
        Some(chain) => newest_checkpoint(core, chain).await?,
        None => None,
    };
    if let Some(cp) = &checkpoint
        && chain.as_deref() != Some(cp.chain.as_str())
    {
        return Err(Error::integrity("the repository's audit checkpoint belongs to another chain"));
    }
    let n = audit::verify(&records, checkpoint.as_ref())?;
    Ok(AuditReport { chain, records: n, checkpoint })
}

async fn newest_checkpoint(core: &Core, chain: &str) -> Result<Option<AuditHead>> {
    let mut listed = core.repo.list(&layout::audit_checkpoints(chain)).await?;
    listed.sort_by(|a, b| a.key.cmp(&b.key));
    let Some(newest) = listed.last() else { return Ok(None) };
    let what = format!("audit checkpoint {}", newest.key);
    core.repo.read_sealed(&newest.key, &core.identities()?, &what).await
}
