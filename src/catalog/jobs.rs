//! The job history: what ran, who asked, how it went, and how far a running job is.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Catalog, Get, host_name, on_pool, process_alive};
use crate::actor::{Actor, ActorKind};
use crate::error::{Error, Result};

/// What started a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// A schedule's cron slot came.
    Schedule,
    /// A slot missed while the daemon was down, taken once at start.
    CatchUp,
    /// An operator on the command line.
    Cli,
    /// Recreated from the repository by `catalog rebuild`.
    Rebuilt,
    /// A caller of the HTTP API.
    Api,
    /// A CI job running the command line.
    Ci,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::CatchUp => "catch-up",
            Trigger::Cli => "cli",
            Trigger::Rebuilt => "rebuilt",
            Trigger::Api => "api",
            Trigger::Ci => "ci",
        }
    }

    /// What an actor's request is, as a trigger (a schedule's own slots say `Schedule`
    /// or `CatchUp` themselves).
    pub fn of(actor: &Actor) -> Trigger {
        match actor.kind {
            ActorKind::Cli => Trigger::Cli,
            ActorKind::Schedule => Trigger::Schedule,
            ActorKind::Api => Trigger::Api,
            ActorKind::Ci => Trigger::Ci,
        }
    }
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobStatus {
    Running,
    Succeeded,
    Failed,
    /// Stopped by a shutdown (or a crash of the daemon) before it finished.
    Aborted,
    /// Refused before it changed anything (another operation held the workspace, a target
    /// that is not empty): not a failure of the workspace's backups.
    Refused,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Aborted => "aborted",
            JobStatus::Refused => "refused",
        }
    }

    fn parse(s: &str) -> JobStatus {
        match s {
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "refused" => JobStatus::Refused,
            _ => JobStatus::Aborted,
        }
    }
}

/// A job about to start.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub workspace: String,
    pub operation: String,
    pub kind: Option<String>,
    pub trigger: Trigger,
    pub policy: Option<String>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    /// Who asked (`cli:alice`, `schedule:nightly`).
    pub actor: Option<String>,
}

/// How a job ended, as recorded.
#[derive(Debug, Clone, Default)]
pub struct JobEnd {
    pub finished_at: Option<DateTime<Utc>>,
    pub snapshot_id: Option<String>,
    pub bytes: Option<u64>,
    pub error: Option<String>,
    pub warning: Option<String>,
    /// What it produced (the operation's report), when small enough to keep.
    pub result: Option<serde_json::Value>,
}

/// One row of the job history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Job {
    pub id: i64,
    pub workspace: String,
    pub operation: String,
    pub kind: Option<String>,
    pub trigger: String,
    pub policy: Option<String>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: String,
    pub attempts: i64,
    pub snapshot_id: Option<String>,
    pub bytes: Option<i64>,
    pub error: Option<String>,
    pub warning: Option<String>,
    /// Who asked; `None` for jobs recorded before it was.
    pub actor: Option<String>,
    /// How far a job is (a running one: updated at most once a second).
    pub progress: Option<JobProgress>,
    /// What a finished job produced: the operation's report, as `--json` prints it (left
    /// out when larger than 64 KiB: a snapshot's manifest, say, which `snapshot show` has).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
}

/// A job's progress as its sink records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobProgress {
    /// What it is doing ("copying tables", "media").
    pub phase: String,
    pub bytes_done: u64,
    pub bytes_total: Option<u64>,
    pub tables_done: u64,
    pub tables_total: Option<u64>,
    pub updated_at: DateTime<Utc>,
}

/// Makes the jobs `$where` selects their workspace's newest of their operation and
/// outcome, when they ended succeeded or failed and started after the one recorded (ties:
/// the higher id).
macro_rules! newest_where {
    ($where:literal) => {
        concat!(
            "INSERT INTO job_newest (workspace, operation, status, job, started_at) \
             SELECT workspace, operation, status, id, started_at FROM jobs WHERE ",
            $where,
            " AND status IN ('succeeded', 'failed') \
             ON CONFLICT (workspace, operation, status) DO UPDATE SET job = excluded.job, started_at = excluded.started_at \
             WHERE excluded.started_at > job_newest.started_at \
                OR (excluded.started_at = job_newest.started_at AND excluded.job > job_newest.job)"
        )
    };
}

/// The job with id `$1`, made its workspace's newest (see [`newest_where`]).
const NEWEST_BY_ID: &str = newest_where!("id = $1");

/// The job of workspace `$1` that made snapshot `$2`, made its workspace's newest.
const NEWEST_BY_SNAPSHOT: &str = newest_where!("workspace = $1 AND snapshot_id = $2");

/// A job from a row of either engine.
fn job_of(row: &impl Get) -> std::result::Result<Job, sqlx::Error> {
    {
        Ok(Job {
            id: row.get("id")?,
            workspace: row.get("workspace")?,
            operation: row.get("operation")?,
            kind: row.get("kind")?,
            trigger: row.get("trigger")?,
            policy: row.get("policy")?,
            scheduled_for: row.get("scheduled_for")?,
            started_at: row.get("started_at")?,
            finished_at: row.get("finished_at")?,
            status: row.get("status")?,
            attempts: row.get("attempts")?,
            snapshot_id: row.get("snapshot_id")?,
            bytes: row.get("bytes")?,
            error: row.get("error")?,
            warning: row.get("warning")?,
            actor: row.get("actor")?,
            result: row.get::<Option<String>>("result")?.and_then(|t| serde_json::from_str(&t).ok()),
            progress: match row.get::<Option<DateTime<Utc>>>("progress_at")? {
                None => None,
                Some(updated_at) => Some(JobProgress {
                    phase: row.get::<Option<String>>("phase")?.unwrap_or_default(),
                    bytes_done: row.get::<Option<i64>>("bytes_done")?.unwrap_or(0) as u64,
                    bytes_total: row.get::<Option<i64>>("bytes_total")?.map(|b| b as u64),
                    tables_done: row.get::<Option<i64>>("tables_done")?.unwrap_or(0) as u64,
                    tables_total: row.get::<Option<i64>>("tables_total")?.map(|b| b as u64),
                    updated_at,
                }),
            },
        })
    }
}

super::from_row!(Job, job_of);

impl Job {
    pub fn status(&self) -> JobStatus {
        JobStatus::parse(&self.status)
    }
}

impl Catalog {
    /// Records a job as running and returns its id.
    pub async fn start_job(&self, job: &NewJob) -> Result<i64> {
        // In a shared catalog every job has a member, so that when its process dies (on
        // any host) another member records the job as aborted.
        let member = match self.is_shared() {
            true => Some(self.join(super::fleet::Role::Cli).await?),
            false => self.member_id(),
        };
        let row: (i64,) = on_pool!(&self.pool, |p| {
            sqlx::query_as(
            "INSERT INTO jobs (workspace, operation, kind, trigger, policy, scheduled_for, started_at, status, pid, \
             host, actor, member) VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8, $9, $10, $11) RETURNING id",
        )
        .bind(&job.workspace)
        .bind(&job.operation)
        .bind(&job.kind)
        .bind(job.trigger.as_str())
        .bind(&job.policy)
        .bind(job.scheduled_for)
        .bind(job.started_at)
        .bind(i64::from(std::process::id()))
        .bind(host_name())
        .bind(&job.actor)
        .bind(member)
        .fetch_one(p)
        .await
        })
        .map_err(|e| self.err("cannot record a job", e))?;
        Ok(row.0)
    }

    /// Records a running job's progress (its sink calls this at most once a second).
    pub async fn record_progress(&self, id: i64, progress: &JobProgress) -> Result<()> {
        on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE jobs SET phase = $1, bytes_done = $2, bytes_total = $3, tables_done = $4, tables_total = $5, \
             progress_at = $6 WHERE id = $7",
        )
        .bind(&progress.phase)
        .bind(progress.bytes_done as i64)
        .bind(progress.bytes_total.map(|b| b as i64))
        .bind(progress.tables_done as i64)
        .bind(progress.tables_total.map(|b| b as i64))
        .bind(progress.updated_at)
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot record a job's progress", e))?;
        Ok(())
    }

    /// Records that a job is on its `attempts`-th attempt, with the last attempt's error.
    pub async fn record_attempt(&self, id: i64, attempts: u32, error: &str) -> Result<()> {
        on_pool!(&self.pool, |p| sqlx::query("UPDATE jobs SET attempts = $1, error = $2 WHERE id = $3")
            .bind(i64::from(attempts))
            .bind(error)
            .bind(id)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot record a retry", e))?;
        Ok(())
    }

    /// Records how a job ended (and, when it is its workspace's newest of its operation
    /// and outcome, in `job_newest`, in the same transaction).
    /// A job no longer running (recorded as aborted by another member that took its
    /// process for dead) keeps the end it was given.
    pub async fn finish_job(&self, id: i64, status: JobStatus, end: &JobEnd) -> Result<()> {
        let failed = |e| self.err("cannot record the end of a job", e);
        on_pool!(&self.pool, |p| {
            let mut tx = p.begin().await.map_err(failed)?;
            sqlx::query(
                "UPDATE jobs SET status = $1, finished_at = $2, snapshot_id = COALESCE($3, snapshot_id), \
                 bytes = COALESCE($4, bytes), error = COALESCE($5, error), warning = $6, result = $7 \
                 WHERE id = $8 AND status = 'running'",
            )
            .bind(status.as_str())
            .bind(end.finished_at.unwrap_or_else(Utc::now))
            .bind(&end.snapshot_id)
            .bind(end.bytes.map(|b| b as i64))
            .bind(&end.error)
            .bind(&end.warning)
            .bind(end.result.as_ref().map(serde_json::Value::to_string))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
            sqlx::query(NEWEST_BY_ID).bind(id).execute(&mut *tx).await.map_err(failed)?;
            tx.commit().await.map_err(failed)
        })
    }

    /// Marks jobs a previous daemon left `running` (it crashed or was killed) as aborted.
    /// Jobs started from the command line are left alone: they may still be running.
    pub async fn abort_orphaned_daemon_jobs(&self, now: DateTime<Utc>, reason: &str) -> Result<u64> {
        // A shared catalog's other daemons run scheduled jobs too: only this one's are its
        // business (a dead daemon's are aborted by whoever reaps it).
        let mine = match self.is_shared() {
            true => match self.member_id() {
                Some(id) => Some(id),
                None => return Ok(0),
            },
            false => None,
        };
        let done = on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE jobs SET status = 'aborted', finished_at = $1, error = $2 \
             WHERE status = 'running' AND trigger IN ('schedule', 'catch-up') AND ($3 IS NULL OR member = $3)",
        )
        .bind(now)
        .bind(reason)
        .bind(mine)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot clean up jobs of a stopped daemon", e))?;
        Ok(done)
    }

    /// Marks jobs left `running` by a process of this host that no longer exists (killed
    /// with SIGKILL, or the machine went down) as aborted, and returns how many. A job of
    /// another host, or whose process id is alive (perhaps reused), is left alone.
    pub async fn abort_jobs_of_dead_processes(&self, now: DateTime<Utc>) -> Result<u64> {
        let running: Vec<(i64, i64)> = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT id, pid FROM jobs WHERE status = 'running' AND pid IS NOT NULL AND host = $1"
        )
        .bind(host_name())
        .fetch_all(p)
        .await)
        .map_err(|e| self.err("cannot read the running jobs", e))?;
        let mut aborted = 0;
        for (id, pid) in running {
            if process_alive(pid) {
                continue;
            }
            let reason = format!("the tidemark process (pid {pid}) ended before the job finished");
            aborted += on_pool!(&self.pool, |p| {
                sqlx::query(
                "UPDATE jobs SET status = 'aborted', finished_at = $1, error = $2 WHERE id = $3 AND status = 'running'",
            )
            .bind(now)
            .bind(reason)
            .bind(id)
            .execute(p)
            .await.map(|r| r.rows_affected())
            })
            .map_err(|e| self.err("cannot record an aborted job", e))?;
        }
        Ok(aborted)
    }

    /// Asks the process that runs job `id` to stop it (see [`Catalog::cancel_requested`]);
    /// returns whether the job was running.
    pub async fn request_cancel(&self, id: i64, at: DateTime<Utc>) -> Result<bool> {
        let asked = on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, $1) WHERE id = $2 AND status = 'running'",
        )
        .bind(at)
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot ask for a job to stop", e))?;
        Ok(asked == 1)
    }

    /// Whether a stop of job `id` was asked for by another process.
    pub async fn cancel_requested(&self, id: i64) -> Result<bool> {
        let asked: Option<Option<DateTime<Utc>>> =
            on_pool!(&self.pool, |p| sqlx::query_scalar("SELECT cancel_requested_at FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await)
            .map_err(|e| self.err("cannot read the job history", e))?;
        Ok(asked.flatten().is_some())
    }

    /// One job by id.
    pub async fn job(&self, id: i64) -> Result<Job> {
        on_pool!(&self.pool, |p| sqlx::query_as("SELECT * FROM jobs WHERE id = $1").bind(id).fetch_optional(p).await)
            .map_err(|e| self.err("cannot read a job", e))?
            .ok_or_else(|| Error::not_found(format!("the catalog has no job {id}")))
    }

    /// The newest job of `operation` in `workspace` that ended with `status`.
    pub async fn newest_job(&self, workspace: &str, operation: &str, status: JobStatus) -> Result<Option<Job>> {
        on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT * FROM jobs WHERE workspace = $1 AND operation = $2 AND status = $3 \
             ORDER BY started_at DESC, id DESC LIMIT 1",
        )
        .bind(workspace)
        .bind(operation)
        .bind(status.as_str())
        .fetch_optional(p)
        .await)
        .map_err(|e| self.err("cannot read the job history", e))
    }

    /// The newest succeeded and the newest failed job of each operation of `workspace`
    /// (what [`Catalog::newest_job`] gives for one operation and status), as `job_newest`
    /// keeps them.
    pub async fn newest_jobs(&self, workspace: &str) -> Result<Vec<Job>> {
        on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT jobs.* FROM job_newest JOIN jobs ON jobs.id = job_newest.job WHERE job_newest.workspace = $1",
        )
        .bind(workspace)
        .fetch_all(p)
        .await)
        .map_err(|e| self.err("cannot read the job history", e))
    }

    /// The jobs of `workspace` still running, oldest first.
    pub async fn running_jobs(&self, workspace: &str) -> Result<Vec<Job>> {
        on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT * FROM jobs WHERE workspace = $1 AND status = 'running' ORDER BY started_at, id"
        )
        .bind(workspace)
        .fetch_all(p)
        .await)
        .map_err(|e| self.err("cannot read the job history", e))
    }

    /// The newest jobs first, optionally of one workspace.
    pub async fn jobs(&self, workspace: Option<&str>, limit: u32) -> Result<Vec<Job>> {
        on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT * FROM jobs WHERE ($1 IS NULL OR workspace = $1) ORDER BY started_at DESC, id DESC LIMIT $2",
        )
        .bind(workspace)
        .bind(i64::from(limit))
        .fetch_all(p)
        .await)
        .map_err(|e| self.err("cannot list jobs", e))
    }

    /// Adds a finished snapshot job recreated from the repository, unless the catalog
    /// already knows that snapshot. Returns whether a row was added.
    pub async fn insert_rebuilt_job(&self, job: &NewJob, end: &JobEnd) -> Result<bool> {
        let done = on_pool!(&self.pool, |p| sqlx::query(
            "INSERT INTO jobs (workspace, operation, kind, trigger, started_at, finished_at, status, \
             snapshot_id, bytes, actor) VALUES ($1, $2, $3, $4, $5, $6, 'succeeded', $7, $8, $9) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&job.workspace)
        .bind(&job.operation)
        .bind(&job.kind)
        .bind(job.trigger.as_str())
        .bind(job.started_at)
        .bind(end.finished_at)
        .bind(&end.snapshot_id)
        .bind(end.bytes.map(|b| b as i64))
        .bind(&job.actor)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot record a rebuilt job", e))?;
        if done > 0 {
            on_pool!(&self.pool, |p| sqlx::query(NEWEST_BY_SNAPSHOT)
                .bind(&job.workspace)
                .bind(&end.snapshot_id)
                .execute(p)
                .await
                .map(|r| r.rows_affected()))
            .map_err(|e| self.err("cannot record a rebuilt job", e))?;
        }
        Ok(done > 0)
    }
}
