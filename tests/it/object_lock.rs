//! Issue 15.1: S3 object lock on a local moto server. With the repository's own
//! credentials, a locked snapshot's objects cannot be deleted (by version) and an
//! overwrite or a plain delete leaves the locked version as it was; retention keeps what is
//! locked ("kept: locked until T"); the snapshot still restores.

use object_store::{GetOptions, ObjectStore, ObjectStoreExt, PutPayload};
use tidemark::ErrorKind;
use tidemark::config::LockMode;
use tidemark::ops::prune::{PruneOptions, prune};
use tidemark::ops::restore::{RestoreOptions, restore};
use tidemark::repo::layout;

use crate::support::{S3Server, actor, check, content_fingerprint, create_database, snapshot_shop, start_cluster};

const SHOP: &str = "CREATE TABLE orders (id int PRIMARY KEY, total numeric); \
                    INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 2000) g;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_without_object_lock_is_refused_when_the_config_asks_for_it() {
    let s3 = S3Server::start().await;
    s3.create_bucket("plain").await;
    let cfg =
        tidemark::config::RepositoryConfig { object_lock: Some(LockMode::Governance), ..s3.repo_config("plain", "r") };
    let recipients =
        tidemark::keys::Recipients::parse(&[tidemark::keys::GeneratedIdentity::generate().recipient]).unwrap();
    let err = tidemark::repo::Repository::init(&cfg, &recipients).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{}", err.report());
    assert!(err.message().contains("object-lock-enabled-for-bucket"), "{}", err.report());
    // Nothing was written.
    let plain = tidemark::config::RepositoryConfig { object_lock: None, ..cfg.clone() };
    assert_eq!(tidemark::repo::Repository::open(&plain).await.unwrap_err().kind(), ErrorKind::NotFound);
    // A local folder cannot lock: the config itself is refused.
    let text = "[repository]\nurl = \"file:///tmp/x\"\nrecipients = []\nobject-lock = \"governance\"\n";
    let err = tidemark::config::Config::parse(text).unwrap_err();
    assert!(err.message().contains("per-object locks on S3 only"), "{}", err.report());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_objects_survive_deletes_and_overwrites_and_the_snapshot_restores() {
    let s3 = S3Server::start().await;
    s3.create_locked_bucket("locked").await;
    let cluster = tokio::task::spawn_blocking(start_cluster).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = tidemark::config::RepositoryConfig {
        object_lock: Some(LockMode::Governance),
        ..s3.repo_config("locked", "repo")
    };
    let w = crate::support::world_with_repo(cluster, dir, cfg.clone()).await;
    let source = create_database(&w.cluster, "shop", SHOP).await;
    let m = snapshot_shop(&w.core).await.unwrap();

    // Every object of the snapshot is locked until its retention (manual: 90 days) plus
    // the margin (7 days), and so is repository.json.
    let opened = tidemark::repo::store::open(&w.repo_config, false).unwrap();
    let bucket = opened.s3.clone().unwrap();
    let expected = m.started_at + chrono::Duration::days(97);
    let manifest = layout::manifest("shop", &m.id);
    let table = layout::SnapshotObject::key_for_name("shop", &m.id, &m.tables[0].parts[0].name).unwrap();
    let sig = layout::signature(&manifest);
    for key in [&manifest, &table, &sig, &layout::descriptor()] {
        let (mode, until) = bucket.retention(key).await.unwrap().unwrap_or_else(|| panic!("{key} is not locked"));
        assert_eq!(mode, LockMode::Governance);
        assert!((until - expected).num_seconds().abs() < 120, "{key}: {until} vs {expected}");
    }

    // The attacker, with the same credentials: deleting the locked versions is refused...
    let store = opened.store.clone();
    for key in [&manifest, &table] {
        let version = store.head(key).await.unwrap().version.expect("a versioned bucket");
        let err = bucket.delete_version(key, &version).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Refused, "{}", err.report());
    }
    // ...and an overwrite or a plain delete only stacks a new version on top.
    let original = store.get(&manifest).await.unwrap();
    let version = original.meta.version.clone().unwrap();
    let original = original.bytes().await.unwrap();
    store.put(&manifest, PutPayload::from_static(b"ransom note")).await.unwrap();
    store.delete(&table).await.unwrap();
    let err = restore(
        &w.core,
        &RestoreOptions { snapshot: m.id.clone(), target: w.cluster.url("r1").into(), ..Default::default() },
        &actor(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "detected, never restored: {}", err.report());
    let kept = store.get_opts(&manifest, GetOptions { version: Some(version), ..Default::default() }).await.unwrap();
    assert_eq!(kept.bytes().await.unwrap(), original, "the locked version is untouched");

    // Recovery (docs/guide/09-security.md, "Object lock"): the locked versions made current again, and locked
    // again to the same date.
    for key in [&manifest, &table] {
        let versions = bucket.versions(key).await.unwrap();
        let locked = versions.iter().find(|v| v.locked).unwrap_or_else(|| panic!("{key}: {versions:?}"));
        let bytes = store
            .get_opts(key, GetOptions { version: Some(locked.version.clone()), ..Default::default() })
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        store.put(key, PutPayload::from(bytes)).await.unwrap();
        bucket.set_retention(key, LockMode::Governance, locked.retain_until.unwrap()).await.unwrap();
    }
    restore(
        &w.core,
        &RestoreOptions { snapshot: m.id.clone(), target: w.cluster.url("r2").into(), ..Default::default() },
        &actor(),
    )
    .await
    .unwrap();
    let restored = tidemark::pg::ConnSpec::parse(&w.cluster.url("r2"), None).unwrap();
    assert_eq!(content_fingerprint(&restored).await, content_fingerprint(&source).await);

    // Retention that would delete it (a year on, with a newer snapshot) keeps it while it
    // is locked, saying so.
    snapshot_shop(&w.core).await.unwrap();
    let opts = PruneOptions {
        workspace: "shop".into(),
        dry_run: false,
        grace: tidemark::ops::prune::DEFAULT_GRACE,
        as_of: Some(chrono::Utc::now() + chrono::Duration::days(365)),
        wait: Default::default(),
        repository: None,
    };
    let report = prune(&w.core, &opts, &actor()).await.unwrap();
    let decision = report.decisions.iter().find(|d| d.id == m.id).unwrap();
    assert!(decision.keep, "{decision:?}");
    assert!(decision.reasons.iter().any(|r| r.starts_with("kept: locked until")), "{decision:?}");
    assert!(store.head(&manifest).await.is_ok());
    // Deleting it by hand is refused too, saying until when (issue 31.10).
    let by_hand = tidemark::ops::prune::SnapshotDeleteOptions {
        id: m.id.clone(),
        workspace: Some("shop".into()),
        confirm: m.id.clone(),
        ..Default::default()
    };
    let err = tidemark::ops::prune::delete(&w.core, &by_hand, &actor()).await.unwrap_err();
    assert_eq!(err.kind(), tidemark::ErrorKind::Refused, "{}", err.report());
    assert!(err.message().contains("object lock until"), "{}", err.message());
    assert!(store.head(&manifest).await.is_ok());
    let checked = check(&w.core, false).await.unwrap();
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);

    // Pinning holds the snapshot one more full hold from now.
    let before = bucket.retention(&manifest).await.unwrap().unwrap().1;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    crate::support::set_pin(&w.core, &m.id, Some("shop"), true).await.unwrap();
    for key in [&manifest, &table, &sig] {
        let after = bucket.retention(key).await.unwrap().unwrap().1;
        assert!(after > before, "{key}: {after} <= {before}");
    }
    crate::support::set_pin(&w.core, &m.id, Some("shop"), false).await.unwrap();

    // WAL is locked for the PITR window (default: the longest keep-within, 90 days) and
    // the margin.
    let segment = w.dir.path().join("000000010000000000000001");
    std::fs::write(&segment, vec![7u8; 1 << 16]).unwrap();
    let pushed = tidemark::ops::wal::push(&w.core, Some("shop"), &segment).await.unwrap();
    let wal = layout::wal_object("shop", &pushed.name, &pushed.sha256).unwrap();
    let until = bucket.retention(&wal).await.unwrap().unwrap().1;
    let expected = chrono::Utc::now() + chrono::Duration::days(97);
    assert!((until - expected).num_seconds().abs() < 120, "{until} vs {expected}");

    // A streamed partial segment is not locked: each newer version replaces the last.
    let partial = w.dir.path().join("000000010000000000000002.partial");
    for fill in [1u8, 2] {
        std::fs::write(&partial, vec![fill; 1 << 16]).unwrap();
        let pushed = tidemark::ops::wal::push(&w.core, Some("shop"), &partial).await.unwrap();
        let key = layout::wal_object("shop", &pushed.name, &pushed.sha256).unwrap();
        assert_eq!(bucket.retention(&key).await.unwrap(), None);
    }
    let shipped =
        w.core.repo.list(&layout::wal_file_dir("shop", "000000010000000000000002.partial").unwrap()).await.unwrap();
    assert_eq!(shipped.len(), 1, "{shipped:?}");

    // Retention made longer than the locks set at the time: check names the snapshots.
    let schedules = w.dir.path().join("schedules");
    std::fs::create_dir_all(&schedules).unwrap();
    let manual = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schedules/manual.toml")).unwrap();
    std::fs::write(schedules.join("manual.toml"), manual.replace("\"90d\"", "\"200d\"")).unwrap();
    let checked = check(&w.core, false).await.unwrap();
    assert!(
        checked.problems.iter().any(|p| p.contains(&m.id) && p.contains("end their lock before its retention")),
        "{:?}",
        checked.problems
    );
}

/// A base backup extends the locks of the previous one and of the WAL archived since it
/// began: the moments between the two are restored from them, and stay in the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_base_backup_extends_the_locks_of_what_restores_the_moments_before_it() {
    let s3 = S3Server::start().await;
    s3.create_locked_bucket("based").await;
    // Archiving on (what base backups require); the WAL itself is pushed by the test.
    let settings = vec![("archive_mode".to_string(), "on".to_string()), ("archive_command".into(), "true".into())];
    let options = tidemark::pgcluster::ClusterOptions { settings, ..Default::default() };
    let cluster =
        tokio::task::spawn_blocking(move || tidemark::pgcluster::Cluster::start(&options).unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        tidemark::config::RepositoryConfig { object_lock: Some(LockMode::Compliance), ..s3.repo_config("based", "r") };
    let mut w = crate::support::world_with_repo(cluster, dir, cfg).await;
    create_database(&w.cluster, "shop", SHOP).await;
    let first = crate::support::basebackup(&w.core).await.unwrap();
    let segment = w.dir.path().join("000000010000000000000009");
    std::fs::write(&segment, vec![9u8; 1 << 16]).unwrap();
    let pushed = tidemark::ops::wal::push(&w.core, Some("shop"), &segment).await.unwrap();
    let wal = layout::wal_object("shop", &pushed.name, &pushed.sha256).unwrap();
    let bucket = tidemark::repo::store::open(&w.repo_config, false).unwrap().s3.unwrap();
    let tar = layout::base_tar("shop", &first.id);
    let before: Vec<_> = [&tar, &wal].iter().map(|k| async { bucket.retention(k).await.unwrap().unwrap() }).collect();
    let before = futures::future::join_all(before).await;
    assert!(before.iter().all(|(mode, _)| *mode == LockMode::Compliance));

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = crate::support::basebackup(&w.core).await.unwrap();
    for (key, (_, was)) in [&tar, &wal].into_iter().zip(before) {
        let now = bucket.retention(key).await.unwrap().unwrap().1;
        assert!(now > was, "{key}: {now} <= {was}");
    }
    // The new one's own objects are locked from the start.
    assert!(bucket.retention(&layout::base_tar("shop", &second.id)).await.unwrap().is_some());
    // And in compliance mode, nobody deletes them: not even by version.
    let version =
        tidemark::repo::store::open(&w.repo_config, false).unwrap().store.head(&tar).await.unwrap().version.unwrap();
    assert_eq!(bucket.delete_version(&tar, &version).await.unwrap_err().kind(), ErrorKind::Refused);

    // A PITR window made longer than the locks: check names the WAL files and base backups.
    let ok = check(&w.core, false).await.unwrap();
    assert!(ok.problems.iter().all(|p| !p.contains("end their lock")), "{:?}", ok.problems);
    w.core.config.config.workspaces.get_mut("shop").unwrap().pitr_window =
        Some(std::time::Duration::from_secs(200 * 86_400));
    let short = check(&w.core, false).await.unwrap();
    for what in ["base backups of workspace shop end their lock", "WAL files of workspace shop end their lock"] {
        assert!(short.problems.iter().any(|p| p.contains(what)), "{what}: {:?}", short.problems);
    }
}
