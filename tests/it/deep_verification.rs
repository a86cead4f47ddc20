//! Deep verification in drills (issue #36): a drill proves the pages and indexes under the
//! rows, not only the rows. A B-tree page damaged in the source (made here, under a
//! running server) survives a physical backup and recovery: the PITR drill's `amcheck
//! indexes` check fails naming the index while the recovery and the row checks pass; a
//! logical drill rebuilds indexes, and its throwaway has data checksums.

use std::collections::BTreeMap;

use tidemark::drill::CheckStatus;
use tidemark::ops::drill::{DrillOptions, DrillSource, drill};
use tidemark::wal::window::Target;

use crate::pitr::{archive_everything, archiving_world, commit_marker, one_row};
use crate::support::{actor, create_database};

const PAGE: usize = 8192;

/// Overwrites the key of the middle item on the first leaf page (block 1) of an `int4`
/// B-tree index with the largest `int4`: the page's keys are then out of order.
fn disorder_first_leaf(index_file: &std::path::Path) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new().read(true).write(true).open(index_file).unwrap();
    let mut page = vec![0u8; PAGE];
    file.seek(SeekFrom::Start(PAGE as u64)).unwrap();
    file.read_exact(&mut page).unwrap();
    // PageHeaderData: pd_lower at byte 12; line pointers (4 bytes each) from byte 24.
    let lower = u16::from_le_bytes([page[12], page[13]]) as usize;
    let items = (lower - 24) / 4;
    assert!(items > 10, "block 1 holds {items} items");
    let pointer = 24 + 4 * (items / 2 - 1);
    let item_id = u32::from_le_bytes(page[pointer..pointer + 4].try_into().unwrap());
    let offset = (item_id & 0x7fff) as usize;
    // IndexTupleData: an 8-byte header (heap TID, t_info), then the key.
    page[offset + 8..offset + 12].copy_from_slice(&i32::MAX.to_le_bytes());
    file.seek(SeekFrom::Start(PAGE as u64)).unwrap();
    file.write_all(&page).unwrap();
    file.sync_all().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_index_page_fails_the_drills_amcheck_naming_the_index_while_the_rows_pass() {
    let mut w = archiving_world().await;
    let source = create_database(
        &w.cluster,
        "shop",
        "CREATE TABLE markers (label text PRIMARY KEY, at timestamptz DEFAULT clock_timestamp());
         CREATE TABLE t AS SELECT g AS id, md5(g::text) AS body FROM generate_series(1, 20000) g;
         CREATE INDEX t_id ON t (id);",
    )
    .await;
    // The index's pages are on disk and not in the server's cache; nothing writes them again.
    {
        let mut conn = source.connect().await.unwrap();
        sqlx::raw_sql("CHECKPOINT").execute(&mut conn).await.unwrap();
    }
    let relative: String = one_row(&source, "SELECT pg_relation_filepath('t_id')").await;
    disorder_first_leaf(&w.cluster.data_dir().join(relative));
    crate::support::basebackup(&w.core).await.unwrap();
    commit_marker(&source, "after-base").await;
    archive_everything(&source, &w.core).await;
    w.core.config.config.drill.scratch_dir = Some(w.dir.path().join("drills"));

    let opts = DrillOptions {
        tidemark_command: Some(env!("CARGO_BIN_EXE_tidemark").to_string()),
        record: false,
        ..DrillOptions::new("shop", DrillSource::Pitr(Target::Latest))
    };
    let report = drill(&w.core, &opts, &actor()).await.unwrap();
    let by_name: BTreeMap<&str, &tidemark::drill::Check> = report.checks.iter().map(|c| (c.name.as_str(), c)).collect();
    for passing in ["base-backup", "recovery", "connect", "amcheck tables"] {
        assert_eq!(by_name[passing].status, CheckStatus::Pass, "{passing}: {}", by_name[passing].details);
    }
    let indexes = by_name["amcheck indexes"];
    assert_eq!(indexes.status, CheckStatus::Fail, "{}", indexes.details);
    assert!(indexes.details.contains("index public.t_id:"), "{}", indexes.details);
    assert!(!indexes.details.contains("markers_pkey"), "only the damaged index is named: {}", indexes.details);
    assert_eq!(by_name["data-checksums"].status, CheckStatus::Skip, "the source has no checksums");
    assert!(!report.passed);
    let junit = report.junit();
    assert!(junit.contains("name=\"amcheck indexes\"") && junit.contains("public.t_id"), "{junit}");

    // With every row in its index asked too (the damaged key's row is not where the index
    // says), the index still fails, named.
    let opts = DrillOptions { heapallindexed: true, ..opts };
    let report = drill(&w.core, &opts, &actor()).await.unwrap();
    let indexes = report.checks.iter().find(|c| c.name == "amcheck indexes").unwrap();
    assert!(indexes.status == CheckStatus::Fail && indexes.details.contains("public.t_id"), "{}", indexes.details);
}

/// A logical drill restores into a throwaway cluster with data checksums (a restore-test
/// asks it), and its amcheck checks pass on what it rebuilt (the restore makes every index
/// anew).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logical_drill_checks_tables_and_indexes_of_its_checksummed_throwaway() {
    let mut w = crate::support::world().await;
    let source = create_database(
        &w.cluster,
        "shop",
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS body FROM generate_series(1, 5000) g;
         CREATE INDEX t_id ON t (id); CREATE INDEX t_body ON t (body);",
    )
    .await;
    drop(source);
    crate::support::snapshot_shop(&w.core).await.unwrap();
    let tests = w.dir.path().join("restore-tests");
    std::fs::create_dir_all(&tests).unwrap();
    std::fs::write(
        tests.join("pages.sql"),
        "-- assert: the throwaway has data checksums\nSELECT current_setting('data_checksums') = 'on';\n",
    )
    .unwrap();
    w.core.config.config.drill.scratch_dir = Some(w.dir.path().join("drills"));
    let opts =
        DrillOptions { record: false, heapallindexed: true, ..DrillOptions::new("shop", DrillSource::Snapshot(None)) };
    let report = drill(&w.core, &opts, &actor()).await.unwrap();
    assert!(report.passed, "{:#?}", report.checks);
    for name in ["amcheck tables", "amcheck indexes"] {
        let check = report.checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no {name} check"));
        assert_eq!(check.status, CheckStatus::Pass, "{name}: {}", check.details);
    }
    let indexes = report.checks.iter().find(|c| c.name == "amcheck indexes").unwrap();
    assert!(indexes.details.contains("holds every row of its table"), "{}", indexes.details);
    let pages = report.checks.iter().find(|c| c.name.contains("pages.sql")).expect("the restore-test ran");
    assert_eq!(pages.status, CheckStatus::Pass, "{}", pages.details);
}
