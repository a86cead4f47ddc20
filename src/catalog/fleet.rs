//! The fleet: the tidemark processes that share a catalog. Each process that runs work for
//! others (a daemon, an API server) or holds a workspace (a command line, with a PostgreSQL
//! catalog) is a *member*: a row with a heartbeat it renews every third of the lease
//! timeout. A member whose heartbeat is older than the timeout is dead, whatever the reason
//! (SIGKILL, a host gone, a partition, SIGSTOP): a live daemon marks it stopped, records
//! its running jobs as aborted and takes over the scheduled slots it had claimed.
//!
//! What a member holds, it holds under a named *lease* (`workspace shop`, `wal-stream
//! shop`). Taking a lease bumps its generation, the fencing token: right before an
//! irreversible step (a manifest committed, objects deleted, a live database switched) the
//! holder asks [`Catalog::still_holds`], which renews its heartbeat only while it is still
//! a live member holding that generation. A member that was paused past its timeout finds
//! itself stopped and its lease taken, and gives up.
//!
//! A scheduled slot (workspace, policy, cron time) is claimed once, by its primary key: two
//! daemons never run it twice. Time is the database's clock on PostgreSQL (one clock for
//! every host) and this host's on SQLite (one host).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{Catalog, Get, Pool, from_row, host_name, on_pool};
use crate::error::{Error, ErrorKind, Result};

/// How long a member may go without a heartbeat before it counts as dead, unless
/// `[fleet] lease-timeout` says otherwise.
pub const DEFAULT_LEASE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a member does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// `serve`: schedules, WAL streams (and the API when it listens).
    Daemon,
    /// `serve --api-only`.
    Api,
    /// A command line holding a workspace.
    Cli,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Daemon => "daemon",
            Role::Api => "api",
            Role::Cli => "cli",
        }
    }
}

/// This process's membership, shared by every clone of a catalog handle.
#[derive(Debug)]
pub(crate) struct Membership {
    timeout_ms: AtomicU64,
    /// The member id (0: not joined). A member that found itself dead joins again under a
    /// new id; leases taken under the old one are lost.
    id: AtomicI64,
    /// The heartbeat's stop, and the role joined as.
    joined: tokio::sync::Mutex<Option<(CancellationToken, Role)>>,
    /// Times this process found itself declared dead (a pause or partition past its lease).
    pub(crate) lost: AtomicU64,
    /// The database server's clock as last read, and when (this process's monotonic clock).
    clock: std::sync::Mutex<Option<(DateTime<Utc>, std::time::Instant)>>,
    /// When this process last forgot old command-line members (once an hour is enough).
    forgot: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How often the database server's clock is read; in between, the last reading is advanced
/// by this process's monotonic clock (which never jumps, and does not run while a virtual
/// machine is suspended: a process's time can only lag, which makes it look older, never
/// younger, to the rest of the fleet).
const CLOCK_READ_EVERY: Duration = Duration::from_secs(30);

impl Default for Membership {
    fn default() -> Self {
        Membership {
            timeout_ms: AtomicU64::new(DEFAULT_LEASE_TIMEOUT.as_millis() as u64),
            id: AtomicI64::new(0),
            joined: tokio::sync::Mutex::new(None),
            lost: AtomicU64::new(0),
            clock: std::sync::Mutex::new(None),
            forgot: std::sync::Mutex::new(None),
        }
    }
}

/// A lease held: its name and the generation it was taken at (the fencing token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub generation: i64,
    pub member: i64,
}

/// A member as `tidemark fleet` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub id: i64,
    pub role: String,
    pub host: String,
    pub pid: i64,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub stop_reason: Option<String>,
    /// Dead members this one took over.
    pub takeovers: i64,
    /// A daemon's workspaces with a schedule.
    pub serves: Vec<String>,
    /// Alive: heartbeat within the lease timeout and not stopped.
    pub alive: bool,
    /// The leases it holds now (`workspace shop`, `wal-stream shop`).
    pub holds: Vec<String>,
}

fn read_member(row: &impl Get) -> std::result::Result<Member, sqlx::Error> {
    Ok(Member {
        id: row.get("id")?,
        role: row.get("role")?,
        host: row.get("host")?,
        pid: row.get("pid")?,
        version: row.get("version")?,
        started_at: row.get("started_at")?,
        heartbeat_at: row.get("heartbeat_at")?,
        stopped_at: row.get("stopped_at")?,
        stop_reason: row.get("stop_reason")?,
        takeovers: row.get("takeovers")?,
        serves: row
            .get::<Option<String>>("serves")?
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default(),
        alive: false,
        holds: Vec::new(),
    })
}
from_row!(Member, read_member);

/// A member found dead and marked stopped by [`Catalog::reap`].
#[derive(Debug, Clone, Serialize)]
pub struct Reaped {
    pub id: i64,
    pub host: String,
    pub pid: i64,
    /// Its running jobs, now recorded as aborted.
    pub jobs_aborted: u64,
}

/// A scheduled slot claimed by a daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotClaim {
    pub workspace: String,
    pub policy: String,
    pub slot: DateTime<Utc>,
}

fn read_claim(row: &impl Get) -> std::result::Result<SlotClaim, sqlx::Error> {
    Ok(SlotClaim { workspace: row.get("workspace")?, policy: row.get("policy")?, slot: row.get("slot")? })
}
from_row!(SlotClaim, read_claim);

impl Catalog {
    /// How long a member may go without a heartbeat before it counts as dead.
    pub fn lease_timeout(&self) -> Duration {
        Duration::from_millis(self.fleet.timeout_ms.load(Ordering::Relaxed))
    }

    /// Sets the lease timeout (`[fleet] lease-timeout`) before this process joins.
    pub fn set_lease_timeout(&self, timeout: Duration) {
        self.fleet.timeout_ms.store(timeout.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    /// The catalog's time: the database server's clock for PostgreSQL (the same for every
    /// host; read at most every [`CLOCK_READ_EVERY`]), this host's for SQLite.
    pub async fn now(&self) -> Result<DateTime<Utc>> {
        self.clock(false).await
    }

    /// [`Catalog::now`], the server's clock read now when `fresh`.
    async fn clock(&self, fresh: bool) -> Result<DateTime<Utc>> {
        let Pool::Postgres(p) = &self.pool else { return Ok(Utc::now()) };
        let read = *self.fleet.clock.lock().expect("the clock's lock");
        if let Some((at, when)) = read
            && !fresh
            && when.elapsed() < CLOCK_READ_EVERY
        {
            return Ok(at + chrono::Duration::from_std(when.elapsed()).unwrap_or_default());
        }
        let at: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(p)
            .await
            .map_err(|e| self.err("cannot read the server's clock", e))?;
        // The server read its clock somewhere in the round trip: counting from the answer
        // makes this process's time lag by at most the round trip, never run ahead.
        *self.fleet.clock.lock().expect("the clock's lock") = Some((at, std::time::Instant::now()));
        Ok(at)
    }

    /// The moment before which a heartbeat is too old: `now - timeout`.
    async fn cutoff(&self) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
        self.cutoff_at(self.now().await?)
    }

    fn cutoff_at(&self, now: DateTime<Utc>) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
        Ok((now, now - chrono::Duration::from_std(self.lease_timeout()).unwrap_or(chrono::Duration::MAX)))
    }

    /// This process's member id, when it has joined (and not found itself dead since).
    pub fn member_id(&self) -> Option<i64> {
        Some(self.fleet.id.load(Ordering::SeqCst)).filter(|id| *id > 0)
    }

    /// How often this process found itself declared dead (paused or cut off past its lease).
    pub fn times_fenced_out(&self) -> u64 {
        self.fleet.lost.load(Ordering::Relaxed)
    }

    /// Joins the fleet as `role` (once per catalog handle; later calls return the id):
    /// a member row, and a heartbeat every third of the lease timeout until [`Catalog::leave`].
    /// A heartbeat that finds the member dead (it was paused or cut off for longer than
    /// the timeout, and declared dead) joins again under a new id: what the old one held is
    /// lost, and its holders give up at their next fencing check.
    ///
    /// Errors: `Unavailable` when the catalog cannot be written.
    pub async fn join(&self, role: Role) -> Result<i64> {
        let mut joined = self.fleet.joined.lock().await;
        if let Some((_, was)) = joined.as_mut()
            && let Some(id) = self.member_id()
        {
            // A process that held a workspace before it started serving is a daemon (or an
            // API server) now.
            if *was != role && role != Role::Cli {
                on_pool!(&self.pool, |p| sqlx::query("UPDATE fleet_members SET role = $1 WHERE id = $2")
                    .bind(role.as_str())
                    .bind(id)
                    .execute(p)
                    .await
                    .map(|r| r.rows_affected()))
                .map_err(|e| self.err("cannot record this member's role", e))?;
                *was = role;
            }
            return Ok(id);
        }
        let id = self.register(role).await?;
        self.fleet.id.store(id, Ordering::SeqCst);
        let stop = CancellationToken::new();
        tokio::spawn(heartbeat_forever(self.clone(), role, stop.clone()));
        *joined = Some((stop, role));
        joined_here().push(self.clone());
        tracing::info!(member = id, role = role.as_str(), timeout = ?self.lease_timeout(), "joined the fleet");
        Ok(id)
    }

    /// Leaves the fleet: the heartbeat stops, the member is recorded as stopped (with
    /// `reason`) and its leases are freed, so nobody waits for its timeout.
    pub async fn leave(&self, reason: &str) {
        let Some((stop, _)) = self.fleet.joined.lock().await.take() else { return };
        stop.cancel();
        let Some(id) = self.member_id() else { return };
        self.fleet.id.store(0, Ordering::SeqCst);
        let now = self.now().await.unwrap_or_else(|_| Utc::now());
        let left = async {
            on_pool!(&self.pool, |p| sqlx::query(
                "UPDATE fleet_members SET stopped_at = $1, stop_reason = $2 WHERE id = $3 AND stopped_at IS NULL"
            )
            .bind(now)
            .bind(reason)
            .bind(id)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
            on_pool!(&self.pool, |p| sqlx::query("UPDATE leases SET member = NULL, holder = NULL WHERE member = $1")
                .bind(id)
                .execute(p)
                .await
                .map(|r| r.rows_affected()))
        };
        if let Err(e) = left.await {
            tracing::warn!(error = %self.err("cannot record that this member left", e).report(),
                "the fleet sees this process as dead after the lease timeout instead");
        }
    }

    async fn register(&self, role: Role) -> Result<i64> {
        let now = self.now().await?;
        on_pool!(&self.pool, |p| sqlx::query_scalar(
            "INSERT INTO fleet_members (role, host, pid, version, started_at, heartbeat_at) \
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING id"
        )
        .bind(role.as_str())
        .bind(host_name())
        .bind(i64::from(std::process::id()))
        .bind(env!("CARGO_PKG_VERSION"))
        .bind(now)
        .fetch_one(p)
        .await)
        .map_err(|e| self.err("cannot join the fleet", e))
    }

    /// Records which workspaces' schedules daemon `id` serves (`tidemark fleet`, and the
    /// alert for a schedule no live daemon serves).
    pub async fn set_serves(&self, id: i64, workspaces: &[String]) -> Result<()> {
        let text = serde_json::to_string(workspaces).expect("names serialize");
        on_pool!(&self.pool, |p| sqlx::query("UPDATE fleet_members SET serves = $1 WHERE id = $2")
            .bind(text)
            .bind(id)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot record what this daemon serves", e))?;
        Ok(())
    }

    /// Renews member `id`'s heartbeat. `false`: it is dead already (stopped by another
    /// member, or its heartbeat older than the timeout), and stays dead.
    pub async fn heartbeat(&self, id: i64) -> Result<bool> {
        let (now, cutoff) = self.cutoff().await?;
        let renewed = on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE fleet_members SET heartbeat_at = $1 WHERE id = $2 AND stopped_at IS NULL AND heartbeat_at > $3"
        )
        .bind(now)
        .bind(id)
        .bind(cutoff)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot renew this member's heartbeat", e))?;
        Ok(renewed == 1)
    }

    /// Marks every member whose heartbeat is older than the timeout as stopped and its
    /// running jobs as aborted, crediting member `me` with the takeover. Each dead member
    /// is reaped by one live member only (the update that stops it is atomic).
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn reap(&self, me: i64) -> Result<Vec<Reaped>> {
        let (now, cutoff) = self.cutoff().await?;
        // Members of this host whose process is gone are dead now, not after the timeout.
        let here: Vec<(i64, i64)> = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT id, pid FROM fleet_members WHERE stopped_at IS NULL AND host = $1 AND id <> $2"
        )
        .bind(host_name())
        .bind(me)
        .fetch_all(p)
        .await)
        .map_err(|e| self.err("cannot look for dead members", e))?;
        let mut reaped = Vec::new();
        for (id, pid) in here.into_iter().filter(|(_, pid)| !super::process_alive(*pid)) {
            if let Some(jobs_aborted) = self.declare_dead_here(id, pid, now).await? {
                reaped.push(Reaped { id, host: host_name(), pid, jobs_aborted });
            }
        }
        let reason = format!("its heartbeat stopped for longer than the lease timeout ({:?})", self.lease_timeout());
        let dead: Vec<(i64, String, i64)> = on_pool!(&self.pool, |p| sqlx::query_as(
            "UPDATE fleet_members SET stopped_at = $1, stop_reason = $2 \
             WHERE stopped_at IS NULL AND heartbeat_at <= $3 AND id <> $4 RETURNING id, host, pid"
        )
        .bind(now)
        .bind(&reason)
        .bind(cutoff)
        .bind(me)
        .fetch_all(p)
        .await)
        .map_err(|e| self.err("cannot look for dead members", e))?;
        // Command lines join for as long as they hold something: a day after they stopped,
        // nothing refers to them any more (looked for once an hour).
        let forget = {
            let mut forgot = self.fleet.forgot.lock().expect("the lock of forgetting");
            let due = forgot.is_none_or(|at| at.elapsed() >= Duration::from_secs(3600));
            if due {
                *forgot = Some(std::time::Instant::now());
            }
            due
        };
        if forget {
            on_pool!(&self.pool, |p| sqlx::query(
                "DELETE FROM fleet_members WHERE role = 'cli' AND stopped_at < $1 AND takeovers = 0 \
                 AND id NOT IN (SELECT member FROM slot_claims WHERE done = FALSE)"
            )
            .bind(now - chrono::Duration::days(1))
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
            .map_err(|e| self.err("cannot forget old members", e))?;
        }
        for (id, host, pid) in dead {
            let error = format!("aborted: its tidemark process (pid {pid} on {host}) stopped renewing its lease");
            let jobs_aborted = self.abort_jobs_of(id, now, &error).await?;
            reaped.push(Reaped { id, host, pid, jobs_aborted });
        }
        if !reaped.is_empty() {
            on_pool!(&self.pool, |p| sqlx::query("UPDATE fleet_members SET takeovers = takeovers + $1 WHERE id = $2")
                .bind(reaped.len() as i64)
                .bind(me)
                .execute(p)
                .await
                .map(|r| r.rows_affected()))
            .map_err(|e| self.err("cannot record a takeover", e))?;
        }
        Ok(reaped)
    }

    /// Claims a scheduled slot for member `me`. `false`: another daemon claimed it first.
    pub async fn claim_slot(&self, me: i64, workspace: &str, policy: &str, slot: DateTime<Utc>) -> Result<bool> {
        let now = self.now().await?;
        let claimed = on_pool!(&self.pool, |p| sqlx::query(
            "INSERT INTO slot_claims (workspace, policy, slot, member, claimed_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (workspace, policy, slot) DO NOTHING"
        )
        .bind(workspace)
        .bind(policy)
        .bind(slot)
        .bind(me)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot claim a scheduled slot", e))?;
        Ok(claimed == 1)
    }

    /// Records that a claimed slot's job ended (succeeded or failed: not to be run again).
    pub async fn finish_slot(&self, workspace: &str, policy: &str, slot: DateTime<Utc>) -> Result<()> {
        on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE slot_claims SET done = TRUE WHERE workspace = $1 AND policy = $2 AND slot = $3"
        )
        .bind(workspace)
        .bind(policy)
        .bind(slot)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot record a slot as served", e))?;
        Ok(())
    }

    /// Takes over, for member `me`, the unfinished slots of members that stopped (died, or
    /// stopped before their job ended): `me` runs them now. Each goes to one member only.
    pub async fn take_over_slots(&self, me: i64) -> Result<Vec<SlotClaim>> {
        let now = self.now().await?;
        let rows: Vec<SlotClaim> = on_pool!(&self.pool, |p| sqlx::query_as(
            "UPDATE slot_claims SET member = $1, claimed_at = $2 WHERE done = FALSE \
             AND member IN (SELECT id FROM fleet_members WHERE stopped_at IS NOT NULL) \
             RETURNING workspace, policy, slot"
        )
        .bind(me)
        .bind(now)
        .fetch_all(p)
        .await)
        .map_err(|e| self.err("cannot take over a dead member's slots", e))?;
        Ok(rows)
    }

    /// How long after their due time the slots claimed since `since` were claimed, in
    /// seconds, sorted (for the claim latency's quantiles).
    pub async fn claim_delays(&self, since: DateTime<Utc>) -> Result<Vec<f64>> {
        let rows: Vec<(DateTime<Utc>, DateTime<Utc>)> =
            on_pool!(&self.pool, |p| sqlx::query_as("SELECT slot, claimed_at FROM slot_claims WHERE claimed_at >= $1")
                .bind(since)
                .fetch_all(p)
                .await)
            .map_err(|e| self.err("cannot read the slot claims", e))?;
        let mut delays: Vec<f64> =
            rows.iter().map(|(slot, at)| (*at - *slot).num_milliseconds().max(0) as f64 / 1000.0).collect();
        delays.sort_by(f64::total_cmp);
        Ok(delays)
    }

    /// Takes the lease `name` for this process (joining the fleet as `role` first if it has
    /// not). `Err(holder)`: a live member holds it (its holder text, if it wrote one).
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn take_lease(
        &self,
        role: Role,
        name: &str,
        holder: &str,
    ) -> Result<std::result::Result<Lease, Option<String>>> {
        let me = self.join(role).await?;
        let (now, cutoff) = self.cutoff().await?;
        let taken: Option<i64> = on_pool!(&self.pool, |p| sqlx::query_scalar(
            "INSERT INTO leases (name, generation, member, holder, taken_at) VALUES ($1, 1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET generation = leases.generation + 1, member = excluded.member, \
             holder = excluded.holder, taken_at = excluded.taken_at \
             WHERE leases.member IS NULL OR leases.member NOT IN \
             (SELECT id FROM fleet_members WHERE stopped_at IS NULL AND heartbeat_at > $5) \
             RETURNING generation"
        )
        .bind(name)
        .bind(me)
        .bind(holder)
        .bind(now)
        .bind(cutoff)
        .fetch_optional(p)
        .await)
        .map_err(|e| self.err("cannot take a lease", e))?;
        if let Some(generation) = taken {
            return Ok(Ok(Lease { name: name.to_string(), generation, member: me }));
        }
        // A holder that was a process of this host and is gone (killed, crashed) is dead now,
        // not after the timeout: stopped here, the next look takes the lease.
        if self.stop_dead_holder_here(name, now).await? {
            return Box::pin(self.take_lease(role, name, holder)).await;
        }
        let holder: Option<Option<String>> =
            on_pool!(&self.pool, |p| sqlx::query_scalar("SELECT holder FROM leases WHERE name = $1")
                .bind(name)
                .fetch_optional(p)
                .await)
            .map_err(|e| self.err("cannot read a lease's holder", e))?;
        Ok(Err(holder.flatten()))
    }

    /// Whether the holder of lease `name` was a process of this host that no longer exists;
    /// if so it is recorded as stopped and its running jobs as aborted.
    async fn stop_dead_holder_here(&self, name: &str, now: DateTime<Utc>) -> Result<bool> {
        let holder: Option<(i64, i64)> = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT m.id, m.pid FROM leases l JOIN fleet_members m ON m.id = l.member \
             WHERE l.name = $1 AND m.stopped_at IS NULL AND m.host = $2"
        )
        .bind(name)
        .bind(host_name())
        .fetch_optional(p)
        .await)
        .map_err(|e| self.err("cannot read a lease's holder", e))?;
        let Some((id, pid)) = holder.filter(|(_, pid)| !super::process_alive(*pid)) else { return Ok(false) };
        Ok(self.declare_dead_here(id, pid, now).await?.is_some())
    }

    /// Records member `id`, a process of this host (`pid`) that no longer exists, as
    /// stopped and its running jobs as aborted. `Some(jobs aborted)` when this call stopped
    /// it; `None` when another member had already.
    async fn declare_dead_here(&self, id: i64, pid: i64, now: DateTime<Utc>) -> Result<Option<u64>> {
        let stopped = on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE fleet_members SET stopped_at = $1, stop_reason = $2 WHERE id = $3 AND stopped_at IS NULL"
        )
        .bind(now)
        .bind(format!("its process (pid {pid}) is gone from this host"))
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot record a dead member", e))?;
        if stopped == 0 {
            return Ok(None);
        }
        let error =
            format!("aborted: its tidemark process (pid {pid} on {}) ended before the job finished", host_name());
        self.abort_jobs_of(id, now, &error).await.map(Some)
    }

    /// Records the running jobs of dead member `id` as aborted, with `error`; how many.
    async fn abort_jobs_of(&self, id: i64, now: DateTime<Utc>, error: &str) -> Result<u64> {
        on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE jobs SET status = 'aborted', finished_at = $1, error = $2 WHERE member = $3 AND status = 'running'"
        )
        .bind(now)
        .bind(error)
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot abort a dead member's jobs", e))
    }

    /// The fencing check: whether this process still holds `lease` (its member alive, the
    /// lease at the generation it took). When it does, its heartbeat is renewed in the same
    /// statement, so nobody can take the lease for a whole timeout from now.
    ///
    /// Errors: `Unavailable` for the catalog (the caller cannot know: it must not act).
    pub async fn still_holds(&self, lease: &Lease) -> Result<bool> {
        // Before an irreversible step, the server's clock itself (not advanced by this
        // process's, which a suspended virtual machine stops).
        let (now, cutoff) = self.cutoff_at(self.clock(true).await?)?;
        let renewed = on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE fleet_members SET heartbeat_at = $1 WHERE id = $2 AND stopped_at IS NULL AND heartbeat_at > $3 \
             AND EXISTS (SELECT 1 FROM leases WHERE name = $4 AND generation = $5 AND member = $2)"
        )
        .bind(now)
        .bind(lease.member)
        .bind(cutoff)
        .bind(&lease.name)
        .bind(lease.generation)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot check a lease", e))?;
        Ok(renewed == 1)
    }

    /// [`Catalog::still_holds`] as a guard before an irreversible step: `Refused` naming
    /// `what` when the lease is lost (or the catalog cannot say).
    pub async fn fence(&self, lease: &Lease, what: &str) -> Result<()> {
        let refused = |why: String| {
            Error::new(
                ErrorKind::Refused,
                format!(
                    "not {what}: this process no longer holds the lease {:?} ({why}); another tidemark \
                     process may have taken it over. Nothing was changed by this step",
                    lease.name
                ),
            )
        };
        match self.still_holds(lease).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::error!(lease = %lease.name, generation = lease.generation,
                    "fenced: the lease was lost (paused or cut off for longer than the lease timeout); {what} is refused");
                Err(refused(format!(
                    "it was paused or cut off from the catalog for longer than the lease timeout {:?}",
                    self.lease_timeout()
                )))
            }
            Err(e) => {
                tracing::error!(lease = %lease.name, generation = lease.generation, error = %e.report(),
                    "fenced: the catalog cannot confirm the lease; {what} is refused");
                Err(refused(format!("the catalog cannot confirm it: {}", e.report())))
            }
        }
    }

    /// Frees `lease` if this process still holds that generation (a later holder's is left).
    pub async fn release_lease(&self, lease: &Lease) -> Result<()> {
        on_pool!(&self.pool, |p| sqlx::query(
            "UPDATE leases SET member = NULL, holder = NULL WHERE name = $1 AND generation = $2 AND member = $3"
        )
        .bind(&lease.name)
        .bind(lease.generation)
        .bind(lease.member)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(|e| self.err("cannot free a lease", e))?;
        Ok(())
    }

    /// The fleet's members: the live ones, and those stopped within `stopped_within`.
    pub async fn members(&self, stopped_within: Duration) -> Result<Vec<Member>> {
        let (now, cutoff) = self.cutoff().await?;
        let since = now - chrono::Duration::from_std(stopped_within).unwrap_or(chrono::Duration::MAX);
        let rows: Vec<Member> = on_pool!(&self.pool, |p| {
            sqlx::query_as(
            "SELECT id, role, host, pid, version, started_at, heartbeat_at, stopped_at, stop_reason, takeovers, serves \
             FROM fleet_members WHERE stopped_at IS NULL OR stopped_at >= $1 ORDER BY id"
        )
        .bind(since)
        .fetch_all(p)
        .await
        })
        .map_err(|e| self.err("cannot read the fleet", e))?;
        let held: Vec<(i64, String)> = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT member, name FROM leases WHERE member IS NOT NULL ORDER BY name"
        )
        .fetch_all(p)
        .await)
        .map_err(|e| self.err("cannot read the leases", e))?;
        Ok(rows
            .into_iter()
            .map(|mut m| {
                m.alive = m.stopped_at.is_none() && m.heartbeat_at > cutoff;
                m.holds = held.iter().filter(|(id, _)| *id == m.id && m.alive).map(|(_, n)| n.clone()).collect();
                m
            })
            .collect())
    }
}

/// The heartbeat of a joined member, every third of the lease timeout. A beat that fails
/// (the catalog away) is retried at the next; one that finds the member dead joins again.
async fn heartbeat_forever(catalog: Catalog, role: Role, stop: CancellationToken) {
    let every = catalog.lease_timeout() / 3;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
        let Some(id) = catalog.member_id() else { return };
        match catalog.heartbeat(id).await {
            Ok(true) => {}
            Ok(false) => {
                catalog.fleet.lost.fetch_add(1, Ordering::Relaxed);
                tracing::error!(member = id, timeout = ?catalog.lease_timeout(),
                    "this process was declared dead (paused or cut off from the catalog for longer than the lease \
                     timeout): what it held is lost, and its running work gives up at its next fencing check");
                let role = catalog.fleet.joined.lock().await.as_ref().map_or(role, |(_, r)| *r);
                match catalog.register(role).await {
                    Ok(new) => {
                        catalog.fleet.id.store(new, Ordering::SeqCst);
                        // What it serves is still what it serves.
                        let carried = on_pool!(&catalog.pool, |p| sqlx::query(
                            "UPDATE fleet_members SET serves = (SELECT serves FROM fleet_members WHERE id = $1) \
                             WHERE id = $2"
                        )
                        .bind(id)
                        .bind(new)
                        .execute(p)
                        .await
                        .map(|r| r.rows_affected()));
                        if let Err(e) = carried {
                            tracing::warn!(error = %e, "cannot record what this daemon serves under its new id");
                        }
                        tracing::info!(member = new, "joined the fleet again");
                    }
                    Err(e) => tracing::error!(error = %e.report(), "cannot join the fleet again; retrying"),
                }
            }
            Err(e) => tracing::warn!(error = %e.report(), "cannot renew this member's heartbeat; retrying"),
        }
    }
}

/// The catalog handles of this process that joined a fleet (for [`finish`]).
fn joined_here() -> std::sync::MutexGuard<'static, Vec<Catalog>> {
    static JOINED: std::sync::LazyLock<std::sync::Mutex<Vec<Catalog>>> = std::sync::LazyLock::new(Default::default);
    JOINED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a process does before it exits: frees the leases its locks let go of (so the next
/// command does not wait for a lease timeout) and leaves the fleet (so nobody takes it for
/// dead), waiting up to `limit`.
pub async fn finish(limit: Duration) {
    let joined = std::mem::take(&mut *joined_here());
    let done = async {
        super::lock::finish_releases().await;
        for catalog in joined {
            catalog.leave("the process exited").await;
        }
    };
    if tokio::time::timeout(limit, done).await.is_err() {
        tracing::warn!("leaving the fleet takes too long; this process is taken for dead after its lease timeout");
    }
}

/// Shared handle on a membership (a new catalog handle starts outside the fleet).
pub(crate) fn new_membership() -> Arc<Membership> {
    Arc::new(Membership::default())
}

#[cfg(test)]
mod tests {
    //! The fleet's rules on both engines: a lease is held once, a member whose heartbeat
    //! stopped is reaped once and loses what it held (its fencing check fails), and a slot
    //! is claimed once and taken over once.

    use super::*;
    use crate::catalog::testing::Engines;
    use crate::catalog::{JobStatus, NewJob, Trigger};

    /// Makes member `id` look silent for an hour (a pause, a partition).
    async fn silence(catalog: &Catalog, id: i64) {
        let long_ago = Utc::now() - chrono::Duration::hours(1);
        on_pool!(&catalog.pool, |p| sqlx::query("UPDATE fleet_members SET heartbeat_at = $1 WHERE id = $2")
            .bind(long_ago)
            .bind(id)
            .execute(p)
            .await
            .map(drop))
        .unwrap();
    }

    fn job(workspace: &str) -> NewJob {
        NewJob {
            workspace: workspace.into(),
            operation: "snapshot".into(),
            kind: Some("automatic".into()),
            trigger: Trigger::Schedule,
            policy: Some("daily".into()),
            scheduled_for: None,
            started_at: Utc::now(),
            actor: Some("schedule:daily".into()),
        }
    }

    #[tokio::test]
    async fn a_silent_member_loses_its_leases_jobs_and_slots_once_on_both_engines() {
        let engines = Engines::start().await;
        for location in engines.locations() {
            let (a, b) = (Catalog::open_at(&location).await.unwrap(), Catalog::open_at(&location).await.unwrap());
            let engine = a.name().to_string();
            for c in [&a, &b] {
                c.set_lease_timeout(Duration::from_secs(60));
            }
            let (ida, idb) = (a.join(Role::Daemon).await.unwrap(), b.join(Role::Daemon).await.unwrap());
            assert_ne!(ida, idb, "{engine}");
            assert_eq!(a.join(Role::Daemon).await.unwrap(), ida, "joined once per handle");

            // A lease is held by one live member; the other is told who holds it.
            let held = a.take_lease(Role::Daemon, "workspace shop", "{\"who\":\"a\"}").await.unwrap().unwrap();
            let refused = b.take_lease(Role::Daemon, "workspace shop", "{\"who\":\"b\"}").await.unwrap();
            assert_eq!(refused, Err(Some("{\"who\":\"a\"}".to_string())), "{engine}");
            assert!(a.still_holds(&held).await.unwrap(), "{engine}");
            a.fence(&held, "committing").await.unwrap();

            // A slot is claimed once.
            let slot = DateTime::parse_from_rfc3339("2026-12-07T02:00:00Z").unwrap().to_utc();
            assert!(a.claim_slot(ida, "shop", "daily", slot).await.unwrap(), "{engine}");
            assert!(!b.claim_slot(idb, "shop", "daily", slot).await.unwrap(), "{engine}: claimed twice");
            let running = a.start_job(&job("shop")).await.unwrap();
            let other = b.start_job(&job("blog")).await.unwrap();
            assert!(b.take_over_slots(idb).await.unwrap().is_empty(), "{engine}: a live member's slot");
            assert!(b.reap(idb).await.unwrap().is_empty(), "{engine}: nobody is dead yet");

            // `a` goes silent: `b` reaps it once, aborts its job, takes its slot and lease.
            silence(&a, ida).await;
            let reaped = b.reap(idb).await.unwrap();
            assert_eq!(reaped.len(), 1, "{engine}");
            assert_eq!((reaped[0].id, reaped[0].jobs_aborted), (ida, 1), "{engine}");
            assert!(b.reap(idb).await.unwrap().is_empty(), "{engine}: reaped once");
            let aborted = a.job(running).await.unwrap();
            assert_eq!(aborted.status(), JobStatus::Aborted, "{engine}");
            assert!(aborted.error.as_deref().unwrap_or_default().contains("stopped renewing its lease"), "{engine}");
            assert_eq!(b.job(other).await.unwrap().status(), JobStatus::Running, "{engine}: the live one's job");
            let taken = b.take_over_slots(idb).await.unwrap();
            assert_eq!(taken, vec![SlotClaim { workspace: "shop".into(), policy: "daily".into(), slot }], "{engine}");
            assert!(b.take_over_slots(idb).await.unwrap().is_empty(), "{engine}: taken over once");
            let new = b.take_lease(Role::Daemon, "workspace shop", "{\"who\":\"b\"}").await.unwrap().unwrap();
            assert_eq!(new.generation, held.generation + 1, "{engine}: the fencing token moves on");

            // `a` comes back: its fencing check fails, its heartbeat too, and freeing its old
            // lease frees nothing of `b`'s.
            assert!(!a.still_holds(&held).await.unwrap(), "{engine}");
            let fenced = a.fence(&held, "committing snapshot X").await.unwrap_err();
            assert_eq!(fenced.kind(), ErrorKind::Refused, "{engine}");
            assert!(fenced.message().contains("not committing snapshot X"), "{engine}: {}", fenced.message());
            assert!(!a.heartbeat(ida).await.unwrap(), "{engine}: a dead member stays dead");
            a.release_lease(&held).await.unwrap();
            assert!(b.still_holds(&new).await.unwrap(), "{engine}");

            // The fleet as listed: `b` alive holding the lease, `a` stopped with the reason.
            let members = b.members(Duration::from_secs(3600)).await.unwrap();
            let (ma, mb) =
                (members.iter().find(|m| m.id == ida).unwrap(), members.iter().find(|m| m.id == idb).unwrap());
            assert!(!ma.alive && ma.stop_reason.as_deref().unwrap_or_default().contains("heartbeat"), "{engine}");
            assert!(mb.alive && mb.holds == vec!["workspace shop".to_string()] && mb.takeovers == 1, "{engine}");

            // A slot served is not taken over when its daemon leaves; leaving frees leases.
            b.finish_slot("shop", "daily", slot).await.unwrap();
            b.leave("test over").await;
            let c = Catalog::open_at(&location).await.unwrap();
            let idc = c.join(Role::Daemon).await.unwrap();
            assert!(c.take_over_slots(idc).await.unwrap().is_empty(), "{engine}");
            let again = c.take_lease(Role::Daemon, "workspace shop", "{}").await.unwrap();
            assert!(again.is_ok(), "{engine}: a member that left holds nothing");
            c.leave("test over").await;
            a.leave("test over").await;
        }
    }
}
