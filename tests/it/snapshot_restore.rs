//! Issue #2's acceptance test: a workspace full of hard cases comes back exactly, and a
//! snapshot is consistent while the database is being written to.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tidemark::drill::verify::verify_database;
use tidemark::ops::restore::{RestoreOptions, restore};
use tidemark::ops::snapshot::{self, SnapshotOptions};
use tidemark::pg::ConnSpec;
use tidemark::repo::manifest::SnapshotKind;

use crate::support::{content_fingerprint, create_database, schema_of, world};

const HARD_CASES: &str = include_str!("fixtures/hard_cases.sql");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_cases_restore_exactly() {
    let w = world().await;
    let source = create_database(&w.cluster, "shop", HARD_CASES).await;
    let opts = SnapshotOptions {
        workspace: "shop".into(),
        note: Some("before migration".into()),
        jobs: Some(3),
        split_table_mib: 1,
        ..Default::default()
    };
    let progress = tidemark::progress::Progress::hidden();
    let core = w.core.with_progress(progress.clone());
    let manifest = snapshot::create(&core, &opts, &crate::support::actor()).await.unwrap();
    let big = manifest.tables.iter().find(|t| t.name == "big").unwrap();
    assert!(big.parts.len() > 1, "app.big should be split into parts, got {}", big.parts.len());
    // Issue 31.9: progress counts tables, not their parts.
    let tables = manifest.tables.len() as u64;
    let counted = progress.state();
    assert_eq!((counted.tables_done, counted.tables_total), (tables, Some(tables)), "{counted:?}");
    assert_eq!(big.rows, 60000);
    assert!(manifest.tables.iter().all(|t| t.name != "measurements"), "partition parents hold no data");
    assert_eq!(manifest.kind, SnapshotKind::Manual);

    let listed = crate::support::list(&w.core, "shop").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].note.as_deref(), Some("before migration"));

    // A database name that needs quoting too.
    let target_url = w.cluster.url("shop copy");
    let opts = RestoreOptions {
        snapshot: manifest.id.clone(),
        target: target_url.clone().into(),
        jobs: Some(3),
        ..Default::default()
    };
    let progress = tidemark::progress::Progress::hidden();
    let report = restore(&w.core.with_progress(progress.clone()), &opts, &crate::support::actor()).await.unwrap();
    assert!(report.created_database);
    // Issue 31.9: the bytes it counts reach its total, never more (media and schema were
    // counted on one side only).
    let counted = progress.state();
    assert_eq!(Some(counted.bytes_done), counted.bytes_total, "{counted:?}");
    assert_eq!((counted.tables_done, counted.tables_total), (tables, Some(tables)), "{counted:?}");
    assert_eq!(report.rows, manifest.total_rows());

    let target = ConnSpec::parse(&target_url, None).unwrap();
    assert_eq!(schema_of(&source).await, schema_of(&target).await, "schema differs");
    let (src, dst) = (content_fingerprint(&source).await, content_fingerprint(&target).await);
    for (key, value) in &src {
        assert_eq!(Some(value), dst.get(key), "{key} differs");
    }
    assert_eq!(src.len(), dst.len());
    assert_eq!(src["S app.never_used"], "1/false");
    assert_eq!(dst["m app.later"], "unpopulated");
    let verify = verify_database(&target, &manifest).await.unwrap();
    assert!(verify.ok, "{:?}", verify.tables.iter().filter(|t| !t.ok).collect::<Vec<_>>());

    // Every table's phases are reported. Tables loaded whole were written frozen (their
    // pages all-frozen in the visibility map: nothing rewrites them later to set hint bits);
    // a table split over connections could not be.
    let mut conn = target.connect().await.unwrap();
    let phases = &report.timings.tables;
    assert_eq!(phases.len(), manifest.tables.len());
    assert!(phases.iter().all(|p| p.load_started_ms <= p.loaded_ms && p.loaded_ms <= p.done_ms), "{phases:?}");
    assert!(phases.windows(2).all(|w| w[0].plain_bytes >= w[1].plain_bytes), "largest first: {phases:?}");
    sqlx::raw_sql("CREATE EXTENSION pg_visibility").execute(&mut conn).await.unwrap();
    let (mut frozen_tables, mut split_tables) = (0, 0);
    for t in manifest.tables.iter().filter(|t| t.rows > 0) {
        let phase = phases.iter().find(|p| p.table == format!("{}.{}", t.schema, t.name)).unwrap();
        let (frozen, pages): (i64, i64) = sqlx::query_as(
            "SELECT (pg_visibility_map_summary(c)).all_frozen, pg_relation_size(c) / 8192 FROM CAST($1 AS regclass) c",
        )
        .bind(tidemark::pg::qualified(&t.schema, &t.name))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if phase.frozen {
            assert_eq!(frozen, pages, "{}: {frozen} of {pages} pages all-frozen", phase.table);
            frozen_tables += 1;
        } else {
            assert_eq!(frozen, 0, "{} was split over connections", phase.table);
            split_tables += 1;
        }
    }
    // No table is most of the data here (app.blobs is 90% of it but one part), so all are
    // whole, app.big with its 6 parts in one transaction.
    assert_eq!((frozen_tables, split_tables), (manifest.tables.iter().filter(|t| t.rows > 0).count(), 0));
    assert!(phases.iter().any(|p| p.table == "app.big" && p.parts > 1 && p.frozen), "{phases:?}");
    sqlx::raw_sql("DROP EXTENSION pg_visibility").execute(&mut conn).await.unwrap();

    // The trigger did not fire during the load, and identity columns continue where they were.
    let log: i64 = sqlx::query_scalar("SELECT count(*) FROM app.account_log").fetch_one(&mut conn).await.unwrap();
    assert_eq!(log, 3);
    let next: i64 = sqlx::query_scalar("INSERT INTO app.tickets (title) VALUES ('third') RETURNING id")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(next, 1020);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_is_consistent_under_concurrent_writes() {
    let w = world().await;
    let setup = "CREATE TABLE a (id int PRIMARY KEY, balance bigint NOT NULL, pad text); \
                 CREATE TABLE b (id int PRIMARY KEY, balance bigint NOT NULL, pad text); \
                 INSERT INTO a SELECT i, 1000, repeat('p', 200) FROM generate_series(1, 20000) i; \
                 INSERT INTO b SELECT i, 1000, repeat('p', 200) FROM generate_series(1, 20000) i;";
    let source = create_database(&w.cluster, "shop", setup).await;

    // Transfers move money from a to b in one transaction each: a+b is constant in any
    // consistent view, and differs in a view that reads a and b at different moments.
    let stop = Arc::new(AtomicBool::new(false));
    let transfers = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, transfers, source) = (stop.clone(), transfers.clone(), source.clone());
        tokio::spawn(async move {
            let mut conn = source.connect().await.unwrap();
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let id = (i % 20000 + 1) as i32;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "BEGIN; UPDATE a SET balance = balance - 1 WHERE id = {id}; \
                     UPDATE b SET balance = balance + 1 WHERE id = {id}; COMMIT;"
                )))
                .execute(&mut conn)
                .await
                .unwrap();
                transfers.fetch_add(1, Ordering::Relaxed);
                i += 7919;
            }
        })
    };
    while transfers.load(Ordering::Relaxed) < 50 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let before = transfers.load(Ordering::Relaxed);
    let opts = SnapshotOptions { workspace: "shop".into(), jobs: Some(2), ..Default::default() };
    let manifest = snapshot::create(&w.core, &opts, &crate::support::actor()).await.unwrap();
    let during = transfers.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert!(during > 0, "the workload must overlap the snapshot for this test to mean anything");

    let target_url = w.cluster.url("copy");
    let opts =
        RestoreOptions { snapshot: manifest.id.clone(), target: target_url.clone().into(), ..Default::default() };
    restore(&w.core, &opts, &crate::support::actor()).await.unwrap();
    let mut conn = ConnSpec::parse(&target_url, None).unwrap().connect().await.unwrap();
    let total: i64 = sqlx::query_scalar("SELECT ((SELECT sum(balance) FROM a) + (SELECT sum(balance) FROM b))::int8")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(total, 40000 * 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_are_reported_not_silently_dropped() {
    let w = world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int); SELECT lo_from_bytea(0, 'hello');").await;
    let m = crate::support::snapshot_shop(&w.core).await.unwrap();
    assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
    assert!(m.warnings[0].contains("1 large objects"));
    let shown = crate::support::show(&w.core, &m.id, None).await.unwrap();
    assert_eq!(shown.warnings, m.warnings);
}
