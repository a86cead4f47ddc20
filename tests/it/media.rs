//! Media: byte-exact round trips (local folder and S3 prefix), incremental snapshots that
//! upload nothing for unchanged media, and hostile names refused.

use std::io::Write;
use std::path::Path;

use tidemark::ErrorKind;
use tidemark::ops::Core;
use tidemark::ops::restore::{RestoreOptions, restore};
use tidemark::repo::manifest::Manifest;

use crate::support::{S3Server, World, create_database, world, world_with_repo};

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Files as (relative path, bytes), sorted.
fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

async fn media_world() -> (World, std::path::PathBuf) {
    let mut w = world().await;
    let media = w.dir.path().join("media");
    write(&media, "img/cat.png", &(0..=255u8).cycle().take(300_000).collect::<Vec<_>>());
    write(&media, "img/copy-of-cat.png", &(0..=255u8).cycle().take(300_000).collect::<Vec<_>>());
    write(&media, "docs/ünï côde.txt", b"hello");
    write(&media, "empty", b"");
    let random: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    write(&media, "video/big.bin", &random);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(media.join("video/big.bin"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let url = url::Url::from_directory_path(&media).unwrap().to_string();
    w.core.config.config.workspaces.get_mut("shop").unwrap().media = Some(url);
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int); INSERT INTO t VALUES (1);").await;
    (w, media)
}

async fn take(core: &Core) -> Manifest {
    crate::support::snapshot_shop(core).await.unwrap()
}

/// A prefix of the test's S3 server, opened with the repository's settings.
fn s3_store(url: &str, repo: &tidemark::config::RepositoryConfig) -> std::sync::Arc<dyn object_store::ObjectStore> {
    let cfg = tidemark::config::RepositoryConfig { url: url.into(), ..repo.clone() };
    tidemark::repo::store::open(&cfg, false).unwrap().store
}

fn restore_opts(m: &Manifest, target: String, media: Option<String>) -> RestoreOptions {
    RestoreOptions { snapshot: m.id.clone(), target: target.into(), media_target: media, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_round_trip_and_incremental_snapshots() {
    let (w, media) = media_world().await;
    let first = take(&w.core).await;
    let summary = first.media.as_ref().unwrap();
    assert_eq!(summary.files.len(), 5);
    assert_eq!(summary.new_files, 4, "two identical files share one object");
    assert_eq!(summary.new_bytes, summary.bytes - 300_000);

    // The hash cache now knows every file, so unchanged files are not read again.
    let cache = w.dir.path().join("cache").join(&w.core.repo.descriptor().id).join("shop.media.json");
    let cached: serde_json::Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert_eq!(cached["entries"].as_object().unwrap().len(), 5);

    // Unchanged media: the second snapshot uploads nothing.
    let second = take(&w.core).await;
    let again = second.media.as_ref().unwrap();
    assert_eq!((again.new_files, again.new_bytes), (0, 0));
    assert_eq!(again.files, summary.files);

    // One changed file: only it is uploaded.
    write(&media, "docs/ünï côde.txt", b"hello, world");
    let third = take(&w.core).await;
    assert_eq!(third.media.as_ref().unwrap().new_bytes, 12);

    // Restore the first snapshot's media byte for byte; a media target or no media is required.
    let err =
        restore(&w.core, &restore_opts(&first, w.cluster.url("c1"), None), &crate::support::actor()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
    assert!(err.message().contains("give a media target"), "{}", err.message());
    let target = w.dir.path().join("restored-media");
    let report = restore(
        &w.core,
        &restore_opts(&first, w.cluster.url("c1"), Some(target.display().to_string())),
        &crate::support::actor(),
    )
    .await
    .unwrap();
    assert_eq!(report.media_files, 5);
    let mut expected = tree(&media);
    for (path, bytes) in &mut expected {
        if path == "docs/ünï côde.txt" {
            *bytes = b"hello".to_vec();
        }
    }
    assert_eq!(tree(&target), expected);
    // Issue 11.11: restored files keep their recorded permission bits (they were all 0600).
    use std::os::unix::fs::PermissionsExt;
    for (path, _) in &expected {
        let mode = |root: &Path| std::fs::metadata(root.join(path)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&target), mode(&media), "{path}");
    }
    assert_eq!(std::fs::metadata(target.join("video/big.bin")).unwrap().permissions().mode() & 0o777, 0o750);
    let mut no_media = restore_opts(&first, w.cluster.url("c2"), None);
    no_media.no_media = true;
    assert_eq!(restore(&w.core, &no_media, &crate::support::actor()).await.unwrap().media_files, 0);

    // Issue 11.11: plain `check` size-checks media objects too (it only looked for them).
    assert!(crate::support::check(&w.core, false).await.unwrap().problems.is_empty());
    let objects = w.repo_dir().join("workspaces/shop/media");
    let object = std::fs::read_dir(&objects).unwrap().next().unwrap().unwrap().path();
    std::fs::OpenOptions::new().append(true).open(&object).unwrap().write_all(b"appended").unwrap();
    let report = crate::support::check(&w.core, false).await.unwrap();
    assert!(report.problems.iter().any(|p| p.contains("/media/") && p.contains("bytes, ")), "{:?}", report.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_media_names_are_refused() {
    let (w, _media) = media_world().await;
    let good = take(&w.core).await;
    let recipients = tidemark::keys::Recipients::parse(&w.core.config.config.repository.recipients).unwrap();
    let outside = w.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    for (i, bad) in ["../escape.txt", "/etc/evil", "img/../../escape", "a//b", "link/evil.txt"].iter().enumerate() {
        // A crafted manifest: same content, hostile name.
        let mut m = good.clone();
        m.id = format!("2020010{}T000000Z-00000{}", i + 1, i);
        m.media.as_mut().unwrap().files[0].path = bad.to_string();
        // Its snapshot objects: the good snapshot's, copied under the new id.
        let snaps = w.repo_dir().join("workspaces/shop/snapshots");
        for (rel, bytes) in tree(&snaps.join(&good.id)) {
            if !rel.contains("manifest.json.age") {
                write(&snaps.join(&m.id), &rel, &bytes);
            }
        }
        w.core.repo.commit_manifest(&m, &recipients).await.unwrap();
        let target = w.dir.path().join(format!("target{i}"));
        std::fs::create_dir_all(&target).unwrap();
        // A symlink inside the target that leads outside it.
        std::os::unix::fs::symlink(&outside, target.join("link")).unwrap();
        let opts = restore_opts(&m, w.cluster.url(&format!("h{i}")), Some(target.display().to_string()));
        let err = restore(&w.core, &opts, &crate::support::actor()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Integrity, "{bad}: {}", err.report());
        assert!(err.report().contains(bad.trim_start_matches('/').split('/').next().unwrap()), "{}", err.report());
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none(), "{bad} wrote outside the target");
        assert!(!w.dir.path().join("escape.txt").exists() && !Path::new("/etc/evil").exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_on_an_s3_prefix() {
    let s3 = S3Server::start().await;
    s3.create_bucket("backups").await;
    s3.create_bucket("media").await;
    let cluster = tokio::task::spawn_blocking(crate::support::start_cluster).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut w = world_with_repo(cluster, dir, s3.repo_config("backups", "repo")).await;
    create_database(&w.cluster, "shop", "SELECT 1").await;
    // Put media files in the bucket through the same store code.
    let store = s3_store("s3://media/shop/uploads", &w.repo_config);
    let big: Vec<u8> = (0..7_000_000u32).map(|i| (i.wrapping_mul(2246822519) >> 11) as u8).collect();
    for (path, bytes) in [("a/1.bin", big.clone()), ("b.txt", b"bee".to_vec())] {
        object_store::ObjectStoreExt::put(&store, &path.into(), bytes.into()).await.unwrap();
    }
    w.core.config.config.workspaces.get_mut("shop").unwrap().media = Some("s3://media/shop/uploads".into());
    let m = take(&w.core).await;
    assert_eq!(m.media.as_ref().unwrap().files.len(), 2);
    let report = restore(
        &w.core,
        &restore_opts(&m, w.cluster.url("copy"), Some("s3://media/restored".into())),
        &crate::support::actor(),
    )
    .await
    .unwrap();
    assert_eq!(report.media_files, 2);
    let restored = s3_store("s3://media/restored", &w.repo_config);
    let got = object_store::ObjectStoreExt::get(&restored, &"a/1.bin".into()).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.as_ref(), big.as_slice());
}

/// Issue 11.3 and 11.9: a symlink in the media folder to a file outside it was backed up
/// and restored as a copy of that file (anyone who can write the media folder could read
/// any file tidemark can). Symlinks, links to folders, loops and pipes are now skipped and
/// named; the snapshot of everything else commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_and_special_files_in_media_are_skipped_never_followed() {
    let (w, media) = media_world().await;
    let outside = w.dir.path().join("outside");
    write(&outside, "shadow", b"TOP SECRET outside the media folder");
    std::os::unix::fs::symlink(outside.join("shadow"), media.join("secret")).unwrap();
    std::os::unix::fs::symlink(&outside, media.join("img/etc")).unwrap();
    std::os::unix::fs::symlink(w.identity_file(), media.join("identity")).unwrap();
    std::os::unix::fs::symlink(media.join("loop"), media.join("loop")).unwrap();
    nix::unistd::mkfifo(&media.join("pipe"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();

    let m = take(&w.core).await;
    let summary = m.media.as_ref().unwrap();
    let paths: Vec<&str> = summary.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["docs/ünï côde.txt", "empty", "img/cat.png", "img/copy-of-cat.png", "video/big.bin"]);
    let skipped: Vec<(&str, &str)> = summary.skipped.iter().map(|s| (s.path.as_str(), s.reason.as_str())).collect();
    let names: Vec<&str> = skipped.iter().map(|(p, _)| *p).collect();
    assert_eq!(names, ["identity", "img/etc", "loop", "pipe", "secret"], "{skipped:?}");
    assert!(skipped.iter().filter(|(p, _)| *p != "pipe").all(|(_, r)| r.contains("symlink")), "{skipped:?}");
    assert!(m.warnings.iter().any(|w| w.contains("5 media files were skipped")), "{:?}", m.warnings);

    let target = w.dir.path().join("restored-media");
    restore(
        &w.core,
        &restore_opts(&m, w.cluster.url("c1"), Some(target.display().to_string())),
        &crate::support::actor(),
    )
    .await
    .unwrap();
    let restored = tree(&target);
    assert_eq!(restored.len(), 5);
    let secret = std::fs::read(outside.join("shadow")).unwrap();
    let identity = std::fs::read(w.identity_file()).unwrap();
    for (path, bytes) in &restored {
        assert!(bytes != &secret && bytes != &identity, "{path} is a copy of a file outside the media folder");
    }
}
