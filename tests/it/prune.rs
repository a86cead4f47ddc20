//! Retention on a real repository: pins, the newest snapshot, deletion manifest-first,
//! shared media kept while referenced, and garbage (crashed snapshots, orphaned media)
//! collected only after the grace period.

use std::time::{Duration, SystemTime};

use tidemark::ops::prune::{PruneOptions, prune, set_pin};
use tidemark::ops::snapshot::{self};

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
    set_pin(&w.core, &ids[0], None, true).await.unwrap();
    let snaps = w.repo_dir().join("workspaces/shop/snapshots");
    let media_objects = w.repo_dir().join("workspaces/shop/media");
    assert_eq!(files_below(&media_objects), 1);

    let opts = |dry_run: bool, grace: Duration| PruneOptions { workspace: "shop".into(), dry_run, grace, as_of: None };
    let dry = prune(&w.core, &opts(true, Duration::ZERO)).await.unwrap();
    let verdict: Vec<(String, bool)> = dry.decisions.iter().map(|d| (d.id.clone(), d.keep)).collect();
    assert_eq!(verdict, vec![(ids[0].clone(), true), (ids[1].clone(), false), (ids[2].clone(), true)]);
    assert!(dry.decisions[0].reasons.contains(&"pinned".to_string()));
    assert_eq!(snapshot::list(&w.core, "shop").await.unwrap().len(), 3, "a dry run deletes nothing");

    let done = prune(&w.core, &opts(false, Duration::ZERO)).await.unwrap();
    assert!(done.deleted_objects >= 3);
    let left: Vec<String> = snapshot::list(&w.core, "shop").await.unwrap().into_iter().map(|s| s.id).collect();
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
    let young = prune(&w.core, &opts(false, Duration::from_secs(3600))).await.unwrap();
    assert!(young.garbage_in_grace >= 1);
    assert!(crashed.join("public.t.copy.zst.age").exists());
    assert!(orphan.exists(), "while a snapshot may be writing, media are left alone");

    age(&crashed.join("public.t.copy.zst.age"), Duration::from_secs(86400));
    let old = prune(&w.core, &opts(false, Duration::from_secs(3600))).await.unwrap();
    assert_eq!(old.garbage_objects, 2, "{old:?}");
    assert!(!crashed.join("public.t.copy.zst.age").exists());
    assert!(!orphan.exists());
    assert_eq!(files_below(&media_objects), 1);

    // Unpinned, the old snapshot goes too; the newest never does.
    set_pin(&w.core, &ids[0], Some("shop"), false).await.unwrap();
    prune(&w.core, &opts(false, Duration::ZERO)).await.unwrap();
    let left: Vec<String> = snapshot::list(&w.core, "shop").await.unwrap().into_iter().map(|s| s.id).collect();
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
    let dry = prune(&w.core, &opts(true, Duration::ZERO)).await.unwrap();
    assert_eq!((dry.drill_reports_deleted, files_below(&reports)), (2, 12));
    let done = prune(&w.core, &opts(false, Duration::ZERO)).await.unwrap();
    assert_eq!((done.drill_reports_deleted, files_below(&reports)), (2, 10));
    assert!(!reports.join("20260101T000000Z-000000.json.age").exists());
    assert!(reports.join("20260101T000002Z-000000.json.age").exists());
}
