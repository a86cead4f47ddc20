//! The incoming database of an in-place restore, made beside the live one: from a
//! snapshot, or from a moment.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The snapshot restored into `target` (media into the incoming folder), then the drill's
/// content checks. Returns the tables and sequences checked. A copy that fails or differs
/// is dropped again.
pub(super) async fn from_snapshot(
    core: &Core,
    opts: &InPlaceOptions,
    actor: &Actor,
    manifest: &crate::repo::manifest::Manifest,
    target: &crate::pg::ConnSpec,
    media: Option<&MediaSwap>,
) -> Result<(usize, RestoreReport)> {
    let restore_opts = RestoreOptions {
        snapshot: manifest.id.clone(),
        workspace: Some(manifest.workspace.clone()),
        target: crate::restore::RestoreTarget::Resolved { conn: target.clone(), reserved: true },
        jobs: opts.jobs,
        no_media: media.is_none(),
        media_target: media.map(MediaSwap::incoming_target),
        ..Default::default()
    };
    let restored = super::super::restore::restore(core, &restore_opts, actor).await?;
    let verified = crate::drill::verify::verify_database(target, manifest).await;
    match verified {
        Ok(v) if v.ok => Ok((v.tables.len(), restored)),
        outcome => {
            let _ = database::drop_database(target).await;
            let why = match outcome {
                Ok(v) => {
                    let bad: Vec<String> =
                        v.tables.iter().filter(|t| !t.ok).map(|t| format!("{}.{}", t.schema, t.name)).collect();
                    format!("the restored copy differs from the snapshot in {}", bad.join(", "))
                }
                Err(e) => format!("the restored copy could not be checked: {}", e.message()),
            };
            Err(Error::integrity(format!("{why}; it was dropped")))
        }
    }
}

/// The workspace recovered to `time`, its database copied into `target` and checked (see
/// [`super::super::restore::copy_of_moment`]).
pub(super) async fn from_time(
    core: &Core,
    opts: &InPlaceOptions,
    actor: &Actor,
    workspace: &str,
    time: chrono::DateTime<chrono::Utc>,
    target: &crate::pg::ConnSpec,
) -> Result<(usize, super::super::pitr::PitrRestoreReport)> {
    let copied =
        super::super::restore::copy_of_moment(core, workspace, time, opts.tidemark_command.clone(), target, actor);
    copied.await.map(|c| (c.compared, c.recovery))
}
