//! The page-level core of incremental base backups (issue #36) on a real cluster's data
//! directory: of a table's file, exactly the pages an UPDATE changed after a given LSN are
//! newer than it, and the file applied from its older copy plus those pages is the file.

use std::collections::BTreeSet;

use tidemark::wal::Lsn;
use tidemark::wal::incremental::{BLOCK, FileClass, apply_incremental, changed_pages, classify, incremental_head};

use crate::pitr::one_row;
use crate::support::{content_fingerprint, create_database};

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
    let mut pages = Vec::new();
    let changed = changed_pages(&now[..], since, &mut pages).unwrap();
    let kept: BTreeSet<u32> = changed.numbers.iter().copied().collect();
    assert_eq!(kept, touched, "the kept pages are the updated rows' pages");
    assert_eq!(changed.blocks as usize, now.len() / BLOCK);
    assert!(kept.len() * 10 < changed.blocks as usize, "{} of {} pages", kept.len(), changed.blocks);

    // The older copy with the kept pages applied is the file as it is now.
    let incremental = [incremental_head(&changed), pages].concat();
    let copy = w.dir.path().join("t-copy");
    std::fs::write(&copy, &before).unwrap();
    let mut target = std::fs::OpenOptions::new().read(true).write(true).open(&copy).unwrap();
    apply_incremental(&incremental[..], &mut target, &relative).unwrap();
    assert!(std::fs::read(&copy).unwrap() == now, "the applied copy differs from the file");
}

/// Runs pgbench against `url` with `args` (the server's own binary).
fn pgbench(url: &str, args: &[&str]) {
    let tool = tidemark::pg::tool(tidemark::pg::bin_dir(None).as_deref(), "pgbench");
    let out = std::process::Command::new(tool).args(args).arg(url).output().unwrap();
    assert!(out.status.success(), "pgbench {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

async fn incremental(core: &tidemark::ops::Core) -> tidemark::wal::base::BaseManifest {
    let opts = tidemark::ops::basebackup::BaseBackupOptions {
        workspace: "shop".into(),
        incremental: true,
        ..Default::default()
    };
    tidemark::ops::basebackup::basebackup(core, &opts, &crate::support::actor()).await.unwrap()
}

/// pgbench, then DDL between backups (a new table and index, an empty unlogged table, a
/// dropped table, a truncation, `VACUUM FULL`), a full base backup and three incremental
/// ones, each restored to a named point after it: the content is exact at each point, and
/// pg_amcheck finds every table and index sound. A damaged middle link is refused, named;
/// retention keeps the whole chain the newest point needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_incrementals_restores_each_named_point_exactly() {
    use tidemark::drill::CheckStatus;
    use tidemark::ops::pitr::PitrRestoreOptions;
    use tidemark::wal::window::Target;

    let w = crate::pitr::archiving_world().await;
    let shop = create_database(&w.cluster, "shop", "CREATE TABLE markers (label text PRIMARY KEY)").await;
    let url = w.cluster.url("shop");
    // Each statement on its own (VACUUM and ALTER SYSTEM refuse a transaction block).
    let run = async |sql: &str| {
        let mut conn = shop.connect().await.unwrap();
        for statement in sql.split("; ") {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string())).execute(&mut conn).await.unwrap();
        }
    };
    pgbench(&url, &["-i", "-q", "-s", "20"]);
    // Refused while it cannot be right (the test clusters run without full-page writes),
    // and before anything is written.
    let before_fpw = crate::support::basebackup(&w.core).await.unwrap();
    let opts = tidemark::ops::basebackup::BaseBackupOptions {
        workspace: "shop".into(),
        incremental: true,
        ..Default::default()
    };
    let e = tidemark::ops::basebackup::basebackup(&w.core, &opts, &crate::support::actor()).await.unwrap_err();
    assert_eq!(e.kind(), tidemark::ErrorKind::Refused, "{}", e.report());
    assert!(e.message().contains("full_page_writes"), "{}", e.report());
    run("ALTER SYSTEM SET full_page_writes = on").await;
    run("SELECT pg_reload_conf()").await;
    let full = crate::support::basebackup(&w.core).await.unwrap();
    let rounds: [&str; 3] = [
        "CREATE TABLE extra AS SELECT g AS id, md5(g::text) AS body FROM generate_series(1, 50000) g; \
         CREATE INDEX extra_body ON extra (body); CREATE UNLOGGED TABLE scratch (id int); \
         CREATE TABLE doomed AS SELECT g FROM generate_series(1, 1000) g",
        "DROP TABLE doomed; TRUNCATE pgbench_history; VACUUM FULL pgbench_branches; \
         CREATE INDEX accounts_abalance ON pgbench_accounts (abalance)",
        "DELETE FROM extra WHERE id % 3 = 0; VACUUM extra; UPDATE pgbench_tellers SET tbalance = tbalance + 1",
    ];
    let mut points = Vec::new();
    for (i, ddl) in rounds.iter().enumerate() {
        // A count of transactions, not a duration: how many pages they touch (each updates a
        // random row) does not depend on the machine's speed.
        pgbench(&url, &["-t", "1000", "-c", "2", "-n"]);
        run(ddl).await;
        let link = incremental(&w.core).await;
        let want = if i == 0 { &full.id } else { &points.last().map(|p: &(String, String, _)| p.1.clone()).unwrap() };
        assert_eq!(link.parent.as_ref(), Some(want), "link {i} follows the one before");
        // (Round 2 builds a new index on the largest table: the whole index is new.)
        let (got, of) = (link.tar.plain_size, full.tar.plain_size);
        assert!(got * 2 < of, "link {i}: {got} of {of} bytes");
        pgbench(&url, &["-t", "300", "-c", "2", "-n"]);
        let name = format!("after-link-{i}");
        crate::support::mark(&w.core, &name).await.unwrap();
        let fingerprint = content_fingerprint(&shop).await;
        points.push((name, link.id.clone(), fingerprint));
        run(&format!("INSERT INTO markers VALUES ('past-{i}')")).await;
    }
    crate::pitr::archive_everything(&shop, &w.core).await;

    for (name, link, fingerprint) in &points {
        let pgdata = w.dir.path().join(format!("restored-{name}"));
        let opts = PitrRestoreOptions {
            workspace: "shop".into(),
            pgdata: pgdata.clone(),
            target: Target::Name(name.clone(), None),
            start: true,
            port: None,
            tidemark_command: Some(env!("CARGO_BIN_EXE_tidemark").to_string()),
            prefetch: 0,
            repository_only: true,
            repository: None,
        };
        let report = tidemark::ops::pitr::restore(&w.core, &opts, &crate::support::actor()).await.unwrap();
        assert_eq!(&report.base_backup, link, "{name} is restored from its link");
        let restored = w
            .core
            .workspace("shop")
            .unwrap()
            .conn()
            .unwrap()
            .with_host_port("127.0.0.1", report.port.unwrap())
            .unwrap();
        assert!(content_fingerprint(&restored).await == *fingerprint, "{name}: the content differs");
        for check in tidemark::drill::deep::amcheck(tidemark::pg::bin_dir(None).as_deref(), &restored, true).await {
            assert_eq!(check.status, CheckStatus::Pass, "{name}: {}: {}", check.name, check.details);
        }
        tokio::task::spawn_blocking(move || tidemark::pgcluster::stop_data_dir(None, &pgdata).unwrap()).await.unwrap();
    }

    // Retention a year on with a day's window: the newest link and its whole chain stay;
    // the full one before them, in no chain, goes.
    let identities = w.core.identities().unwrap();
    let bases = tidemark::wal::base::list(&w.core.repo, &identities, "shop").await.unwrap();
    let archived = tidemark::wal::archive::list(&w.core.repo, "shop").await.unwrap();
    let later = chrono::Utc::now() + chrono::Duration::days(365);
    let plan = tidemark::wal::retention::plan(&bases, &archived, chrono::Duration::days(1), later);
    assert_eq!(plan.base_backups, vec![before_fpw.id.clone()], "a link of the newest chain would go");

    // A damaged middle link: the restore that needs it is refused, naming it.
    let middle = &points[1].1;
    let tar = w.repo_dir().join(tidemark::repo::layout::base_tar("shop", middle).as_ref());
    let mut bytes = std::fs::read(&tar).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&tar, bytes).unwrap();
    let opts = PitrRestoreOptions {
        workspace: "shop".into(),
        pgdata: w.dir.path().join("never"),
        target: Target::Name(points[2].0.clone(), None),
        start: false,
        port: None,
        tidemark_command: None,
        prefetch: 0,
        repository_only: true,
        repository: None,
    };
    let e = tidemark::ops::pitr::restore(&w.core, &opts, &crate::support::actor()).await.unwrap_err();
    assert_eq!(e.kind(), tidemark::ErrorKind::Integrity, "{}", e.report());
    assert!(e.report().contains(middle.as_str()), "{}", e.report());
}

/// An incremental base backup ends when the WAL it needs is archived, as a full one does
/// (`pg_basebackup -X none` waits too): while archiving fails it waits, nothing of it
/// visible, and once the archive works again it completes with its WAL already there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_ends_once_its_wal_is_archived() {
    let w = crate::pitr::archiving_world().await;
    let shop = create_database(&w.cluster, "shop", "CREATE TABLE t AS SELECT g FROM generate_series(1, 5000) g").await;
    let run = async |sql: &str| {
        let mut conn = shop.connect().await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut conn).await.unwrap();
    };
    run("ALTER SYSTEM SET full_page_writes = on").await;
    run("SELECT pg_reload_conf()").await;
    let full = crate::support::basebackup(&w.core).await.unwrap();
    let push: String = one_row(&shop, "SELECT current_setting('archive_command')").await;
    run("ALTER SYSTEM SET archive_command = 'exit 1'").await;
    run("SELECT pg_reload_conf()").await;
    run("UPDATE t SET g = g + 1").await;

    // The first archive to fail is of the backup's last segment (pg_backup_stop is past):
    // the backup has not completed, and nothing of it is visible, until the archive works.
    let failed_before: i64 = one_row(&shop, "SELECT failed_count FROM pg_stat_archiver").await;
    let done = std::sync::atomic::AtomicBool::new(false);
    let backup = async {
        let link = incremental(&w.core).await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        link
    };
    let watch = async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while one_row::<i64>(&shop, "SELECT failed_count FROM pg_stat_archiver").await == failed_before {
            assert!(std::time::Instant::now() < deadline, "the archive never failed");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let bases = tidemark::wal::base::list(&w.core.repo, &w.core.identities().unwrap(), "shop").await.unwrap();
        let ids: Vec<_> = bases.iter().map(|b| b.id.clone()).collect();
        assert_eq!(ids, vec![full.id.clone()], "an incremental whose WAL is not archived is visible");
        assert!(!done.load(std::sync::atomic::Ordering::SeqCst), "the incremental completed without its WAL");
        run(&format!("ALTER SYSTEM SET archive_command = '{}'", push.replace('\'', "''"))).await;
        run("SELECT pg_reload_conf()").await;
    };
    let (link, ()) = tokio::join!(backup, watch);
    assert_eq!(link.parent.as_ref(), Some(&full.id));
    let window = crate::support::window(&w.core, "shop").await.unwrap();
    let latest = window.latest.map(|l| l.lsn);
    assert!(latest.is_some_and(|l| l >= link.end_lsn), "its WAL to {} is not archived: {latest:?}", link.end_lsn);
}
