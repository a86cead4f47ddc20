//! Function stacks restored from a snapshot into the live database.

#[allow(clippy::wildcard_imports)]
use super::*;

/// `restore --stacks-only`: makes every function stack live again as it was at the
/// snapshot, in the live workspace database, as new changes (history kept: each change
/// says which snapshot it came from). Stacks created after the snapshot are left alone.
///
/// Errors: `NotFound` when the snapshot has no function stacks; `Integrity` for damaged
/// objects; `Usage` when the workspace is not configured.
pub async fn restore_stacks(
    core: &Core,
    snapshot: &str,
    workspace: Option<&str>,
    actor: &crate::actor::Actor,
) -> Result<Vec<crate::stacks::log::PutOutcome>> {
    let (workspace, snapshot) = super::super::snapshot::resolve(core, snapshot, workspace).await?;
    let manifest = core.repo.read_manifest(&workspace, &snapshot, &core.identities()?).await?;
    let from = SnapshotSource::new(&core.repo, &core.identities()?, &manifest);
    let no_stacks = |e: Error| match e.kind() {
        ErrorKind::NotFound => Error::not_found(format!("snapshot {} has no function stacks", manifest.id)),
        _ => e,
    };
    let stacks = load::table_rows(&from, "tidemark", "stacks").await.map_err(no_stacks)?;
    let changes = load::table_rows(&from, "tidemark", "stack_changes").await.map_err(no_stacks)?;
    use crate::stacks::snapshot::{Rows, live_documents};
    let live = live_documents(
        Rows { rows: &stacks.rows, columns: &stacks.columns },
        Rows { rows: &changes.rows, columns: &changes.columns },
        &snapshot,
    )?;
    let mut conn = core.workspace(&workspace)?.conn()?.connect().await?;
    crate::stacks::install(&mut conn).await?;
    let message = format!("restore from snapshot {snapshot}");
    let reverted_to = format!("snapshot:{snapshot}");
    let by = crate::stacks::log::ChangedBy { author: &actor.name, actor };
    let mut out = Vec::new();
    for (stack, doc) in &live {
        out.push(crate::stacks::log::put(&mut conn, stack, doc, by, Some(&message), Some(&reverted_to)).await?);
    }
    ConnSpec::close(conn).await;
    let result = Ok(out);
    let details = serde_json::json!({"snapshot": snapshot, "stacks": live.len()});
    super::super::audit::record(core, actor, crate::operation::Operation::RestoreStacks, &workspace, &result, details)
        .await;
    result
}
