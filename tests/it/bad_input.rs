//! Bad input gets a clear error of the right kind and loses nothing: wrong identity,
//! tampered or missing object, unreachable database or bucket, init over an existing
//! repository, restore into a non-empty database, a snapshot that never committed.

use std::os::unix::process::CommandExt;

use tidemark::config::{LoadedConfig, RepositoryConfig};
use tidemark::keys::{GeneratedIdentity, Recipients};
use tidemark::ops::Core;
use tidemark::ops::restore::{RestoreOptions, restore};
use tidemark::pg::ConnSpec;
use tidemark::repo::Repository;
use tidemark::repo::manifest::Manifest;
use tidemark::{Error, ErrorKind};

use crate::support::{World, create_database, world};

async fn world_with_snapshot() -> (World, Manifest) {
    let w = world().await;
    create_database(
        &w.cluster,
        "shop",
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, 20000) i; \
         CREATE TABLE u (id int); INSERT INTO u VALUES (1);",
    )
    .await;
    let m = crate::support::snapshot_shop(&w.core).await.unwrap();
    (w, m)
}

async fn restore_into(core: &Core, m: &Manifest, url: &str) -> Result<(), Error> {
    let opts = RestoreOptions { snapshot: m.id.clone(), target: url.to_string().into(), ..Default::default() };
    restore(core, &opts, &crate::support::actor()).await.map(|_| ())
}

async fn database_exists(w: &World, db: &str) -> bool {
    let mut conn = ConnSpec::parse(&w.cluster.url("postgres"), None).unwrap().connect().await.unwrap();
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(db)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

fn table_object(w: &World, m: &Manifest) -> std::path::PathBuf {
    w.repo_dir().join("workspaces/shop/snapshots").join(&m.id).join("tables/public.t.copy.zst.age")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_identity_is_a_key_error() {
    let (w, m) = world_with_snapshot().await;
    let stranger = GeneratedIdentity::generate();
    let core = Core::from_parts(w.core.config.clone(), w.core.repo.clone(), None, Some(stranger.identities()));
    let err = restore_into(&core, &m, &w.cluster.url("copy")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Key, "{}", err.report());
    assert!(err.message().contains("identity"), "{}", err.message());
    assert!(!database_exists(&w, "copy").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_object_stops_the_restore_and_names_it() {
    let (w, m) = world_with_snapshot().await;
    let path = table_object(&w, &m);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let err = restore_into(&w.core, &m, &w.cluster.url("copy")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{}", err.report());
    assert!(err.report().contains("public.t.copy.zst.age"), "{}", err.report());
    assert!(!database_exists(&w, "copy").await, "the half-restored database must be dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_object_is_refused_before_anything_is_written() {
    let (w, m) = world_with_snapshot().await;
    std::fs::remove_file(table_object(&w, &m)).unwrap();
    let err = restore_into(&w.core, &m, &w.cluster.url("copy")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity);
    assert!(err.message().contains("public.t.copy.zst.age") && err.message().contains("missing"), "{}", err.message());
    assert!(!database_exists(&w, "copy").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_into_a_non_empty_database_is_refused_and_changes_nothing() {
    let (w, m) = world_with_snapshot().await;
    let busy =
        create_database(&w.cluster, "busy", "CREATE TABLE keep_me (x int); INSERT INTO keep_me VALUES (42);").await;
    let err = restore_into(&w.core, &m, &w.cluster.url("busy")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused);
    assert!(err.message().contains("busy"));
    let mut conn = busy.connect().await.unwrap();
    let x: i32 = sqlx::query_scalar("SELECT x FROM keep_me").fetch_one(&mut conn).await.unwrap();
    assert_eq!(x, 42);
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(tables, 1);
    // An existing but empty database is fine.
    create_database(&w.cluster, "empty", "SELECT 1").await;
    restore_into(&w.core, &m, &w.cluster.url("empty")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_database_is_unavailable_and_hides_the_password() {
    let w = world().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut config = w.core.config.clone();
    config.config.workspaces.get_mut("shop").unwrap().database_url =
        format!("postgres://app:hunter2-secret@127.0.0.1:{port}/shop");
    let core = Core::from_parts(
        config,
        w.core.repo.clone(),
        Some(Recipients::parse(std::slice::from_ref(&w.identity.recipient)).unwrap()),
        None,
    );
    let err = crate::support::snapshot_shop(&core).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", err.report());
    assert!(!err.report().contains("hunter2-secret"), "{}", err.report());
    assert!(crate::support::list(&w.core, "shop").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_bucket_is_unavailable_quickly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let s3 = RepositoryConfig {
        url: "s3://nowhere/prefix".into(),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        allow_http: Some(true),
        path_style: Some(true),
        access_key_id: Some(tidemark::config::Secret::literal("k")),
        secret_access_key: Some(tidemark::config::Secret::literal("very-secret-key")),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let err = Repository::open(&s3).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", err.report());
    assert!(!err.report().contains("very-secret-key"));
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_never_overwrites_a_repository() {
    let w = world().await;
    let before = std::fs::read(w.repo_dir().join("repository.json")).unwrap();
    let recipients = Recipients::parse(&[GeneratedIdentity::generate().recipient]).unwrap();
    let err = Repository::init(&w.repo_config, &recipients).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(before, std::fs::read(w.repo_dir().join("repository.json")).unwrap());

    // Through the operation: no config, no identity file left behind.
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("tidemark.toml");
    let opts = tidemark::ops::init::InitOptions {
        repo: w.repo_config.url.clone(),
        config_path: config_path.clone(),
        ..Default::default()
    };
    let err = tidemark::ops::init::init(&opts).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert!(!config_path.exists());
    assert!(!dir.path().join("tidemark-identity.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_without_manifest_does_not_exist() {
    let (w, m) = world_with_snapshot().await;
    // What a crash halfway leaves: objects, no manifest.
    let crashed = w.repo_dir().join("workspaces/shop/snapshots/20200101T000000Z-000000/tables");
    std::fs::create_dir_all(&crashed).unwrap();
    std::fs::copy(table_object(&w, &m), crashed.join("public.t.copy.zst.age")).unwrap();
    let listed = crate::support::list(&w.core, "shop").await.unwrap();
    assert_eq!(listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), vec![m.id.as_str()]);
    let err = crate::support::show(&w.core, "20200101T000000Z-000000", Some("shop")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let loaded = LoadedConfig::load(Some(&w.core.config.path)).unwrap();
    assert!(loaded.config.workspaces.contains_key("shop"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_restore_is_marked_and_refused_later() {
    let (w, m) = world_with_snapshot().await;
    // Into an existing empty database (which a failed restore leaves in place), with a
    // damaged object so the restore stops halfway.
    create_database(&w.cluster, "target", "SELECT 1").await;
    let path = table_object(&w, &m);
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x80;
    std::fs::write(&path, &bad).unwrap();
    let err = restore_into(&w.core, &m, &w.cluster.url("target")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity);
    assert!(database_exists(&w, "target").await);

    // The object is repaired; the half-filled database still says what it is.
    std::fs::write(&path, &good).unwrap();
    let err = restore_into(&w.core, &m, &w.cluster.url("target")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused);
    assert!(err.message().contains("unfinished restore") && err.message().contains(&m.id), "{}", err.message());

    // A finished restore leaves no mark.
    restore_into(&w.core, &m, &w.cluster.url("fresh")).await.unwrap();
    let mut conn = ConnSpec::parse(&w.cluster.url("fresh"), None).unwrap().connect().await.unwrap();
    let comment: Option<String> =
        sqlx::query_scalar("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'fresh'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(comment, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_identity_file_blocks_reading_but_never_backups() {
    let w = world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int); INSERT INTO t VALUES (1);").await;
    let mut config = w.core.config.clone();
    config.config.repository.identity_file = Some(w.dir.path().join("gone.txt"));
    let core = Core::open(config).await.unwrap();
    let m = crate::support::snapshot_shop(&core).await.unwrap();
    let err = crate::support::show(&core, &m.id, Some("shop")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Key);
    assert!(err.message().contains("gone.txt"), "{}", err.message());
}

/// Issue 11.7: one corrupted manifest made `snapshot list`, `prune` (even a dry run),
/// `catalog rebuild` and a default drill fail for the whole workspace. They now name it
/// and carry on; retention never deletes it, nor counts it as a kept snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_manifest_is_named_and_the_rest_still_works() {
    use tidemark::ops::drill::{DrillOptions, DrillSource, drill};
    use tidemark::ops::prune::{PruneOptions, prune};
    let (mut w, first) = world_with_snapshot().await;
    let mut ids = vec![first.id.clone()];
    for _ in 0..2 {
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // ids sort by second
        ids.push(crate::support::snapshot_shop(&w.core).await.unwrap().id);
    }
    // The newest one's manifest is damaged.
    let manifest = w.repo_dir().join("workspaces/shop/snapshots").join(&ids[2]).join("manifest.json.age");
    let mut bytes = std::fs::read(&manifest).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 0x55;
    std::fs::write(&manifest, bytes).unwrap();

    let list = crate::support::list(&w.core, "shop").await.unwrap();
    assert_eq!(list.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), ids);
    assert!(list[..2].iter().all(|s| s.problem.is_none() && s.rows.is_some()));
    assert!(list[2].problem.as_deref().is_some_and(|p| p.contains(&ids[2])), "{:?}", list[2]);

    // Retention would keep only the newest: the damaged one does not count as it.
    let schedules = w.dir.path().join("schedules");
    std::fs::create_dir_all(&schedules).unwrap();
    std::fs::write(schedules.join("manual.toml"), "kind = \"manual\"\n[retention]\nkeep-last = 1\n").unwrap();
    w.core.config.config.schedules_dir = Some(schedules);
    let opts = |dry_run| PruneOptions {
        workspace: "shop".into(),
        dry_run,
        grace: std::time::Duration::ZERO,
        as_of: None,
        wait: Default::default(),
        repository: None,
    };
    let dry = prune(&w.core, &opts(true), &crate::support::actor()).await.unwrap();
    let verdict: Vec<(String, bool)> = dry.decisions.iter().map(|d| (d.id.clone(), d.keep)).collect();
    assert_eq!(verdict, vec![(ids[0].clone(), false), (ids[1].clone(), true), (ids[2].clone(), true)]);
    assert_eq!(dry.damaged.len(), 1);
    assert!(dry.decisions[2].reasons[0].contains("cannot be read"), "{:?}", dry.decisions[2]);
    prune(&w.core, &opts(false), &crate::support::actor()).await.unwrap();
    assert!(manifest.exists(), "what cannot be read is never deleted");
    assert!(std::fs::read_dir(manifest.parent().unwrap()).unwrap().count() > 1, "nor its objects");
    let left: Vec<String> = crate::support::list(&w.core, "shop").await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(left, ids[1..]);

    let rebuilt = crate::support::rebuild(&w.core, false).await.unwrap();
    assert_eq!(rebuilt.snapshots, 1);
    assert_eq!(rebuilt.damaged.len(), 1);
    assert!(rebuilt.damaged[0].id.ends_with(&ids[2]));

    // Issue 11.11: a damaged catalog file could not be rebuilt over. It is now named as
    // damaged with what to do, and `--replace` moves it aside and builds a new one. (A
    // PostgreSQL catalog has no file to damage: its server answers for its pages.)
    if !crate::support::on_postgres_catalog() {
        damaged_catalog_file_is_replaced(&w).await;
    }

    // A default drill proves the newest snapshot that can restore.
    w.core.config.config.drill.scratch_dir = Some(w.dir.path().join("drills"));
    let report = drill(&w.core, &DrillOptions::new("shop", DrillSource::Snapshot(None)), &crate::support::actor())
        .await
        .unwrap();
    assert!(report.passed, "{:#?}", report.checks);
    assert_eq!(report.source, ids[1]);
    let checked = crate::support::check(&w.core, false).await.unwrap();
    assert!(checked.problems.iter().any(|p| p.contains(&ids[2])), "{:?}", checked.problems);
}

/// Issue 12.5 and 12.6: a missing bucket was "object .../repository.json is not in the
/// repository" (exit 4), and a local folder tidemark may not write was `unavailable` (so
/// the daemon retried it) naming an internal temporary file. Both are now `config`, saying
/// what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_and_an_unwritable_folder_say_what_to_do() {
    let s3 = crate::support::S3Server::start().await;
    let cfg = s3.repo_config("never-created", "repo");
    let opened = Repository::open(&cfg).await.unwrap_err();
    assert_eq!(opened.kind(), ErrorKind::Config, "{}", opened.report());
    assert!(opened.message().contains("bucket does not exist"), "{}", opened.report());
    let identity = GeneratedIdentity::generate();
    let recipients = Recipients::parse(std::slice::from_ref(&identity.recipient)).unwrap();
    let init = Repository::init(&cfg, &recipients).await.unwrap_err();
    assert!(init.message().contains("bucket does not exist"), "{}", init.report());

    // As root every folder is writable: the unwritable one is written as `nobody`.
    if nix::unistd::getuid().is_root() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // A signing key of its own (init would otherwise fail first, creating one beside
        // the config in the same folder).
        let key = dir.path().join("signing.key");
        tidemark::signing::SigningSecret::generate().write_new_file(&key).unwrap();
        nix::unistd::chown(&key, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args(["--config", dir.path().join("elsewhere.toml").to_str().unwrap()])
            .args(["init", "--repo", repo.to_str().unwrap(), "--recipient", &identity.recipient])
            .args(["--signing-key", key.to_str().unwrap()])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(ErrorKind::Config.exit_code()), "{stderr}");
        assert!(stderr.contains("permission denied") && stderr.contains("chown"), "{stderr}");
        assert!(!stderr.contains("#1"), "no internal temporary name: {stderr}");
        assert!(stderr.contains("creating the repository"), "the repository is what failed: {stderr}");
    }
}

/// Issue 12.7: `pitr mark` without the privilege said only "permission denied"; the error
/// now carries the GRANT that fixes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_privilege_names_the_grant() {
    let mut w = world().await;
    let spec = create_database(&w.cluster, "shop", "CREATE ROLE plain LOGIN").await;
    drop(spec);
    let url = format!("postgres://plain@127.0.0.1:{}/shop", w.cluster.port());
    w.core.config.config.workspaces.get_mut("shop").unwrap().database_url = url;
    let e = crate::support::mark(&w.core, "before").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Database, "{}", e.report());
    assert!(
        e.report().contains("GRANT EXECUTE ON FUNCTION pg_create_restore_point(text), pg_switch_wal() TO plain"),
        "{}",
        e.report()
    );
}

/// A catalog file that is not a database is named as damaged, and `rebuild --replace`
/// moves it aside and builds a new one.
async fn damaged_catalog_file_is_replaced(w: &crate::support::World) {
    let catalog = w.core.config.catalog_path();
    // A new file (the rebuild's connections may still be closing on the old one).
    for side in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{side}", catalog.display()));
    }
    std::fs::write(&catalog, vec![b'x'; 8192]).unwrap();
    let refused = crate::support::rebuild(&w.core, false).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Integrity, "{}", refused.report());
    assert!(refused.message().contains("--replace"), "{}", refused.message());
    let replaced = crate::support::rebuild(&w.core, true).await.unwrap();
    let aside = replaced.moved_aside.expect("moved aside");
    assert_eq!(std::fs::read(&aside).unwrap(), vec![b'x'; 8192], "the damaged file is kept for inspection");
    assert_eq!(replaced.snapshots, 1);
}
