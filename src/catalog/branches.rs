//! Branches: a row per branch, claimed before its database is made and released after it
//! is dropped (see `ops::branch`). The catalog, not tidemark.toml, is where a running
//! server keeps them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Catalog, on_pool};
use crate::error::{Error, ErrorKind, Result};

/// Where a branch is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BranchState {
    /// Its database is being restored.
    Creating,
    Ready,
    /// Its database is being dropped.
    Deleting,
}

impl BranchState {
    fn as_str(self) -> &'static str {
        match self {
            BranchState::Creating => "creating",
            BranchState::Ready => "ready",
            BranchState::Deleting => "deleting",
        }
    }

    fn parse(text: &str) -> Result<BranchState> {
        match text {
            "creating" => Ok(BranchState::Creating),
            "ready" => Ok(BranchState::Ready),
            "deleting" => Ok(BranchState::Deleting),
            other => Err(Error::new(ErrorKind::Integrity, format!("the catalog holds a branch in state {other:?}"))),
        }
    }
}

/// A branch as the catalog holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchRow {
    pub workspace: String,
    pub name: String,
    /// Its database, on the workspace's server.
    pub database: String,
    /// `snapshot <id>` or `time <moment>`.
    pub source: String,
    pub state: BranchState,
    pub created_at: DateTime<Utc>,
    pub actor: Option<String>,
}

type Row = (String, String, String, String, String, DateTime<Utc>, Option<String>);

fn row(r: Row) -> Result<BranchRow> {
    let (workspace, name, database, source, state, created_at, actor) = r;
    Ok(BranchRow { workspace, name, database, source, state: BranchState::parse(&state)?, created_at, actor })
}

impl Catalog {
    /// Claims `branch.name` for `branch.workspace` (state `creating`).
    ///
    /// Errors: `AlreadyExists` when the name is taken (by a branch in any state).
    pub async fn claim_branch(&self, branch: &BranchRow) -> Result<()> {
        let inserted = on_pool!(&self.pool, |p| sqlx::query(
            "INSERT INTO branches (workspace, name, database, source, state, created_at, actor) \
             VALUES ($1, $2, $3, $4, 'creating', $5, $6) ON CONFLICT (workspace, name) DO NOTHING",
        )
        .bind(&branch.workspace)
        .bind(&branch.name)
        .bind(&branch.database)
        .bind(&branch.source)
        .bind(branch.created_at)
        .bind(&branch.actor)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot record a branch", e))?;
        if inserted == 0 {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("branch {} of {} exists (or is being made or deleted)", branch.name, branch.workspace),
            ));
        }
        Ok(())
    }

    /// Moves a branch from state `from` to `to`; `false` when it is not in `from` (another
    /// caller got there first, or it is gone).
    pub async fn move_branch(&self, workspace: &str, name: &str, from: BranchState, to: BranchState) -> Result<bool> {
        let moved = on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE branches SET state = $1 WHERE workspace = $2 AND name = $3 AND state = $4"
        )
        .bind(to.as_str())
        .bind(workspace)
        .bind(name)
        .bind(from.as_str())
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot change a branch's state", e))?;
        Ok(moved == 1)
    }

    /// Forgets a branch (its database is dropped, or is the workspace's now).
    pub async fn forget_branch(&self, workspace: &str, name: &str) -> Result<()> {
        on_pool!(&self.pool, |p| sqlx::query("DELETE FROM branches WHERE workspace = $1 AND name = $2")
            .bind(workspace)
            .bind(name)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot forget a branch", e))?;
        Ok(())
    }

    /// The branches of `workspace` (all, when `None`), by workspace and name.
    pub async fn branches(&self, workspace: Option<&str>) -> Result<Vec<BranchRow>> {
        let rows: Vec<Row> = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT workspace, name, database, source, state, created_at, actor FROM branches \
             WHERE ($1 IS NULL OR workspace = $1) ORDER BY workspace, name",
        )
        .bind(workspace)
        .fetch_all(p)
        .await)
        .map_err(|e| self.err("cannot read the branches", e))?;
        rows.into_iter().map(row).collect()
    }

    /// One branch, in any state.
    pub async fn branch(&self, workspace: &str, name: &str) -> Result<Option<BranchRow>> {
        let found: Option<Row> = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT workspace, name, database, source, state, created_at, actor FROM branches \
             WHERE workspace = $1 AND name = $2",
        )
        .bind(workspace)
        .bind(name)
        .fetch_optional(p)
        .await)
        .map_err(|e| self.err("cannot read a branch", e))?;
        found.map(row).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_is_claimed_once_and_moves_through_its_states_once() {
        let engines = crate::catalog::testing::Engines::start().await;
        for catalog in engines.catalogs().await {
            claimed_once_on(&catalog).await;
        }
    }

    async fn claimed_once_on(catalog: &Catalog) {
        let branch = BranchRow {
            workspace: "shop".into(),
            name: "try".into(),
            database: "shop_branch_try".into(),
            source: "snapshot x".into(),
            state: BranchState::Creating,
            created_at: Utc::now(),
            actor: Some("cli:tester".into()),
        };
        catalog.claim_branch(&branch).await.unwrap();
        let again = catalog.claim_branch(&branch).await.unwrap_err();
        assert_eq!(again.kind(), ErrorKind::AlreadyExists);
        assert!(catalog.move_branch("shop", "try", BranchState::Creating, BranchState::Ready).await.unwrap());
        assert!(!catalog.move_branch("shop", "try", BranchState::Creating, BranchState::Ready).await.unwrap());
        // Two deletes: one gets it.
        assert!(catalog.move_branch("shop", "try", BranchState::Ready, BranchState::Deleting).await.unwrap());
        assert!(!catalog.move_branch("shop", "try", BranchState::Ready, BranchState::Deleting).await.unwrap());
        let listed = catalog.branches(Some("shop")).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].state, BranchState::Deleting);
        assert!(catalog.branches(Some("blog")).await.unwrap().is_empty());
        assert_eq!(catalog.branches(None).await.unwrap().len(), 1);
        catalog.forget_branch("shop", "try").await.unwrap();
        assert!(catalog.branch("shop", "try").await.unwrap().is_none());
        catalog.claim_branch(&branch).await.unwrap();
    }
}
