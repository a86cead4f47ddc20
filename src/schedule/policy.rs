//! A schedule and retention policy, one TOML file each:
//!
//! ```toml
//! cron = "0 2 * * *"          # standard 5-field crontab line (POSIX weekdays), or @daily...
//! time-zone = "Europe/Berlin" # IANA name; default UTC
//! kind = "automatic"          # what the schedule produces and the retention applies to
//! # action = "base-backup"    # instead of kind: a scheduled base backup (no [retention])
//! # action = "drill"          # instead of kind: a restore drill of the newest snapshot
//! drill-after = true          # a restore drill of every snapshot this policy takes
//! copy-after = true           # then copy it to the copies ([copies.NAME]; `to` names one)
//! # action = "copy"           # instead of kind: copy to the copies (`to = "offsite"`: one)
//! # repository = "offsite"    # in a drill policy: drill that copy instead of the primary
//! [retention]
//! keep-within = "3d"          # and/or keep-last, keep-daily, keep-weekly, keep-monthly
//! ```
//!
//! Daylight saving: runs are computed in the policy's zone. A local time that does not exist
//! (the hour skipped in spring) is taken at the first moment after the gap; a local time that
//! occurs twice (the hour repeated in autumn) runs once. Tests pin both behaviours down.

use std::path::Path;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::Deserialize;

use super::retention::Retention;
use crate::config::LoadedConfig;
use crate::error::{Error, Result};
use crate::repo::manifest::SnapshotKind;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PolicyFile {
    cron: Option<toml::Spanned<String>>,
    time_zone: Option<toml::Spanned<String>>,
    #[serde(default)]
    action: Action,
    kind: Option<SnapshotKind>,
    #[serde(default)]
    drill_after: bool,
    #[serde(default)]
    copy_after: bool,
    to: Option<String>,
    repository: Option<String>,
    #[serde(default)]
    heapallindexed: bool,
    #[serde(default)]
    incremental: bool,
    max_chain: Option<u32>,
    #[serde(default)]
    retention: RetentionFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RetentionFile {
    keep_within: Option<toml::Spanned<String>>,
    keep_last: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    keep_monthly: Option<u32>,
}

/// What a scheduled run does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// A logical snapshot of the policy's kind.
    #[default]
    Snapshot,
    /// A base backup for point-in-time restores (kept by the workspace's PITR window).
    BaseBackup,
    /// A restore drill of the workspace's newest snapshot.
    Drill,
    /// What the primary holds and the copies lack, sent to them.
    Copy,
}

/// A loaded, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The file's name without `.toml`.
    pub name: String,
    /// `None`: the policy only sets retention (manual snapshots).
    pub cron: Option<Cron>,
    pub cron_text: Option<String>,
    pub time_zone: chrono_tz::Tz,
    pub action: Action,
    /// The snapshot kind it produces and keeps; `None` for a base-backup policy.
    pub kind: Option<SnapshotKind>,
    /// Drill every snapshot this policy takes, right after it (a failed drill fails the job).
    pub drill_after: bool,
    /// Copy every snapshot this policy takes to the copies, right after it (and its drill).
    pub copy_after: bool,
    /// The copy a copy policy (or `copy-after`) sends to; `None`: every copy.
    pub to: Option<String>,
    /// The copy a drill policy drills; `None`: the primary.
    pub repository: Option<String>,
    /// Its drills also check that every row is in each index (`pg_amcheck --heapallindexed`).
    pub heapallindexed: bool,
    /// A base-backup policy's backups are incremental (on the database host), up to
    /// `max_chain` incrementals after a full one (then a full one).
    pub incremental: bool,
    pub max_chain: Option<u32>,
    pub retention: Retention,
}

impl Policy {
    /// Reads a policy file. Errors: `Config` naming the file, the line and what is wrong.
    pub fn load(path: &Path) -> Result<Policy> {
        let text = fs_err::read_to_string(path)
            .map_err(|e| Error::config(format!("cannot read the policy {}: {e}", path.display())))?;
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("policy").to_string();
        Policy::parse(&name, &text).map_err(|e| {
            Error::config(format!("{}{}", path.display(), e.message())).context(format!("loading policy {name}"))
        })
    }

    /// Parses policy text; error messages start with `:LINE: ` (or `: ` for TOML errors).
    pub fn parse(name: &str, text: &str) -> Result<Policy> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| format!(":{}", line_of(text, s.start))).unwrap_or_default();
            Error::config(format!("{line}: {}", e.message()))
        })?;
        let at = |span: std::ops::Range<usize>, what: String| {
            Error::config(format!(":{}: {what}", line_of(text, span.start)))
        };
        let time_zone = match &file.time_zone {
            None => chrono_tz::UTC,
            Some(z) => z.get_ref().parse::<chrono_tz::Tz>().map_err(|_| {
                at(
                    z.span(),
                    format!("unknown time zone {:?}: use an IANA name such as UTC or Europe/Berlin", z.get_ref()),
                )
            })?,
        };
        let (cron, cron_text) = match &file.cron {
            None => (None, None),
            Some(line) => {
                let parser = CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build();
                let cron = parser.parse(line.get_ref()).map_err(|e| {
                    at(
                        line.span(),
                        format!(
                            "bad cron line {:?}: {e} (use 5 fields: minute hour day month weekday)",
                            line.get_ref()
                        ),
                    )
                })?;
                (Some(cron), Some(line.get_ref().clone()))
            }
        };
        let keep_within = match &file.retention.keep_within {
            None => None,
            Some(d) => Some(humantime::parse_duration(d.get_ref()).map_err(|e| {
                at(d.span(), format!("bad duration {:?} for keep-within: {e} (write 3d, 12h, 90d)", d.get_ref()))
            })?),
        };
        let retention = Retention {
            keep_within: keep_within.map(|d| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)),
            keep_last: file.retention.keep_last,
            keep_daily: file.retention.keep_daily,
            keep_weekly: file.retention.keep_weekly,
            keep_monthly: file.retention.keep_monthly,
        };
        let kind = match (file.action, file.kind) {
            (Action::Snapshot, None) => {
                return Err(Error::config(
                    ": kind is missing: say which snapshots it makes and keeps (automatic, manual)",
                ));
            }
            (Action::Snapshot, kind) => kind,
            (Action::BaseBackup, Some(_) | None) if retention != Retention::default() => {
                return Err(Error::config(
                    ": a base-backup policy has no kind and no [retention]: base backups are kept by the \
                     workspace's pitr-window",
                ));
            }
            (Action::BaseBackup, Some(_)) => {
                return Err(Error::config(": a base-backup policy has no kind (it makes no snapshots)"));
            }
            (Action::BaseBackup, None) if cron.is_none() => {
                return Err(Error::config(": a base-backup policy needs a cron line"));
            }
            (Action::BaseBackup, None) => None,
            (Action::Drill, kind) if kind.is_some() || retention != Retention::default() => {
                return Err(Error::config(": a drill policy has no kind and no [retention] (it makes no snapshots)"));
            }
            (Action::Drill, _) if cron.is_none() => {
                return Err(Error::config(": a drill policy needs a cron line"));
            }
            (Action::Drill, _) => None,
            (Action::Copy, kind) if kind.is_some() || retention != Retention::default() => {
                return Err(Error::config(
                    ": a copy policy has no kind and no [retention] (a copy keeps what the primary keeps)",
                ));
            }
            (Action::Copy, _) if cron.is_none() => {
                return Err(Error::config(": a copy policy needs a cron line"));
            }
            (Action::Copy, _) => None,
        };
        if file.drill_after && file.action != Action::Snapshot {
            return Err(Error::config(": drill-after belongs in a snapshot policy (it drills what the policy takes)"));
        }
        if file.copy_after && file.action != Action::Snapshot {
            return Err(Error::config(": copy-after belongs in a snapshot policy (it copies what the policy takes)"));
        }
        if file.to.is_some() && !(file.action == Action::Copy || file.copy_after) {
            return Err(Error::config(": `to` names the copy of a copy policy or of copy-after"));
        }
        if file.repository.is_some() && file.action != Action::Drill {
            return Err(Error::config(": `repository` names the copy a drill policy drills"));
        }
        if file.heapallindexed && !(file.action == Action::Drill || file.drill_after) {
            return Err(Error::config(": heapallindexed belongs in a drill policy or one with drill-after"));
        }
        if (file.incremental || file.max_chain.is_some()) && file.action != Action::BaseBackup {
            return Err(Error::config(": incremental and max-chain belong in a base-backup policy"));
        }
        if file.max_chain.is_some() && !file.incremental {
            return Err(Error::config(": max-chain bounds the chains of an incremental policy (incremental = true)"));
        }
        if file.max_chain == Some(0) {
            return Err(Error::config(": max-chain is at least 1 (the incrementals after each full base backup)"));
        }
        Ok(Policy {
            name: name.to_string(),
            cron,
            cron_text,
            time_zone,
            action: file.action,
            kind,
            drill_after: file.drill_after,
            copy_after: file.copy_after,
            to: file.to,
            repository: file.repository,
            heapallindexed: file.heapallindexed,
            incremental: file.incremental,
            max_chain: file.max_chain,
            retention,
        })
    }

    /// The first run strictly after `after`, or `None` for a policy without a cron line.
    pub fn next_run(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let cron = self.cron.as_ref()?;
        let local = after.with_timezone(&self.time_zone);
        cron.find_next_occurrence(&local, false).ok().map(|t| t.with_timezone(&Utc))
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Loads every `*.toml` in a folder, sorted by name.
pub fn load_dir(dir: &Path) -> Result<Vec<Policy>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::config(format!("cannot read {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| Policy::load(p)).collect()
}

const BUILTIN_POLICIES: [(&str, &str); 2] =
    [("daily", include_str!("../../schedules/daily.toml")), ("manual", include_str!("../../schedules/manual.toml"))];

/// The policies that apply to a workspace: its `schedules` names (default: all) from the
/// schedules folder (default: `schedules/` beside the config, else the built-in ones).
///
/// Errors: `Config` for a policy that cannot be loaded, a name that does not exist, or two
/// policies setting retention for the same kind.
pub fn policies_for(config: &LoadedConfig, workspace: &str) -> Result<Vec<Policy>> {
    let ws = config.workspace(workspace)?;
    let dir = match &config.config.schedules_dir {
        Some(d) => Some(config.resolve_path(d)),
        None => Some(config.resolve_path(Path::new("schedules"))).filter(|d: &std::path::PathBuf| d.is_dir()),
    };
    let all = match dir {
        Some(d) => load_dir(&d)?,
        None => BUILTIN_POLICIES.iter().map(|(n, t)| Policy::parse(n, t)).collect::<Result<Vec<_>>>()?,
    };
    let chosen: Vec<Policy> = match &ws.schedules {
        None => all,
        Some(names) => names
            .iter()
            .map(|n| {
                all.iter().find(|p| &p.name == n).cloned().ok_or_else(|| {
                    Error::config(format!("workspace {workspace} names the schedule {n:?}, which does not exist"))
                })
            })
            .collect::<Result<_>>()?,
    };
    let mut kinds = std::collections::HashSet::new();
    for p in &chosen {
        for copy in [&p.to, &p.repository].into_iter().flatten() {
            config
                .config
                .repository_named(Some(copy))
                .map_err(|e| Error::config(format!("policy {} names the copy {copy:?}: {}", p.name, e.message())))?;
        }
        if (p.action == Action::Copy || p.copy_after) && config.config.copies.is_empty() {
            return Err(Error::config(format!(
                "policy {} copies, but the config has no copies: add a [copies.NAME] table",
                p.name
            )));
        }
        let Some(kind) = p.kind else { continue };
        if !kinds.insert(kind) {
            return Err(Error::config(format!(
                "two policies of workspace {workspace} set the retention of {kind} snapshots; keep one"
            )));
        }
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn copy_policies_and_what_belongs_to_them() {
        let copy = Policy::parse("offsite", "cron = \"0 3 * * *\"\naction = \"copy\"\nto = \"offsite\"\n").unwrap();
        assert_eq!((copy.action, copy.to.as_deref(), copy.kind), (Action::Copy, Some("offsite"), None));
        let after = Policy::parse("daily", "cron = \"0 2 * * *\"\nkind = \"automatic\"\ncopy-after = true\n").unwrap();
        assert!(after.copy_after && after.to.is_none());
        let drill = Policy::parse("d", "cron = \"0 4 * * 0\"\naction = \"drill\"\nrepository = \"offsite\"\n").unwrap();
        assert_eq!(drill.repository.as_deref(), Some("offsite"));
        assert!(!drill.heapallindexed);
        let deep = Policy::parse("d", "cron = \"0 4 * * 0\"\naction = \"drill\"\nheapallindexed = true\n").unwrap();
        assert!(deep.heapallindexed);
        let daily =
            Policy::parse("i", "cron = \"0 1 * * *\"\naction = \"base-backup\"\nincremental = true\nmax-chain = 6\n")
                .unwrap();
        assert_eq!((daily.incremental, daily.max_chain), (true, Some(6)));
        for (text, said) in [
            ("action = \"copy\"\n", "needs a cron line"),
            ("cron = \"@daily\"\naction = \"copy\"\nkind = \"manual\"\n", "no kind and no [retention]"),
            ("cron = \"@daily\"\naction = \"drill\"\ncopy-after = true\n", "copy-after belongs in a snapshot policy"),
            ("cron = \"@daily\"\nkind = \"automatic\"\nto = \"x\"\n", "`to` names the copy"),
            ("cron = \"@daily\"\nkind = \"automatic\"\nrepository = \"x\"\n", "`repository` names the copy"),
            ("cron = \"@daily\"\nkind = \"automatic\"\nheapallindexed = true\n", "heapallindexed belongs"),
            ("cron = \"@daily\"\nkind = \"automatic\"\nincremental = true\n", "belong in a base-backup policy"),
            ("cron = \"@daily\"\naction = \"base-backup\"\nmax-chain = 3\n", "max-chain bounds"),
            ("cron = \"@daily\"\naction = \"base-backup\"\nincremental = true\nmax-chain = 0\n", "at least 1"),
        ] {
            let e = Policy::parse("p", text).unwrap_err();
            assert!(e.message().contains(said), "{text}: {}", e.message());
        }
    }

    #[test]
    fn every_shipped_policy_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schedules");
        let policies = load_dir(&dir).unwrap();
        let daily = policies.iter().find(|p| p.name == "daily").expect("schedules/daily.toml");
        assert_eq!(daily.kind, Some(SnapshotKind::Automatic));
        assert_eq!(daily.retention.keep_within, Some(chrono::Duration::days(3)));
        assert_eq!(daily.next_run(utc("2026-11-23T01:00:00Z")), Some(utc("2026-11-23T02:00:00Z")));
        let manual = policies.iter().find(|p| p.name == "manual").expect("schedules/manual.toml");
        assert_eq!(manual.kind, Some(SnapshotKind::Manual));
        assert_eq!(manual.retention.keep_within, Some(chrono::Duration::days(90)));
        assert!(manual.next_run(utc("2026-11-23T01:00:00Z")).is_none());
    }

    #[test]
    fn bad_lines_are_refused_with_their_line() {
        let bad_cron = Policy::parse("p", "kind = \"automatic\"\ncron = \"0 2 * *\"\n").unwrap_err();
        assert!(bad_cron.message().starts_with(":2: bad cron line"), "{}", bad_cron.message());
        let seconds = Policy::parse("p", "kind = \"automatic\"\ncron = \"0 0 2 * * *\"\n").unwrap_err();
        assert!(seconds.message().contains("bad cron line"), "6 fields are refused: {}", seconds.message());
        let zone = Policy::parse("p", "kind = \"automatic\"\n\ntime-zone = \"Mars/Olympus\"\n").unwrap_err();
        assert!(zone.message().starts_with(":3: unknown time zone"), "{}", zone.message());
        let duration =
            Policy::parse("p", "kind = \"manual\"\n[retention]\nkeep-within = \"3 fortnights\"\n").unwrap_err();
        assert!(duration.message().starts_with(":3: bad duration"), "{}", duration.message());
        let unknown = Policy::parse("p", "kind = \"manual\"\nkeep = 3\n").unwrap_err();
        assert!(unknown.message().contains("unknown field"), "{}", unknown.message());
    }

    #[test]
    fn base_backup_policies_have_a_cron_line_and_nothing_else() {
        let weekly = Policy::parse("weekly-base", "action = \"base-backup\"\ncron = \"0 3 * * 0\"\n").unwrap();
        assert_eq!((weekly.action, weekly.kind), (Action::BaseBackup, None));
        let with_kind = Policy::parse("p", "action = \"base-backup\"\ncron = \"@weekly\"\nkind = \"manual\"\n");
        assert!(with_kind.unwrap_err().message().contains("has no kind"));
        let kept = "action = \"base-backup\"\ncron = \"@weekly\"\n[retention]\nkeep-last = 2\n";
        assert!(Policy::parse("p", kept).unwrap_err().message().contains("pitr-window"));
        assert!(Policy::parse("p", "action = \"base-backup\"\n").unwrap_err().message().contains("cron line"));
        assert!(Policy::parse("p", "cron = \"@daily\"\n").unwrap_err().message().contains("kind is missing"));
    }

    #[test]
    fn drills_run_on_their_own_cron_line_or_after_each_snapshot() {
        let weekly = Policy::parse("drill", "action = \"drill\"\ncron = \"0 5 * * 1\"\n").unwrap();
        assert_eq!((weekly.action, weekly.kind, weekly.drill_after), (Action::Drill, None, false));
        let after = Policy::parse("daily", "kind = \"automatic\"\ncron = \"@daily\"\ndrill-after = true\n").unwrap();
        assert!(after.drill_after);
        let no_cron = Policy::parse("p", "action = \"drill\"\n").unwrap_err();
        assert!(no_cron.message().contains("needs a cron line"), "{}", no_cron.message());
        let with_kind = Policy::parse("p", "action = \"drill\"\ncron = \"@daily\"\nkind = \"manual\"\n");
        assert!(with_kind.unwrap_err().message().contains("has no kind"));
        let misplaced = Policy::parse("p", "action = \"base-backup\"\ncron = \"@daily\"\ndrill-after = true\n");
        assert!(misplaced.unwrap_err().message().contains("drill-after belongs in a snapshot policy"));
    }

    #[test]
    fn weekdays_are_posix_and_aliases_work() {
        // 2026-11-23 is a Monday; weekday 0 and 7 are Sunday, 1 is Monday.
        let p = Policy::parse("p", "kind = \"automatic\"\ncron = \"30 4 * * 1\"\n").unwrap();
        assert_eq!(p.next_run(utc("2026-11-22T12:00:00Z")), Some(utc("2026-11-23T04:30:00Z")));
        let sunday = Policy::parse("p", "kind = \"automatic\"\ncron = \"0 0 * * 0\"\n").unwrap();
        assert_eq!(sunday.next_run(utc("2026-11-23T12:00:00Z")), Some(utc("2026-11-29T00:00:00Z")));
        let daily = Policy::parse("p", "kind = \"automatic\"\ncron = \"@daily\"\n").unwrap();
        assert_eq!(daily.next_run(utc("2026-11-23T12:00:00Z")), Some(utc("2026-11-24T00:00:00Z")));
    }

    #[test]
    fn local_time_across_daylight_saving_changes() {
        let p =
            Policy::parse("p", "kind = \"automatic\"\ncron = \"30 2 * * *\"\ntime-zone = \"Europe/Berlin\"\n").unwrap();
        // Winter: 02:30 CET = 01:30 UTC; summer: 02:30 CEST = 00:30 UTC.
        assert_eq!(p.next_run(utc("2026-01-10T12:00:00Z")), Some(utc("2026-01-11T01:30:00Z")));
        assert_eq!(p.next_run(utc("2026-07-10T12:00:00Z")), Some(utc("2026-07-11T00:30:00Z")));
        // 2026-03-29: 02:00-03:00 local does not exist. The run is not lost: it happens at
        // the first moment after the gap (03:00 CEST = 01:00 UTC), and the next day is normal.
        let spring = p.next_run(utc("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(spring, utc("2026-03-29T01:00:00Z"));
        assert_eq!(p.next_run(spring), Some(utc("2026-03-30T00:30:00Z")));
        // 2026-10-25: 02:30 local happens twice; the run happens once.
        let autumn = p.next_run(utc("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(autumn, utc("2026-10-25T00:30:00Z"));
        assert_eq!(p.next_run(autumn), Some(utc("2026-10-26T01:30:00Z")));
    }
}
