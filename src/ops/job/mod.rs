//! Jobs: what every front end gets when it runs a long operation. [`recorded`] writes the
//! job into the catalog (who asked, when, how it ended), sends the operation's progress
//! to the job record at most once a second (so another front end can poll it), and stops
//! the operation when the core's stop signal fires. [`take_workspace`] is the rule "one
//! operation per workspace", taken by the operations themselves so that no front end can
//! forget it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Core;
use crate::actor::Actor;
use crate::catalog::lock::{Holder, Wait, WorkspaceLock};
use crate::catalog::{Catalog, JobEnd, JobProgress, JobStatus, NewJob, Trigger};
use crate::error::{ErrorKind, Result};
use crate::progress::{ProgressSink, ProgressState};

mod cancel;
pub use cancel::cancel;
use cancel::watch_for_cancel;

/// How long an operation waits for a busy workspace: `None` refuses at once,
/// `Some(ZERO)` waits as long as it takes, else up to that long (`--wait [DURATION]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitFor(#[serde(with = "crate::config::optional_duration_text")] pub Option<Duration>);

impl WaitFor {
    /// Refuse at once when the workspace is busy.
    pub const NO: WaitFor = WaitFor(None);
    /// Wait until it is free.
    pub const FOREVER: WaitFor = WaitFor(Some(Duration::ZERO));

    fn mode(self) -> Wait {
        match self.0 {
            None => Wait::No,
            Some(d) if d.is_zero() => Wait::Forever,
            Some(d) => Wait::Up(d),
        }
    }
}

/// Takes `workspace` for `operation` on behalf of `actor`, for as long as the returned lock
/// lives: snapshot, prune, base backup, pin changes and restores into the workspace's own
/// database never overlap, whichever process runs them.
///
/// Errors: `Busy` naming who holds it (`--wait` waits instead); `Interrupted` when the
/// core's stop signal fires while waiting.
pub async fn take_workspace(
    core: &Core,
    workspace: &str,
    operation: &str,
    actor: &Actor,
    wait: WaitFor,
) -> Result<WorkspaceLock> {
    let me = Holder::me(operation, actor);
    match core.config.catalog_location() {
        crate::config::CatalogLocation::File(path) => {
            WorkspaceLock::acquire(&path, workspace, &me, wait.mode(), core.stop()).await
        }
        // Every host's processes share the lock: it lives in the catalog.
        crate::config::CatalogLocation::Postgres { .. } => {
            WorkspaceLock::acquire_shared(core.catalog().await?, workspace, &me, wait.mode(), core.stop()).await
        }
    }
}

/// The largest report a job keeps as its result (JSON bytes).
const RESULT_KEPT: usize = 64 * 1024;

/// A job about to run, as the catalog lists it.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub workspace: String,
    pub operation: crate::operation::Operation,
    /// The snapshot kind, for snapshots.
    pub kind: Option<String>,
}

/// Runs `work` as a recorded job: a catalog row (running, then how it ended, with `end`
/// saying what a success produced; an `error` in it records a failed verdict) and progress into that row at most once a second. The
/// operation itself answers the core's stop signal (a restore first drops the database it
/// created); an `Interrupted` end is recorded as aborted. The catalog is optional: when it
/// cannot be opened the operation runs anyway, with a warning, because a command that
/// needs only the repository must not depend on it.
pub async fn recorded<T, F, Fut>(
    core: &Core,
    actor: &Actor,
    spec: JobSpec,
    work: F,
    end: impl FnOnce(&T) -> JobEnd,
) -> Result<T>
where
    T: Serialize,
    F: FnOnce(Core) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    begin(core, actor, spec).await.run(work, end).await
}

/// A job recorded as started, not yet run: a front end that answers before the work ends
/// (the API's `202`) takes its id, then runs it.
pub struct StartedJob {
    core: Core,
    actor: Actor,
    spec: JobSpec,
    catalog: Option<Catalog>,
    id: Option<i64>,
}

/// Records a job as started (see [`recorded`]).
pub async fn begin(core: &Core, actor: &Actor, spec: JobSpec) -> StartedJob {
    let catalog = match core.catalog().await {
        Ok(c) => Some(c.clone()),
        Err(e) => {
            tracing::warn!(error = %e.report(), "the catalog is not available; this job is not recorded");
            None
        }
    };
    let new = NewJob {
        workspace: spec.workspace.clone(),
        operation: spec.operation.job_name().into(),
        kind: spec.kind.clone(),
        trigger: Trigger::of(actor),
        policy: None,
        scheduled_for: None,
        started_at: chrono::Utc::now(),
        actor: Some(actor.to_string()),
    };
    let id = match &catalog {
        Some(c) => c.start_job(&new).await.inspect_err(|e| tracing::warn!(error = %e.report(), "not recorded")).ok(),
        None => None,
    };
    StartedJob { core: core.clone(), actor: actor.clone(), spec, catalog, id }
}

impl StartedJob {
    /// The job's id in the catalog (`None` when it could not be recorded).
    pub fn id(&self) -> Option<i64> {
        self.id
    }

    /// Runs the work: progress into the job's row, then its end and the audit record.
    pub async fn run<T, F, Fut>(self, work: F, end: impl FnOnce(&T) -> JobEnd) -> Result<T>
    where
        T: Serialize,
        F: FnOnce(Core) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let StartedJob { core, actor, spec, catalog, id } = self;
        // The job's own stop: the core's (Ctrl-C, a stopping server) or a stop another
        // process asked for through the catalog.
        let stop = core.stop().child_token();
        let (job_core, watcher) = match (&catalog, id) {
            (Some(c), Some(id)) => (
                core.with_stop(stop.clone()).with_progress(core.progress().with_sink(JobRecord::start(c.clone(), id))),
                Some(tokio::spawn(watch_for_cancel(c.clone(), id, stop.clone()))),
            ),
            _ => (core.with_stop(stop.clone()), None),
        };
        let progress = job_core.progress().clone();
        let result = work(job_core).await;
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        let (status, ending) = match &result {
            // An operation that ran to its end with a failing verdict (a drill whose
            // checks failed, a check that found problems) says so in `error`.
            Ok(value) => {
                let mut ending = end(value);
                ending.result = serde_json::to_value(value).ok().filter(|v| v.to_string().len() <= RESULT_KEPT);
                (if ending.error.is_some() { JobStatus::Failed } else { JobStatus::Succeeded }, ending)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {
                (JobStatus::Aborted, JobEnd { error: Some(e.report()), ..Default::default() })
            }
            // Refused before anything changed (a busy workspace): `status` does not
            // page anyone for it.
            Err(e) if matches!(e.kind(), ErrorKind::Refused | ErrorKind::Busy) => {
                (JobStatus::Refused, JobEnd { error: Some(e.report()), ..Default::default() })
            }
            Err(e) => (JobStatus::Failed, JobEnd { error: Some(e.report()), ..Default::default() }),
        };
        let mut audit_details = None;
        if let (Some(catalog), Some(id)) = (&catalog, id) {
            // The last state, written before the end (the sink's task may not get to it
            // before a command-line process exits).
            if let Err(e) = catalog.record_progress(id, &job_progress(&progress.state())).await {
                tracing::debug!(error = %e.report(), "cannot record a job's progress");
            }
            if let Err(e) = catalog.finish_job(id, status, &ending).await {
                tracing::warn!(error = %e.report(), "cannot record the end of the job in the catalog");
            }
            audit_details = Some(audit_details_of(id, status, &ending));
        }
        if spec.operation != crate::operation::Operation::Check {
            let details = audit_details.unwrap_or_else(|| serde_json::json!({}));
            // A failing verdict is a failure in the trail too, not `ok`.
            let audited: Result<()> = match (&result, &ending.error) {
                (Ok(_), None) => Ok(()),
                (Ok(_), Some(verdict)) => Err(crate::error::Error::integrity(verdict.clone())),
                (Err(e), _) => Err(crate::error::Error::new(e.kind(), e.message().to_string())),
            };
            super::audit::record(&core, &actor, spec.operation, &spec.workspace, &audited, details).await;
        }
        result
    }
}

/// What the audit trail keeps of a job's end: its id, status and what it produced.
fn audit_details_of(id: i64, status: JobStatus, ending: &JobEnd) -> serde_json::Value {
    let mut details = serde_json::json!({"job": id, "status": status.as_str()});
    let produced = [
        ("snapshot", ending.snapshot_id.as_ref().map(|s| serde_json::json!(s))),
        ("bytes", ending.bytes.map(|b| serde_json::json!(b))),
        ("error", ending.error.as_ref().map(|e| serde_json::json!(e))),
    ];
    for (key, value) in produced {
        if let Some(v) = value {
            details[key] = v;
        }
    }
    details
}

/// A progress sink that writes into a job's catalog row (through a task: the operation
/// never waits for SQLite).
pub struct JobRecord {
    tx: tokio::sync::mpsc::UnboundedSender<ProgressState>,
}

impl JobRecord {
    /// Starts recording progress into job `id`; the task ends when the sink is dropped.
    pub fn start(catalog: Catalog, id: i64) -> Arc<JobRecord> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ProgressState>();
        tokio::spawn(async move {
            while let Some(mut state) = rx.recv().await {
                // Only the newest state matters.
                while let Ok(newer) = rx.try_recv() {
                    state = newer;
                }
                if let Err(e) = catalog.record_progress(id, &job_progress(&state)).await {
                    tracing::debug!(error = %e.report(), "cannot record a job's progress");
                }
            }
        });
        Arc::new(JobRecord { tx })
    }
}

/// A progress state as the job record keeps it: "prefix: phase", counts, now.
fn job_progress(state: &ProgressState) -> JobProgress {
    JobProgress {
        phase: [state.prefix.as_str(), state.phase.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(": "),
        bytes_done: state.bytes_done,
        bytes_total: state.bytes_total,
        tables_done: state.tables_done,
        tables_total: state.tables_total,
        updated_at: chrono::Utc::now(),
    }
}

impl ProgressSink for JobRecord {
    fn update(&self, state: &ProgressState) {
        let _ = self.tx.send(state.clone());
    }
}
