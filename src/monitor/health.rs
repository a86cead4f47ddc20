//! `status`: is every workspace's backup as fresh as it should be? Per workspace, the newest
//! good snapshot, drill and archived WAL are held against thresholds
//! (`[workspaces.X.alerts]`, with defaults derived from its policies); what is late is
//! *stale*, a failed drill or a job whose newest run failed is *failing*. [`evaluate`] is
//! pure (a clock is passed in), so the daemon's alerts and the front ends agree.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::status::WorkspaceStatus;
use crate::config::{AlertsConfig, LoadedConfig};
use crate::error::Result;
use crate::operation::Operation;
use crate::schedule::policy::{self, Action, Policy};

/// A snapshot may be this late after its policy's interval before it is stale.
const SNAPSHOT_SLACK: Duration = Duration::from_secs(2 * 3600);
/// A drill may be this late after its policy's interval.
const DRILL_SLACK: Duration = Duration::from_secs(24 * 3600);
/// The default for `max-wal-lag` where WAL is archived.
const WAL_LAG_DEFAULT: Duration = Duration::from_secs(5 * 60);

/// The ages past which a workspace is stale (`None`: not checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Thresholds {
    pub max_snapshot_age_seconds: Option<u64>,
    pub max_drill_age_seconds: Option<u64>,
    pub max_wal_lag_seconds: Option<u64>,
    pub max_copy_lag_seconds: Option<u64>,
}

impl Thresholds {
    /// The workspace's `[workspaces.X.alerts]`, each unset one derived from its policies:
    /// the shortest snapshot interval plus 2 hours (daily: 26h), the shortest drill interval
    /// (or snapshot interval of a policy that drills after) plus a day (weekly: 8d), 5
    /// minutes of WAL lag where WAL is archived (a base-backup policy or `wal-stream`).
    /// Without such a policy, that age is not checked unless set.
    ///
    /// Errors: `Config` for the workspace or its policies.
    pub fn for_workspace(config: &LoadedConfig, workspace: &str) -> Result<Thresholds> {
        let ws = config.workspace(workspace)?;
        let policies = policy::policies_for(config, workspace)?;
        let set = ws.alerts.clone().unwrap_or_default();
        Ok(Thresholds::derive(&set, &policies, ws.wal_stream.is_on(), Utc::now()))
    }

    fn derive(set: &AlertsConfig, policies: &[Policy], wal_stream: bool, now: DateTime<Utc>) -> Thresholds {
        let shortest = |wanted: &dyn Fn(&Policy) -> bool| {
            policies.iter().filter(|p| wanted(p)).filter_map(|p| interval(p, now)).min()
        };
        let snapshots = shortest(&|p| p.action == Action::Snapshot);
        let drills = shortest(&|p| p.action == Action::Drill || (p.action == Action::Snapshot && p.drill_after));
        let archives = wal_stream || policies.iter().any(|p| p.action == Action::BaseBackup);
        let copies = shortest(&|p| p.action == Action::Copy || (p.action == Action::Snapshot && p.copy_after));
        let secs = |d: Duration| d.as_secs();
        Thresholds {
            max_snapshot_age_seconds: set.max_snapshot_age.or(snapshots.map(|i| i + SNAPSHOT_SLACK)).map(secs),
            max_drill_age_seconds: set.max_drill_age.or(drills.map(|i| i + DRILL_SLACK)).map(secs),
            max_wal_lag_seconds: set.max_wal_lag.or(archives.then_some(WAL_LAG_DEFAULT)).map(secs),
            max_copy_lag_seconds: set.max_copy_lag.or(copies.map(|i| i + SNAPSHOT_SLACK)).map(secs),
        }
    }
}

/// The time between a scheduled policy's next two runs.
fn interval(policy: &Policy, now: DateTime<Utc>) -> Option<Duration> {
    let first = policy.next_run(now)?;
    let second = policy.next_run(first)?;
    (second - first).to_std().ok()
}

/// What is wrong with a workspace's backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// The newest good snapshot is older than `max-snapshot-age` (or there is none).
    SnapshotStale,
    /// The newest drill is older than `max-drill-age` (or there is none).
    DrillStale,
    /// The newest archived WAL is older than `max-wal-lag` (or there is none).
    WalLag,
    /// The newest drill failed.
    DrillFailed,
    /// A backup job's newest run (snapshot, base backup, drill, prune, check) failed after
    /// its last success.
    JobFailed,
    /// `wal-stream = "synchronous"`, and the source does not name the receiver in
    /// `synchronous_standby_names`, or the receiver is not connected (the source's commits
    /// wait for it).
    StreamNotSynchronous,
    /// A copy (`[copies.NAME]`) is further behind the primary than `max-copy-lag` (or has
    /// never been copied to).
    CopyStale,
}

impl ProblemKind {
    pub const ALL: [ProblemKind; 7] = [
        ProblemKind::SnapshotStale,
        ProblemKind::DrillStale,
        ProblemKind::WalLag,
        ProblemKind::DrillFailed,
        ProblemKind::JobFailed,
        ProblemKind::StreamNotSynchronous,
        ProblemKind::CopyStale,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::SnapshotStale => "snapshot-stale",
            ProblemKind::DrillStale => "drill-stale",
            ProblemKind::WalLag => "wal-lag",
            ProblemKind::DrillFailed => "drill-failed",
            ProblemKind::JobFailed => "job-failed",
            ProblemKind::StreamNotSynchronous => "wal-stream-not-synchronous",
            ProblemKind::CopyStale => "copy-stale",
        }
    }

    /// Late (stale), as opposed to failed.
    pub fn is_stale(self) -> bool {
        matches!(
            self,
            ProblemKind::SnapshotStale | ProblemKind::DrillStale | ProblemKind::WalLag | ProblemKind::CopyStale
        )
    }
}

/// One thing wrong, and by how much.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    pub kind: ProblemKind,
    /// In words: "newest snapshot is 30h old (max 26h)".
    pub message: String,
    /// Seconds past the threshold (`None`: there is none at all, or not about an age).
    pub late_by_seconds: Option<i64>,
}

/// What [`evaluate`] reads: the catalog's status, the newest snapshot and the newest
/// recoverable moment.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    pub status: &'a WorkspaceStatus,
    /// When the newest readable snapshot finished (from the snapshot index, whoever took
    /// it; else the newest successful snapshot job).
    pub newest_snapshot: Option<DateTime<Utc>>,
    /// The end of the point-in-time window (`None`: no WAL, or not read).
    pub wal_latest: Option<DateTime<Utc>>,
    /// Each configured copy and how far it is.
    pub copies: &'a [CopyHealth],
}

/// A copy (`[copies.NAME]`) of a workspace as `status` sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CopyHealth {
    pub name: String,
    /// Everything the primary held before this moment is in the copy (`None`: never
    /// copied to).
    pub caught_up_to: Option<DateTime<Utc>>,
    /// Seconds it is behind now.
    pub lag_seconds: Option<i64>,
    /// The snapshots it holds, as its last copy found.
    pub snapshots: Option<i64>,
}

/// The operations whose failure makes a workspace failing.
pub const BACKUP_OPERATIONS: [Operation; 5] =
    [Operation::Snapshot, Operation::BaseBackup, Operation::Drill, Operation::Prune, Operation::Check];

/// The problems of a workspace at `now`, in [`ProblemKind`] order.
pub fn evaluate(observed: &Observed<'_>, thresholds: &Thresholds, now: DateTime<Utc>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut age_check = |kind: ProblemKind, what: &str, newest: Option<DateTime<Utc>>, max: Option<u64>| {
        let Some(max) = max else { return };
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        match newest {
            None => problems.push(Problem { kind, message: format!("no {what} yet"), late_by_seconds: None }),
            Some(at) => {
                let age = (now - at).num_seconds();
                if age > max {
                    problems.push(Problem {
                        kind,
                        message: format!("newest {what} is {} old (max {})", words(age), words(max)),
                        late_by_seconds: Some(age - max),
                    });
                }
            }
        }
    };
    let status = observed.status;
    age_check(ProblemKind::SnapshotStale, "snapshot", observed.newest_snapshot, thresholds.max_snapshot_age_seconds);
    age_check(
        ProblemKind::DrillStale,
        "drill",
        status.last_drill.as_ref().map(|d| d.finished_at),
        thresholds.max_drill_age_seconds,
    );
    age_check(ProblemKind::WalLag, "archived WAL", observed.wal_latest, thresholds.max_wal_lag_seconds);
    for copy in observed.copies {
        let Some(max) = thresholds.max_copy_lag_seconds else { break };
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let (message, late_by_seconds) = match copy.caught_up_to {
            None => (format!("copy {} has never been copied to", copy.name), None),
            Some(at) if (now - at).num_seconds() > max => {
                let lag = (now - at).num_seconds();
                (format!("copy {} is {} behind (max {})", copy.name, words(lag), words(max)), Some(lag - max))
            }
            Some(_) => continue,
        };
        problems.push(Problem { kind: ProblemKind::CopyStale, message, late_by_seconds });
    }
    if let Some(drill) = status.last_drill.as_ref().filter(|d| !d.passed) {
        problems.push(Problem {
            kind: ProblemKind::DrillFailed,
            message: format!("newest drill {} failed", drill.id),
            late_by_seconds: None,
        });
    }
    // The backups' own work; a restore someone asked for and got wrong is not the backups'
    // health.
    let backup = |name: &str| Operation::from_job_name(name).is_some_and(|o| BACKUP_OPERATIONS.contains(&o));
    for job in status.failing.iter().filter(|j| backup(&j.operation)) {
        problems.push(Problem {
            kind: ProblemKind::JobFailed,
            message: format!("{} failed (job {}): {}", job.operation, job.job, job.error.as_deref().unwrap_or("")),
            late_by_seconds: None,
        });
    }
    problems
}

/// An age in words: `45s`, `12m`, `26h`, `8d`.
pub fn words(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=259_199 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A workspace's health: its status, thresholds and problems.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub workspace: String,
    /// `healthy`, `stale` or `failing` (failing wins).
    pub state: String,
    pub status: WorkspaceStatus,
    /// The newest readable snapshot and when it finished.
    pub newest_snapshot: Option<String>,
    pub newest_snapshot_at: Option<DateTime<Utc>>,
    /// The point-in-time window's first and last recoverable moments.
    pub pitr_earliest: Option<DateTime<Utc>>,
    pub pitr_latest: Option<DateTime<Utc>>,
    /// Seconds of commits a loss now would cost: since the newest recoverable moment (the
    /// PITR window's end, or the newest snapshot without WAL).
    pub rpo_seconds: Option<i64>,
    /// Where the newest recoverable moment is in the WAL: with a WAL stream, where the
    /// streamed WAL in the repository reaches (not only the last completed segment).
    #[schema(value_type = Option<String>)]
    pub pitr_latest_lsn: Option<crate::wal::Lsn>,
    /// WAL segments the source has finished but not yet archived (`pg_stat_archiver`;
    /// `None` where WAL is not archived or the source cannot be asked).
    pub wal_segments_waiting: Option<i64>,
    /// The workspace's WAL stream (`wal-stream`), if it has one.
    pub wal_stream: Option<StreamHealth>,
    /// What the repository holds for point-in-time restores (read with the window).
    pub physical_bytes: Option<PhysicalBytes>,
    /// Its copies (`[copies.NAME]`) and how far each is behind.
    pub copies: Vec<CopyHealth>,
    pub thresholds: Thresholds,
    pub problems: Vec<Problem>,
}

/// A WAL stream as `status` sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StreamHealth {
    /// `on` or `synchronous`.
    pub mode: String,
    /// Where the WAL in the repository reaches (the PITR window's end).
    #[schema(value_type = Option<String>)]
    pub streamed_lsn: Option<crate::wal::Lsn>,
    /// Seconds since that WAL was shipped.
    pub streamed_age_seconds: Option<i64>,
    /// For a synchronous stream: how the source sees the receiver (`None`: the source
    /// could not be asked).
    pub standby: Option<crate::wal::stream::StandbyState>,
    /// For a synchronous stream: what it costs (the source blocks commits while the
    /// receiver is down) or why it is not synchronous.
    pub warning: Option<String>,
}

/// Stored bytes of base backups and archived WAL.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct PhysicalBytes {
    pub base_backups: u64,
    pub wal: u64,
}

/// What `status` reports.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HealthReport {
    pub at: DateTime<Utc>,
    /// `healthy`, `stale` or `failing`: the worst of the workspaces; `unknown` when all
    /// that could be read is healthy but some workspace could not be.
    pub state: String,
    pub workspaces: Vec<Health>,
    /// Workspaces that could not be evaluated (the others still were), and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<Unknown>,
}

/// A workspace whose health could not be read.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Unknown {
    pub workspace: String,
    pub error: String,
}

/// What `status` takes.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthOptions {
    /// One workspace (default: all).
    pub workspace: Option<String>,
}

/// The state a workspace with these problems is in.
pub fn state_of(problems: &[Problem]) -> &'static str {
    if problems.iter().any(|p| !p.kind.is_stale()) {
        "failing"
    } else if problems.is_empty() {
        "healthy"
    } else {
        "stale"
    }
}

/// Segments after `archived` and before `current` (WAL file names of `segment_size`-byte
/// segments, read by the one WAL-name parser).
pub fn waiting_between(archived: &str, current: &str, segment_size: u64) -> Option<i64> {
    let archived = crate::wal::Segment::parse(archived, segment_size).ok()?;
    let current = crate::wal::Segment::parse(current, segment_size).ok()?;
    if archived.timeline != current.timeline {
        return None;
    }
    Some(i64::try_from(current.number.saturating_sub(archived.number + 1)).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::workspace::{LastDrill, LastJob};

    fn policy(name: &str, text: &str) -> Policy {
        Policy::parse(name, text).unwrap()
    }

    #[test]
    fn segments_waiting_between_the_archived_and_the_current_one() {
        let w = |a: &str, c: &str| waiting_between(a, c, 16 << 20);
        assert_eq!(w("000000010000000000000003", "000000010000000000000004"), Some(0), "only the one being written");
        assert_eq!(w("000000010000000000000003", "000000010000000000000007"), Some(3));
        assert_eq!(w("0000000100000000000000FF", "000000010000000100000002"), Some(2), "across a log file");
        assert_eq!(w("000000010000000000000003", "000000020000000000000007"), None, "another timeline");
        assert_eq!(w("00000001000000000000000X", "000000010000000000000007"), None);
        // 64 MiB segments: 64 per log file, and a number past that is no segment of theirs.
        let big = |a: &str, c: &str| waiting_between(a, c, 64 << 20);
        assert_eq!(big("00000001000000000000003F", "000000010000000100000001"), Some(1), "across a log file");
        assert_eq!(big("0000000100000000000000FF", "000000010000000100000002"), None);
    }

    #[test]
    fn thresholds_come_from_the_policies_unless_set() {
        let now = Utc::now();
        let daily = policy("daily", "cron = \"0 3 * * *\"\nkind = \"automatic\"\n[retention]\nkeep-within = \"3d\"\n");
        let weekly_drill = policy("drill", "cron = \"0 4 * * 0\"\naction = \"drill\"\n");
        let t = Thresholds::derive(&AlertsConfig::default(), &[daily.clone(), weekly_drill], false, now);
        assert_eq!(t.max_snapshot_age_seconds, Some(26 * 3600));
        assert_eq!(t.max_drill_age_seconds, Some(8 * 86_400));
        assert_eq!(t.max_wal_lag_seconds, None, "no WAL archived");
        let t = Thresholds::derive(&AlertsConfig::default(), &[], true, now);
        assert_eq!((t.max_snapshot_age_seconds, t.max_wal_lag_seconds), (None, Some(300)));
        let set = AlertsConfig { max_snapshot_age: Some(Duration::from_secs(3600)), ..Default::default() };
        assert_eq!(Thresholds::derive(&set, &[daily], false, now).max_snapshot_age_seconds, Some(3600));
    }

    fn fresh_job(now: DateTime<Utc>) -> LastJob {
        LastJob {
            job: 9,
            operation: "snapshot".into(),
            kind: None,
            snapshot_id: None,
            finished_at: Some(now),
            age_seconds: Some(0),
            error: None,
        }
    }

    fn status(snapshot_age: Option<i64>, drill: Option<(i64, bool)>, now: DateTime<Utc>) -> WorkspaceStatus {
        let job = |age: i64| LastJob {
            job: 7,
            operation: "snapshot".into(),
            kind: None,
            snapshot_id: None,
            finished_at: Some(now - chrono::Duration::seconds(age)),
            age_seconds: Some(age),
            error: None,
        };
        WorkspaceStatus {
            workspace: "shop".into(),
            at: now,
            wal_stream: false,
            media: false,
            last_snapshot: snapshot_age.map(job),
            last_base_backup: None,
            last_drill: drill.map(|(age, passed)| LastDrill {
                id: 1,
                source: "snapshot x".into(),
                passed,
                finished_at: now - chrono::Duration::seconds(age),
                age_seconds: age,
                rto_seconds: 1.0,
            }),
            last_passing_drill: None,
            failing: Vec::new(),
            running: Vec::new(),
        }
    }

    #[test]
    fn what_is_late_is_stale_and_a_failed_drill_is_failing() {
        let now = Utc::now();
        let t = Thresholds {
            max_snapshot_age_seconds: Some(100),
            max_drill_age_seconds: Some(1000),
            max_wal_lag_seconds: Some(60),
            max_copy_lag_seconds: None,
        };
        let fresh = status(Some(50), Some((500, true)), now);
        let wal = Some(now - chrono::Duration::seconds(10));
        let at = |age: i64| Some(now - chrono::Duration::seconds(age));
        assert!(
            evaluate(&Observed { status: &fresh, newest_snapshot: at(50), wal_latest: wal, copies: &[] }, &t, now)
                .is_empty()
        );
        // One second past each threshold.
        let late = status(Some(101), Some((1001, true)), now);
        let old_wal = Some(now - chrono::Duration::seconds(61));
        let problems =
            evaluate(&Observed { status: &late, newest_snapshot: at(101), wal_latest: old_wal, copies: &[] }, &t, now);
        let kinds: Vec<_> = problems.iter().map(|p| (p.kind, p.late_by_seconds)).collect();
        assert_eq!(
            kinds,
            [(ProblemKind::SnapshotStale, Some(1)), (ProblemKind::DrillStale, Some(1)), (ProblemKind::WalLag, Some(1))]
        );
        assert_eq!(state_of(&problems), "stale");
        // Nothing at all where something is expected; a failed drill.
        let none = status(None, Some((10, false)), now);
        let problems =
            evaluate(&Observed { status: &none, newest_snapshot: None, wal_latest: None, copies: &[] }, &t, now);
        let kinds: Vec<_> = problems.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, [ProblemKind::SnapshotStale, ProblemKind::WalLag, ProblemKind::DrillFailed]);
        assert_eq!(state_of(&problems), "failing");
        // A failed snapshot job is failing; a failed restore someone asked for is not the
        // backups' health.
        let mut jobs = status(Some(50), Some((500, true)), now);
        let failed = |op: &str| LastJob { operation: op.into(), error: Some("boom".into()), ..fresh_job(now) };
        jobs.failing = vec![failed("restore")];
        assert!(
            evaluate(&Observed { status: &jobs, newest_snapshot: at(50), wal_latest: wal, copies: &[] }, &t, now)
                .is_empty()
        );
        jobs.failing.push(failed("snapshot"));
        let problems =
            evaluate(&Observed { status: &jobs, newest_snapshot: at(50), wal_latest: wal, copies: &[] }, &t, now);
        assert_eq!(problems.iter().map(|p| p.kind).collect::<Vec<_>>(), [ProblemKind::JobFailed]);
        assert!(problems[0].message.starts_with("snapshot failed"), "{problems:?}");
        // Unchecked ages are never a problem.
        let off = Thresholds {
            max_snapshot_age_seconds: None,
            max_drill_age_seconds: None,
            max_wal_lag_seconds: None,
            max_copy_lag_seconds: None,
        };
        assert!(
            evaluate(&Observed { status: &none, newest_snapshot: None, wal_latest: None, copies: &[] }, &off, now)
                .len()
                == 1
        );
    }

    #[test]
    fn a_copy_further_behind_than_its_bound_or_never_copied_to_is_stale() {
        let now = Utc::now();
        let t = Thresholds {
            max_snapshot_age_seconds: None,
            max_drill_age_seconds: None,
            max_wal_lag_seconds: None,
            max_copy_lag_seconds: Some(3600),
        };
        let fresh = status(Some(50), Some((500, true)), now);
        let copy = |name: &str, behind: Option<i64>| CopyHealth {
            name: name.into(),
            caught_up_to: behind.map(|s| now - chrono::Duration::seconds(s)),
            lag_seconds: behind,
            snapshots: behind.map(|_| 3),
        };
        let observe = |copies: &[CopyHealth]| {
            evaluate(&Observed { status: &fresh, newest_snapshot: None, wal_latest: None, copies }, &t, now)
        };
        assert!(observe(&[copy("near", Some(3600))]).is_empty());
        let problems = observe(&[copy("near", Some(60)), copy("far", Some(3601)), copy("new", None)]);
        let got: Vec<_> = problems.iter().map(|p| (p.kind, p.message.as_str(), p.late_by_seconds)).collect();
        assert_eq!(
            got,
            [
                (ProblemKind::CopyStale, "copy far is 60m behind (max 60m)", Some(1)),
                (ProblemKind::CopyStale, "copy new has never been copied to", None),
            ]
        );
        assert_eq!(state_of(&problems), "stale");
        // The bound comes from the copy policies (or copy-after) when not set.
        let daily_copy = policy("offsite", "cron = \"0 3 * * *\"\naction = \"copy\"\n");
        let derived = Thresholds::derive(&AlertsConfig::default(), &[daily_copy], false, now);
        assert_eq!(derived.max_copy_lag_seconds, Some(26 * 3600));
        let after = policy("daily", "cron = \"0 2 * * *\"\nkind = \"automatic\"\ncopy-after = true\n");
        assert_eq!(
            Thresholds::derive(&AlertsConfig::default(), &[after], false, now).max_copy_lag_seconds,
            Some(26 * 3600)
        );
        assert_eq!(Thresholds::derive(&AlertsConfig::default(), &[], false, now).max_copy_lag_seconds, None);
    }
}
