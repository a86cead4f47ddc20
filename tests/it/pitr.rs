//! Point-in-time restore on real clusters, the pgBackRest way: a source archives its WAL
//! through `tidemark wal push` (the real binary as its archive_command), marker rows are
//! committed at known moments around a base backup, and restores to a time, an LSN, a
//! named restore point and the latest moment must bring back exactly the markers
//! committed before the target. Also: WAL push idempotence and refusal to overwrite, and
//! a deleted segment reported as a gap that refuses restores past it.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use tidemark::ErrorKind;
use tidemark::config::RepositoryConfig;
use tidemark::ops::Core;
use tidemark::ops::pitr::{self, PitrRestoreOptions};
use tidemark::pg::ConnSpec;
use tidemark::pgcluster::{Cluster, ClusterOptions};
use tidemark::wal::window::Target;
use tidemark::wal::{Lsn, archive};

use crate::support::{World, create_database, world_with_repo};

/// A world whose cluster archives WAL into the repository with the tidemark binary. The
/// archive_command runs as the server's OS user: it must read the config and write the
/// repository, and the restore_command must read the identity.
pub(crate) async fn archiving_world() -> World {
    pitr_world(true).await
}

/// `archive`: archive_command pushes WAL; otherwise WAL must be streamed.
async fn pitr_world(archive: bool) -> World {
    pitr_world_pushing(archive.then_some("")).await
}

/// A world whose archive_command is `wal push <push_args> --workspace shop %p` (`None`:
/// no archive_command).
async fn pitr_world_pushing(push_args: Option<&str>) -> World {
    pitr_world_with(push_args, false).await
}

/// An archiving world whose cluster has data checksums (`initdb --data-checksums`).
pub(crate) async fn checksummed_archiving_world() -> World {
    pitr_world_with(Some(""), true).await
}

async fn pitr_world_with(push_args: Option<&str>, data_checksums: bool) -> World {
    let archive = push_args.is_some();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("tidemark.toml");
    let push = format!(
        "{} --config {} wal push {} --workspace shop %p",
        env!("CARGO_BIN_EXE_tidemark"),
        config.display(),
        push_args.unwrap_or_default()
    );
    // A quote and a backslash in a setting: written to postgresql.auto.conf, read back as is.
    let name = r"tidemark's \ pitr";
    let mut settings = vec![("wal_level".to_string(), "replica".to_string()), ("cluster_name".into(), name.into())];
    if archive {
        settings.push(("archive_mode".to_string(), "on".to_string()));
        settings.push(("archive_command".to_string(), push));
    }
    let cluster = tokio::task::spawn_blocking(move || {
        Cluster::start(&ClusterOptions { settings, data_checksums, ..Default::default() })
    })
    .await
    .unwrap()
    .unwrap();
    let url = url::Url::from_directory_path(dir.path().join("repo")).unwrap().to_string();
    let w = world_with_repo(cluster, dir, RepositoryConfig { url, ..Default::default() }).await;
    let postgres = ConnSpec::parse(&w.cluster.url("postgres"), None).unwrap();
    assert_eq!(one_row::<String>(&postgres, "SHOW cluster_name").await, name);
    let wal = w.repo_dir().join("workspaces/shop/wal");
    std::fs::create_dir_all(&wal).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    for path in [wal.as_path(), w.identity_file().as_path(), w.dir.path().join("signing.key").as_path()] {
        tidemark::pgcluster::hand_over(path).unwrap();
    }
    w
}

pub(crate) async fn one_row<T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin>(
    spec: &ConnSpec,
    sql: &str,
) -> T {
    let mut conn = spec.connect().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(&mut conn).await.unwrap().get(0)
}

pub(crate) async fn commit_marker(spec: &ConnSpec, label: &str) -> (DateTime<Utc>, Lsn) {
    let mut conn = spec.connect().await.unwrap();
    sqlx::query("INSERT INTO markers (label) VALUES ($1)").bind(label).execute(&mut conn).await.unwrap();
    let (at, lsn): (DateTime<Utc>, String) =
        sqlx::query_as("SELECT clock_timestamp(), pg_current_wal_insert_lsn()::text")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    (at, lsn.parse().unwrap())
}

/// Switches to a new segment and waits until everything so far is in the repository.
pub(crate) async fn archive_everything(spec: &ConnSpec, core: &Core) -> Lsn {
    let lsn: String = one_row(spec, "SELECT pg_current_wal_insert_lsn()::text").await;
    let lsn: Lsn = lsn.parse().unwrap();
    let _: String = one_row(spec, "SELECT pg_switch_wal()::text").await;
    for _ in 0..300 {
        let window = crate::support::window(core, "shop").await.unwrap();
        if window.latest.as_ref().is_some_and(|l| l.lsn >= lsn) {
            return lsn;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let window = crate::support::window(core, "shop").await.unwrap();
    panic!("WAL up to {lsn} was never archived: {}", serde_json::to_string(&window).unwrap());
}

/// Restores into a new data directory, starts it, returns the markers it has, stops it.
async fn markers_after_restore(w: &World, target: Target) -> BTreeSet<String> {
    // A quote, a space and `%r` in the path: the restore_command and the
    // recovery_end_command (its spool is inside) must quote them for the shell and Postgres.
    let pgdata = w.dir.path().join(format!("it's 100%restored-{}", rand::random::<u32>()));
    // Both ways of fetching WAL restore exactly the same rows.
    let prefetch = if matches!(target, Target::Lsn(_)) { 0 } else { tidemark::ops::pitr::DEFAULT_PREFETCH };
    let opts = PitrRestoreOptions {
        workspace: "shop".into(),
        pgdata: pgdata.clone(),
        target,
        start: true,
        port: None,
        // The server runs the binary, not this test executable.
        tidemark_command: Some(env!("CARGO_BIN_EXE_tidemark").to_string()),
        prefetch,
        repository_only: false,
        repository: None,
    };
    let report = pitr::restore(&w.core, &opts, &crate::support::actor()).await.unwrap();
    assert!(!pgdata.join(tidemark::wal::recovery::PREFETCH_DIR).exists(), "the end of recovery removes the spool");
    // Recovery probes for the next timeline's history file and the segment after the
    // last: normal, and not an error in the server's log (issue 19).
    let log = std::fs::read_to_string(pgdata.join("tidemark-recovery.log")).unwrap();
    assert!(log.contains("redo done") || log.contains("archive recovery complete"), "{log}");
    let errors: Vec<&str> =
        log.lines().filter(|l| l.contains("is not in the repository") || l.contains("error: ")).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let spec = ConnSpec::parse(&format!("postgres://postgres@127.0.0.1:{}/shop", report.port.unwrap()), None).unwrap();
    let mut conn = spec.connect().await.unwrap();
    let rows = sqlx::query("SELECT label FROM markers").fetch_all(&mut conn).await.unwrap();
    drop(conn);
    tokio::task::spawn_blocking(move || tidemark::pgcluster::stop_data_dir(None, &pgdata).unwrap()).await.unwrap();
    rows.iter().map(|r| r.get::<String, _>(0)).collect()
}

/// The markers table, with the row committed before the base backup.
pub(crate) const MARKERS_BEFORE_BASE: &str =
    "CREATE TABLE markers (label text PRIMARY KEY, committed_at timestamptz DEFAULT clock_timestamp());
     INSERT INTO markers (label) VALUES ('before-base');";

fn set(labels: &[&str]) -> BTreeSet<String> {
    labels.iter().map(std::string::ToString::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_bring_back_exactly_what_was_committed_before_the_target() {
    let w = archiving_world().await;
    let source = create_database(&w.cluster, "shop", MARKERS_BEFORE_BASE).await;
    let base = crate::support::basebackup(&w.core).await.unwrap();
    assert!(base.end_lsn >= base.start_lsn && base.tar.stored_size > 0);

    commit_marker(&source, "a").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let between_a_and_b: DateTime<Utc> = one_row(&source, "SELECT clock_timestamp()").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, after_b) = commit_marker(&source, "b").await;
    commit_marker(&source, "c").await;
    let point = crate::support::mark(&w.core, "before_d").await.unwrap();
    assert!(point.lsn > after_b);
    // A restore point is written once: the same name again is refused, not replaced.
    let again = crate::support::mark(&w.core, "before_d").await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::AlreadyExists, "{}", again.report());
    commit_marker(&source, "d").await;
    commit_marker(&source, "e").await;
    archive_everything(&source, &w.core).await;

    let window = crate::support::window(&w.core, "shop").await.unwrap();
    assert!(window.gaps.is_empty(), "{:?}", window.gaps);
    assert_eq!(window.earliest.as_ref().unwrap().lsn, base.end_lsn);

    let got = markers_after_restore(&w, Target::Time(between_a_and_b)).await;
    assert_eq!(got, set(&["before-base", "a"]), "restore to a time");
    let got = markers_after_restore(&w, Target::Lsn(after_b)).await;
    assert_eq!(got, set(&["before-base", "a", "b"]), "restore to an LSN");
    let got = markers_after_restore(&w, Target::Name("before_d".into(), None)).await;
    assert_eq!(got, set(&["before-base", "a", "b", "c"]), "restore to a named point");
    let got = markers_after_restore(&w, Target::Latest).await;
    assert_eq!(got, set(&["before-base", "a", "b", "c", "d", "e"]), "restore to the latest moment");
    // The end of the window, after the last commit: Postgres alone would stop with
    // "recovery ended before configured recovery target was reached".
    let end = window.latest.as_ref().unwrap().time;
    let got = markers_after_restore(&w, Target::Time(end)).await;
    assert_eq!(got, set(&["before-base", "a", "b", "c", "d", "e"]), "restore to the end of the window");

    // A target before the base backup became consistent, or after the last archived WAL,
    // is refused before anything is written.
    let pgdata = w.dir.path().join("never");
    let refused = pitr::restore(
        &w.core,
        &PitrRestoreOptions {
            workspace: "shop".into(),
            pgdata: pgdata.clone(),
            target: Target::Time(Utc::now() + chrono::Duration::hours(1)),
            start: false,
            port: None,
            tidemark_command: None,
            prefetch: tidemark::ops::pitr::DEFAULT_PREFETCH,
            repository_only: false,
            repository: None,
        },
        &crate::support::actor(),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Refused);
    assert!(refused.message().contains("outside the point-in-time window"), "{}", refused.message());
    assert!(!pgdata.exists(), "nothing may be written for a refused target");

    // `check` reads everything back (snapshot, base backup, every WAL file) and is happy.
    let clean_snapshot = crate::support::snapshot_shop(&w.core).await.unwrap().id;
    let clean = crate::support::check(&w.core, true).await.unwrap();
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    assert_eq!((clean.snapshots, clean.base_backups), (1, 1));
    assert_eq!(clean.objects_read, clean.objects_checked);

    // A deleted segment becomes a gap: reported by name, and the window ends before it.
    let archived = archive::list(&w.core.repo, "shop").await.unwrap();
    let size = base.wal_segment_size;
    let first_after_base = tidemark::wal::Segment::of(base.timeline, base.end_lsn, size).number + 1;
    let victim = tidemark::wal::Segment { timeline: base.timeline, number: first_after_base }.name(size);
    assert!(archived.iter().any(|a| a.name == victim), "{victim} should be archived");
    let holder = w.repo_dir().join("workspaces/shop/wal").join(&victim[..8]).join(&victim);
    std::fs::remove_dir_all(&holder).unwrap();
    let window = crate::support::window(&w.core, "shop").await.unwrap();
    assert_eq!(window.gaps.len(), 1);
    assert_eq!(window.gaps[0].first_missing, victim);
    assert!(window.latest.as_ref().unwrap().lsn < after_b);
    let report = crate::support::check(&w.core, false).await.unwrap();
    assert!(report.problems.iter().any(|p| p.contains(&victim)), "{:?}", report.problems);
    let tables = w.repo_dir().join("workspaces/shop/snapshots").join(&clean_snapshot).join("tables");
    let table_object = std::fs::read_dir(&tables).unwrap().next().unwrap().unwrap().path();
    std::fs::remove_file(&table_object).unwrap();
    let report = crate::support::check(&w.core, false).await.unwrap();
    assert!(report.problems.iter().any(|p| p.contains("is missing") && p.contains("tables/")), "{:?}", report.problems);
    let past = pitr::restore(
        &w.core,
        &PitrRestoreOptions {
            workspace: "shop".into(),
            pgdata,
            target: Target::Lsn(after_b),
            start: false,
            port: None,
            tidemark_command: None,
            prefetch: tidemark::ops::pitr::DEFAULT_PREFETCH,
            repository_only: false,
            repository: None,
        },
        &crate::support::actor(),
    )
    .await
    .unwrap_err();
    assert_eq!(past.kind(), ErrorKind::Refused);
    assert!(past.message().contains(&victim), "{}", past.message());
}

/// A 1 MiB WAL segment file filled with `fill` after the first page header Postgres writes
/// (which `wal fetch` checks against the name).
fn segment_file(dir: &Path, name: &str, fill: u8) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, segment_bytes(name, fill)).unwrap();
    path
}

fn segment_bytes(name: &str, fill: u8) -> Vec<u8> {
    const SIZE: u64 = 1 << 20;
    let mut bytes = vec![fill; SIZE as usize];
    if let Ok(seg) = tidemark::wal::Segment::parse(name.trim_end_matches(".partial"), SIZE) {
        bytes[..40].fill(0);
        bytes[..2].copy_from_slice(&0xD110u16.to_le_bytes());
        bytes[2..4].copy_from_slice(&2u16.to_le_bytes()); // XLP_LONG_HEADER
        bytes[4..8].copy_from_slice(&seg.timeline.to_le_bytes());
        bytes[8..16].copy_from_slice(&seg.start(SIZE).0.to_le_bytes());
        bytes[32..36].copy_from_slice(&(SIZE as u32).to_le_bytes());
        bytes[36..40].copy_from_slice(&8192u32.to_le_bytes());
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_push_is_idempotent_refuses_to_overwrite_and_fetch_verifies() {
    let w = crate::support::world().await;
    let (repo, recipients) = (&w.core.repo, w.core.recipients().unwrap());
    let spool = tempfile::tempdir().unwrap();
    let segment = segment_file(spool.path(), "000000010000000000000007", 7);

    let first = archive::push(repo, recipients, "shop", &segment).await.unwrap();
    assert!(first.stored);
    let again = archive::push(repo, recipients, "shop", &segment).await.unwrap();
    assert!(!again.stored, "the same content pushed twice is accepted without a second copy");

    let other = tempfile::tempdir().unwrap();
    let impostor = segment_file(other.path(), "000000010000000000000007", 8);
    let refused = archive::push(repo, recipients, "shop", &impostor).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::AlreadyExists);
    assert!(refused.message().contains("refusing to overwrite"), "{}", refused.message());

    // A promoted standby archives the old timeline's last segment as `.partial`: kept, and
    // never under the segment's own name.
    let partial = segment_file(spool.path(), "000000010000000000000008.partial", 1);
    assert!(archive::push(repo, recipients, "shop", &partial).await.unwrap().stored);
    assert!(!archive::push(repo, recipients, "shop", &partial).await.unwrap().stored, "the same content twice");
    let names: Vec<String> = archive::list(repo, "shop").await.unwrap().into_iter().map(|a| a.name).collect();
    assert!(names.contains(&"000000010000000000000008.partial".to_string()), "{names:?}");
    assert!(!names.contains(&"000000010000000000000008".to_string()), "{names:?}");
    let not_wal = segment_file(spool.path(), "notes.partial", 1);
    assert_eq!(archive::push(repo, recipients, "shop", &not_wal).await.unwrap_err().kind(), ErrorKind::Usage);
    let history = spool.path().join("00000002.history");
    std::fs::write(&history, "1\t0/9000000\tno recovery target specified\n").unwrap();
    assert!(archive::push(repo, recipients, "shop", &history).await.unwrap().stored);

    let ids = w.core.identities().unwrap();
    let dest = spool.path().join("RECOVERYXLOG");
    let bytes = archive::fetch(repo, &ids, "shop", "000000010000000000000007", &dest).await.unwrap();
    assert_eq!(bytes, 1 << 20);
    assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(&segment).unwrap());
    let missing = archive::fetch(repo, &ids, "shop", "000000010000000000000009", &dest).await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);

    // Only ciphertext is stored; a tampered object is refused and leaves no file behind.
    let stored = w.repo_dir().join("workspaces/shop/wal/00000001/000000010000000000000007");
    let object = std::fs::read_dir(&stored).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&object).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1"));
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&object, bytes).unwrap();
    let dest = spool.path().join("RECOVERYXLOG2");
    let tampered = archive::fetch(repo, &ids, "shop", "000000010000000000000007", &dest).await.unwrap_err();
    assert_eq!(tampered.kind(), ErrorKind::Integrity);
    assert!(!dest.exists(), "a damaged WAL file must never reach the server");

    // As a restore_command: "not archived" is an ordinary failure (recovery ends there),
    // anything else exits above 125 so that Postgres stops instead of promoting early.
    let fetch = |name: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args(["--config", w.core.config.path.to_str().unwrap(), "wal", "fetch", "--workspace", "shop", name])
            .arg(spool.path().join("RECOVERYXLOG3"))
            .output()
            .unwrap()
    };
    // Not archived, as recovery probes for it (a segment past the end, the next
    // timeline's history file): the exit code says so, nothing goes to the server log.
    for probe in ["000000010000000000000009", "00000009.history"] {
        let missing = fetch(probe);
        assert_eq!(missing.status.code(), Some(ErrorKind::NotFound.exit_code()), "{probe}");
        assert!(missing.stderr.is_empty(), "{probe}: {}", String::from_utf8_lossy(&missing.stderr));
    }
    let damaged = fetch("000000010000000000000007");
    assert!(damaged.status.code().unwrap() > 125, "{damaged:?}");
    assert!(String::from_utf8_lossy(&damaged.stderr).contains("recovery must stop"));
}

/// `wal fetch --prefetch`: a detached prefetcher reads the following segments into the
/// spool, and the next fetches are served from there (shown by deleting one from the
/// repository first); only verified files land in the spool, never past the end of the
/// archive; the prefetcher's warnings reach the server log; and `wal prefetch --remove`
/// (the recovery_end_command) removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_fetch_reads_ahead_into_a_spool() {
    let w = crate::support::world().await;
    let (repo, recipients) = (&w.core.repo, w.core.recipients().unwrap());
    let files = tempfile::tempdir().unwrap();
    let names: Vec<String> = (1..=6).map(|i| format!("0000000100000000000000{i:02X}")).collect();
    for (i, name) in names.iter().enumerate() {
        archive::push(repo, recipients, "shop", &segment_file(files.path(), name, i as u8 + 1)).await.unwrap();
    }
    let spool = files.path().join("spool");
    let dest = files.path().join("RECOVERYXLOG");
    let fetch = |name: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args(["--config", w.core.config.path.to_str().unwrap(), "--json", "wal", "fetch", "-w", "shop"])
            .args(["--prefetch", "3", "--spool", spool.to_str().unwrap(), name, dest.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (answer["prefetched"].as_bool().unwrap(), std::fs::read(&dest).unwrap())
    };
    let wait_for = |name: &str| {
        for _ in 0..300 {
            if spool.join(name).exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("{name} was never prefetched");
    };

    let (prefetched, content) = fetch(&names[0]);
    assert_eq!((prefetched, content), (false, segment_bytes(&names[0], 1)), "the first one is downloaded");
    for name in &names[1..4] {
        wait_for(name);
    }
    std::fs::remove_dir_all(w.repo_dir().join("workspaces/shop/wal/00000001").join(&names[1])).unwrap();
    let (prefetched, content) = fetch(&names[1]);
    assert_eq!((prefetched, content), (true, segment_bytes(&names[1], 2)), "served from the spool");
    assert!(!spool.join(&names[1]).exists(), "moved, not copied");
    wait_for(&names[4]); // the read-ahead follows the request

    // Reading ahead directly: the end of the archive ends it, a damaged object is skipped
    // (the fetch itself reports it when Postgres asks).
    let stored = w.repo_dir().join("workspaces/shop/wal/00000001").join(&names[4]);
    let object = std::fs::read_dir(&stored).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&object).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&object, bytes).unwrap();
    let direct = tidemark::wal::prefetch::Spool::new(files.path().join("direct"));
    assert!(direct.request(&names[3]).unwrap());
    let ids = w.core.identities().unwrap();
    let downloaded = direct.fill(repo, &ids, "shop", 8, 16 << 20).await.unwrap();
    assert_eq!(downloaded, 1);
    let mut held: Vec<String> =
        std::fs::read_dir(direct.dir()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    held.sort();
    assert_eq!(held, vec![names[5].clone(), "prefetch.lock".into(), "requested".into()]);
    // A timeline history file has nothing after it to read. (The lock is free again once
    // a child another test is forking at this moment, which holds a copy of its descriptor
    // until its exec closes it, has started.)
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !direct.request("00000002.history").unwrap() {
        assert!(std::time::Instant::now() < deadline, "the prefetch lock is still held after fill returned");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(direct.fill(repo, &ids, "shop", 8, 16 << 20).await.unwrap(), 0);

    // The detached prefetcher's warnings go where the fetch's go when that is a file (the
    // server log): here, that it skipped the damaged segment.
    let log_path = files.path().join("server.log");
    let fetched = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["--config", w.core.config.path.to_str().unwrap(), "wal", "fetch", "-w", "shop", "--prefetch", "2"])
        .arg("--spool")
        .arg(files.path().join("spool-2"))
        .arg(&names[3])
        .arg(&dest)
        .stderr(std::fs::File::create(&log_path).unwrap())
        .status()
        .unwrap();
    assert!(fetched.success());
    let warned = |log: &str| log.contains("prefetching a WAL file failed") && log.contains(&names[4]);
    for _ in 0..300 {
        if warned(&std::fs::read_to_string(&log_path).unwrap()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(warned(&log), "{log}");

    let removed = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["wal", "prefetch", "--remove", "--spool", spool.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
    assert!(!spool.exists());
}

/// A failover: a standby of the source (archiving with `tidemark wal push`, as it inherits
/// the source's settings) is promoted. Postgres then archives the new timeline's history
/// file and the old timeline's last segment as `.partial`; both must be accepted, or the
/// new primary's archiver would retry that file forever while WAL piles up. A base backup
/// taken before the failover then restores rows committed on the new primary after it:
/// the window and the recovery follow the switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_is_archived_and_followed() {
    let w = archiving_world().await;
    let source = create_database(&w.cluster, "shop", MARKERS_BEFORE_BASE).await;
    crate::support::basebackup(&w.core).await.unwrap();
    let standby = w.dir.path().join("standby");
    let port = tidemark::pgcluster::free_port().unwrap();
    let bin = tidemark::pg::bin_dir(None).unwrap();
    let cloned = std::process::Command::new(bin.join("pg_basebackup"))
        .args(["-d", &w.cluster.url("postgres"), "-R", "-X", "stream", "-c", "fast", "-D"])
        .arg(&standby)
        .output()
        .unwrap();
    assert!(cloned.status.success(), "{}", String::from_utf8_lossy(&cloned.stderr));
    let mut conf = std::fs::OpenOptions::new().append(true).open(standby.join("postgresql.auto.conf")).unwrap();
    use std::io::Write;
    writeln!(conf, "port = {port}").unwrap();
    drop(conf);
    tidemark::pgcluster::hand_over(&standby).unwrap();
    let log = standby.join("standby.log"); // the server user writes it
    let (data, log_path) = (standby.clone(), log.clone());
    tokio::task::spawn_blocking(move || tidemark::pgcluster::start_data_dir(None, &data, &log_path, &[]))
        .await
        .unwrap()
        .unwrap();
    let promoted = ConnSpec::parse(&format!("postgres://postgres@127.0.0.1:{port}/shop"), None).unwrap();
    assert!(one_row::<bool>(&promoted, "SELECT pg_is_in_recovery()").await, "a standby first");
    // The switch happens in the middle of a segment: WAL the standby received after the
    // base backup's segment switch.
    commit_marker(&source, "before-failover").await;
    let replayed = "SELECT count(*) FROM markers WHERE label = 'before-failover'";
    for _ in 0..300 {
        if one_row::<i64>(&promoted, replayed).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(one_row::<bool>(&promoted, "SELECT pg_promote(true, 60)").await);
    commit_marker(&promoted, "after-failover").await;
    let _: String = one_row(&promoted, "SELECT pg_switch_wal()::text").await;

    let mut names = Vec::new();
    for _ in 0..300 {
        names = archive::list(&w.core.repo, "shop").await.unwrap().into_iter().map(|a| a.name).collect::<Vec<_>>();
        if names.iter().any(|n| n == "00000002.history")
            && names.iter().any(|n| n.starts_with("00000001") && n.ends_with(".partial"))
            && names.iter().any(|n| n.starts_with("00000002") && n.len() == 24)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failed: i64 = one_row(&promoted, "SELECT failed_count FROM pg_stat_archiver").await;
    let (data, log_path) = (standby.clone(), log.clone());
    tokio::task::spawn_blocking(move || tidemark::pgcluster::stop_data_dir(None, &data)).await.unwrap().unwrap();
    assert_eq!(failed, 0, "the new primary's archiver failed: {}", tidemark::pgcluster::log_tail(&log_path));
    assert!(names.iter().any(|n| n == "00000002.history"), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("00000001") && n.ends_with(".partial")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("00000002") && n.len() == 24), "{names:?}");

    // The base backup from before the failover reaches timeline 2, and its latest moment
    // has the row the new primary committed.
    let window = crate::support::window(&w.core, "shop").await.unwrap();
    assert_eq!(window.base_backups[0].timelines, vec![1, 2], "{window:?}");
    assert_eq!(window.latest.as_ref().unwrap().timeline, 2, "{window:?}");
    assert!(window.unfollowed_timelines.is_empty() && window.gaps.is_empty(), "{window:?}");
    let checked = crate::support::check(&w.core, true).await.unwrap();
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    assert_eq!(
        markers_after_restore(&w, Target::Latest).await,
        set(&["before-base", "before-failover", "after-failover"])
    );

    // The old primary goes on writing timeline 1 (split brain): a base backup taken there
    // now is on a branch timeline 2 did not come from, and stays on it.
    crate::support::basebackup(&w.core).await.unwrap();
    let window = crate::support::window(&w.core, "shop").await.unwrap();
    let timelines: Vec<Vec<u32>> = window.base_backups.iter().map(|b| b.timelines.clone()).collect();
    assert_eq!(timelines, vec![vec![1, 2], vec![1]], "{window:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_workspace_survives_a_killed_stream_and_a_crashed_source() {
    let mut w = pitr_world(false).await;
    w.core.config.config.workspaces.get_mut("shop").unwrap().wal_stream = tidemark::config::WalStream::On;
    let source = create_database(&w.cluster, "shop", "CREATE TABLE markers (label text PRIMARY KEY);").await;
    let spool = w.dir.path().join("spool");
    let start_stream = |core: Core, spool: std::path::PathBuf| {
        let token = tokio_util::sync::CancellationToken::new();
        let opts = tidemark::ops::wal::StreamOptions { workspace: "shop".into(), slot: None, spool: Some(spool) };
        let t = token.clone();
        (token, tokio::spawn(async move { tidemark::ops::wal::stream(&core, &opts, t).await }))
    };
    let (_, first) = start_stream(w.core.clone(), spool.clone());
    // Without archive_mode, a base backup is accepted because the workspace streams WAL.
    crate::support::basebackup(&w.core).await.unwrap();
    commit_marker(&source, "a").await;
    archive_everything(&source, &w.core).await;

    // Killed (the task and its pg_receivewal vanish): WAL written meanwhile stays in the
    // slot, and the restarted stream ships it; no gap.
    first.abort();
    let _ = first.await;
    commit_marker(&source, "b").await;
    let _: String = one_row(&source, "SELECT pg_switch_wal()::text").await;
    commit_marker(&source, "c").await;
    let (stop, second) = start_stream(w.core.clone(), spool.clone());
    archive_everything(&source, &w.core).await;
    let window = crate::support::window(&w.core, "shop").await.unwrap();
    assert!(window.gaps.is_empty(), "{:?}", window.gaps);

    // The source crashes; everything shipped before it comes back, including the last
    // commit, which sits in a segment that never completed: the stream ships the
    // unfinished segment every second.
    commit_marker(&source, "d").await;
    archive_everything(&source, &w.core).await;
    commit_marker(&source, "e").await;
    // Long enough for e's commit record to reach the stream (the source commits
    // asynchronously: its WAL writer flushes within 200 ms) and be shipped.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let partials = archive::list(&w.core.repo, "shop").await.unwrap();
    assert!(partials.iter().any(|a| a.name.ends_with(".partial")), "the unfinished segment is shipped");
    let data = w.cluster.data_dir().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let (uid, gid) = tidemark::pgcluster::server_user().unwrap().map_or((None, None), |(u, g)| (Some(u), Some(g)));
        let mut cmd = std::process::Command::new(tidemark::pg::tool(tidemark::pg::bin_dir(None).as_deref(), "pg_ctl"));
        cmd.arg("-D").arg(&data).args(["-m", "immediate", "-w", "stop"]).current_dir("/");
        cmd.stdout(std::process::Stdio::null());
        use std::os::unix::process::CommandExt;
        if let (Some(u), Some(g)) = (uid, gid) {
            cmd.uid(u.as_raw()).gid(g.as_raw());
        }
        assert!(cmd.status().unwrap().success());
    })
    .await
    .unwrap();
    stop.cancel();
    let report = second.await.unwrap().unwrap();
    assert!(report.shipped > 0);
    let got = markers_after_restore(&w, Target::Latest).await;
    assert_eq!(got, set(&["a", "b", "c", "d", "e"]));
}

/// Issue 19: `wal-stream = "synchronous"`. The source names the receiver in
/// `synchronous_standby_names`, so a commit returns only once its WAL is in the spool; the
/// source (SIGKILL) and the stream die together under an insert load, and `pitr restore
/// --latest` brings back every acknowledged commit (the part not shipped yet from the
/// spool) and nothing the source's own crash recovery does not have. On the way: the
/// window and `status` report where the streamed WAL reaches, not the last whole segment;
/// a source that does not name the receiver is a problem `status` names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synchronous_stream_loses_no_acknowledged_commit_when_source_and_stream_die_together() {
    let mut w = pitr_world(false).await;
    let spool = w.dir.path().join("spool");
    {
        let ws = w.core.config.config.workspaces.get_mut("shop").unwrap();
        ws.wal_stream = tidemark::config::WalStream::Synchronous;
        ws.wal_spool = Some(spool.clone());
    }
    let source = create_database(&w.cluster, "shop", "CREATE TABLE acked (id int PRIMARY KEY);").await;
    let postgres = ConnSpec::parse(&w.cluster.url("postgres"), None).unwrap();
    let health = |core: Core| async move {
        let opts = tidemark::ops::health::HealthOptions { workspace: Some("shop".into()) };
        tidemark::ops::health::health(&core, &opts, &crate::support::actor()).await.unwrap().workspaces.remove(0)
    };
    let not_synchronous = |h: &tidemark::ops::health::Health| {
        h.problems.iter().find(|p| p.kind == tidemark::ops::health::ProblemKind::StreamNotSynchronous).cloned()
    };

    let set = |sql: &'static str| {
        let postgres = postgres.clone();
        async move {
            let mut conn = postgres.connect().await.unwrap();
            sqlx::query(sql).execute(&mut conn).await.unwrap();
            sqlx::query("SELECT pg_reload_conf()").execute(&mut conn).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    // Commits that do not wait (the test clusters run synchronous_commit = off), then a
    // source that does not name the receiver: not synchronous, and status says why.
    let before = health(w.core.clone()).await;
    let problem = not_synchronous(&before).expect("synchronous_commit = off is a problem");
    assert!(problem.message.contains("synchronous_commit = off"), "{}", problem.message);
    assert_eq!(before.state, "failing");
    set("ALTER SYSTEM SET synchronous_commit = on").await;
    let problem = not_synchronous(&health(w.core.clone()).await).expect("an unnamed receiver is a problem");
    assert!(problem.message.contains("does not name tidemark_shop"), "{}", problem.message);
    set("ALTER SYSTEM SET synchronous_standby_names = 'tidemark_shop'").await;
    let token = tokio_util::sync::CancellationToken::new();
    let opts = tidemark::ops::wal::StreamOptions { workspace: "shop".into(), slot: None, spool: None };
    let (core, t) = (w.core.clone(), token.clone());
    let stream = tokio::spawn(async move { tidemark::ops::wal::stream(&core, &opts, t).await });
    crate::support::basebackup(&w.core).await.unwrap();
    let mut synchronous = false;
    for _ in 0..100 {
        let state: Option<String> = {
            let mut conn = postgres.connect().await.unwrap();
            sqlx::query_scalar("SELECT sync_state FROM pg_stat_replication WHERE application_name = 'tidemark_shop'")
                .fetch_optional(&mut conn)
                .await
                .unwrap()
        };
        if state.as_deref() == Some("sync") {
            synchronous = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(synchronous, "the receiver became the source's synchronous standby");
    let now = health(w.core.clone()).await;
    assert!(not_synchronous(&now).is_none(), "{:?}", now.problems);
    let stream_health = now.wal_stream.as_ref().unwrap();
    assert_eq!(stream_health.mode, "synchronous");
    assert!(stream_health.warning.as_ref().unwrap().contains("blocks EVERY commit"), "{stream_health:?}");

    // One commit; the window ends where the streamed WAL reaches, inside the segment.
    {
        let mut conn = source.connect().await.unwrap();
        sqlx::query("INSERT INTO acked VALUES (0)").execute(&mut conn).await.unwrap();
    }
    let flushed: Lsn = one_row::<String>(&source, "SELECT pg_current_wal_flush_lsn()::text").await.parse().unwrap();
    let mut reached = None;
    for _ in 0..100 {
        let window = crate::support::window(&w.core, "shop").await.unwrap();
        if let Some(latest) = window.latest.filter(|l| l.lsn >= flushed) {
            reached = Some(latest.lsn);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reached = reached.unwrap_or_else(|| panic!("the window never reached the commit at {flushed}"));
    let current: Lsn = one_row::<String>(&source, "SELECT pg_current_wal_flush_lsn()::text").await.parse().unwrap();
    assert!(reached <= current, "the window ({reached}) says more than the source wrote ({current})");
    assert_ne!(reached.0 % (16 << 20), 0, "{reached} is inside the unfinished segment (commit flushed at {flushed})");
    let now = health(w.core.clone()).await;
    assert!(now.pitr_latest_lsn.is_some_and(|l| l >= flushed), "{:?}", now.pitr_latest_lsn);
    assert_eq!(now.wal_stream.as_ref().unwrap().streamed_lsn, now.pitr_latest_lsn);

    // Inserts, each acknowledged one remembered; then the source gets SIGKILL and the
    // stream dies with it (its pg_receivewal is killed with the task).
    let acked = std::sync::Arc::new(std::sync::Mutex::new(vec![0]));
    let writer = {
        let (source, acked) = (source.clone(), acked.clone());
        tokio::spawn(async move {
            let mut conn = source.connect().await.unwrap();
            for id in 1.. {
                if sqlx::query("INSERT INTO acked VALUES ($1)").bind(id).execute(&mut conn).await.is_err() {
                    break;
                }
                acked.lock().unwrap().push(id);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let pid = std::fs::read_to_string(w.cluster.data_dir().join("postmaster.pid")).unwrap();
    let pid: i32 = pid.lines().next().unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    stream.abort();
    let _ = stream.await;
    tokio::time::timeout(Duration::from_secs(30), writer).await.expect("the writer saw the source die").unwrap();
    let acked: BTreeSet<i32> = acked.lock().unwrap().iter().copied().collect();
    assert!(acked.len() > 20, "only {} commits under load", acked.len());
    assert!(spool.read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".partial")));

    // From the repository alone (as a drill restores), recovery reaches where the window
    // says the shipped WAL reaches.
    let window = crate::support::window(&w.core, "shop").await.unwrap();
    let shipped = window.latest.as_ref().unwrap().lsn;
    let repository_only = w.dir.path().join("repository-only");
    let opts = PitrRestoreOptions { repository_only: true, ..latest_started(&repository_only) };
    let report = pitr::restore(&w.core, &opts, &crate::support::actor()).await.unwrap();
    assert!(report.from_spool.is_empty());
    let replayed: Lsn = report.reached.as_ref().unwrap().lsn.parse().unwrap();
    assert!(replayed >= shipped, "recovery reached {replayed}, the window said {shipped}");
    tokio::task::spawn_blocking(move || tidemark::pgcluster::stop_data_dir(None, &repository_only).unwrap())
        .await
        .unwrap();

    let pgdata = w.dir.path().join("restored");
    let report = pitr::restore(&w.core, &latest_started(&pgdata), &crate::support::actor()).await.unwrap();
    assert!(!report.from_spool.is_empty(), "the spool's unfinished segment is replayed");
    assert!(!pgdata.join(tidemark::wal::recovery::STREAMED_DIR).exists(), "the copies go once recovery is done");
    let restored_spec =
        ConnSpec::parse(&format!("postgres://postgres@127.0.0.1:{}/shop", report.port.unwrap()), None).unwrap();
    let restored: BTreeSet<i32> = {
        let mut conn = restored_spec.connect().await.unwrap();
        sqlx::query_scalar("SELECT id FROM acked").fetch_all(&mut conn).await.unwrap().into_iter().collect()
    };
    let names: String = one_row(&restored_spec, "SHOW synchronous_standby_names").await;
    assert_eq!(names, "", "the restored copy does not wait for the source's standbys");
    let pgdata_stop = pgdata.clone();
    tokio::task::spawn_blocking(move || tidemark::pgcluster::stop_data_dir(None, &pgdata_stop).unwrap()).await.unwrap();
    let lost: Vec<&i32> = acked.difference(&restored).collect();
    assert!(lost.is_empty(), "acknowledged commits missing from the restore: {lost:?}");

    // The source's own crash recovery: the restore invented nothing.
    let data = w.cluster.data_dir().to_path_buf();
    let log = data.join("restarted.log");
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::spawn_blocking(move || tidemark::pgcluster::start_data_dir(None, &data, &log, &[]).unwrap())
        .await
        .unwrap();
    let recovered: BTreeSet<i32> = {
        let mut conn = source.connect().await.unwrap();
        sqlx::query_scalar("SELECT id FROM acked").fetch_all(&mut conn).await.unwrap().into_iter().collect()
    };
    assert!(acked.is_subset(&recovered));
    assert!(restored.is_subset(&recovered), "the restore has rows the source never had");
}

/// `wal push --async`: a background pusher archives what waits, the archive_command answers
/// from its spool, a record for other content (a spool copied from another cluster) fools
/// nobody, and everything restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_archive_command_answers_from_a_pusher_and_everything_restores() {
    let w = pitr_world_pushing(Some("--async --parallel 3")).await;
    let source = create_database(&w.cluster, "shop", "CREATE TABLE markers (label text PRIMARY KEY);").await;
    crate::support::basebackup(&w.core).await.unwrap();
    let spool = w.cluster.data_dir().join("tidemark-push-spool");
    for label in ["a", "b", "c", "d"] {
        commit_marker(&source, label).await;
        let _: String = one_row(&source, "SELECT pg_switch_wal()::text").await;
    }
    commit_marker(&source, "e").await;
    archive_everything(&source, &w.core).await;
    assert!(spool.join("push.lock").exists(), "the pusher ran in {}", spool.display());

    // A record of the next segment with another content: the archive_command drops it and
    // the segment is really stored (the marker in it restores).
    let next: String = one_row(&source, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())").await;
    // Made beside the spool and moved in whole, already the server's: the archive_command
    // (a segment switch by archive_timeout may run it at any moment) never meets it
    // half-made or root's.
    let staged = w.cluster.data_dir().join(format!("{next}.ok.staged"));
    std::fs::write(&staged, "0".repeat(64)).unwrap();
    tidemark::pgcluster::hand_over(&staged).unwrap();
    std::fs::rename(&staged, spool.join(format!("{next}.ok"))).unwrap();
    commit_marker(&source, "f").await;
    archive_everything(&source, &w.core).await;
    let (failed, archived): (i64, i64) = {
        let mut conn = source.connect().await.unwrap();
        sqlx::query_as("SELECT failed_count, archived_count FROM pg_stat_archiver").fetch_one(&mut conn).await.unwrap()
    };
    assert_eq!(failed, 0, "the archive_command never failed");
    assert!(archived >= 6, "{archived} files archived");
    let window = crate::support::window(&w.core, "shop").await.unwrap();
    assert!(window.gaps.is_empty(), "{}", serde_json::to_string(&window).unwrap());
    let got = markers_after_restore(&w, Target::Latest).await;
    assert_eq!(got, set(&["a", "b", "c", "d", "e", "f"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_and_archive_command_can_ship_the_same_segments() {
    let mut w = pitr_world(true).await;
    w.core.config.config.workspaces.get_mut("shop").unwrap().wal_stream = tidemark::config::WalStream::On;
    let source = create_database(&w.cluster, "shop", "CREATE TABLE markers (label text PRIMARY KEY);").await;
    let token = tokio_util::sync::CancellationToken::new();
    let opts = tidemark::ops::wal::StreamOptions {
        workspace: "shop".into(),
        slot: None,
        spool: Some(w.dir.path().join("spool")),
    };
    let (core, t) = (w.core.clone(), token.clone());
    let stream = tokio::spawn(async move { tidemark::ops::wal::stream(&core, &opts, t).await });
    crate::support::basebackup(&w.core).await.unwrap();
    for label in ["a", "b", "c"] {
        commit_marker(&source, label).await;
        archive_everything(&source, &w.core).await;
    }
    // Give the slower of the two time to push what the other already pushed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    token.cancel();
    stream.await.unwrap().expect("the stream never met a conflicting segment");
    let failed: i64 = one_row(&source, "SELECT failed_count FROM pg_stat_archiver").await;
    assert_eq!(failed, 0, "archive_command refused a segment the stream had shipped");
    assert!(crate::support::window(&w.core, "shop").await.unwrap().gaps.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_drops_base_backups_and_wal_outside_the_window_and_the_rest_still_restores() {
    let mut w = archiving_world().await;
    w.core.config.config.workspaces.get_mut("shop").unwrap().pitr_window = Some(Duration::from_secs(86400));
    let source = create_database(&w.cluster, "shop", "CREATE TABLE markers (label text PRIMARY KEY);").await;
    let old = crate::support::basebackup(&w.core).await.unwrap();
    commit_marker(&source, "a").await;
    archive_everything(&source, &w.core).await;
    let newer = crate::support::basebackup(&w.core).await.unwrap();
    commit_marker(&source, "b").await;
    archive_everything(&source, &w.core).await;
    let before = archive::list(&w.core.repo, "shop").await.unwrap();
    let opts = tidemark::ops::prune::PruneOptions {
        workspace: "shop".into(),
        dry_run: false,
        grace: Duration::ZERO,
        as_of: Some(Utc::now() + chrono::Duration::days(30)),
        wait: Default::default(),
        repository: None,
    };

    // Issue 11.7: the newer base backup's manifest damaged. It blocked every restore; now
    // the older base backup serves, `check` names it, and prune deletes neither it nor any
    // WAL (what it needs is unknown).
    let manifest = w.repo_dir().join("workspaces/shop/base").join(&newer.id).join("manifest.json.age");
    let good = std::fs::read(&manifest).unwrap();
    let mut bad = good.clone();
    let at = bad.len() - 10;
    bad[at] ^= 0x20;
    std::fs::write(&manifest, bad).unwrap();
    assert_eq!(markers_after_restore(&w, Target::Latest).await, set(&["a", "b"]), "from the older base backup");
    let check = crate::support::check(&w.core, false).await.unwrap();
    assert!(check.problems.iter().any(|p| p.contains(&newer.id)), "{:?}", check.problems);
    let report = tidemark::ops::prune::prune(&w.core, &opts, &crate::support::actor()).await.unwrap();
    assert_eq!(report.pitr.damaged.len(), 1);
    assert_eq!((report.pitr.base_backups_deleted.len(), report.pitr.wal_files_deleted), (0, 0));
    assert!(
        manifest.exists()
            && w.repo_dir().join("workspaces/shop/base").join(&newer.id).join("base.tar.zst.age").exists()
    );
    std::fs::write(&manifest, good).unwrap();

    // A month later with a one-day window: the old base backup and the WAL only it needed
    // go; the newest base backup stays (it is the newest) with everything after it.
    let report = tidemark::ops::prune::prune(&w.core, &opts, &crate::support::actor()).await.unwrap();
    assert_eq!(report.pitr.base_backups_deleted, vec![old.id.clone()]);
    let first_kept = tidemark::wal::Segment::of(newer.timeline, newer.start_lsn, newer.wal_segment_size);
    assert_eq!(report.pitr.oldest_wal_kept.as_deref(), Some(first_kept.name(newer.wal_segment_size).as_str()));
    assert!(report.pitr.wal_files_deleted > 0);
    let after = archive::list(&w.core.repo, "shop").await.unwrap();
    assert_eq!(after.len() as u64, before.len() as u64 - report.pitr.wal_files_deleted);
    assert!(!w.repo_dir().join("workspaces/shop/base").join(&old.id).exists());

    let window = crate::support::window(&w.core, "shop").await.unwrap();
    assert!(window.gaps.is_empty(), "{:?}", window.gaps);
    assert_eq!(window.earliest.unwrap().lsn, newer.end_lsn);
    assert_eq!(markers_after_restore(&w, Target::Latest).await, set(&["a", "b"]));
    let check = crate::support::check(&w.core, false).await.unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_takes_base_backups_on_their_schedule() {
    let mut w = archiving_world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int);").await;
    let schedules = w.dir.path().join("schedules");
    std::fs::create_dir_all(&schedules).unwrap();
    std::fs::write(schedules.join("weekly-base.toml"), "action = \"base-backup\"\ncron = \"0 3 * * 0\"\n").unwrap();
    w.core.config.config.schedules_dir = Some(schedules);
    // Sunday 2026-11-29 03:00 UTC is the slot.
    let slot = DateTime::parse_from_rfc3339("2026-11-29T03:00:00Z").unwrap().to_utc();
    let clock = tidemark::schedule::clock::ManualClock::new(slot - chrono::Duration::hours(2));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (core, c, t) = (w.core.clone(), clock.clone(), shutdown.clone());
    let daemon = tokio::spawn(async move { tidemark::ops::serve::serve(&core, std::sync::Arc::new(c), t).await });
    let catalog = tidemark::catalog::Catalog::open_at(&w.core.config.catalog_location()).await.unwrap();
    for _ in 0..100 {
        if catalog.last_slot("shop", "weekly-base").await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    clock.set(slot);
    let mut job = None;
    for _ in 0..600 {
        job = catalog.jobs(Some("shop"), 5).await.unwrap().into_iter().find(|j| j.status != "running");
        if job.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let job = job.expect("the scheduled base backup finished");
    assert_eq!((job.operation.as_str(), job.status.as_str(), job.kind.as_deref()), ("basebackup", "succeeded", None));
    let bases = tidemark::wal::base::list(&w.core.repo, &w.core.identities().unwrap(), "shop").await.unwrap();
    assert_eq!(bases.iter().map(|b| b.id.clone()).collect::<Vec<_>>(), vec![job.snapshot_id.clone().unwrap()]);
    shutdown.cancel();
    daemon.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pitr_drill_recovers_into_a_throwaway_cluster_and_runs_the_assertions() {
    use tidemark::drill::CheckStatus;
    use tidemark::ops::drill::{DrillOptions, DrillSource, drill};
    let mut w = checksummed_archiving_world().await;
    let source = create_database(&w.cluster, "shop", MARKERS_BEFORE_BASE).await;
    crate::support::basebackup(&w.core).await.unwrap();
    commit_marker(&source, "after-base").await;
    archive_everything(&source, &w.core).await;
    let tests = w.dir.path().join("restore-tests");
    std::fs::create_dir_all(&tests).unwrap();
    std::fs::write(
        tests.join("markers.sql"),
        "-- assert: the row committed after the base backup was replayed\n\
         SELECT EXISTS (SELECT 1 FROM markers WHERE label = 'after-base');\n",
    )
    .unwrap();
    let scratch = w.dir.path().join("drills");
    w.core.config.config.drill.scratch_dir = Some(scratch.clone());

    let opts = DrillOptions {
        tidemark_command: Some(env!("CARGO_BIN_EXE_tidemark").to_string()),
        ..DrillOptions::new("shop", DrillSource::Pitr(Target::Latest))
    };
    let report = drill(&w.core, &opts, &crate::support::actor()).await.unwrap();
    assert!(report.passed, "{:#?}", report.checks);
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "base-backup",
            "recovery",
            "connect",
            "restore-test markers.sql: the row committed after the base backup was replayed",
            "amcheck tables",
            "amcheck indexes",
            "data-checksums",
        ]
    );
    assert!(report.checks.iter().all(|c| c.status == CheckStatus::Pass), "{:#?}", report.checks);
    let checksums = report.checks.last().unwrap();
    assert!(checksums.details.contains("every page's checksum matches"), "{}", checksums.details);
    assert_eq!(report.kind, tidemark::drill::DrillKind::Pitr);
    assert!(report.timings.restore_ms > 0);
    // What it read: the base backup, and WAL at least up to the row committed after it.
    let bases = tidemark::wal::base::list(&w.core.repo, &w.core.identities().unwrap(), "shop").await.unwrap();
    let base = bases.iter().find(|b| b.id == report.source).expect("the report names the base backup");
    assert!(report.stored_bytes > base.tar.stored_size, "{} bytes", report.stored_bytes);
    assert!(report.plain_bytes >= base.tar.plain_size + base.wal_segment_size, "{} bytes", report.plain_bytes);
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0, "the recovered cluster is removed");
    let port: u16 = report.restored_into.rsplit(':').next().unwrap().parse().unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the recovered server still listens");
    // The source archived on, untouched.
    let markers: i64 = one_row(&source, "SELECT count(*) FROM markers").await;
    assert_eq!(markers, 2);
}

/// A restore of the latest moment into `pgdata`, started, without read-ahead, the server
/// running the real binary.
fn latest_started(pgdata: &Path) -> PitrRestoreOptions {
    PitrRestoreOptions {
        workspace: "shop".into(),
        pgdata: pgdata.to_path_buf(),
        target: Target::Latest,
        start: true,
        port: None,
        tidemark_command: Some(env!("CARGO_BIN_EXE_tidemark").to_string()),
        prefetch: 0,
        repository_only: false,
        repository: None,
    }
}

/// The archived object of segment `name`: (its folder, its only object file).
fn wal_object_of(w: &World, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = w.repo_dir().join("workspaces/shop/wal").join(&name[..8]).join(name);
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".zst.age"))
        .unwrap();
    (dir, file)
}

/// Issue 11.1: a valid WAL object of another segment in a segment's place made recovery
/// stop there and promote, silently losing every later commit, and `check --read-data`
/// and the PITR drill passed. Now `wal fetch` refuses it (so the restore fails with
/// `integrity`, naming it), `check --read-data` names it, the drill fails; and a segment
/// that passes the header check but still ends recovery early is caught by comparing where
/// recovery stopped with the end of the archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_in_another_segments_place_fails_the_restore_check_and_drill() {
    use sha2::Digest;
    use tidemark::ops::drill::{DrillOptions, DrillSource, drill};
    let mut w = archiving_world().await;
    let source = create_database(&w.cluster, "shop", MARKERS_BEFORE_BASE).await;
    let base = crate::support::basebackup(&w.core).await.unwrap();
    for label in ["a", "b", "c", "d"] {
        commit_marker(&source, label).await;
        archive_everything(&source, &w.core).await;
    }
    let size = base.wal_segment_size;
    let after_base = tidemark::wal::Segment::of(base.timeline, base.end_lsn, size).number + 1;
    let name = |n: u64| tidemark::wal::Segment { timeline: base.timeline, number: n }.name(size);
    let (victim, next) = (name(after_base), name(after_base + 1));
    let (victim_dir, victim_file) = wal_object_of(&w, &victim);
    let (_, next_file) = wal_object_of(&w, &next);
    let original = std::fs::read(&victim_file).unwrap();
    let original_sig = std::fs::read(format!("{}.sig", victim_file.display())).unwrap();

    // 1. The next segment's object, byte for byte, in the victim's folder: its hash is right.
    std::fs::remove_file(&victim_file).unwrap();
    std::fs::copy(&next_file, victim_dir.join(next_file.file_name().unwrap())).unwrap();
    tidemark::pgcluster::hand_over(&victim_dir).unwrap(); // the server's archive reads it
    let report = crate::support::check(&w.core, true).await.unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains(&victim) && p.contains("wrong segment") && p.contains(&next)),
        "{:?}",
        report.problems
    );
    let dest = w.dir.path().join("fetched");
    let refused = archive::fetch(&w.core.repo, &w.core.identities().unwrap(), "shop", &victim, &dest).await;
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::Integrity);
    assert!(!dest.exists(), "nothing is handed to Postgres");
    let pgdata = w.dir.path().join("restored-misplaced");
    let opts = latest_started(&pgdata);
    let failed = pitr::restore(&w.core, &opts, &crate::support::actor()).await.unwrap_err();
    assert_eq!(failed.kind(), ErrorKind::Integrity, "{}", failed.report());
    assert!(failed.report().contains(&victim), "{}", failed.report());
    assert!(!pgdata.exists(), "a failed restore leaves no data directory to be taken for a restore");
    let scratch = w.dir.path().join("drills");
    w.core.config.config.drill.scratch_dir = Some(scratch.clone());
    let drill_opts = DrillOptions {
        tidemark_command: Some(env!("CARGO_BIN_EXE_tidemark").to_string()),
        ..DrillOptions::new("shop", DrillSource::Pitr(Target::Latest))
    };
    let drilled = drill(&w.core, &drill_opts, &crate::support::actor()).await.unwrap();
    assert!(!drilled.passed, "{:#?}", drilled.checks);
    let recovery = drilled.checks.iter().find(|c| c.name == "recovery").unwrap();
    assert!(recovery.details.contains(&victim), "{}", recovery.details);

    // 2. The next segment's content with the victim's first page header: it passes the
    //    header check, but recovery stops at its first record and would promote there.
    let identities = w.core.identities().unwrap();
    let plain = zstd::decode_all(
        &tidemark::repo::pipeline::decrypt_small(&std::fs::read(&next_file).unwrap(), &identities, "wal").unwrap()[..],
    )
    .unwrap();
    let mut forged = plain.clone();
    let victim_lsn = tidemark::wal::Segment { timeline: base.timeline, number: after_base }.start(size);
    forged[8..16].copy_from_slice(&victim_lsn.0.to_le_bytes());
    let stored = tidemark::repo::pipeline::encrypt_small(
        &zstd::encode_all(&forged[..], 1).unwrap(),
        &tidemark::keys::Recipients::parse(&w.repo_config.recipients).unwrap(),
    )
    .unwrap();
    std::fs::remove_dir_all(&victim_dir).unwrap();
    std::fs::create_dir_all(&victim_dir).unwrap();
    let sha = hex::encode(sha2::Sha256::digest(&forged));
    std::fs::write(victim_dir.join(format!("{sha}.zst.age")), stored).unwrap();
    // Signed with the repository's own key: this is a wrong content written by tidemark
    // itself (a bug), not an attack, which the signature refuses first (tests/it/signing.rs).
    w.core.repo.sign(&tidemark::repo::layout::wal_object("shop", &victim, &sha).unwrap(), &sha).await.unwrap();
    tidemark::pgcluster::hand_over(&victim_dir).unwrap();
    archive::fetch(&w.core.repo, &identities, "shop", &victim, &dest).await.expect("the header is right");
    let failed = pitr::restore(&w.core, &opts, &crate::support::actor()).await.unwrap_err();
    assert_eq!(failed.kind(), ErrorKind::Integrity, "{}", failed.report());
    assert!(failed.message().contains("recovery ended at"), "{}", failed.report());
    assert!(failed.report().contains(&victim), "{}", failed.report());
    assert!(!pgdata.exists());

    // 3. The original object back: the restore brings back every commit.
    std::fs::remove_dir_all(&victim_dir).unwrap();
    std::fs::create_dir_all(&victim_dir).unwrap();
    std::fs::write(&victim_file, original).unwrap();
    std::fs::write(format!("{}.sig", victim_file.display()), original_sig).unwrap();
    tidemark::pgcluster::hand_over(&victim_dir).unwrap();
    let got = markers_after_restore(&w, Target::Latest).await;
    assert_eq!(got, set(&["before-base", "a", "b", "c", "d"]));

    // Issue 30.14: a WAL signature removed (written with the bucket's credentials only) is
    // `integrity`, also where the restore first checks that the server can fetch WAL (it
    // said `config`, exit 3).
    let sig = format!("{}.sig", victim_file.display());
    let kept_sig = std::fs::read(&sig).unwrap();
    std::fs::remove_file(&sig).unwrap();
    let failed = pitr::restore(&w.core, &opts, &crate::support::actor()).await.unwrap_err();
    assert_eq!(failed.kind(), ErrorKind::Integrity, "{}", failed.report());
    assert!(!pgdata.exists());
    std::fs::write(&sig, kept_sig).unwrap();
    tidemark::pgcluster::hand_over(&victim_dir).unwrap();
    // ... and a damaged base backup manifest: it is left out, and the target it would have
    // served is `integrity` naming it (it was `refused`, "outside the window").
    let manifest = w.repo_dir().join("workspaces/shop/base").join(&base.id).join("manifest.json.age");
    let kept_manifest = std::fs::read(&manifest).unwrap();
    let mut damaged = kept_manifest.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x01;
    std::fs::write(&manifest, damaged).unwrap();
    let failed = pitr::restore(&w.core, &opts, &crate::support::actor()).await.unwrap_err();
    assert_eq!(failed.kind(), ErrorKind::Integrity, "{}", failed.report());
    assert!(failed.report().contains(&base.id), "{}", failed.report());
    assert!(!pgdata.exists());
    std::fs::write(&manifest, kept_manifest).unwrap();

    // Issue 11.11: a damaged base backup tar is named.
    let tar = w.repo_dir().join("workspaces/shop/base").join(&base.id).join("base.tar.zst.age");
    let mut bytes = std::fs::read(&tar).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&tar, bytes).unwrap();
    let failed = pitr::restore(&w.core, &PitrRestoreOptions { start: false, ..opts }, &crate::support::actor()).await;
    let failed = failed.unwrap_err();
    assert_eq!(failed.kind(), ErrorKind::Integrity, "{}", failed.report());
    assert!(failed.report().contains(&format!("{}/base.tar.zst.age", base.id)), "{}", failed.report());
    assert!(!pgdata.exists());

    // Issue 11.11: plain `check` only looked for WAL objects; a truncated one is now found by
    // authenticating its last chunk (its stored size is recorded nowhere).
    let plain = crate::support::check(&w.core, false).await.unwrap();
    assert!(plain.problems.iter().all(|p| !p.contains(&next)), "{:?}", plain.problems);
    let len = std::fs::metadata(&next_file).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&next_file).unwrap().set_len(len - 100).unwrap();
    let plain = crate::support::check(&w.core, false).await.unwrap();
    assert!(plain.problems.iter().any(|p| p.contains(&next)), "{:?}", plain.problems);
}

/// Issue 12.1: as root, the server could not read the identity and `pitr restore --start`
/// failed late with exit 1, leaving its data directory. `wal setup` checks as the server's
/// OS user and prints the fix; `pitr restore --start` runs the same check first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_setup_checks_as_the_servers_user_and_pitr_restore_checks_first() {
    let w = archiving_world().await;
    let exe = env!("CARGO_BIN_EXE_tidemark");
    let ready = tidemark::ops::wal::setup(&w.core, Some("shop"), true, Some(exe)).await.unwrap();
    assert!(ready.ok, "{ready:?}");
    if !nix::unistd::getuid().is_root() {
        return; // the server runs as this user: nothing to take away from it
    }
    // The identity and the signing key back to root only, mode 0600: what `init` as root
    // leaves. Issue 31.5: one run names both (it named one per run).
    let identity = w.identity_file();
    let signing_key = w.dir.path().join("signing.key");
    let root = (Some(nix::unistd::Uid::from_raw(0)), Some(nix::unistd::Gid::from_raw(0)));
    let modes =
        |file: &std::path::Path| (std::fs::metadata(file).unwrap().permissions(), nix::sys::stat::stat(file).unwrap());
    let (key_mode, key_owner) = modes(&signing_key);
    for file in [&identity, &signing_key] {
        nix::unistd::chown(file, root.0, root.1).unwrap();
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let report = tidemark::ops::wal::setup(&w.core, Some("shop"), true, Some(exe)).await.unwrap();
    assert!(!report.ok);
    assert_eq!(report.user, "postgres");
    assert_eq!(report.problems.len(), 2, "{report:?}");
    for file in [&identity, &signing_key] {
        assert!(
            report.fixes.iter().any(|f| f.contains("chmod 640") && f.contains(file.to_str().unwrap())),
            "{report:?}"
        );
    }
    // The signing key as it was: the rest of the test is about the identity.
    nix::unistd::chown(
        &signing_key,
        Some(nix::unistd::Uid::from_raw(key_owner.st_uid)),
        Some(nix::unistd::Gid::from_raw(key_owner.st_gid)),
    )
    .unwrap();
    std::fs::set_permissions(&signing_key, key_mode).unwrap();
    // Archiving alone does not need the identity.
    assert!(tidemark::ops::wal::setup(&w.core, Some("shop"), false, Some(exe)).await.unwrap().ok);
    let pgdata = w.dir.path().join("never-restored");
    let opts = latest_started(&pgdata);
    let refused = pitr::restore(&w.core, &opts, &crate::support::actor()).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Config, "{}", refused.report());
    assert!(refused.message().contains("chmod 640"), "{}", refused.message());
    assert!(!pgdata.exists(), "checked before anything is written");
}

/// Issue 31.2: root's `cargo install` copy (first in root's PATH) is out of the server
/// user's reach while the copy in a shared folder is not; `wal setup` run from the first
/// named it as what the server cannot run, with the step already done as the fix. It now
/// finds both, says the server runs the one it can (the same version), and passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_setup_names_every_installed_copy_and_picks_the_one_the_server_can_run() {
    if !nix::unistd::getuid().is_root() {
        return; // the server runs as this user: every copy this user runs, it runs
    }
    let w = archiving_world().await;
    let dirs = tempfile::tempdir().unwrap();
    let (private, public) = (dirs.path().join("root-cargo-bin"), dirs.path().join("local-bin"));
    std::fs::set_permissions(dirs.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for (dir, mode) in [(&private, 0o700), (&public, 0o755)] {
        std::fs::create_dir(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
        // A hard link: the same program under two paths, as two installs of one version.
        std::fs::hard_link(env!("CARGO_BIN_EXE_tidemark"), dir.join("tidemark")).unwrap();
    }
    let path = format!("{}:{}:/usr/bin:/bin", private.display(), public.display());
    let out = std::process::Command::new(private.join("tidemark"))
        .args(["--config", w.core.config.path.to_str().unwrap(), "--json", "wal", "setup", "--workspace", "shop"])
        .env("PATH", path)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    let public_copy = public.join("tidemark").display().to_string();
    assert_eq!(report["command"], public_copy.as_str(), "{report:#}");
    assert_eq!(report["ok"], true, "{report:#}");
    let copies: Vec<&str> = report["copies"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(
        copies.contains(&public_copy.as_str()) && copies.iter().any(|c| c.contains("root-cargo-bin")),
        "{copies:?}"
    );
    let note = report["note"].as_str().unwrap();
    assert!(note.contains("postgres cannot run this one") && note.contains("cargo uninstall tidemark"), "{note}");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
