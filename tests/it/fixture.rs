//! A repository written by the previous version (`tests/fixtures/repo-7008a29`, see its
//! README) reads, checks, restores and drills with this one: the repository format did not
//! change when the core was reshaped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tidemark::config::{Config, LoadedConfig, RepositoryConfig, WorkspaceConfig};
use tidemark::ops::Core;
use tidemark::ops::drill::{DrillOptions, DrillSource, drill};
use tidemark::ops::restore::{RestoreOptions, restore};
use tidemark::pg::ConnSpec;

use crate::support::{actor, check, start_cluster};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/repo-7008a29")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_written_by_the_previous_version_restores_checks_and_drills() {
    crate::support::init_logs();
    let cluster = tokio::task::spawn_blocking(start_cluster).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A copy: the drill adds its report to the repository it drills.
    copy_tree(&fixture().join("repo"), &dir.path().join("repo"));
    let mut repository = RepositoryConfig {
        url: url::Url::from_directory_path(dir.path().join("repo")).unwrap().to_string(),
        identity_file: Some(fixture().join("identity.txt")),
        ..Default::default()
    };
    let mut workspaces = BTreeMap::new();
    workspaces.insert("shop".to_string(), WorkspaceConfig::at(cluster.url("shop")));
    // Written before tidemark signed: refused as unsigned, naming the way out...
    let strict = LoadedConfig {
        config: Config::new(repository.clone(), workspaces.clone()),
        path: dir.path().join("tidemark.toml"),
    };
    let strict = Core::open(strict).await.unwrap();
    let err = crate::support::show(&strict, "latest", Some("shop")).await.unwrap_err();
    assert_eq!(err.kind(), tidemark::ErrorKind::NotFound, "{}", err.report());
    let read = strict.repo.read_manifests("shop", &strict.identities().unwrap()).await.unwrap();
    assert_eq!((read.items.len(), read.damaged.len()), (0, 1));
    assert!(read.damaged[0].problem.contains("is not signed") && read.damaged[0].problem.contains("--allow-unsigned"));
    // ...and read with --allow-unsigned.
    repository.allow_unsigned = true;
    let config = LoadedConfig { config: Config::new(repository, workspaces), path: dir.path().join("tidemark.toml") };
    let core = Core::open(config).await.unwrap();

    let ids = core.repo.list_snapshot_ids("shop").await.unwrap();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let manifest = crate::support::show(&core, "latest", Some("shop")).await.unwrap();
    assert!(manifest.tables.len() >= 6 && !manifest.stacks.is_empty(), "{:?}", manifest.tables.len());
    let media_files = manifest.media.as_ref().map(|m| m.files.len()).unwrap_or(0);
    assert!(media_files > 0);

    // Every object read back and verified.
    let report = check(&core, true).await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.objects_read > 10, "{report:?}");
    assert!(report.unsigned >= 1 && report.signed_by.is_empty(), "{report:?}");

    // Restored into a new database, with its media, exactly as recorded.
    let media_target = dir.path().join("media");
    let opts = RestoreOptions {
        snapshot: "latest".into(),
        workspace: Some("shop".into()),
        target: cluster.url("restored").into(),
        media_target: Some(media_target.display().to_string()),
        ..Default::default()
    };
    let restored = restore(&core, &opts, &actor()).await.unwrap();
    assert_eq!((restored.snapshot.as_str(), restored.media_files), (manifest.id.as_str(), media_files));
    let target = ConnSpec::parse(&cluster.url("restored"), None).unwrap();
    let verified = tidemark::drill::verify::verify_database(&target, &manifest).await.unwrap();
    assert!(verified.ok, "{verified:?}");

    // And a drill of it passes every check (tables, stacks, media, schema fingerprint).
    let drilled = drill(&core, &DrillOptions::new("shop", DrillSource::Snapshot(None)), &actor()).await.unwrap();
    let failed: Vec<_> = drilled.failed_checks().iter().map(|c| format!("{}: {}", c.name, c.details)).collect();
    assert!(drilled.passed, "{failed:?}");
}
