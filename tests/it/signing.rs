//! Issue 15.2 and 15.3: what tidemark writes is signed, and what it reads must be signed by
//! a pinned key. The attacks hold the bucket's credentials (here: write access to the
//! repository folder) and the age recipients, not the signing key.

use std::collections::BTreeMap;

use tidemark::ErrorKind;
use tidemark::config::{Config, LoadedConfig, WorkspaceConfig};
use tidemark::keys::Recipients;
use tidemark::ops::Core;
use tidemark::ops::drill::{DrillOptions, DrillSource, drill};
use tidemark::ops::restore::{RestoreOptions, restore};
use tidemark::repo::Repository;
use tidemark::repo::layout;
use tidemark::repo::pipeline::encrypt_small;
use tidemark::signing::{Signing, SigningSecret};

use crate::support::{World, actor, check, create_database, list, show, snapshot_shop, world};

const SHOP: &str = "CREATE TABLE orders (id int PRIMARY KEY, total numeric); \
                    INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 500) g;";

/// A tidemark of the attacker's: the same repository, the same recipients (public), a
/// signing key of its own, and workspace `shop` pointing at a database of its choosing.
async fn attacker(w: &World, database: &str) -> Core {
    let mut cfg = w.repo_config.clone();
    let key = SigningSecret::generate();
    cfg.signing_key = None;
    cfg.trusted_signers = vec![key.public().to_string()];
    let signing = Signing { secret: Some(key), trust: tidemark::signing::Trust::default() };
    let repo = Repository::open(&cfg).await.unwrap().with_signing(signing);
    let mut workspaces = BTreeMap::new();
    workspaces.insert("shop".to_string(), WorkspaceConfig::at(w.cluster.url(database)));
    let config = LoadedConfig { config: Config::new(cfg.clone(), workspaces), path: w.dir.path().join("evil.toml") };
    let recipients = Recipients::parse(&cfg.recipients).unwrap();
    Core::from_parts(config, repo, Some(recipients), None)
}

fn restore_into(id: &str, w: &World, db: &str) -> RestoreOptions {
    RestoreOptions { snapshot: id.into(), target: w.cluster.url(db).into(), ..Default::default() }
}

fn manifest_file(w: &World, ws: &str, id: &str) -> std::path::PathBuf {
    w.repo_dir().join(layout::manifest(ws, id).as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_planted_with_the_recipients_is_not_listed_restored_or_drilled() {
    let w = world().await;
    create_database(&w.cluster, "shop", SHOP).await;
    create_database(&w.cluster, "evil", "CREATE TABLE orders (id int); INSERT INTO orders VALUES (666);").await;
    let genuine = snapshot_shop(&w.core).await.unwrap();
    // Before this change, a snapshot like this one listed as the newest and passed its drill.
    let planted = snapshot_shop(&attacker(&w, "evil").await).await.unwrap();
    assert!(planted.id > genuine.id);

    // Listed only as what cannot be read, saying why.
    let listed = list(&w.core, "shop").await.unwrap();
    let readable: Vec<&str> = listed.iter().filter(|s| s.problem.is_none()).map(|s| s.id.as_str()).collect();
    assert_eq!(readable, [genuine.id.as_str()]);
    let shown = listed.iter().find(|s| s.id == planted.id).unwrap();
    assert!(shown.kind.is_none() && shown.problem.as_ref().unwrap().contains("not among"), "{shown:?}");
    assert_eq!(show(&w.core, "latest", Some("shop")).await.unwrap().id, genuine.id);
    let err = restore(&w.core, &restore_into(&planted.id, &w, "r1"), &actor()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{}", err.report());
    assert!(err.message().contains("manifest.json.age") && err.message().contains("not among"), "{}", err.report());
    let drilled =
        drill(&w.core, &DrillOptions::new("shop", DrillSource::Snapshot(Some(planted.id.clone()))), &actor()).await;
    let err = drilled.map(|r| r.passed).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{}", err.report());
    let latest = drill(&w.core, &DrillOptions::new("shop", DrillSource::Snapshot(None)), &actor()).await.unwrap();
    assert!(latest.passed && latest.source == genuine.id, "{latest:?}");
    // check names it, with the signer that is not trusted.
    let checked = check(&w.core, false).await.unwrap();
    assert!(checked.problems.iter().any(|p| p.contains(&planted.id) && p.contains("not among")), "{checked:?}");
    // The genuine restore still works.
    restore(&w.core, &restore_into(&genuine.id, &w, "r2"), &actor()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_moved_and_replayed_manifests_are_refused() {
    let w = world().await;
    create_database(&w.cluster, "shop", SHOP).await;
    let m = snapshot_shop(&w.core).await.unwrap();
    let (file, sig) =
        (manifest_file(&w, "shop", &m.id), w.repo_dir().join(format!("{}.sig", layout::manifest("shop", &m.id))));
    let (original, original_sig) = (std::fs::read(&file).unwrap(), std::fs::read(&sig).unwrap());

    // Forged: the manifest edited (a table's rows dropped) and sealed to the recipients.
    let mut forged = m.clone();
    forged.tables.retain(|t| t.name != "orders");
    let recipients = Recipients::parse(&w.repo_config.recipients).unwrap();
    let sealed = encrypt_small(&serde_json::to_vec(&forged).unwrap(), &recipients).unwrap();
    std::fs::write(&file, &sealed).unwrap();
    let err = restore(&w.core, &restore_into(&m.id, &w, "f1"), &actor()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{}", err.report());
    assert!(err.message().contains("replaced") && err.message().contains(&m.id), "{}", err.report());
    // Forged, with a signature of the attacker's own key written beside it.
    let evil = SigningSecret::generate();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&sealed));
    std::fs::write(&sig, serde_json::to_vec(&evil.sign(layout::manifest("shop", &m.id).as_ref(), &sha)).unwrap())
        .unwrap();
    let err = restore(&w.core, &restore_into(&m.id, &w, "f2"), &actor()).await.unwrap_err();
    assert!(err.message().contains("not among"), "{}", err.report());
    // Unsigned: the signature removed.
    std::fs::remove_file(&sig).unwrap();
    let err = restore(&w.core, &restore_into(&m.id, &w, "f3"), &actor()).await.unwrap_err();
    assert!(err.message().contains("is not signed"), "{}", err.report());
    std::fs::write(&file, &original).unwrap();
    std::fs::write(&sig, &original_sig).unwrap();

    // Moved: workspace shop's manifest and signature copied into workspace other's folder.
    let moved = manifest_file(&w, "other", &m.id);
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::write(&moved, &original).unwrap();
    std::fs::write(format!("{}.sig", moved.display()), &original_sig).unwrap();
    let err = w.core.repo.read_manifest("other", &m.id, &w.core.identities().unwrap()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{}", err.report());
    assert!(err.message().contains("another object"), "{}", err.report());
    std::fs::remove_dir_all(moved.parent().unwrap()).unwrap();

    // Replayed: the old manifest and its signature under a new, newer id.
    let new_id = "29991231T235959Z-000000";
    let replayed = manifest_file(&w, "shop", new_id);
    std::fs::create_dir_all(replayed.parent().unwrap()).unwrap();
    std::fs::write(&replayed, &original).unwrap();
    std::fs::write(format!("{}.sig", replayed.display()), &original_sig).unwrap();
    let err = restore(&w.core, &restore_into(new_id, &w, "f4"), &actor()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{}", err.report());
    assert_eq!(show(&w.core, "latest", Some("shop")).await.unwrap().id, m.id, "the replay is not the newest");

    // The genuine one, back in place, restores.
    restore(&w.core, &restore_into(&m.id, &w, "ok"), &actor()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_file_swapped_for_another_valid_one_is_refused() {
    let w = world().await;
    let spec = create_database(&w.cluster, "shop", SHOP).await;
    let mut conn = spec.connect().await.unwrap();
    // Two real, finished segments of this cluster, copied as soon as they are finished.
    let copies = w.dir.path().join("copies");
    std::fs::create_dir_all(&copies).unwrap();
    let data = w.cluster.data_dir().join("pg_wal");
    let mut names = Vec::new();
    for table in ["more", "most"] {
        let create = format!("CREATE TABLE {table} AS SELECT g FROM generate_series(1, 1000) g");
        sqlx::query(sqlx::AssertSqlSafe(create)).execute(&mut conn).await.unwrap();
        let name: String =
            sqlx::query_scalar("SELECT pg_walfile_name(pg_switch_wal())").fetch_one(&mut conn).await.unwrap();
        std::fs::copy(data.join(&name), copies.join(&name)).unwrap();
        names.push(name);
    }
    let (first, second) = (names[0].clone(), names[1].clone());
    assert_ne!(first, second);
    let recipients = Recipients::parse(&w.repo_config.recipients).unwrap();
    // Someone with the bucket's credentials plants a signature where the first segment's
    // object will go: it vouches for nothing and is replaced, the push is not blocked.
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(copies.join(&first)).unwrap()));
    let planted = w.repo_dir().join(format!("{}.sig", layout::wal_object("shop", &first, &sha).unwrap()));
    std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
    let evil = SigningSecret::generate().sign(layout::wal_object("shop", &first, &sha).unwrap().as_ref(), &sha);
    std::fs::write(&planted, serde_json::to_vec(&evil).unwrap()).unwrap();
    let mut pushed = Vec::new();
    for name in [&first, &second] {
        pushed.push(tidemark::wal::archive::push(&w.core.repo, &recipients, "shop", &copies.join(name)).await.unwrap());
    }
    let ids = w.core.identities().unwrap();
    let fetched = w.dir.path().join("fetched");
    tidemark::wal::archive::fetch(&w.core.repo, &ids, "shop", &first, &fetched).await.unwrap();

    // The second segment's object and signature put in the first one's place.
    let key_of = |name: &str, sha: &str| w.repo_dir().join(layout::wal_object("shop", name, sha).unwrap().as_ref());
    let (first_obj, second_obj) = (key_of(&first, &pushed[0].sha256), key_of(&second, &pushed[1].sha256));
    std::fs::remove_file(&first_obj).unwrap();
    std::fs::remove_file(format!("{}.sig", first_obj.display())).unwrap();
    let swapped = key_of(&first, &pushed[1].sha256);
    std::fs::copy(&second_obj, &swapped).unwrap();
    std::fs::copy(format!("{}.sig", second_obj.display()), format!("{}.sig", swapped.display())).unwrap();
    let err =
        tidemark::wal::archive::fetch(&w.core.repo, &ids, "shop", &first, &w.dir.path().join("x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{}", err.report());
    assert!(err.message().contains("another object"), "{}", err.report());
    // Without the signature (written with the bucket's credentials only): unsigned.
    std::fs::remove_file(format!("{}.sig", swapped.display())).unwrap();
    let err =
        tidemark::wal::archive::fetch(&w.core.repo, &ids, "shop", &first, &w.dir.path().join("y")).await.unwrap_err();
    assert!(err.message().contains("is not signed"), "{}", err.report());
    let checked = check(&w.core, false).await.unwrap();
    assert!(checked.problems.iter().any(|p| p.contains(&first) && p.contains("is not signed")), "{checked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_check_names_the_signers_and_backups_need_a_key() {
    let mut w = world().await;
    create_database(&w.cluster, "shop", SHOP).await;
    let old = snapshot_shop(&w.core).await.unwrap();
    let old_signer = w.repo_config.trusted_signers[0].clone();
    // Rotation: a new key signs; both are trusted.
    let new_key = SigningSecret::generate();
    let trust = tidemark::signing::Trust {
        signers: vec![new_key.public(), tidemark::signing::SignerKey::parse(&old_signer).unwrap()],
        allow_unsigned: false,
    };
    w.core.repo = w.core.repo.clone().with_signing(Signing { secret: Some(new_key.clone()), trust });
    let new = snapshot_shop(&w.core).await.unwrap();
    let checked = check(&w.core, false).await.unwrap();
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    assert_eq!(checked.signed_by.get(&old_signer), Some(&1), "{checked:?}");
    assert_eq!(checked.signed_by.get(&new_key.public().to_string()), Some(&1), "{checked:?}");
    // The old key retired: what it signed is no longer trusted.
    let trust = tidemark::signing::Trust { signers: vec![new_key.public()], allow_unsigned: false };
    w.core.repo = w.core.repo.clone().with_signing(Signing { secret: Some(new_key), trust });
    let listed = list(&w.core, "shop").await.unwrap();
    let readable: Vec<&str> = listed.iter().filter(|s| s.problem.is_none()).map(|s| s.id.as_str()).collect();
    assert_eq!(readable, [new.id.as_str()]);
    let err = show(&w.core, &old.id, Some("shop")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{}", err.report());

    // A host without a signing key cannot back up (it would write what restores refuse)...
    let trust = tidemark::signing::Trust { signers: vec![], allow_unsigned: false };
    w.core.repo = w.core.repo.clone().with_signing(Signing { secret: None, trust });
    let err = snapshot_shop(&w.core).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{}", err.report());
    assert!(err.message().contains("signing-key"), "{}", err.report());
    // ...unless unsigned writes are allowed, and then reading them needs the same.
    let trust = tidemark::signing::Trust { signers: vec![], allow_unsigned: true };
    w.core.repo = w.core.repo.clone().with_signing(Signing { secret: None, trust });
    let unsigned = snapshot_shop(&w.core).await.unwrap();
    assert!(!w.repo_dir().join(format!("{}.sig", layout::manifest("shop", &unsigned.id))).exists());
    assert_eq!(show(&w.core, &unsigned.id, Some("shop")).await.unwrap().id, unsigned.id);
}

/// Issue 15.3: a signature checks by hand with standard tools (docs/guide/09-security.md "Checking a
/// signature by hand"): the public key from `trusted-signers`, the statement from the
/// signature file, `openssl pkeyutl -verify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_checks_by_hand_with_openssl() {
    let w = world().await;
    create_database(&w.cluster, "shop", SHOP).await;
    let m = snapshot_shop(&w.core).await.unwrap();
    let object = manifest_file(&w, "shop", &m.id);
    let script = r#"set -eu
        echo "$SIGNER" | base64 -d | openssl pkey -pubin -inform DER -out signer.pem
        jq -j '"tidemark-signature-1\n" + .key + "\n" + .sha256 + "\n"' "$OBJECT.sig" > statement
        jq -r .signature "$OBJECT.sig" | base64 -d > signature.bin
        test "$(jq -r .sha256 "$OBJECT.sig")" = "$(sha256sum "$OBJECT" | cut -d' ' -f1)"
        openssl pkeyutl -verify -pubin -inkey signer.pem -rawin -in statement -sigfile signature.bin"#;
    let run = |object: &std::path::Path| {
        std::process::Command::new("sh")
            .args(["-c", script])
            .current_dir(w.dir.path())
            .env("SIGNER", &w.repo_config.trusted_signers[0])
            .env("OBJECT", object)
            .output()
            .unwrap()
    };
    let out = run(&object);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("Signature Verified Successfully"), "{stdout} {out:?}");
    // The same check fails for a tampered statement (the object's key changed).
    let sig = std::fs::read_to_string(format!("{}.sig", object.display())).unwrap();
    std::fs::write(format!("{}.sig", object.display()), sig.replace(&m.id, "20000101T000000Z-000000")).unwrap();
    assert!(!run(&object).status.success());
}
