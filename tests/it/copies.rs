//! Copies (3-2-1, issue #35): a workspace whose primary repository is a local folder and
//! whose copies are on S3 (moto) and Azure Blob Storage (Azurite). After `copy`, the primary
//! is deleted: a restore, a point-in-time restore, a drill and a check from each copy are
//! exact. A copy that failed mid-way resumes without sending again what arrived; a damaged
//! source object is named and never reaches the copy.

use std::collections::BTreeSet;

use tidemark::ErrorKind;
use tidemark::config::RepositoryConfig;
use tidemark::ops::Core;
use tidemark::ops::copy::{CopyOptions, CopyReport, Wanted};
use tidemark::ops::pitr::PitrRestoreOptions;
use tidemark::ops::restore::{RestoreOptions, RestoreTarget};
use tidemark::pg::ConnSpec;
use tidemark::repo::{Key, Repository};
use tidemark::wal::window::Target;

use crate::pitr::{archive_everything, commit_marker};
use crate::support::{AzureServer, S3Server, World, actor, content_fingerprint, create_database};

/// Adds `[copies.NAME]` tables to the world's config, in memory and in its file (which
/// the restored server's `wal fetch` reads).
fn add_copies(w: &mut World, copies: Vec<(&str, RepositoryConfig)>) {
    let mut text = std::fs::read_to_string(&w.core.config.path).unwrap();
    for (name, cfg) in copies {
        text.push_str(&format!("\n[copies.{name}]\n{}", toml::to_string(&cfg).unwrap()));
        w.core.config.config.copies.insert(name.to_string(), cfg);
    }
    tidemark::config::Config::parse(&text).expect("the config with copies parses");
    std::fs::write(&w.core.config.path, text).unwrap();
}

async fn health(core: &Core) -> tidemark::ops::health::Health {
    let opts = tidemark::ops::health::HealthOptions { workspace: Some("shop".into()) };
    tidemark::ops::health::health(core, &opts, &actor()).await.unwrap().workspaces.remove(0)
}

async fn copy(core: &Core, to: Option<&str>) -> tidemark::Result<CopyReport> {
    let opts = CopyOptions { workspace: "shop".into(), to: to.map(str::to_string) };
    tidemark::ops::copy::copy_recorded(core, &opts, &actor()).await
}

/// Every object key of a repository folder below `workspaces/shop/` (what a local copy holds).
async fn keys_of(core: &Core, repository: Option<&str>) -> BTreeSet<String> {
    let repo = core.open_repository(repository).await.unwrap();
    repo.list(&Key::from("workspaces/shop")).await.unwrap().into_iter().map(|o| o.key.to_string()).collect()
}

/// The content of a point-in-time restore of restore point `point-a` from copy `name` (its
/// base backup and, through the restored server's `wal fetch`, its WAL), started, read,
/// stopped.
async fn point_a_from(w: &World, core: &Core, name: &str) -> std::collections::BTreeMap<String, String> {
    let pgdata = w.dir.path().join(format!("pitr-{name}"));
    let opts = PitrRestoreOptions {
        workspace: "shop".into(),
        pgdata: pgdata.clone(),
        target: Target::Name("point-a".into(), None),
        start: true,
        port: None,
        tidemark_command: Some(env!("CARGO_BIN_EXE_tidemark").to_string()),
        prefetch: 0,
        repository_only: true,
        repository: Some(name.into()),
    };
    let report = tidemark::ops::pitr::restore(core, &opts, &actor()).await.unwrap();
    let recovered = w.core.workspace("shop").unwrap().conn().unwrap().with_host_port("127.0.0.1", report.port.unwrap());
    let content = content_fingerprint(&recovered.unwrap()).await;
    tokio::task::spawn_blocking(move || tidemark::pgcluster::stop_data_dir(None, &pgdata).unwrap()).await.unwrap();
    content
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_on_s3_and_azure_restore_exactly_after_the_primary_is_gone() {
    let mut w = crate::pitr::archiving_world().await;
    let (s3, azure) = (S3Server::start().await, AzureServer::start().await);
    s3.create_bucket("offsite").await;
    azure.create_container("offsite").await;
    let azure_cfg = azure.repo_config("offsite", "tidemark", w.dir.path());
    add_copies(&mut w, vec![("s3", s3.repo_config("offsite", "tidemark")), ("azure", azure_cfg)]);
    let shop = create_database(
        &w.cluster,
        "shop",
        "CREATE TABLE markers (label text PRIMARY KEY, at timestamptz DEFAULT clock_timestamp());
         CREATE TABLE t AS SELECT g AS id, md5(g::text) AS body FROM generate_series(1, 20000) g;",
    )
    .await;
    crate::support::basebackup(&w.core).await.unwrap();
    commit_marker(&shop, "before-snapshot").await;
    let snapshot = crate::support::snapshot_shop(&w.core).await.unwrap();
    let at_snapshot = content_fingerprint(&shop).await;
    commit_marker(&shop, "before-point").await;
    crate::support::mark(&w.core, "point-a").await.unwrap();
    let at_point = content_fingerprint(&shop).await;
    commit_marker(&shop, "after-point").await;
    archive_everything(&shop, &w.core).await;

    // Between copies, WAL alone goes over (what `serve` does every `wal-interval`), and the
    // copy's lag is recorded.
    let wal = tidemark::ops::copy::wal_once(&w.core, "shop", "s3").await.unwrap();
    assert!(wal.wal_files >= 2 && wal.snapshots == 0 && wal.problems.is_empty(), "{wal:?}");
    let states = w.core.catalog().await.unwrap().copy_states().await.unwrap();
    assert!(states.iter().any(|s| s.copy == "s3" && s.snapshots == 0 && s.missing_objects > 0), "{states:?}");

    // A copy before any exists is refused by name; then every copy receives everything.
    let e = copy(&w.core, Some("elsewhere")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Usage, "{}", e.report());
    assert!(e.report().contains("s3") && e.report().contains("azure"), "{}", e.report());
    let report = copy(&w.core, None).await.unwrap();
    assert_eq!(report.copies.len(), 2);
    for c in &report.copies {
        let t = &c.tally;
        assert!(t.problems.is_empty(), "copy {}: {:?}", c.name, t.problems);
        assert_eq!((t.snapshots, t.base_backups, t.records), (1, 1, 1), "copy {}: {t:?}", c.name);
        assert!(t.objects > 5 && t.bytes > 100_000, "copy {}: {t:?}", c.name);
        // The WAL sent before is not sent again.
        assert!(c.name == "s3" || t.wal_files >= 2, "copy {}: {t:?}", c.name);
    }
    // Again: nothing is sent twice (WAL archived meanwhile may go over).
    let again = copy(&w.core, None).await.unwrap();
    for c in &again.copies {
        let t = &c.tally;
        assert_eq!((t.snapshots, t.base_backups, t.records), (0, 0, 0), "copy {}: {t:?}", c.name);
        assert!(t.objects == t.wal_files && t.already_there >= 3, "copy {}: {t:?}", c.name);
        assert!(t.problems.is_empty(), "{:?}", t.problems);
    }
    let states = tidemark::ops::copy::states(&w.core, "shop").await.unwrap();
    assert!(states.iter().all(|s| s.error.is_none()), "{states:?}");

    // The copy's own retention, forty days on with a 30-day window: nothing a restore of a
    // moment in its window needs goes (the point-in-time restore below reaches point-a).
    w.core.config.config.copies.get_mut("s3").unwrap().pitr_window = Some(std::time::Duration::from_secs(30 * 86_400));
    let prune = tidemark::ops::prune::PruneOptions {
        workspace: "shop".into(),
        as_of: Some(chrono::Utc::now() + chrono::Duration::days(40)),
        repository: Some("s3".into()),
        ..Default::default()
    };
    let pruned = tidemark::ops::prune::prune(&w.core, &prune, &actor()).await.unwrap();
    assert!(pruned.pitr.base_backups_deleted.is_empty(), "{:?}", pruned.pitr);

    // The primary is gone.
    std::fs::remove_dir_all(w.repo_dir()).unwrap();
    let e = Core::open(w.core.config.clone()).await.err().expect("the primary is gone");
    for said in ["s3 (s3://offsite/tidemark)", "azure (az://offsite/tidemark)", "--repository"] {
        assert!(e.report().contains(said), "{said:?} not in: {}", e.report());
    }
    // A restore, a point-in-time restore and a drill name the copies that hold what they
    // asked for (the S3 copy's prune above kept point-a; a moment before the first base
    // backup is in no copy).
    let held = |wanted| tidemark::ops::copy::holders(&w.core.config, wanted);
    let snapshot_wanted = Wanted::Snapshot { workspace: Some("shop"), snapshot: Some(&snapshot.id) };
    assert_eq!(held(snapshot_wanted).await, ["azure", "s3"]);
    let unknown = Wanted::Snapshot { workspace: Some("shop"), snapshot: Some("20200101T000000Z-000000") };
    assert!(held(unknown).await.is_empty());
    let point = Target::Name("point-a".into(), None);
    assert_eq!(held(Wanted::PointInTime { workspace: None, target: &point }).await, ["azure", "s3"]);
    let long_ago_at = chrono::Utc::now() - chrono::Duration::days(400);
    let long_ago = Target::Time(long_ago_at);
    assert!(held(Wanted::PointInTime { workspace: Some("shop"), target: &long_ago }).await.is_empty());
    let tidemark = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args(["--config", w.core.config.path.to_str().unwrap()])
            .args(args)
            .env_remove("CI")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded with the primary gone");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let said = tidemark(&["restore", &snapshot.id, "--workspace", "shop", "--target", &w.cluster.url("never_made")]);
    assert!(said.contains("copies that hold it: azure, s3 (read one with --repository azure)"), "{said}");
    let pgdata = w.dir.path().join("never-restored");
    let said = tidemark(&["pitr", "restore", "--name", "point-a", "--pgdata", pgdata.to_str().unwrap()]);
    assert!(said.contains("copies that hold it: azure, s3") && !pgdata.exists(), "{said}");
    let said =
        tidemark(&["pitr", "restore", "--time", &long_ago_at.to_rfc3339(), "--pgdata", pgdata.to_str().unwrap()]);
    assert!(said.contains("no copy holds it either"), "{said}");
    let said = tidemark(&["drill", "--workspace", "shop", "--snapshot", &snapshot.id]);
    assert!(said.contains("copies that hold it: azure, s3"), "{said}");

    for name in ["s3", "azure"] {
        let core = Core::open_at(w.core.config.clone(), Some(name)).await.unwrap();
        // Its snapshots, read from the copy itself.
        let listed = tidemark::ops::snapshot::list(
            &core,
            &tidemark::ops::snapshot::ListOptions {
                workspace: "shop".into(),
                repository: Some(name.into()),
                ..Default::default()
            },
            &actor(),
        )
        .await
        .unwrap();
        assert_eq!(listed.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), vec![snapshot.id.clone()]);
        let core = core.with_progress(tidemark::progress::Progress::hidden());
        // A restore of the snapshot into a new database.
        let db = format!("restored_{name}");
        let opts = RestoreOptions {
            snapshot: snapshot.id.clone(),
            workspace: Some("shop".into()),
            target: RestoreTarget::Url { url: w.cluster.url(&db), password: None },
            repository: Some(name.into()),
            ..Default::default()
        };
        tidemark::ops::restore::restore(&core, &opts, &actor()).await.unwrap();
        let restored = ConnSpec::parse(&w.cluster.url(&db), None).unwrap();
        assert_eq!(content_fingerprint(&restored).await, at_snapshot, "restore from copy {name}");

        // A point-in-time restore to the restore point: base backup and WAL from the copy.
        assert_eq!(point_a_from(&w, &core, name).await, at_point, "pitr restore from copy {name}");

        // A drill and a check of the copy pass.
        let drill = tidemark::ops::drill::DrillOptions {
            repository: Some(name.into()),
            record: false,
            ..tidemark::ops::drill::DrillOptions::new("shop", tidemark::ops::drill::DrillSource::Snapshot(None))
        };
        let report = tidemark::ops::drill::drill(&core, &drill, &actor()).await.unwrap();
        assert!(report.passed, "the drill of copy {name} failed: {:?}", report.checks);
        let check = tidemark::ops::check::CheckOptions {
            workspace: "shop".into(),
            repository: Some(name.into()),
            ..Default::default()
        };
        let checked = tidemark::ops::check::check(&core, &check, &actor()).await.unwrap();
        assert!(checked.problems.is_empty(), "check of copy {name}: {:?}", checked.problems);
        assert_eq!(checked.snapshots, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_failed_midway_resumes_and_a_damaged_object_is_named_not_copied() {
    let mut w = crate::support::world().await;
    let copy_dir = w.dir.path().join("copy");
    let url = url::Url::from_directory_path(&copy_dir).unwrap().to_string();
    let scratch = url::Url::from_directory_path(w.dir.path().join("scratch")).unwrap().to_string();
    add_copies(
        &mut w,
        vec![
            ("local", RepositoryConfig { url, ..Default::default() }),
            ("scratch", RepositoryConfig { url: scratch, ..Default::default() }),
        ],
    );
    create_database(
        &w.cluster,
        "shop",
        "CREATE TABLE a AS SELECT g AS id, md5(g::text) AS body FROM generate_series(1, 5000) g;
         CREATE TABLE b AS SELECT g AS id FROM generate_series(1, 100) g;
         CREATE TABLE c AS SELECT g AS id FROM generate_series(1, 100) g;",
    )
    .await;
    for _ in 0..3 {
        crate::support::snapshot_shop(&w.core).await.unwrap();
    }
    let primary = keys_of(&w.core, None).await;
    // A manifest signed by a key nobody trusts (a forged signature planted in the primary)
    // is refused before anything of its snapshot is sent (reading the primary's manifests
    // already checks their signatures; the copy's trusted signers check again).
    let ids = w.core.repo.list_snapshot_ids("shop").await.unwrap();
    let manifest_key = tidemark::repo::layout::manifest("shop", &ids[1]);
    let sig_path = w.repo_dir().join(format!("{manifest_key}.sig"));
    let genuine = std::fs::read(&sig_path).unwrap();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(w.repo_dir().join(manifest_key.as_ref())).unwrap()))
    };
    let stranger = tidemark::signing::SigningSecret::generate();
    std::fs::write(&sig_path, serde_json::to_vec(&stranger.sign(manifest_key.as_ref(), &sha)).unwrap()).unwrap();
    let strict = url::Url::from_directory_path(w.dir.path().join("strict")).unwrap().to_string();
    w.core.config.config.copies.insert("strict".into(), RepositoryConfig { url: strict, ..Default::default() });
    let refused = copy(&w.core, Some("strict")).await.unwrap();
    let t = &refused.copies[0].tally;
    assert_eq!((t.snapshots, t.problems.len()), (2, 1), "{t:?}");
    assert!(t.problems[0].contains(&ids[1]) && t.problems[0].contains("is signed by"), "{t:?}");
    let in_strict = keys_of(&w.core, Some("strict")).await;
    assert!(in_strict.iter().all(|k| !k.contains(&ids[1])), "objects of the forged snapshot were sent");
    w.core.config.config.copies.remove("strict");
    std::fs::write(&sig_path, genuine).unwrap();
    // With a bound on copy lag, copies never copied to make the workspace stale.
    w.core.config.config.workspaces.get_mut("shop").unwrap().alerts = Some(tidemark::config::AlertsConfig {
        max_copy_lag: Some(std::time::Duration::from_secs(3600)),
        ..Default::default()
    });
    let never = health(&w.core).await;
    let stale: Vec<_> = never.problems.iter().filter(|p| p.kind.as_str() == "copy-stale").collect();
    assert_eq!(stale.len(), 2, "{:?}", never.problems);
    assert!(stale[0].message.contains("local has never been copied to"), "{stale:?}");

    // The source fails part of the way through: the copy stops with the error...
    let faults = tidemark::repo::faults::Faults::new();
    let plain = w.core.clone();
    w.core.repo = w.core.repo.with_faults(&faults);
    let before = faults.calls();
    copy(&w.core, Some("scratch")).await.unwrap();
    let calls = faults.calls() - before;
    faults.fail_from(calls * 2 / 3);
    let e = copy(&w.core, Some("local")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{}", e.report());
    faults.clear();
    let arrived = keys_of(&plain, Some("local")).await;
    assert!(!arrived.is_empty() && arrived.len() < primary.len(), "{} of {}", arrived.len(), primary.len());
    // ... and a snapshot is in the copy only whole: a manifest only with all its objects.
    let copy_core = plain.on_repository(Some("local")).await.unwrap();
    for id in copy_core.repo.list_snapshot_ids("shop").await.unwrap() {
        let m = copy_core.repo.read_manifest("shop", &id, &w.core.identities().unwrap()).await.unwrap();
        copy_core.repo.verify_present(&m, true).await.unwrap();
    }

    // The next run sends only what is missing.
    let report = copy(&w.core, Some("local")).await.unwrap();
    let t = &report.copies[0].tally;
    assert!(t.problems.is_empty(), "{:?}", t.problems);
    let data = |keys: &BTreeSet<String>| keys.iter().filter(|k| !k.ends_with(".sig")).count();
    assert_eq!(t.objects as usize, data(&primary) - data(&arrived), "{t:?} after {} arrived", arrived.len());
    assert_eq!(keys_of(&plain, Some("local")).await, primary, "the copy holds what the primary holds");
    assert_eq!(report.copies[0].lag.missing_objects, 0);
    // The catalog knows how far each copy is: status and /metrics say so.
    let h = health(&w.core).await;
    let local = h.copies.iter().find(|c| c.name == "local").unwrap();
    assert!(local.lag_seconds.is_some_and(|s| s < 60) && local.snapshots == Some(3), "{local:?}");
    assert_eq!(h.problems.len(), 0, "both copies are caught up: {:?}", h.problems);
    let metrics = tidemark::ops::metrics::render(&w.core, false).await.unwrap();
    let line = metrics.lines().find(|l| l.starts_with("tidemark_copy_lag_seconds{") && l.contains("copy=\"local\""));
    assert!(line.is_some_and(|l| l.contains("workspace=\"shop\"")), "{metrics}");

    // A table object of a new snapshot is damaged in the primary: named, not copied, and
    // its snapshot not committed in the copy; the rest still goes over.
    let damaged_snapshot = crate::support::snapshot_shop(&w.core).await.unwrap();
    let entry = damaged_snapshot.tables.iter().find(|t| t.name == "a").unwrap().parts[0].clone();
    let key = tidemark::repo::layout::SnapshotObject::key_for_name("shop", &damaged_snapshot.id, &entry.name).unwrap();
    let path = w.repo_dir().join(key.as_ref());
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
    let first = plain.repo.list_snapshot_ids("shop").await.unwrap()[0].clone();
    crate::support::set_pin(&plain, &first, Some("shop"), true).await.unwrap();
    let report = copy(&w.core, Some("local")).await.unwrap_or_else(|e| panic!("{}", e.report()));
    let t = &report.copies[0].tally;
    assert_eq!(t.problems.len(), 1, "{:?}", t.problems);
    assert!(t.problems[0].contains(key.as_ref()) && t.problems[0].contains(&damaged_snapshot.id), "{:?}", t.problems);
    let in_copy = keys_of(&plain, Some("local")).await;
    assert!(!in_copy.contains(key.as_ref()), "the damaged object reached the copy");
    let manifest = tidemark::repo::layout::manifest("shop", &damaged_snapshot.id);
    assert!(!in_copy.contains(manifest.as_ref()), "the damaged snapshot was committed in the copy");
    assert_eq!(t.records, 1, "the pin went over: {t:?}");
    // The job failed, naming the object.
    let jobs = w.core.catalog().await.unwrap().jobs(Some("shop"), 1).await.unwrap();
    assert!(jobs[0].error.as_deref().is_some_and(|e| e.contains(key.as_ref())), "{:?}", jobs[0]);

    // Each repository keeps by its own retention: the primary's manual snapshots live 90
    // days (its policy), the copy's 200 (its keep-within); neither prune touches the other,
    // and the catalog's index stays the primary's.
    w.core = plain.clone();
    w.core.config.config.copies.get_mut("local").unwrap().keep_within =
        Some(std::time::Duration::from_secs(200 * 86_400));
    let prune = |repository: Option<&str>, days: i64| {
        let opts = tidemark::ops::prune::PruneOptions {
            workspace: "shop".into(),
            as_of: Some(chrono::Utc::now() + chrono::Duration::days(days)),
            repository: repository.map(str::to_string),
            ..Default::default()
        };
        let core = w.core.clone();
        async move { tidemark::ops::prune::prune(&core, &opts, &actor()).await.unwrap() }
    };
    let ids = |core: &Core, repository: Option<&'static str>| {
        let core = core.clone();
        async move { core.on_repository(repository).await.unwrap().repo.list_snapshot_ids("shop").await.unwrap() }
    };
    let kept = prune(Some("local"), 100).await;
    assert!(kept.decisions.iter().all(|d| d.keep), "{:?}", kept.decisions);
    assert_eq!(ids(&w.core, Some("local")).await.len(), 3);
    // (Retention always keeps the newest snapshot, and pinned ones.)
    prune(None, 100).await;
    let primary_left = ids(&w.core, None).await;
    assert_eq!(primary_left, vec![first.clone(), damaged_snapshot.id.clone()], "the primary: its pin and newest");
    assert_eq!(ids(&w.core, Some("local")).await.len(), 3, "the primary's prune touched the copy");
    prune(Some("local"), 250).await;
    let copy_left = ids(&w.core, Some("local")).await;
    assert!(copy_left.len() == 2 && copy_left[0] == first, "the copy: its pin and newest: {copy_left:?}");
    let listed: Vec<String> = crate::support::list(&w.core, "shop").await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(listed, primary_left, "the catalog's index is the primary's");
}

/// A `tidemark copy` process killed (SIGKILL) while it sends to S3: what arrived whole stays
/// and is not sent again; no snapshot is in the copy without all its objects; the upload it
/// left unfinished is collected by the copy's prune; the copy then checks clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_copy_resumes_without_sending_again_what_arrived() {
    let mut w = crate::support::world().await;
    let s3 = S3Server::start().await;
    s3.create_bucket("killed").await;
    add_copies(&mut w, vec![("s3", s3.repo_config("killed", "tidemark"))]);
    // Incompressible rows: about 24 MB stored per snapshot, several multipart uploads.
    create_database(
        &w.cluster,
        "shop",
        "CREATE TABLE big AS SELECT i AS id, decode(string_agg(md5(random()::text), ''), 'hex') AS data \
         FROM generate_series(1, 24000) i, generate_series(1, 64) j GROUP BY i;
         CREATE TABLE small AS SELECT g AS id FROM generate_series(1, 100) g;",
    )
    .await;
    for _ in 0..2 {
        crate::support::snapshot_shop(&w.core).await.unwrap();
    }
    let primary = keys_of(&w.core, None).await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["--config", w.core.config.path.to_str().unwrap(), "copy", "--workspace", "shop", "--to", "s3"])
        .env_remove("CI")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once the first objects of a snapshot have arrived.
    let copy_repo = || async { Repository::open(&w.core.config.config.repository_named(Some("s3")).unwrap()).await };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        assert!(child.try_wait().unwrap().is_none(), "the copy ended before it could be killed");
        assert!(std::time::Instant::now() < deadline, "nothing arrived in the copy");
        if let Ok(repo) = copy_repo().await
            && repo.list(&Key::from("workspaces/shop/snapshots")).await.unwrap().len() >= 2
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let arrived = keys_of(&w.core, Some("s3")).await;
    assert!(arrived.len() < primary.len(), "{} of {} arrived", arrived.len(), primary.len());
    let copy_core = w.core.on_repository(Some("s3")).await.unwrap();
    for id in copy_core.repo.list_snapshot_ids("shop").await.unwrap() {
        let m = copy_core.repo.read_manifest("shop", &id, &w.core.identities().unwrap()).await.unwrap();
        copy_core.repo.verify_present(&m, true).await.unwrap();
    }

    let report = copy(&w.core, Some("s3")).await.unwrap();
    let t = &report.copies[0].tally;
    let data = |keys: &BTreeSet<String>| keys.iter().filter(|k| !k.ends_with(".sig")).count();
    assert_eq!(t.objects as usize, data(&primary) - data(&arrived), "{t:?} after {} arrived", arrived.len());
    assert_eq!(keys_of(&w.core, Some("s3")).await, primary);
    // The copy's prune collects what the killed process left unfinished; a check reads
    // every object back.
    let prune = tidemark::ops::prune::PruneOptions {
        workspace: "shop".into(),
        repository: Some("s3".into()),
        ..Default::default()
    };
    tidemark::ops::prune::prune(&w.core, &prune, &actor()).await.unwrap();
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let left = copy_core.repo.stale_uploads(&Key::from("workspaces/shop"), later).await.unwrap();
    assert!(left.is_empty(), "unfinished uploads left: {:?}", left.iter().map(|l| &l.what).collect::<Vec<_>>());
    let check =
        tidemark::ops::check::CheckOptions { workspace: "shop".into(), read_data: true, repository: Some("s3".into()) };
    let checked = tidemark::ops::check::check(&w.core, &check, &actor()).await.unwrap();
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    assert_eq!(checked.snapshots, 2);
}

/// The daemon on a manual clock: a snapshot policy with `copy-after` copies each snapshot it
/// takes to one copy, a copy policy fills another at its own hour, a drill policy drills a
/// copy; each is a job in the catalog, and the catalog knows how far each copy is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_copies_and_a_drill_of_a_copy() {
    use crate::daemon::{daily_slot, start_daemon, wait_for};
    let mut w = crate::support::world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 500) g;").await;
    let folder = |name: &str| url::Url::from_directory_path(w.dir.path().join(name)).unwrap().to_string();
    let (near, far) = (folder("near"), folder("far"));
    add_copies(
        &mut w,
        vec![
            ("near", RepositoryConfig { url: near, ..Default::default() }),
            ("far", RepositoryConfig { url: far, ..Default::default() }),
        ],
    );
    std::fs::set_permissions(w.dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    w.core.config.config.drill.scratch_dir = Some(w.dir.path().join("drills"));
    let schedules = w.dir.path().join("schedules");
    std::fs::create_dir_all(&schedules).unwrap();
    let policies = [
        ("daily", "kind = \"automatic\"\ncron = \"0 2 * * *\"\ncopy-after = true\nto = \"near\"\n"),
        ("offsite", "action = \"copy\"\ncron = \"0 4 * * *\"\nto = \"far\"\n"),
        ("drill-near", "action = \"drill\"\ncron = \"0 5 * * *\"\nrepository = \"near\"\n"),
    ];
    for (name, text) in policies {
        std::fs::write(schedules.join(format!("{name}.toml")), text).unwrap();
    }
    w.core.config.config.schedules_dir = Some(schedules);
    let slot = daily_slot(1);
    let clock = tidemark::schedule::clock::ManualClock::new(slot - chrono::Duration::hours(1));
    let (shutdown, daemon) = start_daemon(&w.core, &clock);
    let catalog = w.core.catalog().await.unwrap().clone();
    wait_for("the schedules to register", async || catalog.last_slot("shop", "drill-near").await.unwrap()).await;
    let ids = |name: &'static str| {
        let core = w.core.clone();
        async move { core.on_repository(Some(name)).await.ok()?.repo.list_snapshot_ids("shop").await.ok() }
    };
    let finished = |operation: &'static str| {
        let catalog = catalog.clone();
        async move {
            catalog
                .jobs(Some("shop"), 20)
                .await
                .unwrap()
                .into_iter()
                .find(|j| j.operation == operation && j.status != "running")
        }
    };

    clock.set(slot);
    let snapshot = wait_for("the snapshot job", async || finished("snapshot").await).await;
    assert_eq!(snapshot.status, "succeeded", "{snapshot:?}");
    assert_eq!(ids("near").await.map(|i| i.len()), Some(1), "copy-after copied the snapshot");
    assert_eq!(ids("far").await, None, "the far copy waits for its own policy");

    clock.set(slot + chrono::Duration::hours(2));
    let copied = wait_for("the copy job", async || finished("copy").await).await;
    assert_eq!(copied.status, "succeeded", "{copied:?}");
    assert_eq!(ids("far").await.map(|i| i.len()), Some(1));

    clock.set(slot + chrono::Duration::hours(3));
    let drilled = wait_for("the drill job", async || finished("drill").await).await;
    assert_eq!(drilled.status, "succeeded", "{drilled:?}");
    let drills = catalog.drills(Some("shop"), 10).await.unwrap();
    assert!(drills.iter().any(|d| d.trigger == "schedule" && d.report["passed"] == true), "{drills:?}");
    let states = catalog.copy_states().await.unwrap();
    assert_eq!(states.iter().map(|s| (s.copy.as_str(), s.snapshots)).collect::<Vec<_>>(), [("far", 1), ("near", 1)]);
    shutdown.cancel();
    daemon.await.unwrap();
}

/// What `serve` runs for copies with `wal-interval`: every interval, the WAL the copy lacks
/// goes over (round after round, as it is archived), the copy's lag is recorded, and the
/// loop ends when the daemon shuts down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_reaches_a_copy_every_interval_until_shutdown() {
    let mut w = crate::pitr::archiving_world().await;
    let url = url::Url::from_directory_path(w.dir.path().join("near")).unwrap().to_string();
    let every = std::time::Duration::from_millis(200);
    add_copies(&mut w, vec![("near", RepositoryConfig { url, wal_interval: Some(every), ..Default::default() })]);
    let shop = create_database(&w.cluster, "shop", "CREATE TABLE markers (label text PRIMARY KEY)").await;
    crate::support::basebackup(&w.core).await.unwrap();
    let wal_of = |keys: BTreeSet<String>| -> BTreeSet<String> {
        keys.into_iter().filter(|k| k.contains("/wal/") && !k.ends_with(".sig")).collect()
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let copier = tokio::spawn(tidemark::ops::copy::wal_forever(w.core.clone(), shutdown.clone()));
    for round in ["first", "second"] {
        commit_marker(&shop, round).await;
        archive_everything(&shop, &w.core).await;
        let archived = wal_of(keys_of(&w.core, None).await);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            // (The first round seeds the copy's folder.)
            let copied = match w.core.open_repository(Some("near")).await {
                Ok(_) => wal_of(keys_of(&w.core, Some("near")).await),
                Err(e) if e.kind() == ErrorKind::NotFound => BTreeSet::new(),
                Err(e) => panic!("{}", e.report()),
            };
            if archived.is_subset(&copied) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{round}: never copied: {:?}", archived.difference(&copied));
            tokio::time::sleep(every / 2).await;
        }
    }
    let states = w.core.catalog().await.unwrap().copy_states().await.unwrap();
    assert!(states.iter().any(|s| s.copy == "near" && s.workspace == "shop"), "{states:?}");
    shutdown.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(30), copier)
        .await
        .expect("the WAL copier ends when the daemon shuts down")
        .unwrap();
}

/// A copy with recipients of its own: every object is re-sealed to them, manifests and
/// records written anew and signed; the primary's identity cannot read it, its own reads it
/// alone (restore, point-in-time restore, `check --read-data`). A copy stopped after its
/// objects and before a manifest commits that manifest on the next run from what it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_with_its_own_keys_is_read_with_them_alone() {
    let mut w = crate::pitr::archiving_world().await;
    let vault_key = tidemark::keys::GeneratedIdentity::generate();
    let vault_identity = w.dir.path().join("vault-identity.txt");
    vault_key.write_new_file(&vault_identity).unwrap();
    tidemark::pgcluster::hand_over(&vault_identity).unwrap();
    let url = url::Url::from_directory_path(w.dir.path().join("vault")).unwrap().to_string();
    let vault = RepositoryConfig {
        url,
        recipients: vec![vault_key.recipient.clone()],
        identity_file: Some(vault_identity.clone()),
        ..Default::default()
    };
    add_copies(&mut w, vec![("vault", vault)]);
    let shop = create_database(
        &w.cluster,
        "shop",
        "CREATE TABLE markers (label text PRIMARY KEY, at timestamptz DEFAULT clock_timestamp());
         CREATE TABLE t AS SELECT g AS id, md5(g::text) AS body FROM generate_series(1, 20000) g;",
    )
    .await;
    let media = w.dir.path().join("media");
    std::fs::create_dir_all(media.join("img")).unwrap();
    std::fs::write(media.join("img/logo.png"), vec![9u8; 40_000]).unwrap();
    w.core.config.config.workspaces.get_mut("shop").unwrap().media =
        Some(url::Url::from_directory_path(&media).unwrap().to_string());
    crate::support::basebackup(&w.core).await.unwrap();
    let snapshot = crate::support::snapshot_shop(&w.core).await.unwrap();
    let at_snapshot = content_fingerprint(&shop).await;
    commit_marker(&shop, "before-point").await;
    crate::support::mark(&w.core, "point-a").await.unwrap();
    let at_point = content_fingerprint(&shop).await;
    commit_marker(&shop, "after-point").await;
    archive_everything(&shop, &w.core).await;

    let report = copy(&w.core, Some("vault")).await.unwrap();
    let t = &report.copies[0].tally;
    assert!(t.problems.is_empty(), "{:?}", t.problems);
    assert_eq!((t.snapshots, t.base_backups, t.records), (1, 1, 1), "{t:?}");
    assert!(t.wal_files >= 2, "{t:?}");
    // Nothing in the copy is the primary's bytes: every object was sealed anew (only the
    // repository's descriptor, signatures of WAL and empty markers are the same).
    let (primary_dir, vault_dir) = (w.repo_dir(), w.dir.path().join("vault"));
    let mut compared = 0;
    for key in keys_of(&w.core, Some("vault")).await {
        let (ours, theirs) =
            (std::fs::read(vault_dir.join(&key)).unwrap(), std::fs::read(primary_dir.join(&key)).unwrap());
        let same_allowed = ours.is_empty() || (key.contains("/wal/") && key.ends_with(".sig"));
        assert!(same_allowed || ours != theirs, "{key} was copied byte for byte");
        compared += 1;
    }
    assert!(compared > 8, "{compared}");

    // The primary's identity does not open the copy; the copy's own does.
    let vault_repo = w.core.open_repository(Some("vault")).await.unwrap();
    let primary_ids = w.core.identities().unwrap();
    let e = vault_repo.read_manifest("shop", &snapshot.id, &primary_ids).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Key, "{}", e.report());
    let core = Core::open_at(w.core.config.clone(), Some("vault")).await.unwrap();
    let core = core.with_progress(tidemark::progress::Progress::hidden());
    assert!(core.repo.read_manifest("shop", &snapshot.id, &core.identities().unwrap()).await.is_ok());

    // A run stopped after the snapshot's objects, before its manifest: the next run commits
    // the manifest from what the copy holds, and sends nothing again.
    let manifest_key = tidemark::repo::layout::manifest("shop", &snapshot.id);
    std::fs::remove_file(vault_dir.join(manifest_key.as_ref())).unwrap();
    std::fs::remove_file(vault_dir.join(format!("{manifest_key}.sig"))).unwrap();
    let again = copy(&w.core, Some("vault")).await.unwrap();
    let t = &again.copies[0].tally;
    assert!(t.problems.is_empty(), "{:?}", t.problems);
    assert_eq!((t.snapshots, t.objects - t.wal_files), (1, 1), "only the manifest again: {t:?}");

    // Read with its own identity alone: check of every byte, restore, point-in-time restore
    // (the restored server's `wal fetch` reads the copy with the copy's identity).
    let check = tidemark::ops::check::CheckOptions {
        workspace: "shop".into(),
        read_data: true,
        repository: Some("vault".into()),
    };
    let checked = tidemark::ops::check::check(&core, &check, &actor()).await.unwrap();
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    let opts = RestoreOptions {
        snapshot: snapshot.id.clone(),
        workspace: Some("shop".into()),
        target: RestoreTarget::Url { url: w.cluster.url("from_vault"), password: None },
        repository: Some("vault".into()),
        media_target: Some(w.dir.path().join("media-back").display().to_string()),
        ..Default::default()
    };
    tidemark::ops::restore::restore(&core, &opts, &actor()).await.unwrap();
    let restored = ConnSpec::parse(&w.cluster.url("from_vault"), None).unwrap();
    assert_eq!(content_fingerprint(&restored).await, at_snapshot);
    assert_eq!(std::fs::read(w.dir.path().join("media-back/img/logo.png")).unwrap(), vec![9u8; 40_000]);
    // (A local copy's WAL folder is the server user's, as `wal setup` says of any.)
    tidemark::pgcluster::hand_over(&vault_dir.join("workspaces/shop/wal")).unwrap();
    assert_eq!(point_a_from(&w, &core, "vault").await, at_point);

    // Without its identity, reading the copy says which setting is missing.
    let mut config = w.core.config.clone();
    config.config.copies.get_mut("vault").unwrap().identity_file = None;
    let blind = Core::open_at(config, Some("vault")).await.unwrap();
    let e = blind.identities().err().expect("no identity for the copy");
    assert!(e.message().contains("copies.vault.identity-file"), "{}", e.report());
}
