//! Retention on a real repository: pins, the newest snapshot, deletion manifest-first,
//! shared media kept while referenced, and garbage (crashed snapshots, orphaned media)
//! collected only after the grace period.

use std::time::{Duration, SystemTime};

use tidemark::ops::prune::{PruneOptions, prune};

use crate::support::{create_database, world};

fn age(path: &std::path::Path, by: Duration) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - by).unwrap();
}

fn files_below(dir: &std::path::Path) -> usize {
    if !dir.exists() {
        return 0;
    }
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| if p.is_dir() { files_below(&p) } else { 1 })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_what_policies_pins_and_references_need() {
    let mut w = world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int); INSERT INTO t VALUES (1);").await;
    let media = w.dir.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("logo.png"), vec![7u8; 50_000]).unwrap();
    let schedules = w.dir.path().join("schedules");
    std::fs::create_dir_all(&schedules).unwrap();
    std::fs::write(schedules.join("manual.toml"), "kind = \"manual\"\n[retention]\nkeep-last = 1\n").unwrap();
    w.core.config.config.schedules_dir = Some(schedules);
    w.core.config.config.workspaces.get_mut("shop").unwrap().media =
        Some(url::Url::from_directory_path(&media).unwrap().to_string());

    let mut ids = Vec::new();
    for _ in 0..3 {
        let m = crate::support::snapshot_shop(&w.core).await.unwrap();
        ids.push(m.id);
        tokio::time::sleep(Duration::from_millis(1100)).await; // ids sort by second
    }
    crate::support::set_pin(&w.core, &ids[0], None, true).await.unwrap();
    crate::support::set_pin(&w.core, &ids[0], None, true)
        .await
        .expect("pinning a pinned snapshot is fine (the marker is written once)");
    let snaps = w.repo_dir().join("workspaces/shop/snapshots");
    let media_objects = w.repo_dir().join("workspaces/shop/media");
    assert_eq!(files_below(&media_objects), 1);

    let opts = |dry_run: bool, grace: Duration| PruneOptions {
        workspace: "shop".into(),
        dry_run,
        grace,
        as_of: None,
        wait: Default::default(),
        repository: None,
    };
    let dry = prune(&w.core, &opts(true, Duration::ZERO), &crate::support::actor()).await.unwrap();
    let verdict: Vec<(String, bool)> = dry.decisions.iter().map(|d| (d.id.clone(), d.keep)).collect();
    assert_eq!(verdict, vec![(ids[0].clone(), true), (ids[1].clone(), false), (ids[2].clone(), true)]);
    assert!(dry.decisions[0].reasons.contains(&"pinned".to_string()));
    // The annotated listing (the API's and the console's) says what the dry run decided,
    // with the same reasons, each snapshot's pin and its signature checked.
    let listing =
        tidemark::ops::snapshot::ListOptions { workspace: "shop".into(), limit: Some(10), ..Default::default() };
    let listed = tidemark::ops::prune::list_annotated(&w.core, &listing, &crate::support::actor()).await.unwrap();
    assert_eq!(listed.len(), 3);
    for s in &listed {
        let decided = dry.decisions.iter().find(|d| d.id == s.id).unwrap();
        let said = s.retention.as_ref().unwrap();
        assert_eq!((said.keep, &said.reasons), (decided.keep, &decided.reasons), "{}", s.id);
        assert_eq!(s.pinned, Some(s.id == ids[0]));
        assert_eq!(s.signature.as_deref(), Some("verified"));
    }
    // A page of it: newest first, before the one named, as the plain listing pages.
    let one = tidemark::ops::snapshot::ListOptions { limit: Some(1), before: Some(ids[2].clone()), ..listing };
    let paged = tidemark::ops::prune::list_annotated(&w.core, &one, &crate::support::actor()).await.unwrap();
    assert_eq!(paged.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), vec![ids[1].clone()]);
    assert_eq!(paged[0].retention.as_ref().map(|r| r.keep), Some(false), "decided over all, not over the page");
    let bad = tidemark::ops::snapshot::ListOptions { before: Some("../x".into()), ..one };
    assert!(tidemark::ops::prune::list_annotated(&w.core, &bad, &crate::support::actor()).await.is_err());
    assert_eq!(crate::support::list(&w.core, "shop").await.unwrap().len(), 3, "a dry run deletes nothing");

    let done = prune(&w.core, &opts(false, Duration::ZERO), &crate::support::actor()).await.unwrap();
    assert!(done.deleted_objects >= 3);
    let left: Vec<String> = crate::support::list(&w.core, "shop").await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(left, vec![ids[0].clone(), ids[2].clone()]);
    assert!(!snaps.join(&ids[1]).exists() || files_below(&snaps.join(&ids[1])) == 0);
    assert_eq!(files_below(&media_objects), 1, "media still referenced by the kept snapshots stay");

    // A crashed snapshot's leftovers: kept inside the grace period, collected after it.
    let crashed = snaps.join("20200101T000000Z-000000/tables");
    std::fs::create_dir_all(&crashed).unwrap();
    std::fs::write(crashed.join("public.t.copy.zst.age"), b"partial").unwrap();
    // And an orphaned media object, old enough to go.
    let orphan = media_objects.join(format!("{}.zst.age", "a".repeat(64)));
    std::fs::write(&orphan, b"orphan").unwrap();
    age(&orphan, Duration::from_secs(86400));
    let young = prune(&w.core, &opts(false, Duration::from_secs(3600)), &crate::support::actor()).await.unwrap();
    assert!(young.garbage_in_grace >= 1);
    assert!(crashed.join("public.t.copy.zst.age").exists());
    assert!(orphan.exists(), "while a snapshot may be writing, media are left alone");

    age(&crashed.join("public.t.copy.zst.age"), Duration::from_secs(86400));
    let old = prune(&w.core, &opts(false, Duration::from_secs(3600)), &crate::support::actor()).await.unwrap();
    assert_eq!(old.garbage_objects, 2, "{old:?}");
    assert!(!crashed.join("public.t.copy.zst.age").exists());
    assert!(!orphan.exists());
    assert_eq!(files_below(&media_objects), 1);

    // Unpinned, the old snapshot goes too; the newest never does.
    crate::support::set_pin(&w.core, &ids[0], Some("shop"), false).await.unwrap();
    prune(&w.core, &opts(false, Duration::ZERO), &crate::support::actor()).await.unwrap();
    let left: Vec<String> = crate::support::list(&w.core, "shop").await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(left, vec![ids[2].clone()]);
    assert_eq!(files_below(&media_objects), 1);

    // Drill reports: older than the longest keep-within (none here: 90 days) go, but the
    // newest ten always stay. Twelve reports, the two oldest written 200 days ago.
    let reports = w.repo_dir().join("workspaces/shop/drills");
    std::fs::create_dir_all(&reports).unwrap();
    for n in 0..12 {
        let report = reports.join(format!("20260101T0000{n:02}Z-000000.json.age"));
        std::fs::write(&report, b"a drill report").unwrap();
        if n < 2 {
            age(&report, Duration::from_secs(200 * 86400));
        }
    }
    let dry = prune(&w.core, &opts(true, Duration::ZERO), &crate::support::actor()).await.unwrap();
    assert_eq!((dry.drill_reports_deleted, files_below(&reports)), (2, 12));
    let done = prune(&w.core, &opts(false, Duration::ZERO), &crate::support::actor()).await.unwrap();
    assert_eq!((done.drill_reports_deleted, files_below(&reports)), (2, 10));
    assert!(!reports.join("20260101T000000Z-000000.json.age").exists());
    assert!(reports.join("20260101T000002Z-000000.json.age").exists());
}

/// Issue 11.2: a prune with `--grace 0s` during a snapshot deleted the snapshot's objects,
/// and the snapshot then committed a manifest that could never restore. Now a prune is
/// refused while a snapshot of the workspace runs (a file lock, shared by every process
/// of the host), and a snapshot looks at every object it names before it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_never_runs_beside_a_snapshot_and_a_snapshot_never_commits_missing_objects() {
    use sqlx::Row;
    let w = world().await;
    let source =
        create_database(&w.cluster, "shop", "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000);")
            .await;
    let opts = PruneOptions {
        workspace: "shop".into(),
        dry_run: false,
        grace: Duration::ZERO,
        as_of: None,
        wait: Default::default(),
        repository: None,
    };

    // A snapshot held up inside its run: its table is locked by another transaction.
    let mut blocker = source.connect().await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE").execute(&mut blocker).await.unwrap();
    let core = w.core.clone();
    let running = tokio::spawn(async move { crate::support::snapshot_shop(&core).await });
    let mut watcher = source.connect().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let waiting = sqlx::query("SELECT count(*) FROM pg_locks WHERE NOT granted")
            .fetch_one(&mut watcher)
            .await
            .unwrap()
            .get::<i64, _>(0);
        if waiting > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the snapshot never waited for the table");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = prune(&w.core, &opts, &crate::support::actor()).await.unwrap_err();
    assert_eq!(refused.kind(), tidemark::ErrorKind::Busy, "{}", refused.report());
    assert!(refused.message().contains("a snapshot asked by cli:tester"), "{}", refused.message());
    // A dry run deletes nothing, so it does not wait.
    prune(&w.core, &PruneOptions { dry_run: true, ..opts.clone() }, &crate::support::actor()).await.unwrap();
    sqlx::raw_sql("COMMIT").execute(&mut blocker).await.unwrap();
    let manifest = running.await.unwrap().unwrap();
    prune(&w.core, &opts, &crate::support::actor()).await.expect("after the snapshot, prune runs");
    let report = crate::support::check(&w.core, true).await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    // The last look before committing: a manifest whose objects are not all stored (another
    // host pruned them) is never written.
    let mut copy = manifest.clone();
    copy.id = tidemark::repo::layout::new_snapshot_id(chrono::Utc::now() + chrono::Duration::seconds(5));
    let recipients = tidemark::keys::Recipients::parse(&w.repo_config.recipients).unwrap();
    let failed = w.core.repo.commit_manifest(&copy, &recipients).await.unwrap_err();
    assert_eq!(failed.kind(), tidemark::ErrorKind::Integrity);
    // Whichever object is looked at first (they are looked at in parallel) is named.
    assert!(failed.message().contains("is missing") && failed.message().contains(&copy.id), "{}", failed.message());
    let ids = w.core.repo.list_snapshot_ids("shop").await.unwrap();
    assert_eq!(ids, vec![manifest.id.clone()], "nothing was committed");
    // A wrongly sized object is refused too.
    let table = w.repo_dir().join("workspaces/shop/snapshots").join(&manifest.id).join("tables");
    let object = std::fs::read_dir(&table).unwrap().next().unwrap().unwrap().path();
    std::fs::OpenOptions::new().append(true).open(&object).unwrap().set_len(3).unwrap();
    let mut again = manifest.clone();
    again.id = tidemark::repo::layout::new_snapshot_id(chrono::Utc::now() + chrono::Duration::seconds(9));
    // Its objects under its own id: copy the real snapshot's folder, less the manifest.
    let from = w.repo_dir().join("workspaces/shop/snapshots").join(&manifest.id);
    let to = w.repo_dir().join("workspaces/shop/snapshots").join(&again.id);
    copy_tree(&from, &to);
    std::fs::remove_file(to.join("manifest.json.age")).unwrap();
    let failed = w.core.repo.commit_manifest(&again, &recipients).await.unwrap_err();
    assert!(failed.message().contains("bytes"), "{}", failed.message());
    assert!(!to.join("manifest.json.age").exists());
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() { copy_tree(&path, &target) } else { std::fs::copy(&path, &target).map(|_| ()).unwrap() }
    }
}

/// A snapshot of a table big enough for multipart uploads, through the binary, stopped
/// with `signal` once an upload is under way (`started` says when). Returns the exit code.
async fn stop_a_snapshot_mid_upload(
    config: &std::path::Path,
    signal: nix::sys::signal::Signal,
    started: impl AsyncFn() -> bool,
) -> Option<i32> {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["--config", config.to_str().unwrap(), "snapshot", "create", "-w", "shop"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !started().await {
        assert!(std::time::Instant::now() < deadline, "no upload was ever started");
        assert!(child.try_wait().unwrap().is_none(), "the snapshot ended before an upload was seen");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    tokio::task::spawn_blocking(move || child.wait().unwrap().code()).await.unwrap()
}

/// Files below `dir` whose name is an object_store staging file (`<object>#<n>`).
fn staging_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(staging_files(&path));
        } else if path.file_name().unwrap().to_string_lossy().contains('#') {
            out.push(path);
        }
    }
    out
}

const BIG_TABLE: &str = "CREATE TABLE t (id int, v text); \
     INSERT INTO t SELECT i, md5(i::text) || md5((i * 7)::text) FROM generate_series(1, 600000) i;";

/// Issue 11.5: a killed snapshot left `<object>#1` staging files in a `file://` repository
/// that prune never removed and check never reported. Now check reports them once older
/// than the grace period and prune collects them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_snapshots_unfinished_uploads_are_reported_and_collected() {
    let w = world().await;
    create_database(&w.cluster, "shop", BIG_TABLE).await;
    let snapshots = w.repo_dir().join("workspaces/shop/snapshots");
    // A multipart upload under way: a staging file past its first part. (Small objects are
    // staged too, for a moment.) On a busy machine the upload may complete between the look
    // and the kill: then the snapshot is killed again.
    let mut left = Vec::new();
    for _ in 0..3 {
        let code = stop_a_snapshot_mid_upload(&w.core.config.path, nix::sys::signal::Signal::SIGKILL, async || {
            staging_files(&snapshots).iter().any(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 1 << 20))
        })
        .await;
        assert_eq!(code, None, "killed");
        left = staging_files(&snapshots);
        if !left.is_empty() {
            break;
        }
    }
    assert!(!left.is_empty(), "a killed upload leaves its staging file");
    let report = crate::support::check(&w.core, false).await.unwrap();
    assert!(report.problems.is_empty(), "young leftovers may still be written: {:?}", report.problems);
    for file in &left {
        age(file, Duration::from_secs(7 * 3600));
    }
    let report = crate::support::check(&w.core, false).await.unwrap();
    assert!(report.problems.iter().any(|p| p.contains("never completed")), "{:?}", report.problems);
    let opts = PruneOptions {
        workspace: "shop".into(),
        dry_run: true,
        grace: Duration::from_secs(3600),
        as_of: None,
        wait: Default::default(),
        repository: None,
    };
    assert_eq!(
        prune(&w.core, &opts, &crate::support::actor()).await.unwrap().unfinished_uploads_deleted,
        left.len() as u64
    );
    assert_eq!(staging_files(&snapshots), left, "a dry run deletes nothing");
    let done = prune(&w.core, &PruneOptions { dry_run: false, ..opts }, &crate::support::actor()).await.unwrap();
    assert_eq!(done.unfinished_uploads_deleted, left.len() as u64);
    assert!(staging_files(&snapshots).is_empty());
    assert!(crate::support::check(&w.core, false).await.unwrap().problems.is_empty());
}

/// Issue 11.5: an interrupted snapshot left incomplete multipart uploads on S3. The upload
/// a dropped writer leaves is now aborted before the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_snapshot_leaves_no_multipart_upload_on_s3() {
    let s3 = crate::support::S3Server::start().await;
    s3.create_bucket("backups").await;
    let cluster = tokio::task::spawn_blocking(crate::support::start_cluster).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let w = crate::support::world_with_repo(cluster, dir, s3.repo_config("backups", "repo")).await;
    create_database(&w.cluster, "shop", BIG_TABLE).await;
    // The config the binary reads: the test server's credentials and 5 MiB parts.
    let text = std::fs::read_to_string(&w.core.config.path).unwrap().replacen(
        "[repository]\n",
        "[repository]\naccess-key-id = \"testing\"\nsecret-access-key = \"testing\"\npart-size-mib = 5\n",
        1,
    );
    std::fs::write(&w.core.config.path, text).unwrap();
    // moto answers ListMultipartUploads without checking signatures.
    let uploads = async || {
        let url = format!("{}/backups?uploads", s3.endpoint());
        let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
        body.matches("<UploadId>").count()
    };
    let code = stop_a_snapshot_mid_upload(&w.core.config.path, nix::sys::signal::Signal::SIGTERM, async || {
        uploads().await > 0
    })
    .await;
    assert_eq!(code, Some(tidemark::ErrorKind::Interrupted.exit_code()));
    assert_eq!(uploads().await, 0, "the interrupted snapshot's multipart uploads were aborted");

    // A killed one cannot abort its upload: check lists it once it is older than the grace
    // period, and prune aborts it.
    // (On a busy machine the upload may complete between the look and the kill: again.)
    for _ in 0..3 {
        let code = stop_a_snapshot_mid_upload(&w.core.config.path, nix::sys::signal::Signal::SIGKILL, async || {
            uploads().await > 0
        })
        .await;
        assert_eq!(code, None, "killed");
        if uploads().await > 0 {
            break;
        }
    }
    assert!(uploads().await > 0, "a killed snapshot leaves its multipart upload");
    let prefix = tidemark::repo::layout::workspace("shop");
    let soon = chrono::Utc::now() + chrono::Duration::hours(1);
    let stale = w.core.repo.stale_uploads(&prefix, soon).await.unwrap();
    assert!(!stale.is_empty() && stale.iter().all(|s| s.what.contains("snapshots/")), "{stale:?}");
    // moto reports every upload as started on 2010-11-10, so here it is past any grace:
    // check names it.
    let report = crate::support::check(&w.core, false).await.unwrap();
    assert!(report.problems.iter().any(|p| p.contains("incomplete multipart upload")), "{:?}", report.problems);
    let opts = PruneOptions {
        workspace: "shop".into(),
        dry_run: false,
        grace: Duration::ZERO,
        as_of: None,
        wait: Default::default(),
        repository: None,
    };
    let done = prune(&w.core, &opts, &crate::support::actor()).await.unwrap();
    assert_eq!(done.unfinished_uploads_deleted, stale.len() as u64);
    assert_eq!(uploads().await, 0, "prune aborted the killed snapshot's uploads");
}

/// The catalog's index of snapshots, as the API lists them: a snapshot taken or pruned on
/// this host shows at once; one deleted or damaged behind tidemark's back shows once the
/// index is compared with the repository again (in the background after a minute, or a
/// listing from the repository); pages go newest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_index_follows_the_repository() {
    use tidemark::ops::snapshot::{ListOptions, list};
    let mut w = world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);").await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(crate::support::snapshot_shop(&w.core).await.unwrap().id);
        tokio::time::sleep(Duration::from_millis(1100)).await; // ids sort by second
    }
    let me = crate::support::actor();
    let indexed = async |w: &crate::support::World, limit: Option<u32>, before: Option<&str>| -> Vec<String> {
        let opts = ListOptions {
            workspace: "shop".into(),
            limit,
            before: before.map(Into::into),
            from_repository: false,
            repository: None,
        };
        list(&w.core, &opts, &me).await.unwrap().into_iter().map(|s| s.id).collect()
    };
    // All of them, oldest first; pages newest first.
    assert_eq!(indexed(&w, None, None).await, ids);
    assert_eq!(indexed(&w, Some(2), None).await, vec![ids[3].clone(), ids[2].clone()]);
    assert_eq!(indexed(&w, Some(2), Some(&ids[2])).await, vec![ids[1].clone(), ids[0].clone()]);

    // Pruned here: gone from the index at once.
    let schedules = w.dir.path().join("schedules");
    std::fs::create_dir_all(&schedules).unwrap();
    std::fs::write(schedules.join("manual.toml"), "kind = \"manual\"\n[retention]\nkeep-last = 3\n").unwrap();
    w.core.config.config.schedules_dir = Some(schedules);
    let opts = PruneOptions {
        workspace: "shop".into(),
        dry_run: false,
        grace: Duration::ZERO,
        as_of: None,
        wait: Default::default(),
        repository: None,
    };
    prune(&w.core, &opts, &me).await.unwrap();
    assert_eq!(indexed(&w, None, None).await, ids[1..]);

    // Deleted behind tidemark's back: still indexed until the index is compared again.
    let folder = w.repo_dir().join("workspaces/shop/snapshots");
    std::fs::remove_file(folder.join(&ids[1]).join("manifest.json.age")).unwrap();
    assert_eq!(indexed(&w, None, None).await, ids[1..], "trusted for a minute");
    let catalog = w.core.catalog().await.unwrap();
    let older = chrono::Utc::now() - chrono::Duration::seconds(61);
    catalog.set_snapshot_index_synced("shop", Some(older)).await.unwrap();
    // A listing after a minute answers from the index and has it compared in the background.
    // (The comparison runs beside the answer: it may already have dropped the gone one.)
    let answered = indexed(&w, None, None).await;
    assert!(answered == ids[1..] || answered == ids[2..], "{answered:?}");
    let mut waited = 0;
    while indexed(&w, None, None).await != ids[2..] {
        waited += 1;
        assert!(waited < 600, "the index was not compared with the repository within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Damaged behind its back: a listing from the repository names it, and the index then does too.
    let manifest = folder.join(&ids[3]).join("manifest.json.age");
    let mut bytes = std::fs::read(&manifest).unwrap();
    let at = bytes.len() - 20;
    bytes[at] ^= 0x55;
    std::fs::write(&manifest, bytes).unwrap();
    let from_repository = crate::support::list(&w.core, "shop").await.unwrap();
    assert!(from_repository[1].problem.is_some(), "{:?}", from_repository[1]);
    let opts = ListOptions { workspace: "shop".into(), limit: Some(1), ..Default::default() };
    let newest = list(&w.core, &opts, &me).await.unwrap();
    assert!(newest[0].id == ids[3] && newest[0].problem.is_some(), "{newest:?}");
}

/// Issue 31.10: `snapshot delete` removes one snapshot with prune's guards: confirmed by
/// id, never `latest`, never a pinned one; the manifest and the snapshot's objects go,
/// the others stay whole and restorable, and the audit trail records it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_delete_removes_one_snapshot_with_prunes_guards() {
    use tidemark::ErrorKind;
    use tidemark::ops::prune::{SnapshotDeleteOptions, delete};
    let w = world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100);").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(crate::support::snapshot_shop(&w.core).await.unwrap().id);
    }
    crate::support::set_pin(&w.core, &ids[0], Some("shop"), true).await.unwrap();
    let opts = |id: &str, confirm: &str| SnapshotDeleteOptions {
        id: id.into(),
        workspace: Some("shop".into()),
        confirm: confirm.into(),
        ..Default::default()
    };
    let actor = crate::support::actor();
    let folder = |id: &str| w.repo_dir().join("workspaces/shop/snapshots").join(id);
    for (bad, kind) in [
        (opts(&ids[1], ""), ErrorKind::Usage),
        (opts(&ids[1], &ids[2]), ErrorKind::Usage),
        (opts("latest", "latest"), ErrorKind::Usage),
        (opts(&ids[0], &ids[0]), ErrorKind::Refused),
        (opts("20200101T000000Z-000000", "20200101T000000Z-000000"), ErrorKind::NotFound),
    ] {
        let err = delete(&w.core, &bad, &actor).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{bad:?}: {}", err.report());
    }
    assert!(ids.iter().all(|id| files_below(&folder(id)) > 0), "nothing was deleted");

    let report = delete(&w.core, &opts(&ids[1], &ids[1]), &actor).await.unwrap();
    assert_eq!((report.workspace.as_str(), report.id.as_str()), ("shop", ids[1].as_str()));
    assert!(report.deleted_objects >= 3, "{report:?}");
    assert_eq!(files_below(&folder(&ids[1])), 0);
    let listed: Vec<String> = crate::support::list(&w.core, "shop").await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(listed, [ids[0].clone(), ids[2].clone()]);
    assert!(crate::support::check(&w.core, true).await.unwrap().problems.is_empty());
    let audit = tidemark::ops::audit::list(&w.core, &Default::default(), &actor).await.unwrap();
    let deleted = format!("shop/{}", ids[1]);
    assert!(
        audit
            .iter()
            .any(|r| r.entry.action == "snapshot.delete" && r.entry.target == deleted && r.entry.outcome == "ok"),
        "{:?}",
        audit.iter().map(|r| (&r.entry.action, &r.entry.outcome)).collect::<Vec<_>>()
    );
}
