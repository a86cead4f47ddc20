//! A SQLite catalog copied into an empty PostgreSQL one (`tidemark catalog migrate`): every
//! table, row for row and id for id, in one transaction, so the audit chain, the tokens and
//! the job history carry over as they were. Each column is read from SQLite as the type the
//! PostgreSQL table declares (the migrations of both engines make the same tables).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Catalog, Pool};
use crate::error::{Error, ErrorKind, Result};

/// Every table the catalog keeps, referenced ones first (`schedule_runs` refers to `jobs`).
/// The fleet's tables (members, leases, slot claims) are not copied: they describe the
/// processes of the old catalog, which are stopped while it is copied.
pub const TABLES: [&str; 13] = [
    "jobs",
    "job_newest",
    "schedule_runs",
    "drills",
    "audit_chain",
    "audit",
    "tokens",
    "snapshots",
    "snapshot_index",
    "replaced_databases",
    "switch_intents",
    "branches",
    "copy_states",
];

/// Tables whose ids PostgreSQL makes: their next id follows the copied ones.
const IDENTITIES: [&str; 2] = ["jobs", "drills"];

impl Catalog {
    /// Copies this SQLite catalog into `target`, an empty PostgreSQL catalog; returns how
    /// many rows each table had. Nothing is written unless all of it is.
    ///
    /// Errors: `Usage` unless this is SQLite and `target` PostgreSQL; `Refused` when the
    /// target already holds rows (it is never merged into); `Unavailable` for either
    /// catalog.
    pub async fn copy_into(&self, target: &Catalog) -> Result<Vec<(String, u64)>> {
        let (Pool::Sqlite(from), Pool::Postgres(into)) = (&self.pool, &target.pool) else {
            return Err(Error::usage("a catalog is copied from a SQLite file into a PostgreSQL database"));
        };
        let failed = |e| target.err("cannot copy the catalog into it", e);
        let mut tx = into.begin().await.map_err(failed)?;
        let mut copied = Vec::new();
        for table in TABLES {
            let held: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&mut *tx)
                .await
                .map_err(failed)?;
            if held > 0 {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "the catalog {} already holds {held} rows of {table}: a catalog is copied into a new, \
                         empty database only (nothing was written)",
                        target.name
                    ),
                ));
            }
            let columns: Vec<(String, String)> = sqlx::query_as(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            )
            .bind(table)
            .fetch_all(&mut *tx)
            .await
            .map_err(failed)?;
            let names = columns.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(", ");
            let slots = (1..=columns.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
            let insert = format!("INSERT INTO {table} ({names}) VALUES ({slots})");
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {names} FROM {table}")))
                .fetch_all(from)
                .await
                .map_err(|e| self.err(&format!("cannot read {table}"), e))?;
            for row in &rows {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(insert.clone()));
                for (i, (name, kind)) in columns.iter().enumerate() {
                    let read = |e| self.err(&format!("cannot read {table}.{name}"), e);
                    query = match kind.as_str() {
                        "bigint" => query.bind(row.try_get::<Option<i64>, _>(i).map_err(read)?),
                        "boolean" => query.bind(row.try_get::<Option<bool>, _>(i).map_err(read)?),
                        "timestamp with time zone" => {
                            query.bind(row.try_get::<Option<DateTime<Utc>>, _>(i).map_err(read)?)
                        }
                        _ => query.bind(row.try_get::<Option<String>, _>(i).map_err(read)?),
                    };
                }
                query.execute(&mut *tx).await.map_err(failed)?;
            }
            copied.push((table.to_string(), rows.len() as u64));
        }
        for table in IDENTITIES {
            let next = format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(max(id), 0) + 1, false) FROM {table}"
            );
            sqlx::query(sqlx::AssertSqlSafe(next)).execute(&mut *tx).await.map_err(failed)?;
        }
        tx.commit().await.map_err(failed)?;
        Ok(copied)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Engines;
    use super::*;
    use crate::actor::{Actor, ActorKind};
    use crate::catalog::audit::{AuditEntry, verify};
    use crate::catalog::{JobEnd, JobStatus, NewJob, Trigger};
    use chrono::SubsecRound;

    #[tokio::test]
    async fn a_sqlite_catalog_is_copied_whole_and_its_audit_chain_still_verifies() {
        let engines = Engines::start().await;
        let [sqlite, postgres] = <[Catalog; 2]>::try_from(engines.catalogs().await).unwrap();
        let job = NewJob {
            workspace: "shop".into(),
            operation: "snapshot".into(),
            kind: Some("manual".into()),
            trigger: Trigger::Schedule,
            policy: Some("daily".into()),
            scheduled_for: None,
            started_at: Utc::now(),
            actor: Some("schedule:daily".into()),
        };
        let mut last = 0;
        for _ in 0..3 {
            last = sqlite.start_job(&job).await.unwrap();
            sqlite
                .finish_job(last, JobStatus::Succeeded, &JobEnd { bytes: Some(7), ..Default::default() })
                .await
                .unwrap();
        }
        sqlite.set_last_slot("shop", "daily", Utc::now(), "succeeded", Some(last)).await.unwrap();
        for action in ["snapshot", "pin", "token.create"] {
            let entry = AuditEntry {
                actor: Actor::new(ActorKind::Cli, "ana"),
                action: action.into(),
                target: "shop".into(),
                outcome: "ok".into(),
                details: serde_json::json!({"n": 1}),
            };
            sqlite.append_audit(&entry).await.unwrap();
        }
        sqlite.index_snapshot("shop", "20261101T000000Z-aaaaaa", "{}").await.unwrap();

        let copied = sqlite.copy_into(&postgres).await.unwrap();
        let count = |name: &str| copied.iter().find(|(t, _)| t == name).map(|(_, n)| *n);
        assert_eq!((count("jobs"), count("audit"), count("schedule_runs")), (Some(3), Some(3), Some(1)));
        assert_eq!(copied.len(), TABLES.len(), "every table: {copied:?}");
        // The same rows, the same chain.
        // PostgreSQL keeps times to the microsecond (SQLite's text kept nanoseconds).
        let as_json = |jobs: Vec<crate::catalog::Job>| {
            let jobs: Vec<_> = jobs
                .into_iter()
                .map(|mut j| {
                    j.started_at = j.started_at.trunc_subsecs(6);
                    j.finished_at = j.finished_at.map(|t| t.trunc_subsecs(6));
                    j
                })
                .collect();
            serde_json::to_value(jobs).unwrap()
        };
        assert_eq!(as_json(postgres.jobs(None, 10).await.unwrap()), as_json(sqlite.jobs(None, 10).await.unwrap()));
        let newest = as_json(postgres.newest_jobs("shop").await.unwrap());
        assert_eq!(
            (newest.as_array().map(Vec::len), &newest),
            (Some(1), &as_json(sqlite.newest_jobs("shop").await.unwrap()))
        );
        let records = postgres.audit_records(None).await.unwrap();
        assert_eq!(records, sqlite.audit_records(None).await.unwrap());
        let head = sqlite.audit_head().await.unwrap().unwrap();
        assert_eq!(verify(&records, Some(&head)).unwrap(), 3, "the copied chain reaches the source's head");
        assert_eq!(postgres.audit_chain().await.unwrap(), sqlite.audit_chain().await.unwrap());
        // New rows follow the copied ones.
        assert_eq!(postgres.start_job(&job).await.unwrap(), last + 1);
        postgres.append_audit(&records[0].entry).await.unwrap();
        assert_eq!(verify(&postgres.audit_records(None).await.unwrap(), Some(&head)).unwrap(), 4);
        // Never merged into a catalog that holds anything; and only SQLite into PostgreSQL.
        let again = sqlite.copy_into(&postgres).await.unwrap_err();
        assert_eq!(again.kind(), ErrorKind::Refused, "{}", again.report());
        assert_eq!(postgres.copy_into(&sqlite).await.unwrap_err().kind(), ErrorKind::Usage);
    }
}
