//! Issue 16.1: restore in place, with an undo. The live database is replaced only after a
//! pre-restore snapshot, a restore beside it and the content checks; a failure before the
//! switch leaves it as it was; `undo` swaps back.

use std::collections::BTreeMap;
use std::time::Duration;

use tidemark::ErrorKind;
use tidemark::ops::inplace::{InPlaceOptions, UndoOptions, restore_in_place, undo};
use tidemark::pg::ConnSpec;
use tidemark::repo::layout;

use crate::support::{World, actor, content_fingerprint, create_database, list, snapshot_shop, world};

const SHOP: &str = "CREATE TABLE orders (id serial PRIMARY KEY, total numeric NOT NULL); \
                    CREATE INDEX ON orders (total); \
                    INSERT INTO orders (total) SELECT g * 1.5 FROM generate_series(1, 3000) g;";

fn undo_shop() -> UndoOptions {
    UndoOptions { workspace: "shop".into(), confirm: "shop".into(), ..Default::default() }
}

fn in_place(id: &str) -> InPlaceOptions {
    InPlaceOptions { snapshot: id.into(), workspace: "shop".into(), confirm: "shop".into(), ..Default::default() }
}

async fn databases(w: &World) -> Vec<String> {
    crate::support::databases_like(&w.cluster, "shop%").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_is_restored_in_place_while_a_client_is_connected_and_undone() {
    let w = world().await;
    let live = create_database(&w.cluster, "shop", SHOP).await;
    let snapshot = snapshot_shop(&w.core).await.unwrap();
    let at_snapshot = content_fingerprint(&live).await;
    // Someone deletes rows and adds a table after the snapshot.
    let mut client = live.connect().await.unwrap();
    sqlx::raw_sql("DELETE FROM orders WHERE id % 3 = 0; CREATE TABLE later (x int); INSERT INTO later VALUES (1);")
        .execute(&mut client)
        .await
        .unwrap();
    let damaged = content_fingerprint(&live).await;
    assert_ne!(damaged, at_snapshot);

    let report = restore_in_place(&w.core, &in_place(&snapshot.id), &actor()).await.unwrap();
    assert_eq!(content_fingerprint(&live).await, at_snapshot, "the live database is the snapshot again");
    assert_eq!(report.verified_tables, snapshot.tables.len());
    assert!(report.switch_ms < 5_000, "{report:?}");
    // The client that was connected lost its connection, and a new one sees the restored data.
    assert!(sqlx::query("SELECT 1").execute(&mut client).await.is_err());
    let mut again = live.connect().await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(&mut again).await.unwrap();
    assert_eq!(rows, 3000);
    ConnSpec::close(again).await;
    // The replaced database is beside it, as it was; the pre-restore snapshot is listed.
    let previous = report.previous_database.clone().unwrap();
    assert_eq!(previous, format!("shop_before_{}", snapshot.id.to_ascii_lowercase().replace('-', "_")));
    assert_eq!(databases(&w).await, ["shop".to_string(), previous.clone()]);
    let aside = ConnSpec::parse(&w.cluster.url(&previous), None).unwrap();
    assert_eq!(content_fingerprint(&aside).await, damaged);
    let listed = list(&w.core, "shop").await.unwrap();
    let safety = listed.iter().find(|s| s.id == report.safety_snapshot).unwrap();
    assert_eq!(safety.kind, Some(tidemark::repo::manifest::SnapshotKind::PreRestore));

    // Undo: the replaced database is live again; the restored one is moved aside.
    let undone = undo(&w.core, &undo_shop(), &actor()).await.unwrap();
    assert_eq!(content_fingerprint(&live).await, damaged);
    assert_eq!(undone.restored_from, previous);
    assert_eq!(databases(&w).await, ["shop".to_string(), undone.replaced_moved_to.clone()]);
    // Nothing more to undo.
    let nothing = undo(&w.core, &undo_shop(), &actor()).await.unwrap_err();
    assert_eq!(nothing.kind(), ErrorKind::NotFound, "{}", nothing.report());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_before_the_switch_leaves_the_live_database_as_it_was() {
    let w = world().await;
    let live = create_database(&w.cluster, "shop", SHOP).await;
    let snapshot = snapshot_shop(&w.core).await.unwrap();
    let mut conn = live.connect().await.unwrap();
    sqlx::raw_sql("UPDATE orders SET total = 0 WHERE id < 10").execute(&mut conn).await.unwrap();
    ConnSpec::close(conn).await;
    let before = content_fingerprint(&live).await;

    // Without the confirmation: refused before anything (no pre-restore snapshot either).
    let opts = InPlaceOptions { confirm: "shpo".into(), ..in_place(&snapshot.id) };
    let err = restore_in_place(&w.core, &opts, &actor()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage, "{}", err.report());
    assert_eq!(list(&w.core, "shop").await.unwrap().len(), 1);

    // A damaged object: the restore beside it fails; live untouched, nothing left beside it.
    let part = &snapshot.tables.iter().find(|t| t.name == "orders").unwrap().parts[0];
    let key = layout::SnapshotObject::key_for_name("shop", &snapshot.id, &part.name).unwrap();
    let file = w.repo_dir().join(key.as_ref());
    let original = std::fs::read(&file).unwrap();
    let mut bytes = original.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    let err = restore_in_place(&w.core, &in_place(&snapshot.id), &actor()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{}", err.report());
    assert!(err.report().contains("was not touched"), "{}", err.report());
    assert_eq!(content_fingerprint(&live).await, before);
    assert_eq!(databases(&w).await, ["shop".to_string()]);

    // A copy that restores but differs from what its manifest promises (a manifest written
    // by tidemark itself with a wrong digest, as a bug would): the checks before the switch
    // catch it, the copy is dropped, live untouched.
    let mut wrong = snapshot.clone();
    wrong.id = "20200101T000000Z-000001".into();
    wrong.tables.iter_mut().find(|t| t.name == "orders").unwrap().content_digest = "00".repeat(16);
    let snaps = w.repo_dir().join("workspaces/shop/snapshots");
    let copy = |from: &std::path::Path, to: &std::path::Path| {
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                std::fs::create_dir_all(to.join(path.file_name().unwrap())).unwrap();
                for inner in std::fs::read_dir(&path).unwrap() {
                    let inner = inner.unwrap().path();
                    std::fs::copy(&inner, to.join(path.file_name().unwrap()).join(inner.file_name().unwrap())).unwrap();
                }
            } else if !path.to_string_lossy().contains("manifest.json.age") {
                std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
            }
        }
    };
    std::fs::create_dir_all(snaps.join(&wrong.id)).unwrap();
    copy(&snaps.join(&snapshot.id), &snaps.join(&wrong.id));
    // The damaged object of the step above, mended in the copy.
    std::fs::write(snaps.join(&wrong.id).join(&part.name), &original).unwrap();
    let recipients = tidemark::keys::Recipients::parse(&w.repo_config.recipients).unwrap();
    w.core.repo.commit_manifest(&wrong, &recipients).await.unwrap();
    let err = restore_in_place(&w.core, &in_place(&wrong.id), &actor()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{}", err.report());
    assert!(err.message().contains("differs from the snapshot in public.orders"), "{}", err.report());
    assert_eq!(content_fingerprint(&live).await, before);
    assert_eq!(databases(&w).await, ["shop".to_string()]);

    // An existing database where the replaced one would go: refused before the snapshot.
    let aside = format!("shop_before_{}", snapshot.id.to_ascii_lowercase().replace('-', "_"));
    create_database(&w.cluster, &aside, "SELECT 1").await;
    let snapshots = list(&w.core, "shop").await.unwrap().len();
    let err = restore_in_place(&w.core, &in_place(&snapshot.id), &actor()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{}", err.report());
    assert_eq!(list(&w.core, "shop").await.unwrap().len(), snapshots);
    assert_eq!(content_fingerprint(&live).await, before);
}

/// A local media folder is restored beside the live one and swapped with the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_folders_are_swapped_with_the_database_and_back() {
    let mut w = world().await;
    let media = w.dir.path().join("media");
    std::fs::create_dir_all(media.join("img")).unwrap();
    std::fs::write(media.join("img/cat.png"), vec![7u8; 100_000]).unwrap();
    std::fs::write(media.join("notes.txt"), b"at the snapshot").unwrap();
    w.core.config.config.workspaces.get_mut("shop").unwrap().media =
        Some(url::Url::from_directory_path(&media).unwrap().to_string());
    create_database(&w.cluster, "shop", SHOP).await;
    let snapshot = snapshot_shop(&w.core).await.unwrap();
    // After the snapshot: a file deleted, one changed, one added.
    std::fs::remove_file(media.join("img/cat.png")).unwrap();
    std::fs::write(media.join("notes.txt"), b"changed later").unwrap();
    std::fs::write(media.join("new.txt"), b"added later").unwrap();

    let report = restore_in_place(&w.core, &in_place(&snapshot.id), &actor()).await.unwrap();
    assert_eq!(report.restore.as_ref().unwrap().media_files, 2);
    assert_eq!(std::fs::read(media.join("img/cat.png")).unwrap(), vec![7u8; 100_000]);
    assert_eq!(std::fs::read(media.join("notes.txt")).unwrap(), b"at the snapshot");
    assert!(!media.join("new.txt").exists());
    let tag = snapshot.id.to_ascii_lowercase().replace('-', "_");
    let aside = w.dir.path().join(format!("media.before-{tag}"));
    assert_eq!(std::fs::read(aside.join("new.txt")).unwrap(), b"added later");
    // Issue 31.10: the report says the media were swapped, and where the old ones went.
    let swapped = report.media.as_ref().expect("the media swap is reported");
    assert_eq!(swapped.previous.as_deref(), Some(aside.display().to_string().as_str()));

    undo(&w.core, &undo_shop(), &actor()).await.unwrap();
    assert_eq!(std::fs::read(media.join("notes.txt")).unwrap(), b"changed later");
    assert!(media.join("new.txt").exists() && !media.join("img/cat.png").exists());
    assert!(w.dir.path().join(format!("media.undone-{tag}")).join("img/cat.png").exists());
}

/// Every object under an S3 prefix, as (name, bytes).
async fn objects(url: &str, repo: &tidemark::config::RepositoryConfig) -> BTreeMap<String, Vec<u8>> {
    use object_store::ObjectStoreExt;
    let cfg = tidemark::config::RepositoryConfig { url: url.into(), ..repo.clone() };
    let store = tidemark::repo::store::open(&cfg, false).unwrap().store;
    let mut out = BTreeMap::new();
    for o in futures::TryStreamExt::try_collect::<Vec<_>>(store.list(None)).await.unwrap() {
        let bytes = store.get(&o.location).await.unwrap().bytes().await.unwrap().to_vec();
        out.insert(o.location.to_string(), bytes);
    }
    out
}

/// Media in an object store have no rename: the restored files go to a prefix beside the
/// live one, the live objects are copied aside, the live prefix is made equal to the
/// restored one, and undo copies them back. A failure before the switch (a damaged media
/// object) leaves the live objects as they were and nothing beside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_in_an_object_store_are_swapped_by_copies_and_back() {
    use object_store::ObjectStoreExt;
    let s3 = crate::support::S3Server::start().await;
    s3.create_bucket("backups").await;
    s3.create_bucket("media").await;
    let cluster = tokio::task::spawn_blocking(crate::support::start_cluster).await.unwrap();
    let mut w =
        crate::support::world_with_repo(cluster, tempfile::tempdir().unwrap(), s3.repo_config("backups", "repo")).await;
    let live_url = "s3://media/shop/uploads";
    let cfg = tidemark::config::RepositoryConfig { url: live_url.into(), ..w.repo_config.clone() };
    let live_store = tidemark::repo::store::open(&cfg, false).unwrap().store;
    let big: Vec<u8> = (0..1_500_000u32).map(|i| (i.wrapping_mul(2246822519) >> 9) as u8).collect();
    for (path, bytes) in
        [("a/1.bin", big.clone()), ("notes.txt", b"at the snapshot".to_vec()), ("with space/\u{e9}.txt", b"e".to_vec())]
    {
        live_store.put(&path.into(), bytes.into()).await.unwrap();
    }
    w.core.config.config.workspaces.get_mut("shop").unwrap().media = Some(live_url.into());
    let live = create_database(&w.cluster, "shop", SHOP).await;
    let snapshot = snapshot_shop(&w.core).await.unwrap();
    let at_snapshot = objects(live_url, &w.repo_config).await;
    assert_eq!(at_snapshot.len(), 3);
    // After the snapshot: a file deleted, one changed, one added; a row changed.
    live_store.delete(&"a/1.bin".into()).await.unwrap();
    live_store.put(&"notes.txt".into(), b"changed later".to_vec().into()).await.unwrap();
    live_store.put(&"new.txt".into(), b"added later".to_vec().into()).await.unwrap();
    let mut conn = live.connect().await.unwrap();
    sqlx::raw_sql("UPDATE orders SET total = 0 WHERE id < 10").execute(&mut conn).await.unwrap();
    ConnSpec::close(conn).await;
    let (media_now, data_now) = (objects(live_url, &w.repo_config).await, content_fingerprint(&live).await);
    let tag = snapshot.id.to_ascii_lowercase().replace('-', "_");
    let beside = |what: &str| format!("s3://media/shop/uploads.{what}-{tag}");

    // A damaged media object in the repository: the restore beside fails; nothing changed.
    let repo_store = tidemark::repo::store::open(&s3.repo_config("backups", "repo"), false).unwrap().store;
    let notes = snapshot.media.as_ref().unwrap().files.iter().find(|f| f.path == "notes.txt").unwrap();
    let key = tidemark::repo::layout::media_object("shop", &notes.sha256).unwrap();
    let original = repo_store.get(&key).await.unwrap().bytes().await.unwrap();
    let mut damaged = original.to_vec();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x01;
    repo_store.put(&key, damaged.into()).await.unwrap();
    let err = restore_in_place(&w.core, &in_place(&snapshot.id), &actor()).await.unwrap_err();
    assert!(err.report().contains("was not touched"), "{}", err.report());
    assert_eq!(objects(live_url, &w.repo_config).await, media_now, "the live media are as they were");
    assert!(objects(&beside("restoring"), &w.repo_config).await.is_empty(), "the restored files are removed");
    assert!(objects(&beside("before"), &w.repo_config).await.is_empty());
    assert_eq!(content_fingerprint(&live).await, data_now);
    assert_eq!(databases(&w).await, ["shop".to_string()]);
    repo_store.put(&key, original.into()).await.unwrap();

    // The in-place restore: the live prefix holds what the snapshot had, the objects it
    // replaced are beside it, nothing is left of the restored prefix.
    let report = restore_in_place(&w.core, &in_place(&snapshot.id), &actor()).await.unwrap();
    assert_eq!(report.restore.as_ref().unwrap().media_files, 3);
    assert_eq!(objects(live_url, &w.repo_config).await, at_snapshot, "the live media are the snapshot's");
    assert_eq!(objects(&beside("before"), &w.repo_config).await, media_now, "what they replaced is beside them");
    assert!(objects(&beside("restoring"), &w.repo_config).await.is_empty());
    assert_ne!(content_fingerprint(&live).await, data_now);

    // Undo: media and database back as they were.
    undo(&w.core, &undo_shop(), &actor()).await.unwrap();
    assert_eq!(objects(live_url, &w.repo_config).await, media_now, "the media are back");
    assert_eq!(content_fingerprint(&live).await, data_now);
    assert!(objects(&beside("before"), &w.repo_config).await.is_empty(), "the aside copy is live again");
    assert_eq!(objects(&beside("undone"), &w.repo_config).await, at_snapshot, "the undone media are kept beside");
    let marker = format!("shop/uploads.before-{tag}.swapped");
    let media_root = tidemark::config::RepositoryConfig { url: "s3://media".into(), ..w.repo_config.clone() };
    let root = tidemark::repo::store::open(&media_root, false).unwrap().store;
    assert!(root.head(&marker.as_str().into()).await.is_err(), "the marker is gone with the aside copy");

    // Media at a bucket's root have no prefix beside them: refused before anything.
    let snapshots = list(&w.core, "shop").await.unwrap().len();
    w.core.config.config.workspaces.get_mut("shop").unwrap().media = Some("s3://media".into());
    let err = restore_in_place(&w.core, &in_place(&snapshot.id), &actor()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage, "{}", err.report());
    assert!(err.message().contains("whole bucket"), "{}", err.report());
    assert_eq!(list(&w.core, "shop").await.unwrap().len(), snapshots, "no pre-restore snapshot either");
}

/// `--time`: recovered in a throwaway cluster, copied beside, compared, switched; and undo
/// swaps back the newest in-place restore, not the one with the newest name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_goes_back_to_a_moment_in_place_and_undo_takes_the_newest_back() {
    use crate::pitr::{MARKERS_BEFORE_BASE, archive_everything, commit_marker, one_row};
    let w = crate::pitr::archiving_world().await;
    let live = create_database(&w.cluster, "shop", MARKERS_BEFORE_BASE).await;
    crate::support::basebackup(&w.core).await.unwrap();
    commit_marker(&live, "a").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let between: chrono::DateTime<chrono::Utc> = one_row(&live, "SELECT clock_timestamp()").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    commit_marker(&live, "b").await;
    let snapshot = snapshot_shop(&w.core).await.unwrap();
    commit_marker(&live, "c").await;
    archive_everything(&live, &w.core).await;
    let markers = async || -> Vec<String> {
        let mut conn = live.connect().await.unwrap();
        let rows = sqlx::query_scalar("SELECT label FROM markers ORDER BY label").fetch_all(&mut conn).await.unwrap();
        ConnSpec::close(conn).await;
        rows
    };

    // Back to the snapshot (a, b), then to the moment between a and b.
    restore_in_place(&w.core, &in_place(&snapshot.id), &actor()).await.unwrap();
    assert_eq!(markers().await, ["a", "b", "before-base"]);
    let at = InPlaceOptions {
        snapshot: String::new(),
        time: Some(between.to_rfc3339()),
        tidemark_command: Some(env!("CARGO_BIN_EXE_tidemark").to_string()),
        ..in_place("")
    };
    let report = restore_in_place(&w.core, &at, &actor()).await.unwrap();
    assert_eq!(markers().await, ["a", "before-base"], "exactly what was committed before the moment");
    assert_eq!((report.snapshot.as_ref(), report.time), (None, Some(between)));
    let recovered = report.point_in_time.as_ref().unwrap();
    assert!(!std::path::Path::new(&recovered.pgdata).exists(), "the throwaway cluster is removed");
    assert!(report.verified_tables >= 1);
    let tag = between.format("%Y%m%dt%H%M%Sz").to_string();
    assert_eq!(report.previous_database.as_deref(), Some(format!("shop_before_{tag}").as_str()));
    let safety = crate::support::list(&w.core, "shop").await.unwrap();
    assert!(safety.iter().any(|s| s.id == report.safety_snapshot));

    // Undo takes back the restore to the moment (the newest), whose name sorts first.
    let undone = undo(&w.core, &undo_shop(), &actor()).await.unwrap();
    assert_eq!(undone.restored_from, format!("shop_before_{tag}"));
    assert_eq!(markers().await, ["a", "b", "before-base"]);
    // And then the restore from the snapshot: the database as it was before both.
    undo(&w.core, &undo_shop(), &actor()).await.unwrap();
    assert_eq!(markers().await, ["a", "b", "before-base", "c"]);

    // A moment outside the window: refused before the switch, live untouched.
    let early = InPlaceOptions { time: Some("2001-01-01T00:00:00Z".into()), ..at.clone() };
    let err = restore_in_place(&w.core, &early, &actor()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused, "{}", err.report());
    assert!(err.report().contains("was not touched"), "{}", err.report());
    assert_eq!(markers().await, ["a", "b", "before-base", "c"]);
    // Both a snapshot and a moment: refused.
    let both = InPlaceOptions { snapshot: snapshot.id.clone(), ..at };
    assert_eq!(restore_in_place(&w.core, &both, &actor()).await.unwrap_err().kind(), ErrorKind::Usage);
}

/// The switch itself failing half-way (the live database moved aside, the restored one
/// cannot take its name): it is one transaction (issue 30.11), so nothing was switched:
/// the name belongs to the old database and it accepts connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_that_fails_half_way_puts_the_live_database_back() {
    let w = world().await;
    let admin = ConnSpec::parse(&w.cluster.url("postgres"), None).unwrap();
    let mut conn = admin.connect().await.unwrap();
    // The switching role owns the live database but not the incoming one: its first
    // rename succeeds, the second is refused (must be owner).
    for sql in
        ["CREATE ROLE swapper LOGIN CREATEDB", "CREATE DATABASE shop OWNER swapper", "CREATE DATABASE shop_incoming"]
    {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    }
    ConnSpec::close(conn).await;
    let live = ConnSpec::parse(&w.cluster.url("shop"), None).unwrap();
    let mut conn = live.connect().await.unwrap();
    sqlx::raw_sql("CREATE TABLE marker (x int); INSERT INTO marker VALUES (42);").execute(&mut conn).await.unwrap();
    ConnSpec::close(conn).await;
    let before = content_fingerprint(&live).await;
    // The superuser sessions above must be gone: swapper may not end them (that would be a
    // different failure, before the first rename).
    crate::support::count_until_zero(
        &admin,
        "SELECT count(*) FROM pg_stat_activity WHERE datname IN ('shop', 'shop_incoming')",
    )
    .await;

    let mut url = url::Url::parse(&w.cluster.url("postgres")).unwrap();
    url.set_username("swapper").unwrap();
    let swapper = ConnSpec::parse(url.as_str(), None).unwrap();
    let err =
        tidemark::restore::database::swap_in(&swapper, "shop", "shop_incoming", "shop_before_x").await.unwrap_err();
    assert!(err.report().contains("nothing was switched"), "{}", err.report());
    assert_eq!(databases(&w).await, ["shop".to_string(), "shop_incoming".to_string()]);
    assert_eq!(content_fingerprint(&live).await, before, "the live database is the old one, and it takes connections");
}

/// Issue 30.12: a process the switching role may not end (a superuser's background
/// process on the database: here a logical walsender, as an autovacuum worker was in the
/// report) failed the switch at once with "must be a superuser to terminate superuser
/// process". Only client backends are ended; the switch waits for the rest and says so
/// when they stay, and goes through once they are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_ends_only_client_backends_and_waits_for_the_rest() {
    let w = world().await;
    let admin = ConnSpec::parse(&w.cluster.url("postgres"), None).unwrap();
    let mut conn = admin.connect().await.unwrap();
    for sql in [
        "CREATE ROLE swapper LOGIN CREATEDB",
        "GRANT pg_signal_backend TO swapper",
        "CREATE DATABASE shop OWNER swapper",
        "CREATE DATABASE shop_incoming OWNER swapper",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    }
    // A superuser's walsender on the live database, idle (psql waits on its input).
    let psql = tidemark::pg::tool(w.core.pg_bin_dir().as_deref(), "psql");
    let dsn = format!("host=127.0.0.1 port={} user=postgres dbname=shop replication=database", w.cluster.port());
    let mut walsender = std::process::Command::new(psql)
        .arg(&dsn)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sender = "SELECT count(*) FROM pg_stat_activity WHERE datname = 'shop' AND backend_type = 'walsender'";
    let mut waited = 0;
    while sqlx::query_scalar::<_, i64>(sender).fetch_one(&mut conn).await.unwrap() == 0 {
        assert!(waited < 600, "the walsender never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    let mut url = url::Url::parse(&w.cluster.url("postgres")).unwrap();
    url.set_username("swapper").unwrap();
    let swapper = ConnSpec::parse(url.as_str(), None).unwrap();
    let patience = Duration::from_secs(2);
    let err = tidemark::restore::database::swap_in_within(&swapper, "shop", "shop_incoming", "shop_before_x", patience)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", err.report());
    assert!(err.report().contains("nothing was switched") && !err.report().contains("superuser"), "{}", err.report());
    assert_eq!(databases(&w).await, ["shop".to_string(), "shop_incoming".to_string()]);
    // Once it is gone, the switch goes through.
    drop(walsender.stdin.take());
    walsender.wait().unwrap();
    crate::support::count_until_zero(&admin, sender).await;
    tidemark::restore::database::swap_in(&swapper, "shop", "shop_incoming", "shop_before_x").await.unwrap();
    assert_eq!(databases(&w).await, ["shop".to_string(), "shop_before_x".to_string()]);
}

/// The databases a switch moved aside are dropped by prune once older than keep-replaced,
/// and named in its report (never silently); a dry run only names them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_drops_replaced_databases_after_keep_replaced() {
    let mut w = world().await;
    let live = create_database(&w.cluster, "shop", SHOP).await;
    let snapshot = snapshot_shop(&w.core).await.unwrap();
    let report = restore_in_place(&w.core, &in_place(&snapshot.id), &actor()).await.unwrap();
    let before = report.previous_database.clone().unwrap();
    let prune =
        |dry_run| tidemark::ops::prune::PruneOptions { workspace: "shop".into(), dry_run, ..Default::default() };
    // Kept while younger than keep-replaced (7 days by default).
    let kept = tidemark::ops::prune::prune(&w.core, &prune(false), &actor()).await.unwrap();
    assert!(kept.replaced_databases_dropped.is_empty());
    assert!(databases(&w).await.contains(&before));
    // After an undo the restored one is the replaced one.
    let undone = undo(&w.core, &undo_shop(), &actor()).await.unwrap();
    w.core.config.config.workspaces.get_mut("shop").unwrap().keep_replaced = Some(std::time::Duration::ZERO);
    let w = w;
    let dry = tidemark::ops::prune::prune(&w.core, &prune(true), &actor()).await.unwrap();
    assert_eq!(dry.replaced_databases_dropped, std::slice::from_ref(&undone.replaced_moved_to));
    assert!(databases(&w).await.contains(&undone.replaced_moved_to), "a dry run drops nothing");
    let done = tidemark::ops::prune::prune(&w.core, &prune(false), &actor()).await.unwrap();
    assert_eq!(done.replaced_databases_dropped, std::slice::from_ref(&undone.replaced_moved_to));
    assert_eq!(databases(&w).await, ["shop".to_string()], "the live database stays, always");
    let mut conn = live.connect().await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(&mut conn).await.unwrap();
    assert_eq!(rows, 3000);
}

/// Issue 31.3: with a read-only workspace role (as the Privileges section suggests), an
/// in-place restore is refused before anything is taken (no pre-restore snapshot, no
/// database made), naming what the role lacks and `restore-database-url`; with a restore
/// role that has CREATEDB and the owner's privileges, it goes through, the restored
/// database belongs to the live one's owner, and undo works as that role too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_role_creates_and_switches_databases_the_workspace_role_may_not() {
    let mut w = world().await;
    let admin = ConnSpec::parse(&w.cluster.url("postgres"), None).unwrap();
    let mut conn = admin.connect().await.unwrap();
    for sql in [
        "CREATE ROLE app LOGIN",
        "CREATE ROLE backup LOGIN",
        "GRANT pg_read_all_data TO backup",
        "CREATE ROLE restorer LOGIN CREATEDB",
        "GRANT app TO restorer",
        "CREATE DATABASE shop OWNER app",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    }
    let as_role = |role: &str, db: &str| {
        let mut url = url::Url::parse(&w.cluster.url(db)).unwrap();
        url.set_username(role).unwrap();
        url.to_string()
    };
    let live = ConnSpec::parse(&as_role("app", "shop"), None).unwrap();
    let mut app = live.connect().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(SHOP)).execute(&mut app).await.unwrap();
    ConnSpec::close(app).await;
    w.core.config.config.workspaces.get_mut("shop").unwrap().database_url = as_role("backup", "shop");
    let snapshot = snapshot_shop(&w.core).await.unwrap();
    let at_snapshot = content_fingerprint(&live).await;
    let mut app = live.connect().await.unwrap();
    sqlx::raw_sql("DELETE FROM orders WHERE id > 10").execute(&mut app).await.unwrap();
    ConnSpec::close(app).await;
    let damaged = content_fingerprint(&live).await;

    // Refused up front: nothing taken, nothing made.
    let snapshots = list(&w.core, "shop").await.unwrap().len();
    let err = restore_in_place(&w.core, &in_place(&snapshot.id), &actor()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{}", err.report());
    for expected in [
        "\"backup\" lacks CREATEDB",
        "\"app\", the owner of \"shop\"",
        "restore-database-url",
        "GRANT \"app\" TO \"backup\"",
    ] {
        assert!(err.report().contains(expected), "{expected:?} in {}", err.report());
    }
    assert_eq!(list(&w.core, "shop").await.unwrap().len(), snapshots, "no pre-restore snapshot");
    assert_eq!(databases(&w).await, ["shop".to_string()]);
    let branch = tidemark::ops::branch::BranchCreateOptions {
        workspace: "shop".into(),
        name: "try".into(),
        from: Some(snapshot.id.clone()),
        ..Default::default()
    };
    let err = tidemark::ops::branch::create(&w.core, &branch, &actor()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{}", err.report());
    assert_eq!(databases(&w).await, ["shop".to_string()]);

    // With the restore role: restored, owned by app as before, and undone.
    w.core.config.config.workspaces.get_mut("shop").unwrap().restore_database_url =
        Some(as_role("restorer", "postgres"));
    let report = restore_in_place(&w.core, &in_place(&snapshot.id), &actor()).await.unwrap();
    assert_eq!(content_fingerprint(&live).await, at_snapshot);
    let mut conn = admin.connect().await.unwrap();
    let owner: String =
        sqlx::query_scalar("SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = 'shop'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(owner, "app");
    ConnSpec::close(conn).await;
    let mut app = live.connect().await.unwrap();
    let table_owner: String = sqlx::query_scalar("SELECT tableowner::text FROM pg_tables WHERE tablename = 'orders'")
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert_eq!(table_owner, "app");
    ConnSpec::close(app).await;
    assert_eq!(databases(&w).await, ["shop".to_string(), report.previous_database.clone().unwrap()]);
    undo(&w.core, &undo_shop(), &actor()).await.unwrap();
    assert_eq!(content_fingerprint(&live).await, damaged);
}
