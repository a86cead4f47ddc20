//! The audit trail as operations use it: every state-changing operation appends what it
//! did (who, what, on what, how it ended) to the catalog's hash-chained log, and the
//! chain's head is checkpointed into the repository (write-once, encrypted) after each, so
//! a catalog edited or rolled back behind tidemark's back is found. `audit list` and
//! `audit verify` read it back.
//!
//! Longer than ~300 lines: recording, listing, verifying and checkpointing the trail share one chain format.

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
    operation: crate::operation::Operation,
    target: &str,
    result: &Result<T>,
    details: serde_json::Value,
) {
    record_event(core, actor, operation.audit_action(), target, result, details).await;
}

/// Records what is no operation: a refused request (`api.denied`), or their count.
pub async fn record_event<T>(
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
            let denied = matches!(
                e.kind(),
                ErrorKind::Refused | ErrorKind::Busy | ErrorKind::Forbidden | ErrorKind::Unauthenticated
            );
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

/// Chains this process found linked: a link is written once and never removed, so each
/// audited operation need not read it again (chain ids are random: one names one chain).
static LINKED: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Writes the chain's head into the repository, unless another process of the fleet took
/// it (or a newer head) on: each checkpoint has one writer, since two would leave the
/// object of one with the signature of the other (the content is encrypted anew by
/// each). A chain is linked (see [`ChainLink`]) before its checkpoints: the repository's
/// first chain links itself, by the writer of its first checkpoint; any later one only
/// through [`new_chain`].
///
/// Errors: `Integrity` for a chain that continues none of the repository's chains; those
/// of the catalog and the repository.
pub async fn checkpoint(core: &Core) -> Result<()> {
    let catalog = core.catalog().await?;
    let Some(head) = catalog.audit_head().await? else { return Ok(()) };
    let Some(claim) = catalog.claim_audit_checkpoint(&head).await? else { return Ok(()) };
    let written = write_checkpoint(core, &head, claim.is_first()).await;
    if written.is_err()
        && let Err(e) = catalog.release_audit_checkpoint(&head.chain, &claim).await
    {
        tracing::warn!(error = %e.report(), "an audit checkpoint not written stays claimed until a newer record");
    }
    written
}

/// [`checkpoint`]'s writing, once claimed.
async fn write_checkpoint(core: &Core, head: &AuditHead, first: bool) -> Result<()> {
    let known = LINKED.lock().expect("linked chains lock").contains(&head.chain);
    if !known && read_link(core, &head.chain).await?.is_none() {
        let others: Vec<String> =
            core.repo.list_audit_chains().await?.into_iter().filter(|c| *c != head.chain).collect();
        if !others.is_empty() {
            return Err(unlinked(&head.chain, &others));
        }
        if first {
            let link = ChainLink { chain: head.chain.clone(), follows: None, at: Utc::now(), by: "tidemark".into() };
            put_link(core, &link).await?;
        }
    }
    LINKED.lock().expect("linked chains lock").insert(head.chain.clone());
    let key = layout::audit_checkpoint(&head.chain, head.seq);
    match core.repo.put_sealed(&key, head, core.recipients()?).await {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// What `audit list` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditListOptions {
    /// Records from this moment on (default: all).
    pub since: Option<DateTime<Utc>>,
    /// Records before this moment (default: all).
    pub until: Option<DateTime<Utc>>,
    /// Records whose actor (`kind:name`, or the token's id) contains this text.
    pub actor: Option<String>,
    /// Records of this action (`snapshot`, `api.denied`, ...).
    pub action: Option<String>,
    /// Records about this workspace.
    pub workspace: Option<String>,
}

impl AuditListOptions {
    fn keeps(&self, r: &AuditRecord) -> bool {
        let actor = |text: &str| {
            r.entry.actor.to_string().contains(text)
                || r.entry.actor.token_id.as_deref().is_some_and(|t| t.contains(text))
        };
        self.until.is_none_or(|t| r.at < t)
            && self.actor.as_deref().is_none_or(actor)
            && self.action.as_deref().is_none_or(|a| r.entry.action == a)
            && self.workspace.as_deref().is_none_or(|w| r.entry.workspaces().iter().any(|x| x == w))
    }
}

/// The trail, oldest first: for a token limited to some workspaces, only the records about
/// those (see `AuditEntry::workspaces`).
///
/// Errors: `Forbidden` without the right; `Unavailable` for the catalog.
pub async fn list(core: &Core, opts: &AuditListOptions, actor: &Actor) -> Result<Vec<AuditRecord>> {
    let grant = actor.grant();
    crate::access::check(&grant, crate::access::Action::ReadAudit, None)?;
    let records = core.catalog().await?.audit_records(opts.since).await?;
    Ok(records.into_iter().filter(|r| grant.covers(&r.entry.workspaces()) && opts.keeps(r)).collect())
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
    /// The chains this one continues, newest first, each as far as its checkpoints went
    /// (a catalog rebuilt, then `audit new-chain`).
    pub continues: Vec<AuditHead>,
}

/// How an audit chain continues the repository's chain before it: written once into the
/// repository (`audit-links/<chain>`), so that a catalog whose chain was replaced (a new
/// chain id, the chain row deleted) cannot pass for the trail it replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChainLink {
    pub chain: String,
    /// The head of the chain it continues, as last checkpointed; `None` for the
    /// repository's first chain.
    pub follows: Option<AuditHead>,
    pub at: DateTime<Utc>,
    /// Who started it (`tidemark` for the repository's first chain).
    pub by: String,
}

async fn read_link(core: &Core, chain: &str) -> Result<Option<ChainLink>> {
    let what = format!("audit chain {chain}'s link");
    core.repo.read_sealed(&layout::audit_link(chain), &core.identities()?, &what).await
}

async fn put_link(core: &Core, link: &ChainLink) -> Result<()> {
    match core.repo.put_sealed(&layout::audit_link(&link.chain), link, core.recipients()?).await {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

fn unlinked(chain: &str, others: &[String]) -> Error {
    Error::integrity(format!(
        "the catalog's audit chain {chain} does not continue the repository's audit chain(s) {}: the catalog's \
         chain was replaced (its id changed or its record deleted) or its trail was lost. After `tidemark catalog \
         rebuild`, `tidemark audit new-chain` starts a chain linked to the old one's last checkpoint; otherwise \
         the catalog was tampered with",
        others.join(", ")
    ))
}

/// Starts the catalog's chain as the continuation of the repository's newest chain (after
/// `catalog rebuild`, or a catalog that was lost): writes its link to that chain's last
/// checkpoint and records `audit.new-chain`. The host's command line only (a global admin).
///
/// Errors: `Forbidden` for anyone else; `Refused` when the chain is linked already or the
/// repository's chains have no single newest one; those of the catalog and the repository.
pub async fn new_chain(core: &Core, actor: &Actor) -> Result<ChainLink> {
    let grant = actor.grant();
    if grant.role != crate::access::Role::Admin || !grant.is_global() {
        return Err(Error::new(ErrorKind::Forbidden, "starting a new audit chain is for an admin of every workspace"));
    }
    let done = async {
        let chain = core.catalog().await?.audit_chain().await?;
        if read_link(core, &chain).await?.is_some() {
            return Err(Error::new(
                ErrorKind::Refused,
                format!("audit chain {chain} is linked already: nothing to do"),
            ));
        }
        let others: Vec<String> = core.repo.list_audit_chains().await?.into_iter().filter(|c| *c != chain).collect();
        let mut followed = std::collections::BTreeSet::new();
        for other in &others {
            if let Some(h) = read_link(core, other).await?.and_then(|l| l.follows) {
                followed.insert(h.chain);
            }
        }
        let tips: Vec<&String> = others.iter().filter(|c| !followed.contains(*c)).collect();
        let follows = match tips.as_slice() {
            [] => None,
            [tip] => newest_checkpoint(core, tip).await?,
            many => {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "the repository's audit chains {} are continued by none: it cannot say which one this chain \
                         continues",
                        many.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        };
        let link = ChainLink { chain, follows, at: Utc::now(), by: actor.to_string() };
        put_link(core, &link).await?;
        Ok(link)
    }
    .await;
    let details = match &done {
        Ok(link) => serde_json::json!({"chain": link.chain, "follows": link.follows}),
        Err(_) => serde_json::json!({}),
    };
    record(core, actor, crate::operation::Operation::AuditNewChain, "-", &done, details).await;
    done
}

/// Checks the whole trail, that it still reaches the newest checkpoint of its chain in the
/// repository, and that every chain the repository holds checkpoints of is this one or one
/// it continues through its links (each to its last checkpoint).
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
    let in_repository = core.repo.list_audit_chains().await?;
    let Some(chain) = chain else {
        if !in_repository.is_empty() {
            return Err(Error::integrity(format!(
                "the catalog's audit trail is empty, but the repository holds checkpoints of audit chain(s) {}: \
                 the trail was lost or removed (after `tidemark catalog rebuild`, `tidemark audit new-chain` starts \
                 a chain linked to them)",
                in_repository.join(", ")
            )));
        }
        return Ok(AuditReport { chain: None, records: 0, checkpoint: None, continues: Vec::new() });
    };
    let checkpoint = newest_checkpoint(core, &chain).await?;
    if let Some(cp) = &checkpoint
        && chain != cp.chain
    {
        return Err(Error::integrity("the repository's audit checkpoint belongs to another chain"));
    }
    let n = audit::verify(&records, checkpoint.as_ref())?;
    // Every chain in the repository is this one, or one it continues, each up to its last
    // checkpoint.
    let mut continues = Vec::new();
    let mut seen = std::collections::BTreeSet::from([chain.clone()]);
    let mut at = chain.clone();
    while let Some(head) = read_link(core, &at).await?.and_then(|l| l.follows) {
        if !seen.insert(head.chain.clone()) {
            return Err(Error::integrity(format!("the audit chains' links go round in a circle at {}", head.chain)));
        }
        let last = newest_checkpoint(core, &head.chain).await?;
        if last.as_ref() != Some(&head) {
            return Err(Error::integrity(format!(
                "audit chain {at} continues chain {} from its record {}, but that chain's checkpoints end at {}",
                head.chain,
                head.seq,
                last.map_or("none".to_string(), |l| format!("record {}", l.seq))
            )));
        }
        at.clone_from(&head.chain);
        continues.push(head);
    }
    let unlinked_chains: Vec<String> = in_repository.into_iter().filter(|c| !seen.contains(c)).collect();
    if !unlinked_chains.is_empty() {
        return Err(unlinked(&chain, &unlinked_chains));
    }
    Ok(AuditReport { chain: Some(chain), records: n, checkpoint, continues })
}

async fn newest_checkpoint(core: &Core, chain: &str) -> Result<Option<AuditHead>> {
    let mut listed = core.repo.list(&layout::audit_checkpoints(chain)).await?;
    listed.retain(|o| o.key.as_ref().rsplit('/').next().is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit())));
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
