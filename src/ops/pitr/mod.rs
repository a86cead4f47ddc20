//! `pitr window|restore|mark`: what moments can be restored, restoring one into a new data
//! directory (base backup + recovery configured to fetch WAL from the repository), and
//! named restore points.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

mod options;
pub mod past;
mod restore;

pub use options::{DEFAULT_PREFETCH, PitrRestoreOptions, PitrRestoreReport};
pub use restore::{RECOVERY_CONTEXT, restore};

use super::Core;
use crate::actor::Actor;
use crate::error::{Error, ErrorKind, Result};
use crate::keys::Identities;
use crate::pg::ConnSpec;
use crate::progress::Progress;
use crate::repo::layout;
use crate::wal::recovery::{self, Reached};
use crate::wal::timeline::{self, Histories, Leg};
use crate::wal::window::{self, Target, Window};
use crate::wal::{Lsn, archive, base};

/// What `pitr window` takes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WindowOptions {
    pub workspace: String,
}

/// The window of a workspace. Errors: `Key` without an identity (base backup manifests
/// are encrypted), `Unavailable` for the store.
pub async fn window(core: &Core, opts: &WindowOptions, _actor: &Actor) -> Result<Window> {
    let workspace = opts.workspace.as_str();
    core.workspace(workspace)?;
    Ok(Physical::load(core, &core.identities()?, workspace).await?.window())
}

/// What the window is computed from: a workspace's base backups, archived WAL files and
/// timeline history files.
pub(crate) struct Physical {
    pub bases: Vec<base::BaseManifest>,
    pub archived: Vec<archive::Archived>,
    pub histories: Histories,
    /// Base backups left out, with why: each is named when no other serves a target.
    pub damaged: Vec<(String, String)>,
}

impl Physical {
    /// A base backup whose manifest cannot be read is left out (logged; `check` reports
    /// it), so an older good one still serves.
    ///
    /// Errors: `Key` without the identity (manifests and history files are encrypted),
    /// `Integrity` for a damaged history file, `Unavailable` for the store.
    pub async fn load(core: &Core, identities: &Identities, workspace: &str) -> Result<Physical> {
        let read = base::read_all(&core.repo, identities, workspace).await?;
        for d in &read.damaged {
            tracing::warn!(workspace, base_backup = %d.id, problem = %d.problem, "a base backup's manifest cannot be read; it is left out");
        }
        let mut damaged: Vec<(String, String)> =
            read.damaged.iter().map(|d| (d.id.clone(), d.problem.clone())).collect();
        // An incremental one whose chain is broken serves nothing: an older one serves.
        let all = read.items;
        let mut bases = Vec::new();
        for b in &all {
            match crate::wal::chain::chain_of(b, &all) {
                Ok(_) => bases.push(b.clone()),
                Err(e) => {
                    tracing::warn!(workspace, base_backup = %b.id, problem = %e.message(), "left out: its chain is broken");
                    damaged.push((b.id.clone(), e.message().to_string()));
                }
            }
        }
        let archived = archive::list(&core.repo, workspace).await?;
        let histories = archive::histories(&core.repo, identities, workspace, &archived).await?;
        Ok(Physical { bases, archived, histories, damaged })
    }

    pub fn window(&self) -> Window {
        window::compute(&self.bases, &self.archived, &self.histories)
    }

    /// The timelines recovery from `base` replays.
    fn path(&self, base: &base::BaseManifest) -> Vec<Leg> {
        timeline::path(&self.histories, base.timeline, base.start_lsn, base.end_lsn)
    }
}

/// A restore point tidemark made.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RestorePoint {
    pub name: String,
    pub lsn: Lsn,
    pub time: DateTime<Utc>,
}

/// What `pitr mark` takes; the API's request body (`POST .../restore-points`) as it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MarkOptions {
    /// The workspace (the API's path names it).
    #[serde(skip)]
    pub workspace: String,
    /// The restore point's name (1 to 63 bytes, no control characters; never reused).
    #[schema(required = true, pattern = "^[^\\u0000-\\u001f\\u007f]{1,63}$")]
    pub name: String,
}

/// Creates a named restore point on the workspace's server (`pg_create_restore_point`),
/// switches to a new WAL segment so it is archived at once, and records it.
///
/// Errors: `AlreadyExists` for a name already recorded (never replaced); `Database` when
/// the role may not (superuser or an explicit grant is needed).
pub async fn mark(core: &Core, opts: &MarkOptions, actor: &Actor) -> Result<RestorePoint> {
    let (workspace, name) = (opts.workspace.as_str(), opts.name.as_str());
    if name.is_empty() || name.len() > 63 || name.chars().any(char::is_control) {
        return Err(Error::usage("a restore point name has 1 to 63 bytes and no control characters"));
    }
    let ws = core.workspace(workspace)?;
    // A name already recorded is refused before the server gets a second point of that name.
    if core.repo.stored_size(&layout::restore_point(workspace, name)).await?.is_some() {
        return Err(used_name(Error::new(ErrorKind::AlreadyExists, "exists"), name));
    }
    let spec = ws.conn()?.clone();
    let mut conn = spec.connect().await?;
    let grant = |e: Error| {
        if e.message().contains("SQLSTATE 42501") {
            e.context(format!(
                "a restore point needs a superuser, or: GRANT EXECUTE ON FUNCTION pg_create_restore_point(text), \
                 pg_switch_wal() TO {}; (see docs/guide/10-operating.md, Privileges)",
                spec_user(&spec)
            ))
        } else {
            e
        }
    };
    let (lsn, time): (String, DateTime<Utc>) = sqlx::query_as("SELECT pg_create_restore_point($1)::text, now()")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| grant(e.into()))?;
    sqlx::query("SELECT pg_switch_wal()").execute(&mut conn).await.map_err(|e| grant(e.into()))?;
    let point = RestorePoint { name: name.to_string(), lsn: lsn.parse()?, time };
    let key = layout::restore_point(workspace, name);
    // Write-once: a restore point recorded under this name at the same moment is not replaced.
    let stored = core.repo.put_sealed(&key, &point, core.recipients()?).await.map_err(|e| used_name(e, name));
    let details = serde_json::json!({"lsn": point.lsn.to_string(), "time": point.time});
    super::audit::record(
        core,
        actor,
        crate::operation::Operation::RestorePoint,
        &format!("{workspace}/{name}"),
        &stored,
        details,
    )
    .await;
    stored.map(|()| point)
}

/// A restore point name that is taken: `AlreadyExists`, saying what to do.
fn used_name(e: Error, name: &str) -> Error {
    if e.kind() != ErrorKind::AlreadyExists {
        return e;
    }
    Error::new(
        ErrorKind::AlreadyExists,
        format!(
            "a restore point named {name:?} is already recorded; restore points are never replaced (restoring \
             `--name {name}` must mean one moment): choose another name"
        ),
    )
}

/// The role a connection spec names, for GRANT lines in messages.
fn spec_user(spec: &ConnSpec) -> String {
    url::Url::parse(&spec.display())
        .ok()
        .map(|u| u.username().to_string())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "<role>".into())
}

/// Whether this core's repository holds what a point-in-time restore of `workspace` to
/// `target` needs: a readable base backup and the WAL from it to the target (what a
/// command asks of each copy when the primary is away).
///
/// Errors: `Key` without the identity; those of the store.
pub async fn reaches(core: &Core, workspace: &str, target: &Target) -> Result<bool> {
    let physical = Physical::load(core, &core.identities()?, workspace).await?;
    let target = match target {
        Target::Name(name, None) => {
            Target::Name(name.clone(), recorded_point(core, workspace, name).await?.map(|p| p.lsn))
        }
        other => other.clone(),
    };
    Ok(window::choose(&physical.window(), &physical.bases, &target).is_ok())
}

async fn recorded_point(core: &Core, workspace: &str, name: &str) -> Result<Option<RestorePoint>> {
    let key = layout::restore_point(workspace, name);
    core.repo.read_sealed(&key, &core.identities()?, &format!("restore point {name}")).await
}

/// The restore points recorded for a workspace, oldest first (the console's timeline).
///
/// Errors: those of the repository; `Integrity` for a point that cannot be read.
pub async fn points(core: &Core, workspace: &str, _actor: &Actor) -> Result<Vec<RestorePoint>> {
    core.workspace(workspace)?;
    let identities = core.identities()?;
    let mut points = Vec::new();
    for object in core.repo.list(&layout::restore_points(workspace)).await? {
        if let Some(point) = core.repo.read_sealed(&object.key, &identities, "a restore point").await? {
            points.push(point);
        }
    }
    points.sort_by_key(|p: &RestorePoint| p.time);
    Ok(points)
}
