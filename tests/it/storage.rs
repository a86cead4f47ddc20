//! The storage conformance suite: the same checks of the repository's typed calls on every
//! backend (a local folder, S3 on a local moto server, and the fault-injecting wrapper
//! around a local folder), then what operations do when the store fails under them.
//! Also the proof that the repository is the only storage seam.

use std::path::Path;

use tidemark::ErrorKind;
use tidemark::config::RepositoryConfig;
use tidemark::keys::{GeneratedIdentity, Identities, Recipients};
use tidemark::repo::faults::Faults;
use tidemark::repo::pipeline::{Expect, ObjectWriter, read_object, read_to_end, read_verified};
use tidemark::repo::{Key, Repository};

use crate::support::{AzureServer, S3Server, create_database};

struct Keys {
    recipients: Recipients,
    identities: Identities,
    signing: tidemark::signing::Signing,
}

fn keys() -> Keys {
    let generated = GeneratedIdentity::generate();
    Keys {
        recipients: Recipients::parse(std::slice::from_ref(&generated.recipient)).unwrap(),
        identities: generated.identities(),
        signing: {
            let key = tidemark::signing::SigningSecret::generate();
            let trust = tidemark::signing::Trust { signers: vec![key.public()], allow_unsigned: false };
            tidemark::signing::Signing { secret: Some(key), trust }
        },
    }
}

fn local_config(dir: &Path) -> RepositoryConfig {
    RepositoryConfig { url: url::Url::from_directory_path(dir).unwrap().to_string(), ..Default::default() }
}

/// Random (incompressible) bytes, so the stored object is as large as the data.
fn noise(len: usize) -> Vec<u8> {
    (0..len).map(|_| rand::random::<u8>()).collect()
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Record {
    name: String,
    n: u64,
}

/// Everything a backend must do the same way.
async fn conformance(repo: &Repository, keys: &Keys) {
    let k = |s: &str| Key::from(s);

    // Write-once: a second put of a key is refused and leaves the first content.
    repo.put_once(&k("t/once"), b"first".to_vec()).await.unwrap();
    let again = repo.put_once(&k("t/once"), b"second".to_vec()).await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::AlreadyExists, "{}", again.report());
    assert_eq!(repo.get(&k("t/once")).await.unwrap().unwrap().as_ref(), b"first");

    // Sealed records: round trip, write-once, and never stored in plain text.
    let record = Record { name: "point-a".into(), n: 7 };
    repo.put_sealed(&k("t/sealed"), &record, &keys.recipients).await.unwrap();
    let read: Record = repo.read_sealed(&k("t/sealed"), &keys.identities, "the record").await.unwrap().unwrap();
    assert_eq!(read, record);
    let other = Record { name: "point-b".into(), n: 8 };
    let e = repo.put_sealed(&k("t/sealed"), &other, &keys.recipients).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    let stored = repo.get(&k("t/sealed")).await.unwrap().unwrap();
    assert!(!stored.windows(7).any(|w| w == b"point-a"), "a sealed record is stored in plain text");

    // A listing shows what was put, with sizes, and a prefix is a folder.
    repo.put_once(&k("t/list/a"), vec![1u8; 10]).await.unwrap();
    repo.put_once(&k("t/list/b/c"), vec![2u8; 20]).await.unwrap();
    repo.put_once(&k("t/listing"), vec![3u8; 30]).await.unwrap();
    let mut listed: Vec<(String, u64)> =
        repo.list(&k("t/list")).await.unwrap().into_iter().map(|o| (o.key.to_string(), o.size)).collect();
    listed.sort();
    assert_eq!(listed, vec![("t/list/a".to_string(), 10), ("t/list/b/c".to_string(), 20)]);

    // Missing objects: `None` where absence is an answer, `Integrity` where it is damage.
    assert!(repo.get(&k("t/nothing")).await.unwrap().is_none());
    assert!(repo.stored_size(&k("t/nothing")).await.unwrap().is_none());
    let r: Option<Record> = repo.read_sealed(&k("t/nothing"), &keys.identities, "x").await.unwrap();
    assert!(r.is_none());
    assert_eq!(repo.expect_stored(&k("t/nothing"), None).await.unwrap_err().kind(), ErrorKind::Integrity);
    let e = repo.expect_stored(&k("t/list/a"), Some(11)).await.unwrap_err();
    assert!(e.kind() == ErrorKind::Integrity && e.message().contains("10 bytes"), "{}", e.message());
    repo.expect_stored(&k("t/list/a"), Some(10)).await.unwrap();
    let gone = Expect::Content { sha256: "0".repeat(64), size: None };
    let e = read_verified(repo, &k("t/nothing"), gone, &keys.identities).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity);

    // Deleting: gone from reads and listings; deleting again is fine.
    repo.delete(&k("t/list/a")).await.unwrap();
    repo.delete(&k("t/list/a")).await.unwrap();
    assert!(repo.get(&k("t/list/a")).await.unwrap().is_none());
    assert_eq!(repo.list(&k("t/list")).await.unwrap().len(), 1);

    // An object larger than a part goes up in parts and reads back verified.
    let big = noise(repo.part_size() * 2 + 12345);
    let mut writer = ObjectWriter::new(repo, k("t/big"), "big".into(), &keys.recipients).unwrap();
    writer.write(&big).await.unwrap();
    let entry = writer.finish().await.unwrap();
    assert!(entry.stored_size > repo.part_size() as u64 * 2);
    assert_eq!(repo.stored_size(&k("t/big")).await.unwrap(), Some(entry.stored_size));
    let back = read_to_end(read_object(repo, &k("t/big"), &entry, &keys.identities).await.unwrap()).await.unwrap();
    assert!(back == big, "the multipart object did not read back as written");
    // ... and is write-once too.
    let mut second = ObjectWriter::new(repo, k("t/big"), "big".into(), &keys.recipients).unwrap();
    let refused = async {
        second.write(&noise(repo.part_size() * 2)).await?;
        second.finish().await
    }
    .await
    .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::AlreadyExists, "{}", refused.report());
    assert_eq!(repo.stored_size(&k("t/big")).await.unwrap(), Some(entry.stored_size));

    // Content-addressed (WAL, media): written without hashes, read back checked against
    // the SHA-256 its key names; a manifest entry is refused (it would have no hashes).
    let sha256 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&big))
    };
    let mut writer =
        ObjectWriter::new(repo, k("t/content"), "content".into(), &keys.recipients).unwrap().content_addressed();
    writer.write(&big).await.unwrap();
    let stored = writer.finish_unhashed().await.unwrap();
    assert_eq!(repo.stored_size(&k("t/content")).await.unwrap(), Some(stored));
    let expect = Expect::Content { sha256: sha256.clone(), size: Some(big.len() as u64) };
    let back =
        read_to_end(read_verified(repo, &k("t/content"), expect, &keys.identities).await.unwrap()).await.unwrap();
    assert!(back == big, "the content-addressed object did not read back as written");
    let mut unhashed =
        ObjectWriter::new(repo, k("t/unhashed"), "x".into(), &keys.recipients).unwrap().content_addressed();
    unhashed.write(b"small").await.unwrap();
    assert_eq!(unhashed.finish().await.unwrap_err().kind(), ErrorKind::Internal);
    assert_eq!(repo.stored_size(&k("t/unhashed")).await.unwrap(), None, "nothing stored");

    // A truncated copy of it fails verification as damage.
    let whole = repo.get(&k("t/big")).await.unwrap().unwrap();
    repo.put_once(&k("t/cut"), whole.slice(..whole.len() / 2)).await.unwrap();
    let e = read_to_end(read_object(repo, &k("t/cut"), &entry, &keys.identities).await.unwrap()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{}", e.report());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let repo =
        Repository::init(&local_config(dir.path()), &keys.recipients).await.unwrap().with_signing(keys.signing.clone());
    conformance(&repo, &keys).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_s3() {
    let s3 = S3Server::start().await;
    s3.create_bucket("conformance").await;
    let keys = keys();
    let repo = Repository::init(&s3.repo_config("conformance", "repo"), &keys.recipients)
        .await
        .unwrap()
        .with_signing(keys.signing.clone());
    conformance(&repo, &keys).await;
    // The refused second write of the multipart object left no upload behind.
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    assert!(repo.stale_uploads(&Key::from("t"), later).await.unwrap().is_empty());

    // An upload the writer lost track of (never finished, aborted or dropped) is found by
    // its key and aborted, and only that key's.
    for key in ["lost/big", "lost/big-2"] {
        let mut w = ObjectWriter::new(&repo, Key::from(key), "big".into(), &keys.recipients).unwrap();
        w.write(&noise(repo.part_size() * 2)).await.unwrap();
        std::mem::forget(w);
    }
    assert_eq!(repo.stale_uploads(&Key::from("lost"), later).await.unwrap().len(), 2);
    assert_eq!(repo.abort_uploads_of(&Key::from("lost/big")).await.unwrap(), 1);
    let left = repo.stale_uploads(&Key::from("lost"), later).await.unwrap();
    assert!(
        left.len() == 1 && left[0].what.contains("lost/big-2"),
        "{:?}",
        left.iter().map(|l| &l.what).collect::<Vec<_>>()
    );
}

/// Google Cloud Storage: no emulator installable here serves the calls object_store makes
/// (the PyPI build of fake-gcs-server has no XML API writes; gcp-storage-emulator answers
/// writes without an ETag and ignores conditional writes), so what is checked without a
/// server is that `gs://` opens with a service-account key and that a missing key or bucket
/// name is said plainly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_cloud_storage_settings() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.json");
    std::fs::write(&key, r#"{"disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""}"#)
        .unwrap();
    let cfg = RepositoryConfig {
        url: "gs://backups/tidemark".into(),
        endpoint: Some("http://127.0.0.1:9".into()),
        allow_http: Some(true),
        service_account: Some(
            tidemark::config::Secret::reference("service-account", &format!("file:{}", key.display())).unwrap(),
        ),
        ..Default::default()
    };
    tidemark::repo::store::open(&cfg, false).expect("gs:// opens with a service-account key");
    // Nothing listens on port 9: the store is away, said as such.
    let e = Repository::open(&cfg).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{}", e.report());
    let missing = RepositoryConfig {
        service_account: Some(tidemark::config::Secret::reference("s", "file:/nonexistent/key.json").unwrap()),
        ..cfg.clone()
    };
    let e = tidemark::repo::store::open(&missing, false).err().unwrap();
    assert!(e.report().contains("/nonexistent/key.json"), "{}", e.report());
    let e =
        tidemark::repo::store::open(&RepositoryConfig { url: "gs:///tidemark".into(), ..cfg }, false).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Config, "{}", e.report());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_azure_blob_storage() {
    let azure = AzureServer::start().await;
    azure.create_container("conformance").await;
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let cfg = azure.repo_config("conformance", "repo", dir.path());
    let repo = Repository::init(&cfg, &keys.recipients).await.unwrap().with_signing(keys.signing.clone());
    conformance(&repo, &keys).await;
    let again = Repository::init(&cfg, &keys.recipients).await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::AlreadyExists, "{}", again.report());
    missing_bucket_and_credentials(azure.repo_config("no-such-container", "repo", dir.path()), &keys).await;
    // A wrong account key is refused as a configuration problem, its value never shown.
    let wrong = dir.path().join("wrong-key");
    std::fs::write(&wrong, "d3Jvbmcga2V5IGZvciB0aGUgdGVzdA==").unwrap();
    let cfg = RepositoryConfig {
        access_key: Some(
            tidemark::config::Secret::reference("access-key", &format!("file:{}", wrong.display())).unwrap(),
        ),
        ..cfg
    };
    let e = Repository::open(&cfg).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{}", e.report());
    assert!(!e.report().contains("d3Jvbmcga2V5"), "the key is in the error: {}", e.report());
}

/// A repository in a bucket or container that does not exist is a configuration problem
/// that says what to do; a missing secret file is named.
async fn missing_bucket_and_credentials(cfg: RepositoryConfig, keys: &Keys) {
    let e = Repository::init(&cfg, &keys.recipients).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{}", e.report());
    assert!(e.report().contains("does not exist"), "{}", e.report());
    let missing = RepositoryConfig {
        service_account: cfg
            .service_account
            .as_ref()
            .map(|_| tidemark::config::Secret::reference("s", "file:/nonexistent/key.json").unwrap()),
        access_key: cfg
            .access_key
            .as_ref()
            .map(|_| tidemark::config::Secret::reference("s", "env:TIDEMARK_NO_SUCH_VARIABLE").unwrap()),
        ..cfg
    };
    let e = Repository::open(&missing).await.unwrap_err();
    assert!(
        e.report().contains("/nonexistent/key.json") || e.report().contains("TIDEMARK_NO_SUCH_VARIABLE"),
        "{}",
        e.report()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_fault_injecting_wrapper() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let plain =
        Repository::init(&local_config(dir.path()), &keys.recipients).await.unwrap().with_signing(keys.signing.clone());
    let faults = Faults::new();
    let repo = plain.with_faults(&faults);
    // Without faults the wrapper is a store like the others.
    conformance(&repo, &keys).await;
    assert!(faults.calls() > 20, "the wrapper saw {} calls", faults.calls());

    // The Nth call fails once: the write is reported and leaves nothing.
    faults.fail_call(1);
    let e = repo.put_once(&Key::from("f/one"), b"x".to_vec()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{}", e.report());
    assert!(e.report().contains("injected"), "{}", e.report());
    assert!(repo.get(&Key::from("f/one")).await.unwrap().is_none());
    repo.put_once(&Key::from("f/one"), b"x".to_vec()).await.unwrap();

    // A failure in the middle of a multipart upload: reported, nothing visible.
    let data = noise(repo.part_size() * 3);
    faults.fail_call(3);
    let failed = async {
        let mut w = ObjectWriter::new(&repo, Key::from("f/big"), "big".into(), &keys.recipients)?;
        w.write(&data).await?;
        w.finish().await
    }
    .await;
    assert_eq!(failed.unwrap_err().kind(), ErrorKind::Unavailable);
    faults.clear();
    assert!(repo.list(&Key::from("f/big")).await.unwrap().is_empty(), "a failed upload is visible");
    assert!(plain.stored_size(&Key::from("f/big")).await.unwrap().is_none());

    // A read cut short is damage, not data.
    let mut w = ObjectWriter::new(&repo, Key::from("f/whole"), "whole".into(), &keys.recipients).unwrap();
    w.write(&noise(100_000)).await.unwrap();
    let entry = w.finish().await.unwrap();
    faults.truncate_reads(true);
    let e = read_to_end(read_object(&repo, &Key::from("f/whole"), &entry, &keys.identities).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{}", e.report());
    let sealed: Result<Option<Record>, _> = repo.read_sealed(&Key::from("t/sealed"), &keys.identities, "x").await;
    assert!(sealed.is_err(), "a truncated sealed record was accepted");
    faults.clear();

    // A store that times out: every kind of call says so, as a temporary failure.
    faults.time_out(true);
    for e in [
        repo.get(&Key::from("f/one")).await.unwrap_err(),
        repo.list(&Key::from("f")).await.unwrap_err(),
        repo.delete(&Key::from("f/one")).await.unwrap_err(),
        repo.put_once(&Key::from("f/two"), b"y".to_vec()).await.unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{}", e.report());
        assert!(e.kind().is_temporary());
    }
    faults.clear();
    assert!(repo.get(&Key::from("f/one")).await.unwrap().is_some(), "the timed-out delete deleted");
}

/// Runs `op` once without faults to count its store calls, then again failing the Nth call
/// for N spread over that count; `visible` says what the repository shows afterwards. Each
/// failed run must report the failure and leave `visible` as it was. Returns how many of
/// the runs failed, and how many there were.
async fn fails_cleanly<F, Fut, T, V, VFut>(faults: &Faults, op: F, visible: V) -> (usize, usize)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = tidemark::Result<T>>,
    V: Fn() -> VFut,
    VFut: std::future::Future<Output = usize>,
{
    let before = faults.calls();
    op().await.expect("the operation works without faults");
    let calls = faults.calls() - before;
    assert!(calls >= 2, "only {calls} store calls");
    let mut failures = 0;
    let mut points: Vec<u64> = vec![1, 2, calls / 3, calls / 2, calls * 2 / 3, calls - 1, calls];
    points.retain(|n| *n >= 1);
    points.sort_unstable();
    points.dedup();
    for n in points.iter().copied() {
        let shown = visible().await;
        faults.fail_call(n);
        let result = op().await;
        faults.clear();
        match result {
            Err(e) => {
                failures += 1;
                assert_eq!(visible().await, shown, "failing store call {n} of {calls} left something visible: {e}");
            }
            // A call whose failure the operation absorbs (a retry, a best-effort read)
            // must still give a whole result.
            Ok(_) => assert_eq!(visible().await, shown + 1, "call {n} of {calls} failed silently"),
        }
    }
    (failures, points.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_and_base_backups_meeting_a_failing_store_leave_nothing_visible() {
    let mut w = crate::pitr::archiving_world().await;
    create_database(
        &w.cluster,
        "shop",
        "CREATE TABLE t (id int PRIMARY KEY, body text);
         INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, 20000) i;
         CREATE TABLE u (id int); INSERT INTO u SELECT generate_series(1, 100);",
    )
    .await;
    let faults = Faults::new();
    w.core.repo = w.core.repo.with_faults(&faults);
    let core = &w.core;
    let plain =
        Repository::open(&w.repo_config).await.unwrap().with_signing(crate::support::signing_of(&w.repo_config));

    let snapshot = || async {
        let opts = tidemark::ops::snapshot::SnapshotOptions { workspace: "shop".into(), ..Default::default() };
        tidemark::ops::snapshot::create(core, &opts, &crate::support::actor()).await
    };
    let snapshots = || async { plain.list_snapshot_ids("shop").await.unwrap().len() };
    let (failures, tried) = fails_cleanly(&faults, snapshot, snapshots).await;
    assert_eq!(failures, tried, "a snapshot absorbed a failing store call");
    // What is committed still restores.
    let identities = w.identity.identities();
    for m in plain.read_manifests("shop", &identities).await.unwrap().items {
        plain.verify_present(&m, true).await.unwrap();
    }

    let base = || async { crate::support::basebackup(core).await };
    let bases = || async { tidemark::wal::base::list(&plain, &identities, "shop").await.unwrap().len() };
    let (failures, tried) = fails_cleanly(&faults, base, bases).await;
    assert_eq!(failures, tried, "a base backup absorbed a failing store call");
}

/// A base backup whose upload fails while pg_basebackup still streams (its tar read on a
/// thread of its own): the failure is reported at once, pg_basebackup is stopped (no
/// replication connection stays open), and nothing of it is visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_backup_whose_upload_fails_midway_stops_pg_basebackup() {
    let mut w = crate::pitr::archiving_world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g").await;
    let faults = Faults::new();
    // 1-MiB parts: the tar of a new cluster goes up in many, while pg_basebackup streams.
    let small_parts = RepositoryConfig { part_size_mib: Some(1), ..w.repo_config.clone() };
    w.core.repo = Repository::open(&small_parts)
        .await
        .unwrap()
        .with_signing(crate::support::signing_of(&w.repo_config))
        .with_faults(&faults);
    let before = faults.calls();
    crate::support::basebackup(&w.core).await.expect("a base backup without faults");
    let calls = faults.calls() - before;
    assert!(calls > 6, "the tar went up in parts: {calls} store calls");
    let identities = w.identity.identities();
    let plain =
        Repository::open(&w.repo_config).await.unwrap().with_signing(crate::support::signing_of(&w.repo_config));
    let bases = || async { tidemark::wal::base::list(&plain, &identities, "shop").await.unwrap().len() };
    assert_eq!(bases().await, 1);

    // A failure in the middle of the upload, and every call after it.
    faults.fail_from(calls / 2);
    let clock = std::time::Instant::now();
    let e = crate::support::basebackup(&w.core).await.unwrap_err();
    faults.clear();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{}", e.report());
    assert!(e.report().contains("uploading") && e.report().contains("base.tar"), "{}", e.report());
    assert!(clock.elapsed() < std::time::Duration::from_secs(60), "the failure took {:?}", clock.elapsed());
    assert_eq!(bases().await, 1, "the failed base backup is visible");
    let admin = tidemark::pg::ConnSpec::parse(&w.cluster.url("postgres"), None).unwrap();
    let senders = crate::support::count_until_zero(
        &admin,
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'",
    )
    .await;
    assert_eq!(senders, 0, "pg_basebackup's replication connection stayed open");
    // The next one works.
    crate::support::basebackup(&w.core).await.expect("a base backup after the store recovered");
    assert_eq!(bases().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_push_meeting_a_failing_store_leaves_nothing_visible() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let plain =
        Repository::init(&local_config(dir.path()), &keys.recipients).await.unwrap().with_signing(keys.signing.clone());
    let faults = Faults::new();
    let repo = plain.with_faults(&faults);
    // Segments of random content (push stores what it is given; fetch checks headers).
    let segment = |n: u32| {
        let path = dir.path().join(format!("00000001000000000000{n:04X}"));
        std::fs::write(&path, noise(16 << 20)).unwrap();
        path
    };
    let next = std::sync::atomic::AtomicU32::new(1);
    let push = || {
        let path = segment(next.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        let (repo, keys) = (&repo, &keys);
        async move { tidemark::wal::archive::push(repo, &keys.recipients, "shop", &path).await }
    };
    let archived = || async { tidemark::wal::archive::list(&plain, "shop").await.unwrap().len() };
    let (failures, tried) = fails_cleanly(&faults, push, archived).await;
    assert_eq!(failures, tried, "a WAL push absorbed a failing store call");
}

/// The repository is the only storage seam: no module outside `src/repo/` names the
/// object store crate.
#[test]
fn only_the_repository_names_the_object_store() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path != src.join("repo") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs")
                && std::fs::read_to_string(&path).unwrap().contains("object_store")
            {
                offenders.push(path.strip_prefix(&src).unwrap().display().to_string());
            }
        }
    }
    assert!(offenders.is_empty(), "these modules name object_store: {offenders:?}");
}
