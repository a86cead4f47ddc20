//! Stopping a running job: in this process at once, or through the catalog when another
//! process runs it (which looks for it while the job runs).

#[allow(clippy::wildcard_imports)]
use super::*;

/// Stops a running job on behalf of `actor`: it needs the permission that starting that
/// exact operation needs (`Operation::cancel_permission`), and a job whose operation this
/// version does not know is refused, never guessed at. `stop` is the job's stop signal
/// when this process runs it. The request is audited with the canceller, whatever it got.
///
/// Errors: `Forbidden` without the permission or for an unknown operation; `Refused` when
/// the job is not running; `Unavailable` when another process runs it and the catalog
/// cannot take the request.
pub async fn cancel(
    core: &Core,
    job: &crate::catalog::Job,
    actor: &Actor,
    stop: Option<tokio_util::sync::CancellationToken>,
) -> Result<()> {
    use crate::error::Error;
    let operation = crate::operation::Operation::from_job_name(&job.operation);
    let own = job.actor.as_deref() == Some(actor.to_string().as_str());
    let allowed = match operation {
        Some(op) => crate::access::check(&actor.grant(), op.cancel_permission(own), Some(&job.workspace)),
        None => Err(Error::new(
            ErrorKind::Forbidden,
            format!("job {} is a {:?}, which this version cannot stop", job.id, job.operation),
        )),
    };
    let done = match (allowed, stop) {
        (Err(e), _) => Err(e),
        (Ok(()), Some(stop)) => {
            stop.cancel();
            Ok(())
        }
        // Run by another process (another API server, a command line, the daemon): asked
        // through the catalog, which that process reads while the job runs.
        (Ok(()), None) => {
            let asked = async { core.catalog().await?.request_cancel(job.id, chrono::Utc::now()).await }.await;
            match asked {
                Ok(true) => Ok(()),
                Ok(false) => Err(Error::new(ErrorKind::Refused, format!("job {} is not running", job.id))),
                Err(e) => Err(e),
            }
        }
    };
    let details = serde_json::json!({"job": job.id, "operation": job.operation, "started_by": job.actor});
    let target = format!("{}/job/{}", job.workspace, job.id);
    crate::ops::audit::record(core, actor, crate::operation::Operation::JobCancel, &target, &done, details).await;
    done
}

/// How often a running job looks for a stop asked through the catalog.
const CANCEL_POLL: Duration = Duration::from_secs(2);

/// Stops job `id` when another process asks for it through the catalog (until `stop`
/// fires for another reason, or the job ends and this task is aborted).
pub(super) async fn watch_for_cancel(catalog: Catalog, id: i64, stop: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(CANCEL_POLL) => {}
            () = stop.cancelled() => return,
        }
        match catalog.cancel_requested(id).await {
            Ok(true) => {
                tracing::info!(job = id, "stopping the job: another process asked for it");
                stop.cancel();
                return;
            }
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e.report(), "cannot look for a stop of the job"),
        }
    }
}
