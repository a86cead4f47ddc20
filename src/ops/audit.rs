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
            let denied = matches!(e.kind(), ErrorKind::Refused | ErrorKind::Forbidden);
            (if denied { "denied" } else { "failed" }, d)
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

/// The trail, oldest first: for a token limited to some workspaces, only the records about
/// those (see `AuditEntry::workspaces`).
///
/// Errors: `Forbidden` without the right; `Unavailable` for the catalog.
pub async fn list(core: &Core, opts: &AuditListOptions, actor: &Actor) -> Result<Vec<AuditRecord>> {
    let grant = actor.grant();
    crate::access::check(&grant, crate::access::Action::ReadAudit, None)?;
    let records = core.catalog().await?.audit_records(opts.since).await?;
    Ok(records.into_iter().filter(|r| grant.covers(&r.entry.workspaces())).collect())
}

/// The trail as comma-separated values with a header line (`seq,at,actor,action,target,
/// outcome,details,hash`), for spreadsheets: a field a spreadsheet would run as a formula
/// (starting with `=`, `+`, `@`, or `-` not before a digit) gets a leading `'`, because
/// refused requests put what a client sent (its path) into the trail.
pub fn to_csv(records: &[AuditRecord]) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut row = |fields: [String; 8]| out.write_record(fields.map(defused)).expect("writing to memory");
    row(["seq", "at", "actor", "action", "target", "outcome", "details", "hash"].map(String::from));
    for r in records {
        row([
            r.seq.to_string(),
            r.at.to_rfc3339(),
            r.entry.actor.to_string(),
            r.entry.action.clone(),
            r.entry.target.clone(),
            r.entry.outcome.clone(),
            r.entry.details.to_string(),
            r.hash.clone(),
        ]);
    }
    String::from_utf8(out.into_inner().expect("writing to memory")).expect("the fields are text")
}

/// A field no spreadsheet reads as a formula.
fn defused(field: String) -> String {
    let mut chars = field.chars();
    let formula = match chars.next() {
        Some('=' | '+' | '@' | '\t' | '\r') => true,
        Some('-') => !chars.next().is_some_and(|c| c.is_ascii_digit()),
        _ => false,
    };
    if formula { format!("'{field}") } else { field }
}

/// What `audit verify` found.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditReport {
    pub chain: Option<String>,
    pub records: usize,
    /// The newest checkpoint in the repository the trail was checked against.
    pub checkpoint: Option<AuditHead>,
}

/// Checks the whole trail, and that it still reaches the newest checkpoint of its chain in
/// the repository.
///
/// Errors: `Forbidden` for a token limited to some workspaces; `Integrity` naming the first bad record (edited, deleted, reordered, inserted)
/// or a cut tail; `Key` without the identity (checkpoints are encrypted).
pub async fn verify(core: &Core, actor: &Actor) -> Result<AuditReport> {
    let grant = actor.grant();
    crate::access::check(&grant, crate::access::Action::ReadAudit, None)?;
    if !grant.is_global() {
        return Err(Error::new(
            ErrorKind::Forbidden,
            "verifying the audit trail reads every workspace's records: use a token for all workspaces",
        ));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::ActorKind;
    use crate::catalog::audit::AuditEntry;

    fn record(target: &str, details: serde_json::Value) -> AuditRecord {
        AuditRecord {
            seq: 7,
            at: DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z").unwrap().into(),
            entry: AuditEntry {
                actor: Actor::new(ActorKind::Api, "ci"),
                action: "api.denied".into(),
                target: target.into(),
                outcome: "denied".into(),
                details,
            },
            prev_hash: String::new(),
            hash: "ab".into(),
        }
    }

    #[test]
    fn csv_quotes_what_needs_it_and_defuses_formulas() {
        let records = [
            record("/v1/a,b", serde_json::json!({"reason": "say \"no\"\nnow"})),
            record("=HYPERLINK(\"x\")", serde_json::json!(-1)),
            record("-cmd", serde_json::json!("@SUM(A1)")),
        ];
        let text = to_csv(&records);
        let rows: Vec<csv::StringRecord> =
            csv::Reader::from_reader(text.as_bytes()).records().collect::<std::result::Result<_, _>>().unwrap();
        assert_eq!(rows.len(), 3, "{text}");
        // Commas, quotes and line breaks survive a round trip.
        assert_eq!(&rows[0][4], "/v1/a,b");
        assert_eq!(&rows[0][6], r#"{"reason":"say \"no\"\nnow"}"#);
        // Formulas are defused; a negative number is left alone.
        assert_eq!(&rows[1][4], "'=HYPERLINK(\"x\")");
        assert_eq!(&rows[1][6], "-1");
        assert_eq!(&rows[2][4], "'-cmd");
        assert_eq!(&rows[2][6], "\"@SUM(A1)\"", "JSON text starts with a quote: no formula");
        assert!(text.starts_with("seq,at,actor,action,target,outcome,details,hash\n"), "{text}");
    }
}
