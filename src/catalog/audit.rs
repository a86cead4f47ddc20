//! The audit trail: an append-only, hash-chained log. Record `n` carries the hash of record
//! `n - 1`, and its own hash covers every field and that previous hash, so changing,
//! deleting, reordering or inserting a record breaks the chain from there on. What the
//! chain cannot show by itself — its last records cut off — is caught against a checkpoint
//! of its head kept elsewhere (the repository; see `ops::audit`).

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{BeginSerial, Catalog, Get, on_pool};
use crate::actor::Actor;
use crate::error::{Error, Result};

/// The previous hash of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, as an operation reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub actor: Actor,
    /// `snapshot`, `restore`, `prune`, `pin`, `unpin`, `stacks.put`, ...
    pub action: String,
    /// `workspace`, or `workspace/id`.
    pub target: String,
    /// `ok`, `failed` or `denied`.
    pub outcome: String,
    /// What else matters (an error kind, a snapshot id), never a secret.
    pub details: serde_json::Value,
}

/// One record of the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

/// The head of a chain: its last record's number and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditHead {
    pub chain: String,
    pub seq: i64,
    pub hash: String,
}

impl AuditEntry {
    /// The workspaces this record is about; empty: none in particular (tokens for every
    /// workspace, refusals before a workspace was known, the service itself). Read from the
    /// target (`ws`, `ws/...`, a refused request's path `/v1/workspaces/ws/...`) or, for
    /// tokens (`token/name`), from the token's workspaces in the details.
    pub fn workspaces(&self) -> Vec<String> {
        let target = self.target.as_str();
        if let Some(rest) = target.strip_prefix("/v1/workspaces/") {
            let ws = rest.split('/').next().unwrap_or_default();
            return if ws.is_empty() { Vec::new() } else { vec![ws.to_string()] };
        }
        if target.starts_with("token/") {
            let listed = self.details.get("workspaces").and_then(serde_json::Value::as_array);
            return listed.into_iter().flatten().filter_map(|w| w.as_str().map(String::from)).collect();
        }
        if target.starts_with('/') || target == "-" || target.is_empty() {
            return Vec::new();
        }
        vec![target.split('/').next().unwrap_or_default().to_string()]
    }
}

impl AuditRecord {
    /// The hash this record must have: SHA-256 over its fields and the previous hash.
    pub fn expected_hash(&self) -> String {
        let e = &self.entry;
        let fields = serde_json::json!([
            self.seq,
            self.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            e.actor.kind.as_str(),
            e.actor.name,
            e.actor.token_id,
            e.actor.address,
            e.action,
            e.target,
            e.outcome,
            e.details.to_string(),
            self.prev_hash,
        ]);
        hex::encode(Sha256::digest(fields.to_string().as_bytes()))
    }
}

fn record_of(row: &impl Get) -> std::result::Result<AuditRecord, sqlx::Error> {
    let kind: String = row.get("actor_kind")?;
    let details: String = row.get("details")?;
    let actor = Actor {
        kind: serde_json::from_value(serde_json::Value::String(kind)).unwrap_or(crate::actor::ActorKind::Cli),
        name: row.get("actor_name")?,
        token_id: row.get("token_prefix")?,
        address: row.get("address")?,
        grant: None,
    };
    Ok(AuditRecord {
        seq: row.get("seq")?,
        at: row.get("at")?,
        entry: AuditEntry {
            actor,
            action: row.get("action")?,
            target: row.get("target")?,
            outcome: row.get("outcome")?,
            // A details text that is not JSON (edited by hand) keeps its text, and fails the hash.
            details: serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details)),
        },
        prev_hash: row.get("prev_hash")?,
        hash: row.get("hash")?,
    })
}

super::from_row!(AuditRecord, record_of);

/// A checkpoint this process took on to write ([`Catalog::claim_audit_checkpoint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditClaim {
    pub seq: i64,
    /// The newest record checkpointed before (`None`: this is the chain's first).
    pub before: Option<i64>,
}

impl AuditClaim {
    /// The chain's first checkpoint.
    pub fn is_first(&self) -> bool {
        self.before.is_none()
    }
}

impl Catalog {
    /// The id of this catalog's audit chain, made on first use.
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn audit_chain(&self) -> Result<String> {
        let existing: Option<String> =
            on_pool!(&self.pool, |p| sqlx::query_scalar("SELECT id FROM audit_chain LIMIT 1").fetch_optional(p).await)
                .map_err(|e| self.err("cannot read the audit chain", e))?;
        if let Some(id) = existing {
            return Ok(id);
        }
        on_pool!(&self.pool, |p| {
            let mut tx =
                p.begin_serial("audit_chain").await.map_err(|e| self.err("cannot start the audit chain", e))?;
            let raced: Option<String> = sqlx::query_scalar("SELECT id FROM audit_chain LIMIT 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.err("cannot read the audit chain", e))?;
            let id = match raced {
                Some(id) => id,
                None => {
                    let id = format!("{:016x}", rand::random::<u64>());
                    sqlx::query("INSERT INTO audit_chain (id, created) VALUES ($1, $2)")
                        .bind(&id)
                        .bind(Utc::now())
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.err("cannot start the audit chain", e))?;
                    id
                }
            };
            tx.commit().await.map_err(|e| self.err("cannot start the audit chain", e))?;
            Ok(id)
        })
    }

    /// Appends a record to the trail (one writer at a time, across processes).
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<AuditRecord> {
        self.audit_chain().await?;
        on_pool!(&self.pool, |p| {
            let mut tx = p.begin_serial("audit").await.map_err(|e| self.err("cannot append to the audit trail", e))?;
            let last: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.err("cannot read the audit trail", e))?;
            let (seq, prev_hash) = match last {
                Some((seq, hash)) => (seq + 1, hash),
                None => (1, GENESIS.to_string()),
            };
            let mut record = AuditRecord {
                seq,
                at: Utc::now().trunc_subsecs(6),
                entry: entry.clone(),
                prev_hash,
                hash: String::new(),
            };
            record.hash = record.expected_hash();
            let a = &record.entry.actor;
            sqlx::query(
                "INSERT INTO audit (seq, at, actor_kind, actor_name, token_prefix, address, action, target, outcome, \
             details, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(record.seq)
            .bind(record.at)
            .bind(a.kind.as_str())
            .bind(&a.name)
            .bind(&a.token_id)
            .bind(&a.address)
            .bind(&record.entry.action)
            .bind(&record.entry.target)
            .bind(&record.entry.outcome)
            .bind(record.entry.details.to_string())
            .bind(&record.prev_hash)
            .bind(&record.hash)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err("cannot append to the audit trail", e))?;
            tx.commit().await.map_err(|e| self.err("cannot append to the audit trail", e))?;
            Ok(record)
        })
    }

    /// Records in order, from `since` on (all without).
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn audit_records(&self, since: Option<DateTime<Utc>>) -> Result<Vec<AuditRecord>> {
        on_pool!(&self.pool, |p| sqlx::query_as("SELECT * FROM audit WHERE ($1 IS NULL OR at >= $1) ORDER BY seq")
            .bind(since)
            .fetch_all(p)
            .await)
        .map_err(|e| self.err("cannot read the audit trail", e))
    }

    /// Takes on writing the checkpoint of `head` (one process of the fleet per record):
    /// `None` when another has taken this record's or a newer one's; `Some(first)` when
    /// this process is to write it, `first` for the chain's first checkpoint. Give it back
    /// with [`Catalog::release_audit_checkpoint`] when the checkpoint was not written.
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn claim_audit_checkpoint(&self, head: &AuditHead) -> Result<Option<AuditClaim>> {
        let failed = |e| self.err("cannot claim an audit checkpoint", e);
        let before: Option<Option<i64>> =
            on_pool!(&self.pool, |p| sqlx::query_scalar("SELECT checkpointed FROM audit_chain WHERE id = $1")
                .bind(&head.chain)
                .fetch_optional(p)
                .await)
            .map_err(failed)?;
        let Some(before) = before else { return Ok(None) };
        if before.is_some_and(|seq| seq >= head.seq) {
            return Ok(None);
        }
        // Compare and set: of the processes that read the same `before`, one sets it.
        let claimed = on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE audit_chain SET checkpointed = $1 WHERE id = $2 AND COALESCE(checkpointed, -1) = $3"
        )
        .bind(head.seq)
        .bind(&head.chain)
        .bind(before.unwrap_or(-1))
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(failed)?;
        Ok((claimed == 1).then_some(AuditClaim { seq: head.seq, before }))
    }

    /// Gives back a claim whose checkpoint was not written (another process may write it).
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn release_audit_checkpoint(&self, chain: &str, claim: &AuditClaim) -> Result<()> {
        on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE audit_chain SET checkpointed = $1 WHERE id = $2 AND checkpointed = $3"
        )
        .bind(claim.before)
        .bind(chain)
        .bind(claim.seq)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot give back an audit checkpoint", e))?;
        Ok(())
    }

    /// The chain's head, `None` before the first record.
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn audit_head(&self) -> Result<Option<AuditHead>> {
        let last: Option<(i64, String)> =
            on_pool!(&self.pool, |p| sqlx::query_as("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
                .fetch_optional(p)
                .await)
            .map_err(|e| self.err("cannot read the audit trail", e))?;
        match last {
            Some((seq, hash)) => Ok(Some(AuditHead { chain: self.audit_chain().await?, seq, hash })),
            None => Ok(None),
        }
    }
}

/// Checks a trail in order: numbers from 1 without gaps, each record's previous hash the
/// hash before it, each hash what its content gives; and, with a checkpoint, that the
/// trail still reaches it with the same hash (a cut tail, or records rewritten before it).
/// Returns the number of records.
///
/// Errors: `Integrity` naming the first bad record and what is wrong with it.
pub fn verify(records: &[AuditRecord], checkpoint: Option<&AuditHead>) -> Result<usize> {
    let mut prev = GENESIS.to_string();
    for (i, r) in records.iter().enumerate() {
        let expected_seq = i as i64 + 1;
        let bad = |what: String| Error::integrity(format!("the audit trail is broken at record {}: {what}", r.seq));
        if r.seq != expected_seq {
            return Err(Error::integrity(format!(
                "the audit trail is broken at record {expected_seq}: the next record is {} (a record was deleted, \
                 inserted or moved)",
                r.seq
            )));
        }
        if r.prev_hash != prev {
            return Err(bad("it does not follow the record before it (deleted, inserted or reordered)".into()));
        }
        if r.expected_hash() != r.hash {
            return Err(bad("its content does not match its hash (edited)".into()));
        }
        prev.clone_from(&r.hash);
    }
    if let Some(cp) = checkpoint {
        match records.get((cp.seq - 1).max(0) as usize) {
            Some(r) if r.seq == cp.seq && r.hash == cp.hash => {}
            Some(r) => {
                return Err(Error::integrity(format!(
                    "the audit trail is broken at record {}: it is not the record the repository's checkpoint \
                     holds (rewritten)",
                    r.seq
                )));
            }
            None => {
                return Err(Error::integrity(format!(
                    "the audit trail ends at record {}, but the repository's checkpoint holds record {}: its \
                     last records were removed",
                    records.len(),
                    cp.seq
                )));
            }
        }
    }
    Ok(records.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::ActorKind;
    use crate::catalog::testing::exec;

    fn entry(action: &str, target: &str) -> AuditEntry {
        AuditEntry {
            actor: Actor::new(ActorKind::Cli, "ana"),
            action: action.into(),
            target: target.into(),
            outcome: "ok".into(),
            details: serde_json::json!({"snapshot": "s1"}),
        }
    }

    async fn trail(catalog: &Catalog) -> Vec<AuditRecord> {
        for (i, action) in ["snapshot", "pin", "prune", "restore", "stacks.put"].iter().enumerate() {
            let r = catalog.append_audit(&entry(action, &format!("shop/{i}"))).await.unwrap();
            assert_eq!(r.seq, i as i64 + 1);
        }
        catalog.audit_records(None).await.unwrap()
    }

    #[tokio::test]
    async fn a_whole_trail_verifies_and_every_kind_of_tampering_is_named() {
        let engines = crate::catalog::testing::Engines::start().await;
        for catalog in engines.catalogs().await {
            tampering_is_named_on(&catalog).await;
        }
    }

    async fn tampering_is_named_on(catalog: &Catalog) {
        let catalog = catalog.clone();
        let records = trail(&catalog).await;
        let head = catalog.audit_head().await.unwrap().unwrap();
        assert_eq!(verify(&records, Some(&head)).unwrap(), 5);
        assert_eq!(records[1].prev_hash, records[0].hash);

        let after = async |sql: &str| {
            exec(&catalog, sql).await;
            let e = verify(&catalog.audit_records(None).await.unwrap(), Some(&head)).unwrap_err();
            e.message().to_string()
        };
        // Edited: an action changed.
        let m = after("UPDATE audit SET action = 'nothing' WHERE seq = 3").await;
        assert!(m.contains("record 3") && m.contains("edited"), "{m}");
        exec(&catalog, "UPDATE audit SET action = 'prune' WHERE seq = 3").await;
        verify(&catalog.audit_records(None).await.unwrap(), Some(&head)).unwrap();
        // Deleted.
        exec(&catalog, "CREATE TABLE saved AS SELECT * FROM audit").await;
        let m = after("DELETE FROM audit WHERE seq = 2").await;
        assert!(m.contains("record 2"), "{m}");
        exec(&catalog, "DELETE FROM audit; INSERT INTO audit SELECT * FROM saved").await;
        // Reordered: two records swap places (numbers kept in order).
        let m = after(
            "UPDATE audit SET seq = -2 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3; \
             UPDATE audit SET seq = 3 WHERE seq = -2",
        )
        .await;
        assert!(m.contains("record 2"), "{m}");
        exec(&catalog, "DELETE FROM audit; INSERT INTO audit SELECT * FROM saved").await;
        // Inserted: a forged record, chained and hashed correctly, placed after record 2.
        let mut forged = records[1].clone();
        forged.seq = 3;
        forged.entry.action = "forged".into();
        forged.prev_hash = records[1].hash.clone();
        forged.hash = forged.expected_hash();
        exec(&catalog, "UPDATE audit SET seq = seq + 100 WHERE seq >= 3").await;
        exec(&catalog, "UPDATE audit SET seq = seq - 99 WHERE seq >= 100").await;
        exec(
            &catalog,
            &format!(
                "INSERT INTO audit SELECT 3, at, actor_kind, actor_name, token_prefix, address, 'forged', target, \
                 outcome, details, '{}', '{}' FROM saved WHERE seq = 2",
                forged.prev_hash, forged.hash
            ),
        )
        .await;
        let m = verify(&catalog.audit_records(None).await.unwrap(), Some(&head)).unwrap_err().message().to_string();
        assert!(m.contains("record 4"), "the record after the inserted one no longer follows: {m}");
        exec(&catalog, "DELETE FROM audit; INSERT INTO audit SELECT * FROM saved").await;
        // Cut tail: only the checkpoint can tell.
        exec(&catalog, "DELETE FROM audit WHERE seq >= 4").await;
        let cut = catalog.audit_records(None).await.unwrap();
        assert_eq!(verify(&cut, None).unwrap(), 3, "a cut chain is whole by itself");
        let m = verify(&cut, Some(&head)).unwrap_err().message().to_string();
        assert!(m.contains("ends at record 3") && m.contains("record 5"), "{m}");
    }
}
