//! WAL between copies: what `serve` sends to the copies with `wal-interval`.

use super::{between, open_copy, own_recipients, record_lag};
use crate::copies::CopyTally;
use crate::error::Result;
use crate::ops::Core;

/// The WAL of `workspace` that copy `name` lacks, sent (see [`crate::copies::Transfer::wal`]),
/// and the copy's lag recorded: one round of what `serve` does every `wal-interval`.
///
/// Errors: those of [`copy`].
pub async fn wal_once(core: &Core, workspace: &str, name: &str) -> Result<CopyTally> {
    let to = open_copy(core, name).await?;
    let identities = core.identities()?;
    let reseal = own_recipients(core, name)?;
    let tally = between(core, &to, &identities, workspace, reseal.as_ref()).wal().await?;
    record_lag(core, workspace, name, &to).await?;
    Ok(tally)
}

/// WAL to the copies that ask for it (`wal-interval`), for as long as the daemon runs:
/// every interval, each workspace's newly archived WAL; a round that fails is logged and
/// the next one sends what is missing. (Every daemon of a fleet does it; what one sent,
/// the others find there.)
pub async fn wal_forever(core: Core, shutdown: tokio_util::sync::CancellationToken) {
    let rounds = core.config.config.copies.iter().filter_map(|(name, c)| c.wal_interval.map(|i| (name.clone(), i)));
    let loops = rounds.map(|(name, every)| {
        let (core, shutdown) = (core.clone(), shutdown.clone());
        async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                for workspace in core.config.config.workspaces.keys() {
                    match wal_once(&core, workspace, &name).await {
                        Ok(t) if t.problems.is_empty() => {}
                        Ok(t) => tracing::warn!(workspace, copy = %name, problems = ?t.problems, "WAL not copied"),
                        Err(e) => tracing::warn!(workspace, copy = %name, error = %e.report(), "WAL not copied"),
                    }
                }
            }
        }
    });
    futures::future::join_all(loops).await;
}
