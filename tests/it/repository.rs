//! The repository on a real S3 server (moto): round trip with multipart uploads, and proof
//! that only ciphertext lands in the repository, on S3 and in a local folder.

use tidemark::ops::restore::{RestoreOptions, restore};
use tidemark::ops::snapshot::{self, SnapshotOptions};
use tidemark::pg::ConnSpec;

use crate::support::{S3Server, World, all_objects, content_fingerprint, create_database, world, world_with_repo};

const MARKER: &str = "PLAINTEXT-MARKER-7f3a9c";

fn shop_sql() -> String {
    format!(
        "CREATE TABLE notes (id int PRIMARY KEY, body text); \
         INSERT INTO notes SELECT i, '{MARKER} ' || i FROM generate_series(1, 1000) i; \
         COMMENT ON TABLE notes IS '{MARKER} in the schema too'; \
         CREATE TABLE noise (id int PRIMARY KEY, hex text); \
         INSERT INTO noise SELECT i, md5(random()::text) || md5(random()::text) FROM generate_series(1, 250000) i;"
    )
}

/// Every object but the descriptor is an age file, and the marker is nowhere in plaintext.
async fn assert_only_ciphertext(w: &World) {
    let objects = all_objects(&w.core).await;
    assert!(objects.len() > 3, "expected objects, got {}", objects.len());
    for (key, bytes) in &objects {
        if key.ends_with("repository.json") {
            continue;
        }
        assert!(bytes.starts_with(b"age-encryption.org/v1\n"), "{key} is not an age file");
        assert!(!bytes.windows(MARKER.len()).any(|win| win == MARKER.as_bytes()), "{key} holds plaintext");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_round_trip_with_multipart_and_only_ciphertext() {
    let s3 = S3Server::start().await;
    s3.create_bucket("backups").await;
    let cluster = tokio::task::spawn_blocking(crate::support::start_cluster).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let w = world_with_repo(cluster, dir, s3.repo_config("backups", "team/prod")).await;
    let source = create_database(&w.cluster, "shop", &shop_sql()).await;

    let opts = SnapshotOptions { workspace: "shop".into(), ..Default::default() };
    let manifest = snapshot::create(&w.core, &opts, &crate::support::actor()).await.unwrap();
    let noise = manifest.tables.iter().find(|t| t.name == "noise").unwrap();
    assert!(noise.parts[0].stored_size > 5 << 20, "noise must need a multipart upload");
    assert_only_ciphertext(&w).await;
    let keys: Vec<String> = all_objects(&w.core).await.into_iter().map(|(k, _)| k).collect();
    assert!(keys.iter().any(|k| k.ends_with("/manifest.json.age")));

    // A fresh Core with only the URL settings and the identity lists and restores.
    let fresh = tidemark::ops::Core::open(w.core.config.clone()).await.unwrap();
    assert_eq!(crate::support::list(&fresh, "shop").await.unwrap().len(), 1);
    let target_url = w.cluster.url("restored");
    let opts =
        RestoreOptions { snapshot: manifest.id.clone(), target: target_url.clone().into(), ..Default::default() };
    restore(&fresh, &opts, &crate::support::actor()).await.unwrap();
    let target = ConnSpec::parse(&target_url, None).unwrap();
    assert_eq!(content_fingerprint(&source).await, content_fingerprint(&target).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_repository_holds_only_ciphertext() {
    let w = world().await;
    create_database(&w.cluster, "shop", &shop_sql()).await;
    let opts = SnapshotOptions { workspace: "shop".into(), ..Default::default() };
    snapshot::create(&w.core, &opts, &crate::support::actor()).await.unwrap();
    assert_only_ciphertext(&w).await;
    // And on disk, not only through the store's eyes.
    for entry in walk(&w.repo_dir()) {
        let bytes = std::fs::read(&entry).unwrap();
        if entry.ends_with("repository.json") {
            continue;
        }
        if entry.to_string_lossy().ends_with(".sig") {
            // A signature names its object's key and hash, nothing of the content.
            let sig: tidemark::signing::SignatureFile = serde_json::from_slice(&bytes).unwrap();
            assert!(entry.to_string_lossy().ends_with(&format!("{}.sig", sig.key)), "{}", entry.display());
            continue;
        }
        assert!(bytes.starts_with(b"age-encryption.org/v1\n"), "{} is not an age file", entry.display());
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Issue 11.11: edits of repository.json (its id or recipients) were never reported by
/// `check`. Snapshots record its digest, and `check` names a change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_repository_descriptor_is_reported_by_check() {
    let w = world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int); INSERT INTO t VALUES (1);").await;
    crate::support::snapshot_shop(&w.core).await.unwrap();
    let clean = crate::support::check(&w.core, false).await.unwrap();
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    let path = w.repo_dir().join("repository.json");
    let original = std::fs::read_to_string(&path).unwrap();
    let mut descriptor: serde_json::Value = serde_json::from_str(&original).unwrap();
    // Reformatting alone is no edit.
    std::fs::write(&path, serde_json::to_string(&descriptor).unwrap()).unwrap();
    let reopened = tidemark::ops::Core::open(w.core.config.clone()).await.unwrap();
    assert!(crate::support::check(&reopened, false).await.unwrap().problems.is_empty());
    for edit in ["recipients", "id"] {
        match edit {
            "recipients" => descriptor["recipients"].as_array_mut().unwrap().push("age1attacker".into()),
            _ => descriptor["id"] = "0123456789abcdef0123456789abcdef".into(),
        }
        std::fs::write(&path, serde_json::to_string_pretty(&descriptor).unwrap()).unwrap();
        let reopened = tidemark::ops::Core::open(w.core.config.clone()).await.unwrap();
        let report = crate::support::check(&reopened, false).await.unwrap();
        assert!(
            report.problems.iter().any(|p| p.contains("repository.json was changed")),
            "{edit}: {:?}",
            report.problems
        );
        std::fs::write(&path, &original).unwrap();
        descriptor = serde_json::from_str(&original).unwrap();
    }
}
