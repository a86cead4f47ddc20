//! Function stacks: two-tier history semantics, concurrency, import/export, and snapshots
//! that bring stacks back exactly as they were.

use tidemark::ErrorKind;
use tidemark::actor::{Actor, ActorKind};
use tidemark::config::WorkspaceConfig;
use tidemark::ops::Core;
use tidemark::ops::restore::{RestoreOptions, restore};
use tidemark::ops::stacks as ops;
use tidemark::stacks::{Selector, StackRef};

use crate::support::{create_database, world};

fn tester() -> Actor {
    Actor::new(ActorKind::Cli, "tester")
}

/// `stacks put` as the tester, written by `author`.
async fn put(
    c: &Core,
    ws: &str,
    s: &StackRef,
    json: &str,
    origin: &str,
    author: &str,
    message: Option<&str>,
) -> tidemark::Result<tidemark::stacks::log::PutOutcome> {
    let opts = ops::StackPutOptions {
        workspace: Some(ws.into()),
        stack: s.to_string(),
        json: json.into(),
        origin: origin.into(),
        author: Some(author.into()),
        message: message.map(str::to_string),
    };
    ops::put(c, &opts, &tester()).await
}

async fn publish(
    c: &Core,
    ws: &str,
    s: &StackRef,
    author: &str,
    message: Option<&str>,
) -> tidemark::Result<tidemark::stacks::log::Published> {
    let opts = ops::StackPublishOptions {
        workspace: Some(ws.into()),
        stack: s.to_string(),
        author: Some(author.into()),
        message: message.map(str::to_string),
    };
    ops::publish(c, &opts, &tester()).await
}

async fn revert(
    c: &Core,
    ws: &str,
    s: &StackRef,
    to: Selector,
    author: &str,
) -> tidemark::Result<tidemark::stacks::log::PutOutcome> {
    let opts = ops::StackRevertOptions {
        workspace: Some(ws.into()),
        stack: s.to_string(),
        to: to.to_string(),
        author: Some(author.into()),
    };
    ops::revert(c, &opts, &tester()).await
}

async fn import(c: &Core, ws: &str, dir: &std::path::Path) -> tidemark::Result<Vec<ops::ImportedFile>> {
    let opts = ops::StackImportOptions { workspace: Some(ws.into()), dir: dir.to_path_buf(), author: None };
    ops::import(c, &opts, &tester()).await
}

async fn show(c: &Core, ws: &str, s: &StackRef, state: Selector) -> tidemark::Result<(i64, ops::StackState)> {
    let opts = ops::StackShowOptions { workspace: Some(ws.into()), stack: s.to_string(), state: state.to_string() };
    ops::show(c, &opts, &tester()).await.map(|shown| (shown.change, shown))
}

async fn history(c: &Core, ws: &str, s: &StackRef) -> tidemark::Result<Vec<tidemark::stacks::log::ChangeInfo>> {
    ops::history(c, &ops::StackOptions { workspace: Some(ws.into()), stack: s.to_string() }, &tester()).await
}

async fn diff(c: &Core, ws: &str, s: &StackRef, from: Selector, to: Selector) -> tidemark::Result<ops::DiffReport> {
    let opts = ops::StackDiffOptions {
        workspace: Some(ws.into()),
        stack: s.to_string(),
        from: from.to_string(),
        to: to.to_string(),
        to_workspace: None,
    };
    ops::diff(c, &opts, &tester()).await
}

async fn export(c: &Core, ws: &str, dir: &std::path::Path, state: &str) -> tidemark::Result<Vec<std::path::PathBuf>> {
    let opts = ops::StackExportOptions { workspace: Some(ws.into()), dir: dir.to_path_buf(), state: state.into() };
    ops::export(c, &opts, &tester()).await
}

fn checkout() -> StackRef {
    StackRef::parse("api/checkout").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_publish_diff_revert_history() {
    let w = world().await;
    create_database(&w.cluster, "shop", "SELECT 1").await;
    let (c, s) = (&w.core, &checkout());
    let v1 = r#"{"route": "/checkout", "steps": ["cart", "pay"], "auth": {"required": true}}"#;
    let first = put(c, "shop", s, v1, "v1.json", "ana", Some("first")).await.unwrap();
    assert!(first.change.is_some());
    // Same document, other key order and spacing: nothing recorded.
    let same =
        put(c, "shop", s, r#"{"auth":{"required":true},"steps":["cart","pay"],"route":"/checkout"}"#, "x", "ana", None)
            .await
            .unwrap();
    assert_eq!(same.change, None);
    let published = publish(c, "shop", s, "ana", Some("go live")).await.unwrap();
    assert_eq!(published.version, 1);
    let again = publish(c, "shop", s, "ana", None).await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::AlreadyExists);

    let v2 = r#"{"route": "/pay", "steps": ["cart", "pay", "confirm"], "auth": {"required": true}}"#;
    put(c, "shop", s, v2, "v2.json", "bo", Some("new route")).await.unwrap();
    let d = diff(c, "shop", s, Selector::Published, Selector::Live).await.unwrap();
    let lines: Vec<String> = d.changes.iter().map(tidemark::stacks::diff::Change::render).collect();
    assert_eq!(lines, vec!["~ /route: \"/checkout\" -> \"/pay\"", "+ /steps/2: \"confirm\""]);

    // Bad input writes nothing.
    let before = history(c, "shop", s).await.unwrap().len();
    let bad = put(c, "shop", s, "{\"route\": ", "broken.json", "bo", None).await.unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::Usage);
    assert!(bad.message().contains("broken.json"));
    assert_eq!(history(c, "shop", s).await.unwrap().len(), before);
    assert_eq!(show(c, "shop", s, Selector::Version(9)).await.unwrap_err().kind(), ErrorKind::NotFound);
    let other = StackRef::parse("task/nightly").unwrap();
    assert_eq!(history(c, "shop", &other).await.unwrap_err().kind(), ErrorKind::NotFound);

    // Restore the published version: a revert, recorded as a new change.
    let reverted = revert(c, "shop", s, Selector::Version(1), "ana").await.unwrap();
    let (live_change, live) = show(c, "shop", s, Selector::Live).await.unwrap();
    assert_eq!(Some(live_change), reverted.change);
    let (_, original) = show(c, "shop", s, Selector::Version(1)).await.unwrap();
    assert_eq!(live.sha256, original.sha256);
    let history = history(c, "shop", s).await.unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[0].versions, vec![1]);
    assert_eq!(history[0].author, "ana");
    // Who asked is recorded beside the author people name.
    assert!(history.iter().all(|h| h.actor.as_deref() == Some("cli:tester")), "{history:?}");
    assert_eq!(history[1].message.as_deref(), Some("new route"));
    assert_eq!(history[2].reverted_to.as_deref(), Some("version:1"));
    // Reverting to what is already live records nothing.
    let noop = revert(c, "shop", s, Selector::Change(history[2].id), "ana").await.unwrap();
    assert_eq!(noop.change, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_lose_nothing_and_never_share_a_version() {
    let w = world().await;
    create_database(&w.cluster, "shop", "SELECT 1").await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..12 {
        let core = w.core.clone();
        tasks.spawn(async move {
            let s = StackRef::parse("function/score").unwrap();
            let put = put(&core, "shop", &s, &format!("{{\"writer\": {i}}}"), "t", "t", None).await.unwrap();
            let published = publish(&core, "shop", &s, "t", None).await;
            (put.change.expect("distinct content is always recorded"), published)
        });
    }
    let mut changes = Vec::new();
    let mut versions = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (change, published) = r.unwrap();
        changes.push(change);
        match published {
            Ok(p) => versions.push(p.version),
            Err(e) => assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{}", e.report()),
        }
    }
    changes.sort_unstable();
    changes.dedup();
    assert_eq!(changes.len(), 12);
    versions.sort_unstable();
    assert!(!versions.is_empty());
    assert_eq!(versions, (1..=versions.len() as i32).collect::<Vec<_>>());
    let s = StackRef::parse("function/score").unwrap();
    assert_eq!(history(&w.core, "shop", &s).await.unwrap().len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_records_only_what_changed() {
    let w = world().await;
    create_database(&w.cluster, "shop", "SELECT 1").await;
    let c = &w.core;
    for (name, body) in [("api/a", "{\"n\": 1}"), ("task/b", "[1, 2]"), ("trigger/c", "{\"on\": \"insert\"}")] {
        put(c, "shop", &StackRef::parse(name).unwrap(), body, "t", "t", None).await.unwrap();
    }
    let dir = w.dir.path().join("export");
    let files = export(c, "shop", &dir, "live").await.unwrap();
    assert_eq!(files.len(), 3);
    let unchanged = import(c, "shop", &dir).await.unwrap();
    assert!(unchanged.iter().all(|f| f.change.is_none()));
    std::fs::write(dir.join("task/b.json"), "[1, 2, 3]").unwrap();
    let imported = import(c, "shop", &dir).await.unwrap();
    let changed: Vec<&str> = imported.iter().filter(|f| f.change.is_some()).map(|f| f.stack.as_str()).collect();
    assert_eq!(changed, vec!["task/b"]);
    // No author named: the change is recorded as written by the actor.
    let newest = history(c, "shop", &StackRef::parse("task/b").unwrap()).await.unwrap().pop().unwrap();
    assert_eq!((newest.author.as_str(), newest.actor.as_deref()), ("tester", Some("cli:tester")));
    // A bad file anywhere: nothing of the import is written.
    std::fs::write(dir.join("api/a.json"), "{\"n\": 2}").unwrap();
    std::fs::write(dir.join("trigger/c.json"), "{not json").unwrap();
    assert_eq!(import(c, "shop", &dir).await.unwrap_err().kind(), ErrorKind::Usage);
    let (_, a) = show(c, "shop", &StackRef::parse("api/a").unwrap(), Selector::Live).await.unwrap();
    assert_eq!(a.content, serde_json::json!({"n": 1}));
    assert!(export(c, "shop", &w.dir.path().join("pub"), "published").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_snapshot_brings_stacks_back_as_they_were() {
    let w = world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE orders (id int PRIMARY KEY)").await;
    let (c, s) = (&w.core, &checkout());
    put(c, "shop", s, "{\"v\": 1}", "t", "ana", None).await.unwrap();
    publish(c, "shop", s, "ana", None).await.unwrap();
    put(c, "shop", s, "{\"v\": 2}", "t", "ana", None).await.unwrap();
    let manifest = crate::support::snapshot_shop(c).await.unwrap();
    assert_eq!(manifest.stacks.len(), 1);
    assert_eq!(manifest.stacks[0].latest_version, Some(1));
    let at_snapshot = history(c, "shop", s).await.unwrap();

    // Changed after the snapshot.
    put(c, "shop", s, "{\"v\": 3}", "t", "bo", None).await.unwrap();
    publish(c, "shop", s, "bo", None).await.unwrap();

    let url = w.cluster.url("shop_restored");
    let opts = RestoreOptions { snapshot: manifest.id.clone(), target: url.clone().into(), ..Default::default() };
    restore(c, &opts, &crate::support::actor()).await.unwrap();
    let mut config = c.config.clone();
    config.config.workspaces.insert("copy".into(), WorkspaceConfig::at(url));
    let copy = Core::from_parts(config, c.repo.clone(), None, None);
    let (_, live) = show(&copy, "copy", s, Selector::Live).await.unwrap();
    assert_eq!(live.content, serde_json::json!({"v": 2}));
    assert_eq!(live.sha256, manifest.stacks[0].live_sha256);
    let restored = history(&copy, "copy", s).await.unwrap();
    assert_eq!(
        restored.iter().map(|h| (h.id, h.content_sha256.clone(), h.versions.clone())).collect::<Vec<_>>(),
        at_snapshot.iter().map(|h| (h.id, h.content_sha256.clone(), h.versions.clone())).collect::<Vec<_>>()
    );
    // The restored log keeps working: new changes get fresh ids, versions continue.
    let next = put(&copy, "copy", s, "{\"v\": 4}", "t", "cy", None).await.unwrap();
    assert!(next.change.unwrap() > at_snapshot.last().unwrap().id);
    assert_eq!(publish(&copy, "copy", s, "cy", None).await.unwrap().version, 2);

    // --stacks-only: the live workspace gets the snapshot's stacks back as new changes.
    let later = StackRef::parse("task/later").unwrap();
    put(c, "shop", &later, "{\"made\": \"after\"}", "t", "bo", None).await.unwrap();
    let before = history(c, "shop", s).await.unwrap();
    let back =
        tidemark::ops::restore::restore_stacks(c, &manifest.id, Some("shop"), &Actor::new(ActorKind::Cli, "ops"))
            .await
            .unwrap();
    assert_eq!(back.len(), 1);
    let (_, live) = show(c, "shop", s, Selector::Live).await.unwrap();
    assert_eq!(live.content, serde_json::json!({"v": 2}));
    let after = history(c, "shop", s).await.unwrap();
    assert_eq!(after.len(), before.len() + 1, "history is kept; the restore is a new change");
    assert_eq!(after.last().unwrap().reverted_to.as_deref(), Some(format!("snapshot:{}", manifest.id).as_str()));
    assert_eq!(history(c, "shop", &later).await.unwrap().len(), 1);
    // Again: nothing changes, nothing is recorded.
    let again =
        tidemark::ops::restore::restore_stacks(c, &manifest.id, Some("shop"), &Actor::new(ActorKind::Cli, "ops"))
            .await
            .unwrap();
    assert_eq!(again[0].change, None);
}
