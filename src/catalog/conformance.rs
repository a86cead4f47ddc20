//! One suite for both catalog engines: everything the catalog keeps, written and read back
//! on a SQLite file and on a PostgreSQL database, with the same answers (what the job,
//! audit, branch and schedule tests in the other modules do for theirs).

use chrono::{DateTime, Duration, SubsecRound, Utc};

use super::testing::Engines;
use super::*;
use crate::access::Role;
use crate::catalog::switches::{SwitchIntent, SwitchKind};
use crate::catalog::tokens::TokenRecord;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

#[tokio::test]
async fn every_table_answers_alike_on_both_engines() {
    let engines = Engines::start().await;
    for catalog in engines.catalogs().await {
        let engine = catalog.name().to_string();
        tokens(&catalog).await;
        drills(&catalog).await;
        snapshot_index(&catalog).await;
        replaced_and_switches(&catalog).await;
        stats(&catalog).await;
        newest_jobs(&catalog).await;
        status_rows(&catalog).await;
        audit_checkpoint_claims(&catalog, &engines).await;
        sessions(&catalog).await;
        copy_states(&catalog).await;
        // Every step above ran on this engine.
        assert!(!catalog.tokens().await.unwrap().is_empty(), "{engine}");
    }
}

async fn tokens(catalog: &Catalog) {
    let now = Utc::now().trunc_subsecs(6);
    let token = TokenRecord {
        id: "tdm_abcd1234".into(),
        name: "ci".into(),
        role: Role::Operator,
        workspaces: vec!["shop".into()],
        allow_ips: vec!["10.0.0.0/8".into()],
        created_by: "cli:ana".into(),
        created_at: now,
        expires_at: Some(now + Duration::days(7)),
        last_used_at: None,
        last_used_address: None,
        revoked_at: None,
    };
    catalog.insert_token(&token, "hash-1").await.unwrap();
    let twice = catalog.insert_token(&TokenRecord { id: "tdm_other".into(), ..token.clone() }, "hash-2").await;
    assert_eq!(twice.unwrap_err().kind(), ErrorKind::AlreadyExists, "a live name is taken once");
    let (found, hash) = catalog.token_by_hash("hash-1").await.unwrap().unwrap();
    assert_eq!((found, hash.as_str()), (token.clone(), "hash-1"));
    assert!(catalog.token_by_hash("hash-2").await.unwrap().is_none());
    catalog.token_used(&token.id, now, Some("127.0.0.2")).await.unwrap();
    let refused = catalog.revoke_token("ci", now, |_| false).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::NotFound, "who may not manage it is not told it exists");
    let revoked = catalog.revoke_token("tdm_abcd1234", now, |_| true).await.unwrap();
    assert_eq!((revoked.revoked_at, revoked.last_used_address.as_deref()), (Some(now), Some("127.0.0.2")));
    // Revoked, its name is free again.
    catalog.insert_token(&TokenRecord { id: "tdm_new".into(), ..token }, "hash-3").await.unwrap();
    assert_eq!(catalog.tokens().await.unwrap().len(), 2);
}

async fn sessions(catalog: &Catalog) {
    use crate::catalog::sessions::SessionRecord;
    let now = Utc::now().trunc_subsecs(6);
    let session = SessionRecord {
        method: "token".into(),
        token_id: "tdm_abcd1234".into(),
        address: Some("127.0.0.2".into()),
        created_at: now,
        last_seen_at: now,
        expires_at: now + Duration::hours(12),
        ended_at: None,
    };
    catalog.insert_session("digest-1", &session).await.unwrap();
    assert_eq!(catalog.token_by_id("tdm_abcd1234").await.unwrap().map(|t| t.name), Some("ci".into()));
    assert!(catalog.token_by_id("tdm_none").await.unwrap().is_none());
    assert_eq!(catalog.session("digest-1").await.unwrap(), Some(session.clone()));
    assert!(catalog.session("digest-2").await.unwrap().is_none());
    // A person's request moves the last activity forward, never back.
    catalog.session_seen("digest-1", now + Duration::minutes(5)).await.unwrap();
    catalog.session_seen("digest-1", now + Duration::minutes(1)).await.unwrap();
    let seen = catalog.session("digest-1").await.unwrap().unwrap();
    assert_eq!(seen.last_seen_at, now + Duration::minutes(5));
    // Ended once; a second end says it was ended already.
    assert!(catalog.end_session("digest-1", now + Duration::minutes(6)).await.unwrap());
    assert!(!catalog.end_session("digest-1", now + Duration::minutes(7)).await.unwrap());
    assert_eq!(catalog.session("digest-1").await.unwrap().unwrap().ended_at, Some(now + Duration::minutes(6)));
    // A session begun two days later forgets the one that ended more than a day before it.
    let later = SessionRecord { created_at: now + Duration::days(2), ..session };
    catalog.insert_session("digest-3", &later).await.unwrap();
    assert!(catalog.session("digest-1").await.unwrap().is_none());
    assert!(catalog.session("digest-3").await.unwrap().is_some());
}

async fn copy_states(catalog: &Catalog) {
    use crate::catalog::copy_states::CopyStateRow;
    let now = Utc::now().trunc_subsecs(6);
    let state = CopyStateRow {
        workspace: "shop".into(),
        copy: "offsite".into(),
        caught_up_to: now - Duration::minutes(3),
        copied_at: now,
        missing_objects: 0,
        snapshots: 4,
    };
    catalog.record_copy_state(&state).await.unwrap();
    let other = CopyStateRow { copy: "azure".into(), missing_objects: 2, ..state.clone() };
    catalog.record_copy_state(&other).await.unwrap();
    assert_eq!(catalog.copy_states().await.unwrap(), vec![other.clone(), state.clone()]);
    assert_eq!(state.lag_seconds(now), 180);
    // A later copy replaces the state; an earlier one (that ended before) does not.
    let later =
        CopyStateRow { caught_up_to: now, copied_at: now + Duration::minutes(1), snapshots: 5, ..state.clone() };
    catalog.record_copy_state(&later).await.unwrap();
    catalog.record_copy_state(&state).await.unwrap();
    assert_eq!(catalog.copy_states().await.unwrap(), vec![other, later]);
}

fn drill_row(workspace: &str, started: &str, passed: bool) -> DrillRow {
    DrillRow {
        workspace: workspace.into(),
        kind: "logical".into(),
        source: format!("snapshot of {started}"),
        started_at: at(started),
        finished_at: at(started) + Duration::seconds(90),
        passed,
        checks: 24,
        failed_checks: usize::from(!passed),
        restore_ms: 1500,
        stored_bytes: 4096,
        report: serde_json::json!({"workspace": workspace, "passed": passed}),
    }
}

async fn drills(catalog: &Catalog) {
    let (passed, failed) =
        (drill_row("shop", "2026-11-01T03:00:00Z", true), drill_row("shop", "2026-11-02T03:00:00Z", false));
    let first = catalog.record_drill(&passed, Trigger::Cli, Some("cli:ana")).await.unwrap();
    let second = catalog.record_drill(&failed, Trigger::Schedule, None).await.unwrap();
    assert!(second > first);
    assert!(
        !catalog
            .insert_rebuilt_drill(&drill_row("shop", "2026-11-01T03:00:00Z", true), Trigger::Rebuilt)
            .await
            .unwrap()
    );
    assert!(
        catalog.insert_rebuilt_drill(&drill_row("blog", "2026-11-01T03:00:00Z", true), Trigger::Rebuilt).await.unwrap()
    );
    let shop = catalog.drills(Some("shop"), 10).await.unwrap();
    assert_eq!(shop.iter().map(|d| d.id).collect::<Vec<_>>(), vec![second, first], "newest first");
    assert_eq!(shop[1].actor.as_deref(), Some("cli:ana"));
    assert_eq!(shop[0].report["passed"], false);
    assert_eq!(catalog.drills(None, 1).await.unwrap().len(), 1, "the limit holds");
}

async fn snapshot_index(catalog: &Catalog) {
    for (id, kind, bytes) in [("20261101T000000Z-aaaaaa", "manual", 100), ("20261102T000000Z-bbbbbb", "automatic", 200)]
    {
        let summary = serde_json::json!({"id": id, "kind": kind, "stored_bytes": bytes, "media_new_bytes": 1});
        catalog.index_snapshot("shop", id, &summary.to_string()).await.unwrap();
    }
    // Replaced in place, and one summary that is not JSON (left out of the sums).
    let replaced = serde_json::json!({"kind": "manual", "stored_bytes": 150, "media_new_bytes": 0});
    catalog.index_snapshot("shop", "20261101T000000Z-aaaaaa", &replaced.to_string()).await.unwrap();
    catalog.index_snapshot("shop", "20261103T000000Z-cccccc", "not json").await.unwrap();
    let ids = catalog.indexed_snapshot_ids("shop").await.unwrap();
    assert_eq!(ids.len(), 3);
    let page = catalog.snapshot_summaries("shop", Some("20261103T000000Z-cccccc"), 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert!(page[0].contains("automatic"), "newest first, before the given id: {page:?}");
    assert_eq!(catalog.snapshot_summaries("shop", None, 10).await.unwrap().len(), 3);
    let totals = catalog.snapshot_totals().await.unwrap();
    assert_eq!(
        totals,
        vec![("shop".into(), "automatic".into(), 1, 201), ("shop".into(), "manual".into(), 1, 150)],
        "{}",
        catalog.name()
    );
    catalog.unindex_snapshots("shop", &["20261103T000000Z-cccccc".to_string()]).await.unwrap();
    assert_eq!(catalog.indexed_snapshots("shop").await.unwrap().len(), 2);
    let synced = Utc::now().trunc_subsecs(6);
    assert_eq!(catalog.snapshot_index_synced("shop").await.unwrap(), None);
    catalog.set_snapshot_index_synced("shop", Some(synced)).await.unwrap();
    catalog.set_snapshot_index_synced("shop", Some(synced)).await.unwrap();
    assert_eq!(catalog.snapshot_index_synced("shop").await.unwrap(), Some(synced));
    catalog.set_snapshot_index_synced("shop", None).await.unwrap();
    assert_eq!(catalog.snapshot_index_synced("shop").await.unwrap(), None);
}

async fn replaced_and_switches(catalog: &Catalog) {
    catalog.record_replaced("shop", "shop_before_1", 16384, at("2026-11-01T00:00:00Z")).await.unwrap();
    catalog.record_replaced("shop", "shop_before_2", u32::MAX, at("2026-11-02T00:00:00Z")).await.unwrap();
    assert_eq!(
        catalog.newest_replaced("shop", "shop_before").await.unwrap(),
        Some(("shop_before_2".into(), Some(u32::MAX))),
        "an oid keeps all of its 32 bits"
    );
    catalog.forget_replaced("shop", "shop_before_2").await.unwrap();
    let left = catalog.replaced("shop").await.unwrap();
    assert_eq!(left, vec![("shop_before_1".to_string(), at("2026-11-01T00:00:00Z"))]);

    let intent = SwitchIntent {
        workspace: "shop".into(),
        kind: SwitchKind::InPlace,
        live: "shop".into(),
        incoming: "shop_restoring".into(),
        aside: "shop_before".into(),
        media_tag: None,
        started_at: Utc::now().trunc_subsecs(6),
        actor: Some("cli:ana".into()),
    };
    catalog.record_switch(&intent).await.unwrap();
    assert!(catalog.record_switch(&intent).await.is_err(), "one switch per workspace at a time");
    assert_eq!(catalog.switch_intent("shop").await.unwrap(), Some(intent));
    catalog.forget_switch("shop").await.unwrap();
    assert_eq!(catalog.switch_intent("shop").await.unwrap(), None);
}

async fn stats(catalog: &Catalog) {
    let job = |started: &str| NewJob {
        workspace: "shop".into(),
        operation: "snapshot".into(),
        kind: Some("manual".into()),
        trigger: Trigger::Cli,
        policy: None,
        scheduled_for: None,
        started_at: at(started),
        actor: None,
    };
    for (started, seconds, status) in
        [("2026-11-01T00:00:00Z", 3, JobStatus::Succeeded), ("2026-11-02T00:00:00Z", 100, JobStatus::Succeeded)]
    {
        let id = catalog.start_job(&job(started)).await.unwrap();
        let end = JobEnd { finished_at: Some(at(started) + Duration::seconds(seconds)), ..Default::default() };
        catalog.finish_job(id, status, &end).await.unwrap();
    }
    catalog.start_job(&job("2026-11-03T00:00:00Z")).await.unwrap();
    let stats = catalog.job_stats().await.unwrap();
    assert_eq!(stats.len(), 1, "running jobs are not counted: {stats:?}");
    let s = &stats[0];
    assert_eq!((s.count, s.outcome.as_str()), (2, "succeeded"));
    assert!((s.seconds_sum - 103.0).abs() < 0.01, "{}", s.seconds_sum);
    let mut expected = vec![0; stats::JOB_BUCKETS.len() + 1];
    (expected[0], expected[1], expected[4]) = (0, 1, 1);
    assert_eq!(s.buckets, expected, "3 s in (1, 5], 100 s in (60, 300]");
    let newest = at("2026-11-02T00:01:40Z").timestamp() as f64;
    assert!((s.newest_end.unwrap() - newest).abs() < 0.01, "{:?}", s.newest_end);

    let drills = catalog.newest_drills().await.unwrap();
    let shop = drills.iter().find(|d| d.workspace == "shop").unwrap();
    assert!(!shop.passed && (shop.restore_seconds - 1.5).abs() < 1e-9, "{shop:?}");
    let finished = at("2026-11-02T03:01:30Z").timestamp() as f64;
    assert!((shop.finished - finished).abs() < 0.01, "{}", shop.finished);
}

/// The newest good and failed job of each operation, in one statement, is what the
/// statement per operation and status says.
async fn newest_jobs(catalog: &Catalog) {
    let mut at = at("2026-12-01T00:00:00Z");
    for (operation, status) in [
        ("snapshot", JobStatus::Succeeded),
        ("snapshot", JobStatus::Failed),
        ("snapshot", JobStatus::Succeeded),
        ("drill", JobStatus::Failed),
        ("prune", JobStatus::Succeeded),
        ("prune", JobStatus::Aborted),
    ] {
        at += Duration::minutes(1);
        let new = NewJob {
            workspace: "newest".into(),
            operation: operation.into(),
            kind: None,
            trigger: Trigger::Cli,
            policy: None,
            scheduled_for: None,
            started_at: at,
            actor: None,
        };
        let id = catalog.start_job(&new).await.unwrap();
        catalog.finish_job(id, status, &JobEnd { finished_at: Some(at), ..Default::default() }).await.unwrap();
    }
    let all = catalog.newest_jobs("newest").await.unwrap();
    assert_eq!(all.len(), 4, "{all:?}");
    for operation in ["snapshot", "drill", "prune"] {
        for status in [JobStatus::Succeeded, JobStatus::Failed] {
            let one = catalog.newest_job("newest", operation, status).await.unwrap().map(|j| j.id);
            let found = all.iter().find(|j| j.operation == operation && j.status() == status).map(|j| j.id);
            assert_eq!(found, one, "{operation} {status:?}");
        }
    }
}

/// The status rows of every workspace, four statements for all, are what the statements
/// per workspace say (the job history, the drills, the snapshot index); a job that started
/// earlier but ended later, and a rebuilt job older than the newest, do not take its place.
async fn status_rows(catalog: &Catalog) {
    let start = |workspace: &str, operation: &str, started: DateTime<Utc>| NewJob {
        workspace: workspace.into(),
        operation: operation.into(),
        kind: None,
        trigger: Trigger::Cli,
        policy: None,
        scheduled_for: None,
        started_at: started,
        actor: None,
    };
    let t0 = at("2026-12-02T00:00:00Z");
    let early = catalog.start_job(&start("rows", "snapshot", t0)).await.unwrap();
    let late = catalog.start_job(&start("rows", "snapshot", t0 + Duration::minutes(5))).await.unwrap();
    let end = |id: &str| JobEnd { snapshot_id: Some(id.into()), finished_at: Some(t0), ..Default::default() };
    catalog.finish_job(late, JobStatus::Succeeded, &end("s-late")).await.unwrap();
    catalog.finish_job(early, JobStatus::Succeeded, &end("s-early")).await.unwrap();
    let running = catalog.start_job(&start("rows", "prune", t0 + Duration::minutes(6))).await.unwrap();
    let rebuilt = |started| (start("rows", "snapshot", started), end("s-rebuilt"));
    let (older, its_end) = rebuilt(t0 - Duration::days(1));
    assert!(catalog.insert_rebuilt_job(&NewJob { trigger: Trigger::Rebuilt, ..older }, &its_end).await.unwrap());
    let (only, its_end) = (start("rows-rebuilt", "snapshot", t0), end("s-only"));
    assert!(catalog.insert_rebuilt_job(&NewJob { trigger: Trigger::Rebuilt, ..only }, &its_end).await.unwrap());
    catalog.record_drill(&drill_row("rows", "2026-12-02T03:00:00Z", true), Trigger::Cli, None).await.unwrap();
    catalog.record_drill(&drill_row("rows", "2026-12-01T03:00:00Z", false), Trigger::Cli, None).await.unwrap();
    // Its newest drill failed; an older one passed.
    catalog.record_drill(&drill_row("rows-drills", "2026-12-01T03:00:00Z", true), Trigger::Cli, None).await.unwrap();
    catalog.record_drill(&drill_row("rows-drills", "2026-12-02T03:00:00Z", false), Trigger::Cli, None).await.unwrap();
    catalog.index_snapshot("rows", "20261202T000000Z-bbbbbb", r#"{"id": "b"}"#).await.unwrap();
    catalog.index_snapshot("rows", "20261201T000000Z-aaaaaa", r#"{"id": "a"}"#).await.unwrap();
    let synced = t0.trunc_subsecs(6);
    catalog.set_snapshot_index_synced("rows-synced", Some(synced)).await.unwrap();

    let all = catalog.status_rows(None).await.unwrap();
    let rows = &all["rows"];
    let newest_snapshot = rows.newest_jobs.iter().find(|j| j.operation == "snapshot").map(|j| j.id);
    assert_eq!(newest_snapshot, Some(late), "{:?}", rows.newest_jobs);
    assert_eq!(rows.running.iter().map(|j| j.id).collect::<Vec<_>>(), vec![running]);
    assert_eq!(rows.newest_drill.as_ref().unwrap().report["passed"], true, "the newest by start");
    let failed_last = &all["rows-drills"];
    assert_eq!(failed_last.newest_drill.as_ref().unwrap().report["passed"], false);
    assert_eq!(failed_last.newest_passing_drill.as_ref().unwrap().report["passed"], true);
    assert_eq!(rows.newest_snapshot.as_deref(), Some(r#"{"id": "b"}"#));
    let only = &all["rows-rebuilt"].newest_jobs;
    assert_eq!(only.iter().map(|j| j.snapshot_id.as_deref()).collect::<Vec<_>>(), vec![Some("s-only")]);
    assert_eq!(all["rows-synced"].index_synced, Some(synced));
    // Every workspace, as the statements of one workspace say.
    for (workspace, rows) in &all {
        let newest_drill = catalog.drills(Some(workspace), 1).await.unwrap().pop().map(|d| d.id);
        assert_eq!(rows.newest_drill.as_ref().map(|d| d.id), newest_drill, "{workspace}");
        let drills = catalog.drills(Some(workspace), 100).await.unwrap();
        let passing = drills.into_iter().find(|d| d.report["passed"] == true).map(|d| d.id);
        assert_eq!(rows.newest_passing_drill.as_ref().map(|d| d.id), passing, "{workspace}");
        let summary = catalog.snapshot_summaries(workspace, None, 1).await.unwrap().pop();
        assert_eq!(rows.newest_snapshot, summary, "{workspace}");
        assert_eq!(rows.index_synced, catalog.snapshot_index_synced(workspace).await.unwrap(), "{workspace}");
        let running: Vec<i64> = catalog.running_jobs(workspace).await.unwrap().iter().map(|j| j.id).collect();
        assert_eq!(rows.running.iter().map(|j| j.id).collect::<Vec<_>>(), running, "{workspace}");
        for operation in ["snapshot", "prune", "drill", "restore", "check"] {
            for status in [JobStatus::Succeeded, JobStatus::Failed] {
                let truth = catalog.newest_job(workspace, operation, status).await.unwrap().map(|j| j.id);
                let kept = rows.newest_jobs.iter().find(|j| j.operation == operation && j.status() == status);
                assert_eq!(kept.map(|j| j.id), truth, "{workspace} {operation} {status:?}");
            }
        }
        let one = catalog.status_rows(Some(workspace)).await.unwrap();
        assert_eq!(one.keys().collect::<Vec<_>>(), vec![workspace], "one workspace asked");
    }
    for workspace in ["shop", "blog", "newest", "rows", "rows-rebuilt", "rows-synced"] {
        assert!(all.contains_key(workspace), "{workspace}: {:?}", all.keys());
    }
}

/// Each audit checkpoint is taken on by one process (two handles here, as two servers):
/// a record's checkpoint once, an older record's not after a newer one's, and a claim
/// given back can be taken again.
async fn audit_checkpoint_claims(catalog: &Catalog, engines: &Engines) {
    use crate::actor::Actor;
    use crate::catalog::audit::{AuditEntry, AuditHead};
    let location = match matches!(catalog.pool, Pool::Postgres(_)) {
        true => engines.locations().pop().unwrap(),
        false => engines.locations().remove(0),
    };
    let other = Catalog::open_at(&location).await.unwrap();
    let entry = AuditEntry {
        actor: Actor::schedule("daily"),
        action: "test.claims".into(),
        target: "t".into(),
        outcome: "ok".into(),
        details: serde_json::json!({}),
    };
    let mut heads: Vec<AuditHead> = Vec::new();
    for _ in 0..3 {
        catalog.append_audit(&entry).await.unwrap();
        heads.push(catalog.audit_head().await.unwrap().unwrap());
    }
    let (one, both) = (catalog.claim_audit_checkpoint(&heads[1]), other.claim_audit_checkpoint(&heads[1]));
    let (one, both) = futures::join!(one, both);
    let claims: Vec<_> = [one.unwrap(), both.unwrap()].into_iter().flatten().collect();
    assert_eq!(claims.len(), 1, "{}: one writer of a checkpoint: {claims:?}", catalog.name());
    assert!(claims[0].is_first(), "the chain's first");
    assert_eq!(other.claim_audit_checkpoint(&heads[1]).await.unwrap(), None, "taken");
    assert_eq!(other.claim_audit_checkpoint(&heads[0]).await.unwrap(), None, "older than one taken");
    let newer = other.claim_audit_checkpoint(&heads[2]).await.unwrap().expect("a newer record's");
    assert!(!newer.is_first());
    other.release_audit_checkpoint(&heads[2].chain, &newer).await.unwrap();
    let again = catalog.claim_audit_checkpoint(&heads[2]).await.unwrap();
    assert_eq!(again, Some(newer), "given back, taken again");
}
