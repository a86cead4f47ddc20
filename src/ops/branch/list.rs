//! `branch list`: the catalog's branches, and those earlier versions wrote into the config.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) async fn database_size(server: &ConnSpec, db: &str) -> Option<i64> {
    let mut conn = server.connect().await.ok()?;
    let size = sqlx::query_scalar("SELECT pg_database_size($1::text::name)").bind(db).fetch_one(&mut conn).await.ok();
    ConnSpec::close(conn).await;
    size
}

/// The branches of `workspace` (all, when `None`): the catalog's, and those an earlier
/// version wrote into tidemark.toml.
///
/// Errors: `NotFound` for an unknown workspace; `Unavailable` for the catalog.
pub async fn list(core: &Core, workspace: Option<&str>, _actor: &Actor) -> Result<Vec<BranchInfo>> {
    if let Some(w) = workspace {
        core.workspace(w)?;
    }
    let mut out = Vec::new();
    for row in core.catalog().await?.branches(workspace).await? {
        let size = match core.workspace(&row.workspace).and_then(|w| w.conn().cloned()) {
            Ok(server) => database_size(&server, &row.database).await,
            Err(_) => None,
        };
        out.push(info_of(&row, row.state, size));
    }
    for (entry, ws) in &core.config.config.workspaces {
        let Some(of) = &ws.branch_of else { continue };
        if workspace.is_some_and(|w| w != of) {
            continue;
        }
        let spec = ConnSpec::parse(&ws.database_url, ws.password.as_ref()).ok();
        let database = spec.as_ref().and_then(ConnSpec::database).unwrap_or_default();
        let size = match &spec {
            Some(s) => database_size(s, &database).await,
            None => None,
        };
        let created_at = ws
            .branch_created
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        out.push(BranchInfo {
            workspace: entry.clone(),
            branch_of: of.clone(),
            name: entry.strip_prefix(&format!("{of}--")).unwrap_or(entry).to_string(),
            database,
            source: ws.branch_source.clone().unwrap_or_default(),
            created_at,
            age_seconds: created_at.map(|c| (Utc::now() - c).num_seconds()),
            size_bytes: size,
            state: BranchState::Ready,
            in_config: true,
        });
    }
    Ok(out)
}
