//! Issue 17.1: Prometheus metrics on real parts. A workspace with snapshots, a drill, a
//! base backup and archived WAL: the scrape carries their values, keeps to `promtool
//! check metrics`, does not grow with the snapshots, answers only tokens for every
//! workspace, and never shows a secret.

use std::net::IpAddr;

use reqwest::StatusCode;
use tidemark::access::Role;
use tidemark::ops::token::{TokenCreateOptions, create};
use tokio_util::sync::CancellationToken;

use crate::pitr::{archive_everything, commit_marker};
use crate::support::{actor, create_database};
use tidemark::service::Service;

/// The value of the series `name{labels}` (labels as printed), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.split_whitespace().next().unwrap().parse().unwrap())
}

fn series(text: &str) -> usize {
    text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count()
}

fn promtool(text: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is not installed: run scripts/setup-debian.sh (Debian's prometheus package)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_carry_the_values_keep_to_promtool_and_stay_bounded() {
    use tidemark::ops::alerts::{Transitions, evaluate_once};
    let mut w = crate::pitr::archiving_world().await;
    w.core.config.config.drill.scratch_dir = Some(w.dir.path().join("drills"));
    let shop = w.core.config.config.workspaces.get_mut("shop").unwrap();
    shop.password = Some(tidemark::config::Secret::literal("pw-never-shown"));
    shop.alerts = Some(tidemark::config::AlertsConfig {
        max_wal_lag: Some(std::time::Duration::from_secs(3600)),
        ..Default::default()
    });
    let live = create_database(&w.cluster, "shop", "CREATE TABLE markers (label text PRIMARY KEY);").await;
    let base = tidemark::ops::basebackup::basebackup_recorded(
        &w.core,
        &tidemark::ops::basebackup::BaseBackupOptions { workspace: "shop".into(), ..Default::default() },
        &actor(),
    )
    .await
    .unwrap();
    commit_marker(&live, "a").await;
    archive_everything(&live, &w.core).await;
    let manual = tidemark::ops::snapshot::SnapshotOptions { workspace: "shop".into(), ..Default::default() };
    let snapshot = tidemark::ops::snapshot::create_recorded(&w.core, &manual, &actor()).await.unwrap();
    let drill_opts = tidemark::ops::drill::DrillOptions::new(
        "shop",
        tidemark::ops::drill::DrillSource::Snapshot(Some(snapshot.id.clone())),
    );
    let drilled = tidemark::ops::drill::drill_recorded(&w.core, &drill_opts, &actor()).await.unwrap();
    assert!(drilled.passed);
    // The daemon's evaluation (what the PITR and staleness figures come from).
    let clock = tidemark::schedule::clock::SystemClock;
    evaluate_once(&w.core, &clock, &mut Transitions::default()).await;
    let window = crate::support::window(&w.core, "shop").await.unwrap();

    let text = tidemark::ops::metrics::render(&w.core, false).await.unwrap();
    if std::env::var_os("TIDEMARK_SHOW_METRICS").is_some() {
        eprintln!("{text}");
    }
    let (ok, said) = promtool(&text);
    assert!(ok, "promtool check metrics:\n{said}\n{text}");
    let shop = |name: &str, extra: &str| value(&text, &format!("{name}{{workspace=\"shop\"{extra}}}"));
    let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1.0);
    let ts = |t: chrono::DateTime<chrono::Utc>| t.timestamp_millis() as f64 / 1000.0;
    assert_eq!(value(&text, "tidemark_catalog_up"), Some(1.0));
    assert!(close(
        shop("tidemark_last_success_timestamp_seconds", ",operation=\"snapshot\""),
        ts(snapshot.finished_at)
    ));
    assert!(close(shop("tidemark_last_success_timestamp_seconds", ",operation=\"basebackup\""), ts(base.finished_at)));
    assert_eq!(shop("tidemark_jobs_total", ",operation=\"snapshot\",outcome=\"succeeded\""), Some(1.0), "{text}");
    assert_eq!(shop("tidemark_job_duration_seconds_count", ",operation=\"drill\""), Some(1.0), "{text}");
    assert_eq!(shop("tidemark_drill_last_passed", ""), Some(1.0));
    assert!(close(shop("tidemark_drill_last_rto_seconds", ""), drilled.timings.restore_ms as f64 / 1000.0));
    assert!(close(shop("tidemark_pitr_window_last_timestamp_seconds", ""), ts(window.latest.as_ref().unwrap().time)));
    assert!(close(
        shop("tidemark_pitr_window_first_timestamp_seconds", ""),
        ts(window.earliest.as_ref().unwrap().time)
    ));
    assert!(shop("tidemark_wal_archive_lag_seconds", "").is_some_and(|l| (0.0..600.0).contains(&l)), "{text}");
    assert_eq!(shop("tidemark_repository_bytes", ",kind=\"manual\""), Some(snapshot.stored_bytes() as f64), "{text}");
    fn stored(dir: &std::path::Path) -> u64 {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| match e.path() {
                p if p.is_dir() => stored(&p),
                p if p.to_string_lossy().ends_with(".zst.age") => e.metadata().unwrap().len(),
                _ => 0,
            })
            .sum()
    }
    let wal_bytes = stored(&w.repo_dir().join("workspaces/shop/wal"));
    assert!(wal_bytes > 0);
    assert_eq!(shop("tidemark_repository_bytes", ",kind=\"wal\""), Some(wal_bytes as f64), "{text}");
    assert_eq!(shop("tidemark_repository_bytes", ",kind=\"basebackup\""), Some(base.tar.stored_size as f64), "{text}");
    assert_eq!(shop("tidemark_workspace_stale", ",kind=\"snapshot-stale\""), Some(0.0), "{text}");
    assert_eq!(shop("tidemark_workspace_stale", ",kind=\"wal-lag\""), Some(0.0), "{text}");
    assert_eq!(shop("tidemark_wal_segments_waiting", ""), Some(0.0), "everything was archived: {text}");
    assert!(!text.contains("pw-never-shown") && !text.contains(&snapshot.id), "a secret or an id in a label");

    // More snapshots, the same series.
    let before = series(&tidemark::ops::metrics::render(&w.core, false).await.unwrap());
    for _ in 0..3 {
        tidemark::ops::snapshot::create_recorded(&w.core, &manual, &actor()).await.unwrap();
    }
    let after = tidemark::ops::metrics::render(&w.core, false).await.unwrap();
    assert_eq!(series(&after), before, "the number of series grew with snapshots");
    assert_eq!(
        value(&after, "tidemark_jobs_total{workspace=\"shop\",operation=\"snapshot\",outcome=\"succeeded\"}"),
        Some(4.0)
    );

    // Over HTTP: a viewer token for every workspace; a token limited to one is refused.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(tidemark::service::run(
        w.core.clone(),
        Service::api_only(listener.into(), Default::default()),
        stop.clone(),
    ));
    let token = async |name: &str, workspaces: &[&str]| {
        let opts = TokenCreateOptions {
            name: name.into(),
            role: Role::Viewer,
            workspaces: workspaces.iter().map(ToString::to_string).collect(),
            expires: None,
            never_expires: false,
            allow_ips: Vec::new(),
        };
        create(&w.core, &opts, &actor()).await.unwrap().secret
    };
    let (viewer, scoped) = (token("scraper", &[]).await, token("shop-only", &["shop"]).await);
    let client = reqwest::Client::builder().local_address("127.0.0.2".parse::<IpAddr>().unwrap()).build().unwrap();
    let url = format!("{base_url}/metrics");
    assert_eq!(client.get(&url).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(client.get(&url).bearer_auth(&scoped).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    let classic = client.get(&url).bearer_auth(&viewer).send().await.unwrap();
    assert_eq!(classic.status(), StatusCode::OK);
    assert_eq!(classic.headers()["content-type"], tidemark::ops::metrics::CLASSIC);
    let classic = classic.text().await.unwrap();
    assert!(promtool(&classic).0, "{classic}");
    let open = client
        .get(&url)
        .bearer_auth(&viewer)
        .header("accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
        .send()
        .await
        .unwrap();
    assert_eq!(open.headers()["content-type"], tidemark::ops::metrics::OPENMETRICS);
    let open = open.text().await.unwrap();
    assert!(open.ends_with("# EOF\n") && open.contains("# TYPE tidemark_jobs counter"), "{open}");
    // The API counts itself: the refusals and this route, by template.
    let again = client.get(&url).bearer_auth(&viewer).send().await.unwrap().text().await.unwrap();
    assert!(value(&again, "tidemark_api_denied_requests_total{reason=\"forbidden\"}").is_some_and(|n| n >= 1.0));
    assert!(
        value(&again, "tidemark_api_requests_total{route=\"/metrics\",method=\"GET\",status=\"200\"}")
            .is_some_and(|n| n >= 2.0),
        "{again}"
    );
    assert!(!again.contains(&viewer) && !again.contains(&scoped[4..]), "a token in the metrics");

    // Every metric the contrib rules and dashboard use is one tidemark exports (the stream's
    // lag and retention's deletions appear once there is one: recorded here as those do).
    let streamed = tidemark::wal::stream::Progress {
        streamed: Some(tidemark::wal::Lsn(0x308_1E50)),
        shipped_at: Some(chrono::Utc::now()),
        lag_bytes: Some(0),
    };
    w.core.metrics.stream_progress("shop", &streamed);
    w.core.metrics.retention_deleted("shop", "retention", 1);
    let rendered = tidemark::ops::metrics::render(&w.core, false).await.unwrap();
    // Where the stream's WAL reaches, as a number Prometheus can compare (issue 19).
    assert_eq!(value(&rendered, "tidemark_wal_streamed_lsn{workspace=\"shop\"}"), Some(f64::from(0x308_1E50)));
    let exported: std::collections::BTreeSet<String> = rendered
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_string))
        .collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
    for file in ["prometheus/tidemark-alerts.yml", "grafana/tidemark-dashboard.json"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let used: std::collections::BTreeSet<&str> = text
            .match_indices("tidemark_")
            .map(|(at, _)| {
                let rest = &text[at..];
                &rest[..rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len())]
            })
            .collect();
        assert!(!used.is_empty());
        for name in used {
            assert!(exported.contains(name), "{file} uses {name}, which tidemark does not export: {exported:?}");
        }
    }

    // docs/reference/metrics.md names every metric tidemark exports, and only those: each
    // exported family is in its table, and each name there is registered in the code (some
    // appear on a scrape only once the daemon has evaluated, so the code is asked).
    let names_in = |text: &str| -> std::collections::BTreeSet<String> {
        text.match_indices("tidemark_")
            .map(|(at, _)| {
                let rest = &text[at..];
                rest[..rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len())].to_string()
            })
            .collect()
    };
    let root_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let documented = names_in(&std::fs::read_to_string(root_dir.join("docs/reference/metrics.md")).unwrap());
    for name in &exported {
        let family =
            ["_bucket", "_sum", "_count", "_created"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        assert!(
            documented.contains(family) || documented.contains(&format!("{family}_total")),
            "{family} is exported but not in docs/reference/metrics.md"
        );
    }
    let code = std::fs::read_to_string(root_dir.join("src/monitor/metrics.rs")).unwrap();
    for name in &documented {
        let mut stem = name.as_str();
        while !code.contains(&format!("\"{stem}")) {
            let shorter = ["_total", "_seconds", "_bytes"].iter().find_map(|s| stem.strip_suffix(s));
            let Some(shorter) = shorter else {
                panic!("docs/reference/metrics.md names {name}, which tidemark does not export")
            };
            stem = shorter;
        }
    }

    // [metrics] listen: /metrics without a token, nothing else.
    let own = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let own_url = format!("http://{}", own.local_addr().unwrap());
    let metrics_only = Service { scheduler: None, api: None, metrics: Some(own) };
    tokio::spawn(tidemark::service::run(w.core.clone(), metrics_only, stop.clone()));
    let scraped = client.get(format!("{own_url}/metrics")).send().await.unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    assert!(scraped.text().await.unwrap().contains("tidemark_jobs_total"));
    let other = client.get(format!("{own_url}/v1/workspaces")).send().await.unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    stop.cancel();
}

/// The contrib alert rules load, and fire on the series above when they should (and not
/// before): `promtool check rules` and `promtool test rules`.
#[test]
fn the_contrib_alert_rules_pass_promtool() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/prometheus");
    for args in [["check", "rules", "tidemark-alerts.yml"], ["test", "rules", "tidemark-alerts.test.yml"]] {
        let out = std::process::Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool is not installed: run scripts/setup-debian.sh (Debian's prometheus package)");
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.contains("SUCCESS"), "promtool {args:?}:\n{said}");
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("../grafana/tidemark-dashboard.json")).unwrap())
            .expect("the dashboard is JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() >= 10));
}
