//! Restore drills: what a drill reports (named checks with pass/fail and details, the
//! restore's timings, bytes), its JUnit rendering, the user's SQL assertions
//! (`restore-tests/`), and the throwaway places a drill restores into and always removes.
//! The drill itself is `ops::drill`.

pub mod assertions;
pub mod checks;
pub mod deep;
pub mod record;
pub mod throwaway;
pub mod verify;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CheckStatus {
    Pass,
    Fail,
    /// Not run, because something it needs failed first (the restore, say).
    Skip,
}

/// One named check of a drill.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Check {
    /// `object-hashes`, `table public.users`, `restore-test generic.sql: no invalid indexes`...
    pub name: String,
    pub status: CheckStatus,
    pub details: String,
    pub duration_ms: u64,
}

impl Check {
    pub fn new(name: impl Into<String>, outcome: std::result::Result<String, String>, duration_ms: u64) -> Check {
        let (status, details) = match outcome {
            Ok(d) => (CheckStatus::Pass, d),
            Err(d) => (CheckStatus::Fail, d),
        };
        Check { name: name.into(), status, details, duration_ms }
    }

    pub fn skipped(name: impl Into<String>, why: impl Into<String>) -> Check {
        Check { name: name.into(), status: CheckStatus::Skip, details: why.into(), duration_ms: 0 }
    }
}

/// What was drilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DrillKind {
    /// A snapshot restored into a throwaway database.
    Logical,
    /// A base backup and WAL recovered into a throwaway cluster.
    Pitr,
}

impl DrillKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DrillKind::Logical => "logical",
            DrillKind::Pitr => "pitr",
        }
    }
}

/// How long each phase took. The restore's phases: `preflight` (every object's presence
/// and size), `schema` (pre-data DDL), `data` (download, decrypt, decompress and COPY,
/// streamed together), `indexes` (post-data: indexes, constraints, triggers), `finish`
/// (sequences, materialized views) and `media`. `restore_ms` is the RTO: from the first
/// request to a restored, usable database. A PITR drill fills only `restore_ms`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrillTimings {
    pub target_ms: u64,
    pub preflight_ms: u64,
    pub schema_ms: u64,
    pub data_ms: u64,
    pub indexes_ms: u64,
    pub finish_ms: u64,
    pub media_ms: u64,
    pub restore_ms: u64,
    pub checks_ms: u64,
    pub cleanup_ms: u64,
    pub total_ms: u64,
}

/// A drill's report: `--json` prints it, `drill history` reads it back from the catalog.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrillReport {
    pub workspace: String,
    pub kind: DrillKind,
    /// The snapshot drilled (logical) or the base backup recovered (PITR).
    pub source: String,
    /// PITR: the recovery target; logical: the snapshot's time.
    pub target: String,
    /// Where it was restored: `throwaway cluster on port N` or the scratch server.
    pub restored_into: String,
    pub database: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub passed: bool,
    pub checks: Vec<Check>,
    pub timings: DrillTimings,
    /// Bytes read from the repository, and their size once decrypted and decompressed.
    pub stored_bytes: u64,
    pub plain_bytes: u64,
    /// Throwaways of earlier drills that had crashed, removed before this one started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leftovers_removed: Vec<String>,
    /// Set when the throwaway could not be removed (it is named so an operator can).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup_error: Option<String>,
}

impl DrillReport {
    /// The report as the catalog records it.
    pub fn row(&self) -> crate::catalog::DrillRow {
        crate::catalog::DrillRow {
            workspace: self.workspace.clone(),
            kind: self.kind.as_str().to_string(),
            source: self.source.clone(),
            started_at: self.started_at,
            finished_at: self.finished_at,
            passed: self.passed,
            checks: self.checks.len(),
            failed_checks: self.failed_checks().len(),
            restore_ms: self.timings.restore_ms,
            stored_bytes: self.stored_bytes,
            report: serde_json::to_value(self).expect("a report serializes"),
        }
    }

    pub fn failed_checks(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| c.status == CheckStatus::Fail).collect()
    }

    pub fn passed_checks(&self) -> usize {
        self.checks.iter().filter(|c| c.status == CheckStatus::Pass).count()
    }

    /// The report as JUnit XML: one test suite, one test case per check (a skipped check
    /// is a skipped test case), so a CI system shows each check by name.
    pub fn junit(&self) -> String {
        use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
        let title = format!("tidemark drill {} {}", self.workspace, self.source);
        let mut suite = TestSuite::new(title.clone());
        suite.set_timestamp(self.started_at);
        suite.set_time(std::time::Duration::from_millis(self.timings.total_ms));
        suite.add_property(("restored_into", self.restored_into.as_str()));
        suite.add_property(("rto_ms", self.timings.restore_ms.to_string().as_str()));
        suite.add_property(("stored_bytes", self.stored_bytes.to_string().as_str()));
        let classname = format!("tidemark.drill.{}.{}", self.workspace, self.kind.as_str());
        for check in &self.checks {
            let status = match check.status {
                CheckStatus::Pass => TestCaseStatus::success(),
                CheckStatus::Fail => {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    status.set_message(check.details.clone());
                    status
                }
                CheckStatus::Skip => {
                    let mut status = TestCaseStatus::skipped();
                    status.set_message(check.details.clone());
                    status
                }
            };
            let mut case = TestCase::new(check.name.clone(), status);
            case.set_classname(classname.clone());
            case.set_time(std::time::Duration::from_millis(check.duration_ms));
            if check.status == CheckStatus::Pass {
                case.set_system_out(check.details.clone());
            }
            suite.add_test_case(case);
        }
        let mut report = Report::new(title);
        report.add_test_suite(suite);
        report.to_string().unwrap_or_else(|e| format!("<!-- cannot render the JUnit report: {e} -->\n"))
    }
}

/// A JUnit report for a drill that could not run at all (an unknown snapshot, no server
/// binaries, an unreachable repository): one failed test case carrying the error, so a CI
/// system shows why instead of a missing file.
pub fn junit_for_error(workspace: &str, error: &str) -> String {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let title = format!("tidemark drill {workspace}");
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
    status.set_message(error.to_string());
    let mut case = TestCase::new("drill", status);
    case.set_classname(format!("tidemark.drill.{workspace}"));
    let mut suite = TestSuite::new(title.clone());
    suite.add_test_case(case);
    let mut report = Report::new(title);
    report.add_test_suite(suite);
    report.to_string().unwrap_or_else(|e| format!("<!-- cannot render the JUnit report: {e} -->\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_names_every_check_and_escapes_details() {
        let now = Utc::now();
        let report = DrillReport {
            workspace: "shop".into(),
            kind: DrillKind::Logical,
            source: "20261123T120000Z".into(),
            target: String::new(),
            restored_into: "throwaway cluster".into(),
            database: "tidemark_drill_shop".into(),
            started_at: now,
            finished_at: now,
            passed: false,
            checks: vec![
                Check::new("object-hashes", Ok("12 objects".into()), 5),
                Check::new("restore-test a.sql: <rows>", Err("expected no rows, got: (1,\"x & y\")".into()), 7),
                Check::skipped("media-hashes", "the snapshot has no media"),
            ],
            timings: DrillTimings::default(),
            stored_bytes: 1,
            plain_bytes: 2,
            leftovers_removed: vec![],
            cleanup_error: None,
        };
        let xml = report.junit();
        assert!(xml.contains("tests=\"3\""), "{xml}");
        assert!(xml.contains("failures=\"1\""), "{xml}");
        assert!(xml.contains("skipped=\"1\""), "{xml}");
        assert!(xml.contains("name=\"restore-test a.sql: &lt;rows&gt;\""), "{xml}");
        assert!(xml.contains("x &amp; y"), "{xml}");
        assert_eq!(report.failed_checks().len(), 1);
        let errored = junit_for_error("shop", "no snapshot <x>");
        assert!(errored.contains("errors=\"1\"") && errored.contains("no snapshot &lt;x&gt;"), "{errored}");
    }
}
