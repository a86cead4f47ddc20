//! The daemon loop of `tidemark serve`: when each schedule's next slot comes (its cron line
//! in its time zone), run its job; catch up once on a slot missed while the daemon was
//! down; never two jobs of one workspace at once; at most N jobs at once overall; retry
//! temporary failures with backoff, then record the job as failed and notify; on shutdown,
//! start nothing new, let running jobs finish up to a timeout, then ask them to stop and
//! clean up (a drill removes its throwaway) and abort what still runs after a grace.
//!
//! What a job does is a [`Runner`]'s business (`ops::serve` takes a snapshot and applies
//! retention); time comes from a [`Clock`], so tests move days in milliseconds.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::clock::Clock;
use super::policy::Policy;
use super::webhook::{JobEvent, Notifier, Webhook};
use crate::catalog::{Catalog, JobEnd, JobStatus, NewJob, Trigger};
use crate::config::DaemonConfig;
use crate::error::{Error, ErrorKind, Result};

/// One schedule the daemon serves: a workspace and a policy with a cron line.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub workspace: String,
    pub policy: Policy,
}

/// A job handed to the runner.
#[derive(Debug, Clone)]
pub struct ScheduledJob {
    pub workspace: String,
    pub policy: String,
    pub action: super::policy::Action,
    /// The snapshot kind (`None` for a base backup).
    pub kind: Option<crate::repo::manifest::SnapshotKind>,
    /// Drill the snapshot right after taking it.
    pub drill_after: bool,
    /// Copy it to the copies right after (see [`super::policy::Policy::copy_after`]).
    pub copy_after: bool,
    /// The copy a copy sends to (`None`: every copy).
    pub to: Option<String>,
    /// The copy a drill drills (`None`: the primary).
    pub repository: Option<String>,
    /// Its drill also checks every row is in each index (see [`super::policy::Policy::heapallindexed`]).
    pub heapallindexed: bool,
    /// A base backup incremental, with chains up to `max_chain` (see [`super::policy::Policy::incremental`]).
    pub incremental: bool,
    pub max_chain: Option<u32>,
    /// The cron slot served (for a catch-up: the moment the daemon caught up).
    pub slot: DateTime<Utc>,
    /// The cron slot it is due for (for a catch-up: the first one missed): what daemons
    /// sharing a catalog claim, so that one of them runs it.
    pub due: DateTime<Utc>,
    pub trigger: Trigger,
}

impl ScheduledJob {
    /// The job's operation.
    pub fn operation(&self) -> crate::operation::Operation {
        match self.action {
            super::policy::Action::Snapshot => crate::operation::Operation::Snapshot,
            super::policy::Action::BaseBackup => crate::operation::Operation::BaseBackup,
            super::policy::Action::Drill => crate::operation::Operation::Drill,
            super::policy::Action::Copy => crate::operation::Operation::Copy,
        }
    }
}

/// What a successful job produced.
#[derive(Debug, Clone, Default)]
pub struct JobOutcome {
    pub snapshot_id: Option<String>,
    pub bytes: Option<u64>,
    /// Something went wrong after the main work succeeded (retention, say).
    pub warning: Option<String>,
}

/// Does the work of a job. `now` is the clock's time when the attempt starts.
pub trait Runner: Send + Sync + 'static {
    fn run(&self, job: &ScheduledJob, now: DateTime<Utc>) -> BoxFuture<'static, Result<JobOutcome>>;

    /// Asks the running jobs to stop and clean up after themselves (the shutdown timeout
    /// passed). Returns whether they were asked: they then get [`STOP_GRACE`] to end with
    /// an `Interrupted` error before they are aborted outright.
    fn stop_jobs(&self) -> bool {
        false
    }
}

/// How long jobs asked to stop at shutdown get to clean up (a drill stops its throwaway
/// cluster and removes its folder in a second or two).
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// What a daemon run did, reported when it stops.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DaemonReport {
    pub schedules: usize,
    pub jobs_started: u64,
    /// Jobs still running when the shutdown timeout passed, aborted (no manifest written).
    pub jobs_aborted: u64,
}

pub struct Daemon {
    pub clock: Arc<dyn Clock>,
    pub catalog: Catalog,
    pub runner: Arc<dyn Runner>,
    pub schedules: Vec<Schedule>,
    pub settings: DaemonConfig,
    pub webhook: Option<Webhook>,
}

/// What every job task shares.
struct Shared {
    clock: Arc<dyn Clock>,
    catalog: Catalog,
    runner: Arc<dyn Runner>,
    settings: DaemonConfig,
    notifier: Option<Notifier>,
    limit: Semaphore,
    shutdown: CancellationToken,
}

struct Entry {
    schedule: Schedule,
    /// When it runs next, why, and the cron slot it serves; `None` while its job runs.
    next: Option<(DateTime<Utc>, Trigger, DateTime<Utc>)>,
    /// The cron slot of its last job, and why it ran.
    last_due: (DateTime<Utc>, Trigger),
}

impl Daemon {
    /// Runs until `shutdown` is cancelled, then winds down (see the module docs).
    ///
    /// Errors: `Unavailable` when the catalog cannot be read at start; later catalog
    /// errors are logged and do not stop backups.
    pub async fn run(self, shutdown: CancellationToken) -> Result<DaemonReport> {
        // A member of the catalog's fleet: its slots are claimed under this member, and it
        // reaps the members that die (with a SQLite catalog, the only one).
        let me = self.catalog.join(crate::catalog::fleet::Role::Daemon).await?;
        let mut serves: Vec<String> = self.schedules.iter().map(|s| s.workspace.clone()).collect();
        serves.sort();
        serves.dedup();
        self.catalog.set_serves(me, &serves).await?;
        let now = self.clock.now();
        let orphans =
            self.catalog.abort_orphaned_daemon_jobs(now, "the daemon stopped before the job finished").await?;
        if orphans > 0 {
            tracing::warn!(jobs = orphans, "jobs of a previous daemon never finished; recorded as aborted");
        }
        let killed = self.catalog.abort_jobs_of_dead_processes(now).await?;
        if killed > 0 {
            tracing::warn!(jobs = killed, "jobs whose tidemark process is gone never finished; recorded as aborted");
        }
        let mut entries = Vec::with_capacity(self.schedules.len());
        for schedule in self.schedules {
            let next = first_run(&self.catalog, &schedule, now).await?;
            match next {
                Some((at, trigger, _)) => tracing::info!(
                    workspace = %schedule.workspace, policy = %schedule.policy.name, next = %at,
                    trigger = trigger.as_str(), "schedule loaded"
                ),
                None => tracing::warn!(workspace = %schedule.workspace, policy = %schedule.policy.name,
                    "schedule has no future run"),
            }
            entries.push(Entry { schedule, next, last_due: (now, Trigger::Schedule) });
        }
        let mut report = DaemonReport { schedules: entries.len(), ..Default::default() };
        let (notifier, delivery) = self.webhook.map(Notifier::start).unzip();
        let shared = Arc::new(Shared {
            clock: self.clock.clone(),
            catalog: self.catalog.clone(),
            runner: self.runner,
            limit: Semaphore::new(self.settings.max_concurrent_jobs.max(1)),
            settings: self.settings,
            notifier,
            shutdown: shutdown.clone(),
        });

        // Jobs of the schedules (their entry's index, and whether this daemon ran the slot)
        // and slots taken over from a dead daemon.
        let mut running: JoinSet<Option<(usize, bool)>> = JoinSet::new();
        let mut busy: HashSet<String> = HashSet::new();
        // Every third of the lease timeout: look for dead members of the fleet.
        let mut fleet_tick = tokio::time::interval(shared.catalog.lease_timeout() / 3);
        fleet_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let now = self.clock.now();
            for (index, entry) in entries.iter_mut().enumerate() {
                let Some((at, trigger, due)) = entry.next else { continue };
                if at > now || busy.contains(&entry.schedule.workspace) {
                    continue;
                }
                busy.insert(entry.schedule.workspace.clone());
                entry.next = None;
                entry.last_due = (due, trigger);
                let job = ScheduledJob {
                    workspace: entry.schedule.workspace.clone(),
                    policy: entry.schedule.policy.name.clone(),
                    action: entry.schedule.policy.action,
                    kind: entry.schedule.policy.kind,
                    drill_after: entry.schedule.policy.drill_after,
                    copy_after: entry.schedule.policy.copy_after,
                    to: entry.schedule.policy.to.clone(),
                    repository: entry.schedule.policy.repository.clone(),
                    heapallindexed: entry.schedule.policy.heapallindexed,
                    incremental: entry.schedule.policy.incremental,
                    max_chain: entry.schedule.policy.max_chain,
                    slot: if trigger == Trigger::CatchUp { now } else { at },
                    due,
                    trigger,
                };
                report.jobs_started += 1;
                let shared = shared.clone();
                running.spawn(async move {
                    let ran = execute(&shared, job, false).await;
                    Some((index, ran))
                });
            }
            let wake = entries
                .iter()
                .filter(|e| !busy.contains(&e.schedule.workspace))
                .filter_map(|e| e.next.map(|(at, _, _)| at))
                .min();
            let sleep = match wake {
                Some(at) => self.clock.sleep_until(at),
                None => Box::pin(std::future::pending()),
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                done = running.join_next(), if !running.is_empty() => {
                    let (index, ran, due) = match done {
                        Some(Ok(Some((index, ran)))) => (index, ran, entries[index].last_due),
                        Some(Ok(None)) | None => continue,
                        Some(Err(e)) => return Err(Error::internal(format!("a scheduled job panicked: {e}"))),
                    };
                    let entry = &mut entries[index];
                    busy.remove(&entry.schedule.workspace);
                    // Ran it (or another daemon caught up): the next slot strictly after now (a
                    // job that overran its next slots does not pile up). Another daemon has
                    // it: the slot after it, even if that has come meanwhile (a daemon of the
                    // fleet may be free for it).
                    let after = match due {
                        (due, Trigger::Schedule) if !ran => due,
                        _ => self.clock.now(),
                    };
                    entry.next = entry.schedule.policy.next_run(after).map(|at| (at, Trigger::Schedule, at));
                }
                _ = fleet_tick.tick() => {
                    for job in take_over(&shared, &entries).await {
                        report.jobs_started += 1;
                        let shared = shared.clone();
                        running.spawn(async move {
                            execute(&shared, job, true).await;
                            None
                        });
                    }
                }
                () = sleep => {}
            }
        }

        tracing::info!(running = running.len(), timeout = ?shared.settings.shutdown_timeout,
            "shutting down: no new jobs; waiting for running ones");
        let deadline = tokio::time::sleep(shared.settings.shutdown_timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                done = running.join_next() => {
                    if done.is_none() {
                        break;
                    }
                }
                () = &mut deadline => {
                    if shared.runner.stop_jobs() {
                        tracing::warn!(running = running.len(), grace = ?STOP_GRACE,
                            "the shutdown timeout passed: asking the running jobs to stop and clean up");
                        let grace = tokio::time::sleep(STOP_GRACE);
                        tokio::pin!(grace);
                        loop {
                            tokio::select! {
                                done = running.join_next() => match done {
                                    Some(_) => report.jobs_aborted += 1,
                                    None => break,
                                },
                                () = &mut grace => break,
                            }
                        }
                    }
                    running.abort_all();
                    while running.join_next().await.is_some() {}
                    report.jobs_aborted += shared
                        .catalog
                        .abort_orphaned_daemon_jobs(self.clock.now(), "aborted at shutdown: still running after the shutdown timeout")
                        .await?;
                    tracing::warn!(jobs = report.jobs_aborted,
                        "jobs aborted at shutdown; they wrote no manifest and their objects are collected by prune");
                    break;
                }
            }
        }
        // Every job has ended: the last sender goes with `shared`, and what is queued is
        // delivered (for a while).
        drop(shared);
        if let Some(delivery) = delivery {
            delivery.finish().await;
        }
        self.catalog.leave("the daemon stopped").await;
        tracing::info!("stopped");
        Ok(report)
    }
}

/// A schedule's first run after the daemon starts: the next slot after the last one it
/// served, at once (once) if that slot passed while the daemon was down. A schedule seen
/// for the first time starts counting now.
async fn first_run(
    catalog: &Catalog,
    schedule: &Schedule,
    now: DateTime<Utc>,
) -> Result<Option<(DateTime<Utc>, Trigger, DateTime<Utc>)>> {
    let (workspace, policy) = (&schedule.workspace, &schedule.policy);
    let last = match catalog.last_slot(workspace, &policy.name).await? {
        Some(last) => last,
        None => {
            catalog.set_last_slot(workspace, &policy.name, now, "registered", None).await?;
            now
        }
    };
    Ok(policy
        .next_run(last)
        .map(|at| if at <= now { (now, Trigger::CatchUp, at) } else { (at, Trigger::Schedule, at) }))
}

/// The fleet's watch, every third of the lease timeout: members whose heartbeat stopped
/// are reaped (their running jobs recorded as aborted), and the slots they (or a daemon
/// that stopped mid-job) claimed without finishing are taken over: returned to run now,
/// as catch-ups of their slot.
async fn take_over(shared: &Shared, entries: &[Entry]) -> Vec<ScheduledJob> {
    let Some(me) = shared.catalog.member_id() else { return Vec::new() };
    match shared.catalog.reap(me).await {
        Ok(reaped) => {
            for dead in reaped {
                tracing::warn!(member = dead.id, host = %dead.host, pid = dead.pid, jobs_aborted = dead.jobs_aborted,
                    "a member of the fleet stopped renewing its lease: its running jobs are recorded as aborted");
            }
        }
        Err(e) => tracing::warn!(error = %e.report(), "cannot look for dead members of the fleet; retrying"),
    }
    let claims = match shared.catalog.take_over_slots(me).await {
        Ok(claims) => claims,
        Err(e) => {
            tracing::warn!(error = %e.report(), "cannot take over a dead member's slots; retrying");
            return Vec::new();
        }
    };
    let now = shared.clock.now();
    let mut jobs = Vec::new();
    for claim in claims {
        let known =
            entries.iter().find(|e| e.schedule.workspace == claim.workspace && e.schedule.policy.name == claim.policy);
        let Some(entry) = known else {
            tracing::error!(workspace = %claim.workspace, policy = %claim.policy, slot = %claim.slot,
                "took over the slot of a schedule this daemon does not have; it is not run here \
                 (the daemons of one catalog must share their config)");
            let _ = shared.catalog.finish_slot(&claim.workspace, &claim.policy, claim.slot).await;
            continue;
        };
        tracing::warn!(workspace = %claim.workspace, policy = %claim.policy, slot = %claim.slot,
            "taking over a slot its daemon did not finish");
        let policy = &entry.schedule.policy;
        jobs.push(ScheduledJob {
            workspace: claim.workspace,
            policy: claim.policy,
            action: policy.action,
            kind: policy.kind,
            drill_after: policy.drill_after,
            copy_after: policy.copy_after,
            to: policy.to.clone(),
            repository: policy.repository.clone(),
            heapallindexed: policy.heapallindexed,
            incremental: policy.incremental,
            max_chain: policy.max_chain,
            slot: now,
            due: claim.slot,
            trigger: Trigger::CatchUp,
        });
    }
    jobs
}

/// Claims `job`'s slot for this daemon. `false`: another daemon of the fleet has it. A
/// catalog that cannot be written is asked again until it answers (a shared catalog: a slot
/// run unclaimed could run twice) or run unclaimed (SQLite: this daemon is the only one).
async fn claim(shared: &Shared, job: &ScheduledJob) -> bool {
    let mut wait = Duration::from_secs(1);
    loop {
        let Some(me) = shared.catalog.member_id() else {
            // Not in the fleet (it could not be joined): the only daemon of its catalog.
            return !shared.catalog.is_shared();
        };
        match shared.catalog.claim_slot(me, &job.workspace, &job.policy, job.due).await {
            Ok(true) => return true,
            Ok(false) => {
                tracing::info!(workspace = %job.workspace, policy = %job.policy, slot = %job.due,
                    "another daemon of the fleet runs this slot");
                return false;
            }
            Err(e) if !shared.catalog.is_shared() => {
                tracing::warn!(error = %e.report(), "cannot claim the slot in the catalog; running it anyway");
                return true;
            }
            Err(e) => tracing::warn!(workspace = %job.workspace, error = %e.report(), retry_in = ?wait,
                "cannot claim the slot in the catalog; asking again"),
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shared.shutdown.cancelled() => return false,
        }
        wait = (wait * 2).min(Duration::from_secs(60));
    }
}

/// Runs one job to its end: waits for a slot under the global limit, claims its slot
/// (unless `claimed`: taken over), records it, retries temporary failures with backoff,
/// records the outcome and notifies. `false`: not run here (another daemon claimed the
/// slot, or this one is shutting down).
async fn execute(shared: &Shared, job: ScheduledJob, claimed: bool) -> bool {
    let _permit = tokio::select! {
        permit = shared.limit.acquire() => permit.expect("the semaphore is never closed"),
        () = shared.shutdown.cancelled() => return false,
    };
    // Claimed only with a free job slot in hand, so that a busy daemon leaves the slot to
    // an idle one.
    if !claimed && !claim(shared, &job).await {
        return false;
    }
    let started_at = shared.clock.now();
    let new = NewJob {
        workspace: job.workspace.clone(),
        operation: job.operation().job_name().into(),
        kind: job.kind.map(|k| k.to_string()),
        trigger: job.trigger,
        policy: Some(job.policy.clone()),
        scheduled_for: Some(job.slot),
        started_at,
        actor: Some(crate::actor::Actor::schedule(&job.policy).to_string()),
    };
    // A backup matters more than its history line: a catalog failure is logged, not fatal.
    let id = match shared.catalog.start_job(&new).await {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::error!(workspace = %job.workspace, error = %e.report(), "cannot record the job in the catalog");
            None
        }
    };
    tracing::info!(workspace = %job.workspace, policy = %job.policy, trigger = job.trigger.as_str(),
        slot = %job.slot, job = %id.map_or_else(|| "not recorded".to_string(), |id| id.to_string()), "job started");

    let mut attempt: u32 = 1;
    let (status, end, error) = loop {
        match shared.runner.run(&job, shared.clock.now()).await {
            // Stopped because the shutdown timeout passed: it cleaned up after itself.
            Err(e) if e.kind() == ErrorKind::Interrupted && shared.shutdown.is_cancelled() => {
                let end = JobEnd {
                    finished_at: Some(shared.clock.now()),
                    error: Some(format!(
                        "aborted at shutdown: still running after the shutdown timeout, it was stopped: {}",
                        e.report()
                    )),
                    ..Default::default()
                };
                break (JobStatus::Aborted, end, None);
            }
            Ok(outcome) => {
                let end = JobEnd {
                    finished_at: Some(shared.clock.now()),
                    snapshot_id: outcome.snapshot_id,
                    bytes: outcome.bytes,
                    error: None,
                    warning: outcome.warning,
                    result: None,
                };
                break (JobStatus::Succeeded, end, None);
            }
            Err(e) if e.kind().is_temporary() && attempt <= shared.settings.retries => {
                let wait = shared.settings.retry_backoff.saturating_mul(1 << (attempt - 1).min(16));
                tracing::warn!(workspace = %job.workspace, attempt, retry_in = ?wait, error = %e.report(),
                    "job attempt failed; retrying");
                if let Some(id) = id
                    && let Err(e) = shared.catalog.record_attempt(id, attempt + 1, &e.report()).await
                {
                    tracing::error!(error = %e.report(), "cannot record a retry in the catalog");
                }
                let until = shared.clock.now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                tokio::select! {
                    () = shared.clock.sleep_until(until) => {}
                    () = shared.shutdown.cancelled() => {
                        let end = JobEnd {
                            finished_at: Some(shared.clock.now()),
                            error: Some(format!("aborted at shutdown while waiting to retry: {}", e.report())),
                            ..Default::default()
                        };
                        break (JobStatus::Aborted, end, None);
                    }
                }
                attempt += 1;
            }
            Err(e) => {
                let end =
                    JobEnd { finished_at: Some(shared.clock.now()), error: Some(e.report()), ..Default::default() };
                break (JobStatus::Failed, end, Some(e));
            }
        }
    };

    match (&status, &error) {
        (JobStatus::Succeeded, _) => tracing::info!(workspace = %job.workspace, snapshot = ?end.snapshot_id,
            bytes = ?end.bytes, warning = ?end.warning, "job succeeded"),
        (_, Some(e)) => {
            tracing::error!(workspace = %job.workspace, attempts = attempt, error = %e.report(), "job failed");
        }
        _ => tracing::warn!(workspace = %job.workspace, "job aborted at shutdown"),
    }
    // The end of a job outlasts a catalog restart or failover: a lost finish would leave
    // its row `running`, a lost served slot would let another daemon run it again.
    if let Some(id) = id
        && let Err(e) = recorded(|| shared.catalog.finish_job(id, status, &end)).await
    {
        tracing::error!(error = %e.report(), "cannot record the end of a job in the catalog");
    }
    if status != JobStatus::Aborted {
        let last = || shared.catalog.set_last_slot(&job.workspace, &job.policy, job.slot, status.as_str(), id);
        if let Err(e) = recorded(last).await {
            tracing::error!(error = %e.report(), "cannot record the schedule's last run in the catalog");
        }
        // Served: not taken over by another daemon. (An aborted job's slot is left claimed
        // and unfinished: another daemon takes it over once this one has stopped.)
        if let Err(e) = recorded(|| shared.catalog.finish_slot(&job.workspace, &job.policy, job.due)).await {
            tracing::error!(error = %e.report(), "cannot record the slot as served in the catalog");
        }
    }
    let notify = match status {
        JobStatus::Failed => true,
        JobStatus::Succeeded => shared.notifier.as_ref().is_some_and(|n| n.on_success),
        _ => false,
    };
    if let Some(notifier) = shared.notifier.as_ref().filter(|_| notify) {
        let event = JobEvent {
            event: if status == JobStatus::Failed { "job.failed" } else { "job.succeeded" },
            job_id: id,
            workspace: job.workspace.clone(),
            policy: job.policy.clone(),
            operation: job.operation().job_name(),
            kind: job.kind.map(|k| k.to_string()),
            trigger: job.trigger.as_str(),
            slot: job.slot,
            started_at,
            finished_at: end.finished_at.unwrap_or(started_at),
            attempts: attempt,
            snapshot_id: end.snapshot_id.clone(),
            bytes: end.bytes,
            error: error.as_ref().map(|e| e.to_json()["error"].clone()),
            warning: end.warning.clone(),
        };
        notifier.send(event);
    }
    true
}

/// How long the end of a job is retried while the catalog is away (a restart, a failover).
const RECORD_PATIENCE: Duration = Duration::from_secs(120);

/// `write`, again while it fails because the catalog cannot be reached (waiting in real
/// time, doubling from 100 ms up to 5 s), for up to [`RECORD_PATIENCE`].
///
/// Errors: the last error of `write` (a permanent one at once).
async fn recorded<F, Fut>(mut write: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let deadline = tokio::time::Instant::now() + RECORD_PATIENCE;
    let mut wait = Duration::from_millis(100);
    loop {
        match write().await {
            Err(e) if e.kind().is_temporary() && tokio::time::Instant::now() + wait < deadline => {
                tracing::warn!(error = %e.report(), retry_in = ?wait, "the catalog is away; recording the job's end again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The loop's logic with a fake runner (what a job does is tested on real parts in
    //! tests/it/daemon.rs), a real SQLite catalog and a manual clock.

    use std::collections::HashMap;
    use std::sync::Mutex;

    use tokio::sync::mpsc;

    use super::*;
    use crate::error::ErrorKind;
    use crate::schedule::clock::ManualClock;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn schedule(workspace: &str, name: &str, cron: &str, zone: &str) -> Schedule {
        let text = format!("cron = \"{cron}\"\ntime-zone = \"{zone}\"\nkind = \"automatic\"\n");
        Schedule { workspace: workspace.into(), policy: Policy::parse(name, &text).unwrap() }
    }

    /// Records every call; fails at once for the workspaces in `failures`; holds the other
    /// calls until the gate (if any) gives them a permit; checks that one workspace never
    /// runs twice at once.
    #[derive(Default)]
    struct FakeRunner {
        calls: Option<mpsc::UnboundedSender<(ScheduledJob, DateTime<Utc>)>>,
        failures: HashMap<String, ErrorKind>,
        gate: Option<Arc<Semaphore>>,
        active: Arc<Mutex<Activity>>,
        /// With it, `stop_jobs` asks held jobs to stop: they clean up and end `Interrupted`.
        stop: Option<CancellationToken>,
        cleaned_up: Arc<std::sync::atomic::AtomicUsize>,
    }

    /// Workspaces running now, the most jobs seen at once, and workspaces seen twice at once.
    #[derive(Debug, Clone, Default)]
    struct Activity {
        running: HashSet<String>,
        most: usize,
        overlaps: Vec<String>,
    }

    impl Runner for FakeRunner {
        fn run(&self, job: &ScheduledJob, now: DateTime<Utc>) -> BoxFuture<'static, Result<JobOutcome>> {
            let _ = self.calls.as_ref().unwrap().send((job.clone(), now));
            let (gate, active, failure) = (self.gate.clone(), self.active.clone(), self.failures.get(&job.workspace));
            let failure = failure.copied();
            let workspace = job.workspace.clone();
            let (stop, cleaned_up) = (self.stop.clone().unwrap_or_default(), self.cleaned_up.clone());
            Box::pin(async move {
                {
                    let mut a = active.lock().unwrap();
                    if !a.running.insert(workspace.clone()) {
                        a.overlaps.push(workspace.clone());
                    }
                    a.most = a.most.max(a.running.len());
                }
                if let Some(gate) = gate.filter(|_| failure.is_none()) {
                    tokio::select! {
                        permit = gate.acquire() => permit.unwrap().forget(),
                        () = stop.cancelled() => {
                            active.lock().unwrap().running.remove(&workspace);
                            cleaned_up.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            return Err(Error::new(ErrorKind::Interrupted, "stopped; cleaned up"));
                        }
                    }
                }
                active.lock().unwrap().running.remove(&workspace);
                match failure {
                    Some(kind) => Err(Error::new(kind, format!("{workspace} is failing on purpose"))),
                    None => {
                        let id = format!("snap-{workspace}-{}", rand::random::<u64>());
                        Ok(JobOutcome { snapshot_id: Some(id), bytes: Some(7), warning: None })
                    }
                }
            })
        }

        fn stop_jobs(&self) -> bool {
            self.stop.as_ref().inspect(|stop| stop.cancel()).is_some()
        }
    }

    struct Harness {
        clock: ManualClock,
        catalog: Catalog,
        calls: mpsc::UnboundedReceiver<(ScheduledJob, DateTime<Utc>)>,
        shutdown: CancellationToken,
        daemon: tokio::task::JoinHandle<Result<DaemonReport>>,
        _dir: tempfile::TempDir,
    }

    async fn start(
        now: &str,
        schedules: Vec<Schedule>,
        settings: DaemonConfig,
        runner: FakeRunner,
        prepare: impl AsyncFnOnce(&Catalog),
    ) -> Harness {
        start_with_webhook(now, schedules, settings, runner, prepare, None).await
    }

    async fn start_with_webhook(
        now: &str,
        schedules: Vec<Schedule>,
        settings: DaemonConfig,
        mut runner: FakeRunner,
        prepare: impl AsyncFnOnce(&Catalog),
        webhook: Option<Webhook>,
    ) -> Harness {
        let _ = tracing_subscriber::fmt().with_env_filter("tidemark=debug").with_test_writer().try_init();
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("catalog.sqlite")).await.unwrap();
        prepare(&catalog).await;
        let clock = ManualClock::new(at(now));
        let (tx, calls) = mpsc::unbounded_channel();
        runner.calls = Some(tx);
        let shutdown = CancellationToken::new();
        let daemon = Daemon {
            clock: Arc::new(clock.clone()),
            catalog: catalog.clone(),
            runner: Arc::new(runner),
            schedules,
            settings,
            webhook,
        };
        let names: Vec<(String, String)> =
            daemon.schedules.iter().map(|s| (s.workspace.clone(), s.policy.name.clone())).collect();
        let daemon = tokio::spawn(daemon.run(shutdown.clone()));
        // The daemon reads "now" once at start: move the clock only after it registered.
        for (workspace, policy) in names {
            for _ in 0..100 {
                if catalog.last_slot(&workspace, &policy).await.unwrap().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Harness { clock, catalog, calls, shutdown, daemon, _dir: dir }
    }

    impl Harness {
        async fn next_call(&mut self) -> (ScheduledJob, DateTime<Utc>) {
            match tokio::time::timeout(Duration::from_secs(20), self.calls.recv()).await {
                Ok(Some(call)) => call,
                _ if self.daemon.is_finished() => panic!("the daemon stopped: {:?}", (&mut self.daemon).await),
                _ => panic!("a job should have started"),
            }
        }

        /// Lets the daemon act on what just happened, then says whether it started a job.
        async fn started_nothing(&mut self) -> bool {
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.calls.try_recv().is_err()
        }

        async fn stop(self) -> (DaemonReport, Catalog) {
            self.shutdown.cancel();
            let report = self.daemon.await.unwrap().unwrap();
            (report, self.catalog)
        }
    }

    async fn wait_for_status(catalog: &Catalog, status: &str, count: usize) -> Vec<crate::catalog::Job> {
        for _ in 0..200 {
            let jobs = catalog.jobs(None, 100).await.unwrap();
            if jobs.iter().filter(|j| j.status == status).count() >= count {
                return jobs;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fewer than {count} jobs reached {status}: {:?}", catalog.jobs(None, 100).await.unwrap());
    }

    /// Waits until the job of `workspace` is on its `attempts`-th attempt (the retry is
    /// scheduled from the clock's time at the failure: move the clock only after it).
    async fn wait_for_attempts(catalog: &Catalog, workspace: &str, attempts: i64) {
        for _ in 0..200 {
            let jobs = catalog.jobs(Some(workspace), 1).await.unwrap();
            if jobs.first().is_some_and(|j| j.attempts >= attempts) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{workspace} never reached attempt {attempts}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn daily_runs_follow_local_time_across_daylight_saving_changes() {
        let berlin = schedule("shop", "daily", "30 2 * * *", "Europe/Berlin");
        let mut h =
            start("2026-03-27T12:00:00Z", vec![berlin], DaemonConfig::default(), FakeRunner::default(), async |_| {})
                .await;
        // 02:30 CET; then the spring gap (02:30 does not exist: 03:00 CEST); then 02:30 CEST.
        for expected in ["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"] {
            h.clock.set(at(expected) - chrono::Duration::minutes(1));
            assert!(h.started_nothing().await, "ran before {expected}");
            h.clock.set(at(expected));
            let (job, _) = h.next_call().await;
            assert_eq!((job.slot, job.trigger), (at(expected), Trigger::Schedule));
        }
        let (report, catalog) = h.stop().await;
        assert_eq!(report.jobs_started, 3);
        assert_eq!(catalog.last_slot("shop", "daily").await.unwrap(), Some(at("2026-03-30T00:30:00Z")));

        // Autumn: 02:30 local happens twice on 2026-10-25; one run, then the next day.
        let berlin = schedule("shop", "daily", "30 2 * * *", "Europe/Berlin");
        let mut h =
            start("2026-10-24T12:00:00Z", vec![berlin], DaemonConfig::default(), FakeRunner::default(), async |_| {})
                .await;
        h.clock.set(at("2026-10-25T00:30:00Z"));
        assert_eq!(h.next_call().await.0.slot, at("2026-10-25T00:30:00Z"));
        h.clock.set(at("2026-10-25T01:30:00Z"));
        assert!(h.started_nothing().await, "the repeated 02:30 ran a second time");
        h.clock.set(at("2026-10-26T01:30:00Z"));
        assert_eq!(h.next_call().await.0.slot, at("2026-10-26T01:30:00Z"));
        let (report, _) = h.stop().await;
        assert_eq!(report.jobs_started, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slot_missed_while_down_is_caught_up_once() {
        let daily = schedule("shop", "daily", "0 2 * * *", "UTC");
        let down_since = async |catalog: &Catalog| {
            catalog.set_last_slot("shop", "daily", at("2026-11-10T02:00:00Z"), "succeeded", None).await.unwrap();
        };
        // Five slots passed while the daemon was down: one run at once, not five.
        let mut h =
            start("2026-11-15T09:00:00Z", vec![daily], DaemonConfig::default(), FakeRunner::default(), down_since)
                .await;
        let (job, _) = h.next_call().await;
        assert_eq!((job.trigger, job.slot), (Trigger::CatchUp, at("2026-11-15T09:00:00Z")));
        assert!(h.started_nothing().await, "caught up more than once");
        h.clock.set(at("2026-11-16T01:59:00Z"));
        assert!(h.started_nothing().await);
        h.clock.set(at("2026-11-16T02:00:00Z"));
        let (job, _) = h.next_call().await;
        assert_eq!((job.trigger, job.slot), (Trigger::Schedule, at("2026-11-16T02:00:00Z")));
        let (_, catalog) = h.stop().await;
        let jobs = catalog.jobs(Some("shop"), 10).await.unwrap();
        assert_eq!(jobs.iter().map(|j| j.trigger.as_str()).collect::<Vec<_>>(), ["schedule", "catch-up"]);
        assert!(jobs.iter().all(|j| j.status() == JobStatus::Succeeded && j.snapshot_id.is_some()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_job_per_workspace_and_a_global_limit() {
        // Workspace a has two policies due at the same minute; b one; at most 2 jobs at once.
        let schedules = vec![
            schedule("a", "daily", "0 2 * * *", "UTC"),
            schedule("a", "hourly", "0 * * * *", "UTC"),
            schedule("b", "daily", "0 2 * * *", "UTC"),
            schedule("c", "daily", "0 2 * * *", "UTC"),
        ];
        let gate = Arc::new(Semaphore::new(0));
        let runner = FakeRunner { gate: Some(gate.clone()), ..Default::default() };
        let active = runner.active.clone();
        let settings = DaemonConfig { max_concurrent_jobs: 2, ..Default::default() };
        let mut h = start("2026-11-20T01:30:00Z", schedules, settings, runner, async |_| {}).await;
        h.clock.set(at("2026-11-20T02:00:00Z"));
        let mut workspaces = vec![h.next_call().await.0.workspace, h.next_call().await.0.workspace];
        assert!(h.started_nothing().await, "a third job ran beyond the limit of 2");
        // The next slots come while everything still runs: nothing piles up.
        h.clock.set(at("2026-11-20T03:00:00Z"));
        assert!(h.started_nothing().await);
        gate.add_permits(100);
        // Once jobs end, the waiting ones run: c (it waited for the limit) and a's other
        // policy (it waited for a); slots that passed meanwhile are not repeated.
        while let Ok(Some((job, _))) = tokio::time::timeout(Duration::from_millis(500), h.calls.recv()).await {
            workspaces.push(job.workspace);
        }
        let (report, catalog) = h.stop().await;
        let Activity { most, overlaps, .. } = active.lock().unwrap().clone();
        assert!(overlaps.is_empty(), "two jobs of one workspace ran at once: {overlaps:?}");
        assert_eq!(most, 2, "the global limit was not used or not kept");
        workspaces.sort();
        assert_eq!(workspaces, ["a", "a", "b", "c"]);
        assert_eq!(report.jobs_started, 4);
        let jobs = catalog.jobs(None, 100).await.unwrap();
        assert_eq!(jobs.iter().filter(|j| j.status() == JobStatus::Succeeded).count(), 4);
    }

    /// Issue 11.8: with a webhook that accepts connections and never answers, each event
    /// held a job slot for about 74 s and other workspaces missed their slot. Events are
    /// now delivered off the job slots.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hanging_webhook_never_holds_a_job_slot() {
        // A receiver that accepts every connection and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut connections = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                connections.push(socket);
            }
        });
        let mut webhook = Webhook::new(&crate::config::WebhookConfig {
            url: crate::config::Secret::literal(url),
            on_success: true,
            on_stale: false,
        })
        .unwrap();
        webhook.drain = Duration::from_millis(200);
        let schedules: Vec<Schedule> =
            ["a", "b", "c", "d"].iter().map(|w| schedule(w, "daily", "0 2 * * *", "UTC")).collect();
        let runner = FakeRunner {
            failures: HashMap::from([("a".to_string(), ErrorKind::Config), ("b".to_string(), ErrorKind::Config)]),
            ..Default::default()
        };
        // One job at a time: a job that waited for its webhook would hold up every other.
        let settings = DaemonConfig { max_concurrent_jobs: 1, ..Default::default() };
        let mut h =
            start_with_webhook("2026-11-20T01:00:00Z", schedules, settings, runner, async |_| {}, Some(webhook)).await;
        h.clock.set(at("2026-11-20T02:00:00Z"));
        let clock = std::time::Instant::now();
        let mut started = Vec::new();
        for _ in 0..4 {
            started.push(h.next_call().await.0.workspace);
        }
        assert!(clock.elapsed() < Duration::from_secs(5), "jobs waited for the webhook: {:?}", clock.elapsed());
        started.sort();
        assert_eq!(started, ["a", "b", "c", "d"]);
        wait_for_status(&h.catalog, "succeeded", 2).await;
        wait_for_status(&h.catalog, "failed", 2).await;
        let stopping = std::time::Instant::now();
        h.stop().await;
        assert!(stopping.elapsed() < Duration::from_secs(5), "the stop waited for the webhook");
        held.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn temporary_failures_are_retried_with_backoff_then_recorded_as_failed() {
        let schedules =
            vec![schedule("down", "daily", "0 2 * * *", "UTC"), schedule("bad", "daily", "0 3 * * *", "UTC")];
        let runner = FakeRunner {
            failures: HashMap::from([
                ("down".to_string(), ErrorKind::Unavailable),
                ("bad".to_string(), ErrorKind::Config),
            ]),
            ..Default::default()
        };
        let settings = DaemonConfig { retries: 2, retry_backoff: Duration::from_secs(60), ..Default::default() };
        let mut h = start("2026-11-20T01:00:00Z", schedules, settings, runner, async |_| {}).await;
        h.clock.set(at("2026-11-20T02:00:00Z"));
        assert_eq!(h.next_call().await.1, at("2026-11-20T02:00:00Z"));
        wait_for_attempts(&h.catalog, "down", 2).await;
        h.clock.set(at("2026-11-20T02:00:59Z"));
        assert!(h.started_nothing().await, "retried before the backoff passed");
        h.clock.set(at("2026-11-20T02:01:00Z"));
        assert_eq!(h.next_call().await.1, at("2026-11-20T02:01:00Z"), "first retry after 1m");
        wait_for_attempts(&h.catalog, "down", 3).await;
        h.clock.set(at("2026-11-20T02:02:59Z"));
        assert!(h.started_nothing().await, "the backoff did not double");
        h.clock.set(at("2026-11-20T02:03:00Z"));
        assert_eq!(h.next_call().await.1, at("2026-11-20T02:03:00Z"), "second retry after 2m more");
        let jobs = wait_for_status(&h.catalog, "failed", 1).await;
        let down = jobs.iter().find(|j| j.workspace == "down").unwrap();
        assert_eq!(down.attempts, 3);
        assert!(down.error.as_deref().unwrap().contains("failing on purpose"), "{down:?}");
        // A permanent error (bad config) is not retried.
        h.clock.set(at("2026-11-20T04:00:00Z"));
        assert_eq!(h.next_call().await.0.workspace, "bad");
        assert!(h.started_nothing().await, "a permanent error was retried");
        let jobs = wait_for_status(&h.catalog, "failed", 2).await;
        let bad = jobs.iter().find(|j| j.workspace == "bad").unwrap();
        assert_eq!(bad.attempts, 1);
        assert_eq!(h.catalog.last_slot("down", "daily").await.unwrap(), Some(at("2026-11-20T02:00:00Z")));
        h.stop().await;
    }

    /// A daemon with a daily 02:00 (UTC) schedule per workspace and this shutdown timeout,
    /// started at 01:00, its clock then moved to 02:00: every workspace's job starts.
    async fn daily_at_two(workspaces: &[&str], shutdown_timeout: Duration, runner: FakeRunner) -> Harness {
        let schedules = workspaces.iter().map(|w| schedule(w, "daily", "0 2 * * *", "UTC")).collect();
        let settings = DaemonConfig { shutdown_timeout, ..Default::default() };
        let h = start("2026-11-20T01:00:00Z", schedules, settings, runner, async |_| {}).await;
        h.clock.set(at("2026-11-20T02:00:00Z"));
        h
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_lets_jobs_finish_within_the_timeout_and_aborts_the_rest() {
        // Within the timeout: the running job finishes and is recorded as succeeded.
        let gate = Arc::new(Semaphore::new(0));
        let runner = FakeRunner { gate: Some(gate.clone()), ..Default::default() };
        let mut h = daily_at_two(&["a"], Duration::from_secs(30), runner).await;
        h.next_call().await;
        h.shutdown.cancel();
        gate.add_permits(1);
        let (report, catalog) = h.stop().await;
        assert_eq!(report.jobs_aborted, 0);
        assert_eq!(catalog.jobs(None, 10).await.unwrap()[0].status(), JobStatus::Succeeded);

        // Past the timeout: aborted, recorded as such; a job waiting to retry stops at once.
        let runner = FakeRunner {
            gate: Some(Arc::new(Semaphore::new(0))),
            failures: HashMap::from([("b".to_string(), ErrorKind::Unavailable)]),
            ..Default::default()
        };
        let mut h = daily_at_two(&["a", "b"], Duration::from_millis(200), runner).await;
        h.next_call().await;
        h.next_call().await;
        wait_for_status(&h.catalog, "running", 2).await; // b waits to retry, a runs
        let (report, catalog) = h.stop().await;
        assert_eq!(report.jobs_aborted, 1, "only a outlived the timeout");
        let jobs = catalog.jobs(None, 10).await.unwrap();
        assert!(jobs.iter().all(|j| j.status() == JobStatus::Aborted), "{jobs:?}");
        assert!(jobs[0].error.as_deref().unwrap().contains("shutdown"));

        // A runner that can stop its jobs: asked past the timeout, the job cleans up and
        // ends; it is recorded as aborted, not failed (no retry, no failure webhook).
        let runner = FakeRunner {
            gate: Some(Arc::new(Semaphore::new(0))),
            stop: Some(CancellationToken::new()),
            ..Default::default()
        };
        let cleaned_up = runner.cleaned_up.clone();
        let mut h = daily_at_two(&["a"], Duration::from_millis(200), runner).await;
        h.next_call().await;
        let (report, catalog) = h.stop().await;
        assert_eq!(cleaned_up.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(report.jobs_aborted, 1);
        let jobs = catalog.jobs(None, 10).await.unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].status(), JobStatus::Aborted, "{jobs:?}");
        assert!(jobs[0].error.as_deref().unwrap().contains("it was stopped"), "{jobs:?}");
    }

    /// Waits (up to 30 s) for `probe` to say yes.
    async fn until(what: &str, mut probe: impl AsyncFnMut() -> Option<()>) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while probe().await.is_none() {
            assert!(std::time::Instant::now() < deadline, "waited 30 s for: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Who ran which slot, for the fleet test: each run takes a moment of real time, so a
    /// daemon with its job slots full leaves the next slots to the others.
    struct FleetRunner {
        daemon: usize,
        runs: Runs,
    }

    /// (daemon, workspace, slot) of each run.
    type Runs = Arc<Mutex<Vec<(usize, String, DateTime<Utc>)>>>;

    impl Runner for FleetRunner {
        fn run(&self, job: &ScheduledJob, _now: DateTime<Utc>) -> BoxFuture<'static, Result<JobOutcome>> {
            let (runs, record) = (self.runs.clone(), (self.daemon, job.workspace.clone(), job.due));
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                runs.lock().unwrap().push(record);
                Ok(JobOutcome::default())
            })
        }
    }

    /// Three daemons on one PostgreSQL catalog, twelve workspaces, a schedule every minute:
    /// over three slots every (workspace, slot) runs exactly once, counted by the runners
    /// and in the catalog, and each daemon runs some of them.
    #[tokio::test]
    async fn three_daemons_on_one_catalog_run_each_slot_exactly_once() {
        fleet_of_three(false).await;
    }

    /// The end of a job is written again while the catalog is away, and not for an error
    /// that another try cannot mend.
    #[tokio::test]
    async fn a_jobs_end_is_recorded_again_while_the_catalog_is_away() {
        let tries = std::sync::atomic::AtomicU32::new(0);
        let away_twice = || {
            let outcome = match tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 | 1 => Err(Error::new(ErrorKind::Unavailable, "connection refused")),
                _ => Ok(()),
            };
            std::future::ready(outcome)
        };
        recorded(away_twice).await.unwrap();
        assert_eq!(tries.load(std::sync::atomic::Ordering::SeqCst), 3);
        let refused = std::sync::atomic::AtomicU32::new(0);
        let broken = || {
            refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::future::ready(Err(Error::new(ErrorKind::Database, "violates a constraint")))
        };
        assert_eq!(recorded(broken).await.unwrap_err().kind(), ErrorKind::Database);
        assert_eq!(refused.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// The same while the catalog's server restarts as the second slot comes: the daemons
    /// ask again until it is back, and no slot is lost or doubled (a job that ends while it
    /// is away is recorded once it is back).
    #[tokio::test]
    async fn a_catalog_restart_loses_no_slot_and_doubles_none() {
        fleet_of_three(true).await;
    }

    async fn fleet_of_three(restart: bool) {
        let _ = tracing_subscriber::fmt().with_env_filter("tidemark=info").with_test_writer().try_init();
        let engines = crate::catalog::testing::Engines::start().await;
        let location = engines.locations().pop().unwrap();
        let clock = ManualClock::new(at("2026-12-07T10:00:30Z"));
        let schedules: Vec<Schedule> =
            (0..12).map(|i| schedule(&format!("w{i:02}"), "minutely", "* * * * *", "UTC")).collect();
        let runs = Arc::new(Mutex::new(Vec::new()));
        let shutdown = CancellationToken::new();
        let mut daemons = Vec::new();
        for daemon in 0..3 {
            let catalog = Catalog::open_at(&location).await.unwrap();
            let settings = DaemonConfig { max_concurrent_jobs: 2, ..DaemonConfig::default() };
            let runner = Arc::new(FleetRunner { daemon, runs: runs.clone() });
            let d = Daemon {
                clock: Arc::new(clock.clone()),
                catalog,
                runner,
                schedules: schedules.clone(),
                settings,
                webhook: None,
            };
            daemons.push(tokio::spawn(d.run(shutdown.clone())));
        }
        let catalog = Catalog::open_at(&location).await.unwrap();
        // Every daemon has joined and every schedule is registered before the clock moves.
        until("three daemons joined", async || {
            let members = catalog.members(Duration::ZERO).await.unwrap();
            let registered = catalog.last_slot("w11", "minutely").await.unwrap().is_some();
            (members.iter().filter(|m| m.alive).count() == 3 && registered).then_some(())
        })
        .await;
        for minute in 1..=3 {
            if restart && minute == 2 {
                // Down as the slot comes: every claim fails until the server is back.
                let moved = {
                    let clock = clock.clone();
                    async move {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        clock.set(at("2026-12-07T10:00:30Z") + chrono::Duration::minutes(2));
                    }
                };
                tokio::join!(engines.restart_postgres(Duration::from_secs(3)), moved);
            }
            clock.set(at("2026-12-07T10:00:30Z") + chrono::Duration::minutes(minute));
            let want = 12 * minute as usize;
            until("every slot of the minute ran", async || (runs.lock().unwrap().len() >= want).then_some(())).await;
        }
        shutdown.cancel();
        for d in daemons {
            d.await.unwrap().unwrap();
        }
        let runs = runs.lock().unwrap().clone();
        let mut once: HashSet<(String, DateTime<Utc>)> = HashSet::new();
        for (_, workspace, due) in &runs {
            assert!(once.insert((workspace.clone(), *due)), "{workspace} at {due} ran twice: {runs:?}");
        }
        assert_eq!(once.len(), 36, "12 workspaces x 3 slots: {runs:?}");
        for daemon in 0..3 {
            assert!(runs.iter().any(|r| r.0 == daemon), "daemon {daemon} ran nothing: {runs:?}");
        }
        let jobs = catalog.jobs(None, 1000).await.unwrap();
        assert_eq!(jobs.len(), 36, "one job row per slot");
        assert!(jobs.iter().all(|j| j.status() == JobStatus::Succeeded), "{jobs:?}");
        let left: Vec<_> = catalog.members(Duration::from_secs(60)).await.unwrap();
        assert!(left.iter().all(|m| !m.alive), "every daemon left the fleet: {left:?}");
    }
}
