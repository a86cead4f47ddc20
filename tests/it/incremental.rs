//! The page-level core of incremental base backups (issue #36) on a real cluster's data
//! directory: of a table's file, exactly the pages an UPDATE changed after a given LSN are
//! newer than it, and the file applied from its older copy plus those pages is the file.

use std::collections::BTreeSet;

use tidemark::wal::Lsn;
use tidemark::wal::incremental::{BLOCK, FileClass, apply_incremental, changed_pages, classify, write_incremental};

use crate::pitr::one_row;
use crate::support::create_database;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_an_update_changed_are_exactly_those_newer_than_the_lsn_before_it() {
    let w = crate::support::world().await;
    let shop = create_database(
        &w.cluster,
        "shop",
        "CREATE TABLE t (id int PRIMARY KEY, body text) WITH (fillfactor = 50);
         INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g;",
    )
    .await;
    let run = async |sql: &str| {
        let mut conn = shop.connect().await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut conn).await.unwrap();
    };
    // Hint bits and the visibility map set now, not by the reads below.
    run("VACUUM (FREEZE) t").await;
    run("CHECKPOINT").await;
    let file = w.cluster.data_dir().join(one_row::<String>(&shop, "SELECT pg_relation_filepath('t')").await);
    let before = std::fs::read(&file).unwrap();
    let since: Lsn = one_row::<String>(&shop, "SELECT pg_current_wal_lsn()::text").await.parse().unwrap();
    let blocks_of = "SELECT DISTINCT (ctid::text::point)[0]::int FROM t WHERE id % 1000 = 7";
    let old: Vec<i32> = sqlx::query_scalar(blocks_of).fetch_all(&mut shop.connect().await.unwrap()).await.unwrap();
    // With room on every page (fillfactor 50), each new version stays on its page (HOT).
    run("UPDATE t SET body = body || '!' WHERE id % 1000 = 7; CHECKPOINT").await;
    let new: Vec<i32> = sqlx::query_scalar(blocks_of).fetch_all(&mut shop.connect().await.unwrap()).await.unwrap();
    let touched: BTreeSet<u32> = old.iter().chain(&new).map(|b| *b as u32).collect();

    let now = std::fs::read(&file).unwrap();
    let relative = file.strip_prefix(w.cluster.data_dir()).unwrap().to_str().unwrap().to_string();
    assert_eq!(classify(&relative, false), FileClass::RelationPages, "{relative}");
    let changed = changed_pages(&now[..], since).unwrap();
    let kept: BTreeSet<u32> = changed.pages.iter().map(|(b, _)| *b).collect();
    assert_eq!(kept, touched, "the kept pages are the updated rows' pages");
    assert_eq!(changed.blocks as usize, now.len() / BLOCK);
    assert!(kept.len() * 10 < changed.blocks as usize, "{} of {} pages", kept.len(), changed.blocks);

    // The older copy with the kept pages applied is the file as it is now.
    let mut incremental = Vec::new();
    write_incremental(&changed, &mut incremental).unwrap();
    let copy = w.dir.path().join("t-copy");
    std::fs::write(&copy, &before).unwrap();
    let mut target = std::fs::OpenOptions::new().read(true).write(true).open(&copy).unwrap();
    apply_incremental(&incremental[..], &mut target, &relative).unwrap();
    assert!(std::fs::read(&copy).unwrap() == now, "the applied copy differs from the file");
}
