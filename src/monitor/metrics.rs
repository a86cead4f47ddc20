//! Prometheus metrics (`prometheus-client`): what this process counts as it runs (API
//! requests, refusals, rate limits, retention deletions, the WAL stream's lag) and, at
//! each scrape, what the catalog and the daemon's newest health evaluation say (jobs,
//! newest snapshot, base backup and drill, the PITR window, WAL lag, staleness, repository
//! bytes). The repository is never listed for a scrape. No label takes a snapshot id, a
//! WAL file name or a time: series are bounded by workspaces x kinds.

use std::sync::{Arc, Mutex};

use chrono::Utc;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::health::{HealthReport, ProblemKind};
use crate::catalog::stats::{JOB_BUCKETS, JobStats, NewestDrill};
use crate::error::{Error, Result};

/// The media type of the OpenMetrics text format (what Prometheus asks for first).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The media type of the classic text format (`promtool check metrics`, older scrapers).
pub const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeletionLabels {
    workspace: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkspaceLabels {
    workspace: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// A process's metrics; shared by every clone of a [`Core`].
pub struct Metrics {
    registry: Registry,
    scrape: Arc<Mutex<Scrape>>,
    api_requests: Family<RequestLabels, Counter>,
    api_latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    api_denied: Family<ReasonLabels, Counter>,
    api_rate_limited: Counter,
    retention_deleted: Family<DeletionLabels, Counter>,
    stream_lag: Family<WorkspaceLabels, Gauge>,
    streamed_lsn: Family<WorkspaceLabels, Gauge>,
    streamed_at: Family<WorkspaceLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let scrape = Arc::new(Mutex::new(Scrape::default()));
        let api_requests = Family::<RequestLabels, Counter>::default();
        let api_latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let api_denied = Family::<ReasonLabels, Counter>::default();
        let api_rate_limited = Counter::default();
        let retention_deleted = Family::<DeletionLabels, Counter>::default();
        let stream_lag = Family::<WorkspaceLabels, Gauge>::default();
        let streamed_lsn = Family::<WorkspaceLabels, Gauge>::default();
        let streamed_at = Family::<WorkspaceLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register("tidemark_api_requests", "API requests by route, method and status", api_requests.clone());
        registry.register_with_unit(
            "tidemark_api_request_duration",
            "API request latency by route",
            Unit::Seconds,
            api_latency.clone(),
        );
        registry.register(
            "tidemark_api_denied_requests",
            "API requests refused: no or a bad token, a role, a workspace, an address",
            api_denied.clone(),
        );
        registry.register(
            "tidemark_api_rate_limited_requests",
            "API requests answered 429 (per address, per token, failed authentication, heavy jobs)",
            api_rate_limited.clone(),
        );
        registry.register(
            "tidemark_retention_deleted_objects",
            "Objects (and databases) retention removed in this process, by reason",
            retention_deleted.clone(),
        );
        registry.register_with_unit(
            "tidemark_wal_stream_lag",
            "WAL the source has written and the repository does not hold yet (the daemon's WAL stream)",
            Unit::Bytes,
            stream_lag.clone(),
        );
        registry.register(
            "tidemark_wal_streamed_lsn",
            "Where the WAL the stream shipped to the repository reaches, as a byte position (an LSN)",
            streamed_lsn.clone(),
        );
        registry.register_with_unit(
            "tidemark_wal_streamed_shipped_timestamp",
            "When the WAL stream last shipped WAL to the repository",
            Unit::Seconds,
            streamed_at.clone(),
        );
        registry.register_collector(Box::new(CatalogCollector { scrape: scrape.clone() }));
        Metrics {
            registry,
            scrape,
            api_requests,
            api_latency,
            api_denied,
            api_rate_limited,
            retention_deleted,
            stream_lag,
            streamed_lsn,
            streamed_at,
        }
    }

    /// Counts an API request: its route template (never the path as sent), method, status
    /// and latency.
    pub fn api_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let labels = RequestLabels { route: route.into(), method: method.into(), status: status.to_string() };
        self.api_requests.get_or_create(&labels).inc();
        self.api_latency.get_or_create(&RouteLabels { route: route.into() }).observe(seconds);
    }

    /// Counts a refused API request (`reason`: the error kind, `unauthenticated`, `forbidden`).
    pub fn api_denied(&self, reason: &str) {
        self.api_denied.get_or_create(&ReasonLabels { reason: reason.into() }).inc();
    }

    /// Counts an API request answered 429.
    pub fn api_rate_limited(&self) {
        self.api_rate_limited.inc();
    }

    /// Counts what retention removed (`reason`: `retention`, `garbage`, `pitr`, ...).
    pub fn retention_deleted(&self, workspace: &str, reason: &str, count: u64) {
        if count > 0 {
            let labels = DeletionLabels { workspace: workspace.into(), reason: reason.into() };
            self.retention_deleted.get_or_create(&labels).inc_by(count);
        }
    }

    /// The WAL stream's lag behind the server, in bytes.
    /// Where a WAL stream stands: the bytes the repository lacks, where what it shipped
    /// reaches and when it shipped last.
    pub fn stream_progress(&self, workspace: &str, progress: &crate::wal::stream::Progress) {
        let labels = WorkspaceLabels { workspace: workspace.into() };
        if let Some(bytes) = progress.lag_bytes {
            self.stream_lag.get_or_create(&labels).set(bytes);
        }
        if let Some(lsn) = progress.streamed {
            self.streamed_lsn.get_or_create(&labels).set(i64::try_from(lsn.0).unwrap_or(i64::MAX));
        }
        if let Some(at) = progress.shipped_at {
            self.streamed_at.get_or_create(&labels).set(at.timestamp_millis() as f64 / 1000.0);
        }
    }
}

/// What a scrape reads from the catalog and the monitor, gathered before encoding.
#[derive(Debug, Default, Clone)]
pub struct Scrape {
    /// Whether the catalog could be read (the rest of the catalog's fields are empty if not).
    pub catalog_up: bool,
    pub workspaces: Vec<String>,
    pub jobs: Vec<JobStats>,
    pub drills: Vec<NewestDrill>,
    /// (workspace, kind, snapshots, bytes) from the snapshot index.
    pub snapshots: Vec<(String, String, u64, u64)>,
    /// The daemon's newest health evaluation.
    pub health: Option<HealthReport>,
    /// When it was gathered (Unix seconds).
    pub now: f64,
    /// The fleet sharing the catalog (empty when the catalog cannot be read).
    pub fleet: FleetFigures,
    /// (workspace, copy, seconds behind the primary) of each copy its last copy recorded.
    pub copies: Vec<(String, String, f64)>,
}

/// What the catalog says of the fleet, for a scrape.
#[derive(Debug, Clone, Default)]
pub struct FleetFigures {
    /// Live members by role (`daemon`, `api`, `cli`; each role present, 0 when none).
    pub members: Vec<(String, u64)>,
    /// Dead members taken over, ever.
    pub takeovers: u64,
    /// How long after its due time a slot was claimed, over the last day: p50 and p99.
    pub claim_delay: Option<(f64, f64)>,
    /// Live daemons serving each configured workspace's schedules.
    pub schedule_daemons: Vec<(String, u64)>,
}

impl Metrics {
    /// The metrics text of this process's counters and `scrape`: OpenMetrics when
    /// `openmetrics`, else the classic text format.
    ///
    /// Errors: `Internal` when encoding fails (a bug).
    pub fn encode(&self, scrape: Scrape, openmetrics: bool) -> Result<String> {
        let mut text = String::new();
        {
            // The collector encodes the newest gathered data (two scrapes at once may both
            // answer the later one's: equally fresh).
            let mut current = self.scrape.lock().expect("scrape lock");
            *current = scrape;
        }
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .map_err(|e| Error::internal(format!("encoding the metrics: {e}")))?;
        Ok(if openmetrics { text } else { classic(&text) })
    }
}

#[derive(Debug)]
struct CatalogCollector {
    scrape: Arc<Mutex<Scrape>>,
}

/// A moment as Unix seconds.
pub fn unix(t: chrono::DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

/// The fleet's figures (see [`FleetFigures`]).
fn fleet(encoder: &mut DescriptorEncoder, s: &Scrape) -> std::fmt::Result {
    if !s.catalog_up {
        return Ok(());
    }
    let f = &s.fleet;
    gauges(
        encoder,
        "tidemark_fleet_members",
        "Live members of the fleet sharing the catalog, by role (daemon, api, cli)",
        None,
        &f.members.iter().map(|(role, n)| (vec![("role", role.clone())], *n as f64)).collect::<Vec<_>>(),
    )?;
    let mut metric = encoder.encode_descriptor(
        "tidemark_fleet_takeovers",
        "Members found dead (heartbeat older than the lease timeout) and taken over by a daemon",
        None,
        MetricType::Counter,
    )?;
    metric.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&f.takeovers, None)?;
    if let Some((p50, p99)) = f.claim_delay {
        gauges(
            encoder,
            "tidemark_fleet_claim_delay",
            "How long after its due time a scheduled slot was claimed, over the last day (quantile 0.5, 0.99)",
            Some(&Unit::Seconds),
            &[(vec![("quantile", "0.5".to_string())], p50), (vec![("quantile", "0.99".to_string())], p99)],
        )?;
    }
    gauges(
        encoder,
        "tidemark_workspace_schedule_daemons",
        "Live daemons serving the workspace's schedules (0: no scheduled backup will run)",
        None,
        &f.schedule_daemons.iter().map(|(w, n)| (vec![("workspace", w.clone())], *n as f64)).collect::<Vec<_>>(),
    )
}

/// One gauge family from `(labels, value)` pairs.
fn gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    values: &[(Vec<(&'static str, String)>, f64)],
) -> std::fmt::Result {
    if values.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, value) in values {
        metric.encode_family(labels)?.encode_gauge(value)?;
    }
    Ok(())
}

impl Collector for CatalogCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let s = self.scrape.lock().expect("scrape lock").clone();
        let ws = |w: &str| vec![("workspace", w.to_string())];
        gauges(
            &mut encoder,
            "tidemark_catalog_up",
            "Whether the catalog could be read for this scrape",
            None,
            &[(Vec::new(), f64::from(u8::from(s.catalog_up)))],
        )?;
        let configured = |w: &str| s.workspaces.iter().any(|c| c == w);
        fleet(&mut encoder, &s)?;

        // Jobs: a counter by outcome, a duration histogram, the newest success.
        let jobs: Vec<&JobStats> = s.jobs.iter().filter(|j| configured(&j.workspace)).collect();
        if !jobs.is_empty() {
            let mut metric = encoder.encode_descriptor(
                "tidemark_jobs",
                "Finished jobs by workspace, operation and outcome",
                None,
                MetricType::Counter,
            )?;
            for j in &jobs {
                let labels = vec![
                    ("workspace", j.workspace.clone()),
                    ("operation", j.operation.clone()),
                    ("outcome", j.outcome.clone()),
                ];
                metric
                    .encode_family(&labels)?
                    .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&j.count, None)?;
            }
            let mut by_op: std::collections::BTreeMap<(String, String), (f64, u64, Vec<u64>)> = Default::default();
            for j in &jobs {
                let entry = by_op
                    .entry((j.workspace.clone(), j.operation.clone()))
                    .or_insert_with(|| (0.0, 0, vec![0; JOB_BUCKETS.len() + 1]));
                entry.0 += j.seconds_sum;
                entry.1 += j.count;
                for (sum, n) in entry.2.iter_mut().zip(&j.buckets) {
                    *sum += n;
                }
            }
            let mut metric = encoder.encode_descriptor(
                "tidemark_job_duration",
                "How long finished jobs took, by workspace and operation",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for ((w, op), (sum, count, buckets)) in &by_op {
                let labels = vec![("workspace", w.clone()), ("operation", op.clone())];
                let bounds: Vec<(f64, u64)> =
                    JOB_BUCKETS.iter().copied().chain([f64::INFINITY]).zip(buckets.iter().copied()).collect();
                metric
                    .encode_family(&labels)?
                    .encode_histogram::<prometheus_client::encoding::NoLabelSet>(*sum, *count, &bounds, None)?;
            }
        }
        let mut newest: Vec<(Vec<(&'static str, String)>, f64)> = Vec::new();
        for j in jobs.iter().filter(|j| j.outcome == "succeeded") {
            let from_health = s
                .health
                .as_ref()
                .and_then(|h| h.workspaces.iter().find(|w| w.workspace == j.workspace))
                .and_then(|w| w.newest_snapshot_at)
                .filter(|_| j.operation == "snapshot");
            let value = from_health.map(unix).into_iter().chain(j.newest_end).fold(f64::MIN, f64::max);
            newest.push((vec![("workspace", j.workspace.clone()), ("operation", j.operation.clone())], value));
        }
        gauges(
            &mut encoder,
            "tidemark_last_success_timestamp",
            "When the newest successful job of each operation finished (snapshot, basebackup, drill, ...)",
            Some(&Unit::Seconds),
            &newest,
        )?;

        // Drills.
        let drills: Vec<&NewestDrill> = s.drills.iter().filter(|d| configured(&d.workspace)).collect();
        let each = |f: &dyn Fn(&NewestDrill) -> f64| -> Vec<(Vec<(&'static str, String)>, f64)> {
            drills.iter().map(|d| (ws(&d.workspace), f(d))).collect()
        };
        gauges(
            &mut encoder,
            "tidemark_drill_last_timestamp",
            "When the newest restore drill finished",
            Some(&Unit::Seconds),
            &each(&|d| d.finished),
        )?;
        gauges(
            &mut encoder,
            "tidemark_drill_last_passed",
            "Whether the newest restore drill passed (1) or failed (0)",
            None,
            &each(&|d| f64::from(u8::from(d.passed))),
        )?;
        gauges(
            &mut encoder,
            "tidemark_drill_last_rto",
            "The newest drill's restore time: the recovery time it proves",
            Some(&Unit::Seconds),
            &each(&|d| d.restore_seconds),
        )?;

        // Repository bytes and snapshots by kind, from the snapshot index.
        let snaps: Vec<_> = s.snapshots.iter().filter(|(w, ..)| configured(w)).collect();
        let by_kind = |f: &dyn Fn(u64, u64) -> u64| -> Vec<(Vec<(&'static str, String)>, f64)> {
            snaps
                .iter()
                .map(|(w, kind, n, bytes)| {
                    (vec![("workspace", w.clone()), ("kind", kind.clone())], f(*n, *bytes) as f64)
                })
                .collect()
        };
        let mut bytes = by_kind(&|_, bytes| bytes);
        if let Some(h) = &s.health {
            for w in h.workspaces.iter().filter(|w| configured(&w.workspace)) {
                if let Some(p) = w.physical_bytes {
                    for (kind, n) in [("basebackup", p.base_backups), ("wal", p.wal)] {
                        bytes.push((vec![("workspace", w.workspace.clone()), ("kind", kind.to_string())], n as f64));
                    }
                }
            }
        }
        gauges(
            &mut encoder,
            "tidemark_repository",
            "Bytes the repository holds, by workspace and kind (snapshot kinds from the index; basebackup and wal \
             from the daemon's evaluation)",
            Some(&Unit::Bytes),
            &bytes,
        )?;
        gauges(
            &mut encoder,
            "tidemark_snapshots",
            "Snapshots in the repository, by workspace and kind",
            None,
            &by_kind(&|n, _| n),
        )?;
        let copies: Vec<_> = s
            .copies
            .iter()
            .filter(|(w, ..)| configured(w))
            .map(|(w, copy, lag)| (vec![("workspace", w.clone()), ("copy", copy.clone())], *lag))
            .collect();
        gauges(
            &mut encoder,
            "tidemark_copy_lag",
            "How far each copy ([copies.NAME]) is behind the primary: since the moment before which everything \
             the primary held is in the copy, as its last copy recorded",
            Some(&Unit::Seconds),
            &copies,
        )?;

        // The daemon's newest health evaluation.
        if let Some(h) = &s.health {
            let healths: Vec<_> = h.workspaces.iter().filter(|w| configured(&w.workspace)).collect();
            gauges(
                &mut encoder,
                "tidemark_health_evaluated_timestamp",
                "When the daemon last evaluated the workspaces' freshness",
                Some(&Unit::Seconds),
                &[(Vec::new(), unix(h.at))],
            )?;
            let each = |f: &dyn Fn(&super::health::Health) -> Option<f64>| -> Vec<(Vec<(&'static str, String)>, f64)> {
                healths.iter().filter_map(|w| f(w).map(|v| (ws(&w.workspace), v))).collect()
            };
            gauges(
                &mut encoder,
                "tidemark_pitr_window_first_timestamp",
                "The first moment a point-in-time restore can reach",
                Some(&Unit::Seconds),
                &each(&|w| w.pitr_earliest.map(unix)),
            )?;
            gauges(
                &mut encoder,
                "tidemark_pitr_window_last_timestamp",
                "The last moment a point-in-time restore can reach",
                Some(&Unit::Seconds),
                &each(&|w| w.pitr_latest.map(unix)),
            )?;
            gauges(
                &mut encoder,
                "tidemark_pitr_window_last_lsn",
                "Where in the WAL the last restorable moment is, as a byte position (with a WAL stream: where the \
                 streamed WAL in the repository reaches)",
                None,
                &each(&|w| w.pitr_latest_lsn.map(|l| l.0 as f64)),
            )?;
            gauges(
                &mut encoder,
                "tidemark_wal_archive_lag",
                "Seconds from the newest archived WAL to the evaluation",
                Some(&Unit::Seconds),
                &each(&|w| w.pitr_latest.map(|t| (h.at - t).num_milliseconds() as f64 / 1000.0)),
            )?;
            gauges(
                &mut encoder,
                "tidemark_wal_segments_waiting",
                "WAL segments the source finished but has not archived yet (pg_stat_archiver)",
                None,
                &each(&|w| w.wal_segments_waiting.map(|n| n as f64)),
            )?;
            gauges(
                &mut encoder,
                "tidemark_rpo",
                "What a loss at the evaluation would cost: seconds since the newest recoverable moment",
                Some(&Unit::Seconds),
                &each(&|w| w.rpo_seconds.map(|r| r as f64)),
            )?;
            let mut stale = Vec::new();
            for w in &healths {
                for kind in ProblemKind::ALL {
                    let on = w.problems.iter().any(|p| p.kind == kind);
                    stale.push((
                        vec![("workspace", w.workspace.clone()), ("kind", kind.as_str().to_string())],
                        f64::from(u8::from(on)),
                    ));
                }
            }
            gauges(
                &mut encoder,
                "tidemark_workspace_stale",
                "1 when the workspace has this problem (snapshot-stale, drill-stale, wal-lag, drill-failed, job-failed, \
                 wal-stream-not-synchronous)",
                None,
                &stale,
            )?;
        }
        gauges(
            &mut encoder,
            "tidemark_scrape_timestamp",
            "When this scrape was answered",
            Some(&Unit::Seconds),
            &[(Vec::new(), s.now)],
        )?;
        Ok(())
    }
}

/// OpenMetrics text as the classic (0.0.4) text format: counters are named with their
/// `_total` in `# HELP`/`# TYPE`, `unknown` is `untyped`, and `# UNIT` and `# EOF` go.
pub fn classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<(String, String)> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name.to_string(), text.to_string()));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "unknown" => (name.to_string(), "untyped"),
                other => (name.to_string(), other),
            };
            if let Some((_, text)) = help.take() {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_with_total_in_the_classic_format() {
        let metrics = Metrics::new();
        metrics.api_request("/v1/jobs", "GET", 200, 0.01);
        metrics.api_rate_limited();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
        assert!(text.contains("# TYPE tidemark_api_requests counter") && text.ends_with("# EOF\n"), "{text}");
        let classic = classic(&text);
        assert!(classic.contains("# TYPE tidemark_api_requests_total counter\n"), "{classic}");
        assert!(classic.contains("# HELP tidemark_api_requests_total API requests"), "{classic}");
        assert!(classic.contains("tidemark_api_requests_total{route=\"/v1/jobs\",method=\"GET\",status=\"200\"} 1"));
        assert!(classic.contains("# TYPE tidemark_api_request_duration_seconds histogram"), "{classic}");
        assert!(!classic.contains("# EOF") && !classic.contains("# UNIT"));
    }
}
