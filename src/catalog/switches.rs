//! Switches of a live database under way: the intent recorded before anything is renamed
//! (see `ops::switch`), so that a switch a dead process left half done is finished or undone.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Catalog, on_pool};
use crate::error::Result;

/// Which switch it is: what a recovery does with each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SwitchKind {
    /// A restored copy replaces the live database; the media follow it.
    InPlace,
    /// The database an in-place restore moved aside is live again; the media go back.
    Undo,
    /// A branch's database replaces the live one (no media).
    SetLive,
}

impl SwitchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SwitchKind::InPlace => "in-place",
            SwitchKind::Undo => "undo",
            SwitchKind::SetLive => "set-live",
        }
    }

    fn parse(text: &str) -> Option<SwitchKind> {
        [SwitchKind::InPlace, SwitchKind::Undo, SwitchKind::SetLive].into_iter().find(|k| k.as_str() == text)
    }
}

/// A switch of workspace `workspace`: `live` becomes `aside` and `incoming` becomes `live`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchIntent {
    pub workspace: String,
    pub kind: SwitchKind,
    pub live: String,
    pub incoming: String,
    pub aside: String,
    /// The tag of the media folders or prefixes beside the live media (`None`: no media).
    pub media_tag: Option<String>,
    pub started_at: DateTime<Utc>,
    pub actor: Option<String>,
}

impl Catalog {
    /// Records a switch about to be made (one per workspace at a time).
    ///
    /// Errors: `Unavailable` for the catalog, `Refused` when one is recorded already.
    pub async fn record_switch(&self, intent: &SwitchIntent) -> Result<()> {
        let inserted = on_pool!(&self.pool, |p| sqlx::query(
            "INSERT INTO switch_intents (workspace, kind, live, incoming, aside, media_tag, started_at, actor) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&intent.workspace)
        .bind(intent.kind.as_str())
        .bind(&intent.live)
        .bind(&intent.incoming)
        .bind(&intent.aside)
        .bind(&intent.media_tag)
        .bind(intent.started_at)
        .bind(&intent.actor)
        .execute(p)
        .await
        .map(|r| r.rows_affected()));
        match inserted {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(crate::error::Error::new(
                crate::error::ErrorKind::Refused,
                format!("a switch of workspace {} is recorded as under way already", intent.workspace),
            )),
            Err(e) => Err(self.err("cannot record a switch", e)),
        }
    }

    /// The switch of `workspace` under way, if one is recorded.
    ///
    /// Errors: `Unavailable` for the catalog; `Integrity` for a kind this version does not know.
    pub async fn switch_intent(&self, workspace: &str) -> Result<Option<SwitchIntent>> {
        type Row = (String, String, String, String, Option<String>, DateTime<Utc>, Option<String>);
        let row: Option<Row> = on_pool!(&self.pool, |p| {
            sqlx::query_as(
            "SELECT kind, live, incoming, aside, media_tag, started_at, actor FROM switch_intents WHERE workspace = $1",
        )
        .bind(workspace)
        .fetch_optional(p)
        .await
        })
        .map_err(|e| self.err("cannot read the switches under way", e))?;
        let Some((kind, live, incoming, aside, media_tag, started_at, actor)) = row else { return Ok(None) };
        let kind = SwitchKind::parse(&kind).ok_or_else(|| {
            crate::error::Error::integrity(format!("the switch of workspace {workspace} under way is a {kind:?}"))
        })?;
        Ok(Some(SwitchIntent {
            workspace: workspace.to_string(),
            kind,
            live,
            incoming,
            aside,
            media_tag,
            started_at,
            actor,
        }))
    }

    /// Forgets the switch of `workspace` (done, or undone).
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn forget_switch(&self, workspace: &str) -> Result<()> {
        on_pool!(&self.pool, |p| sqlx::query("DELETE FROM switch_intents WHERE workspace = $1")
            .bind(workspace)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot forget a switch", e))?;
        Ok(())
    }
}
