//! Issue 16.3: branches. A branch is a workspace's database from a snapshot, beside the live
//! one, registered in tidemark.toml without schedules; `set-live` makes it the workspace's
//! database with the guarded switch (undo possible); `delete` drops it.

use tidemark::ErrorKind;
use tidemark::config::LoadedConfig;
use tidemark::ops::branch::{self, BranchCreateOptions, BranchDeleteOptions, SetLiveOptions};
use tidemark::ops::inplace::{UndoOptions, undo};
use tidemark::ops::stacks as stacks_ops;
use tidemark::pg::ConnSpec;

use crate::support::{actor, content_fingerprint, create_database, databases_like, snapshot_shop, world};

const SHOP: &str = "CREATE TABLE orders (id serial PRIMARY KEY, total numeric NOT NULL); \
                    INSERT INTO orders (total) SELECT g * 1.5 FROM generate_series(1, 500) g;";

async fn put_stack(core: &tidemark::ops::Core, workspace: &str, json: &str) {
    let opts = stacks_ops::StackPutOptions {
        workspace: Some(workspace.into()),
        stack: "api/checkout".into(),
        json: json.into(),
        origin: "test".into(),
        author: None,
        message: None,
    };
    stacks_ops::put(core, &opts, &actor()).await.unwrap();
}

async fn run_sql(spec: &ConnSpec, sql: &str) {
    let mut conn = spec.connect().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut conn).await.unwrap();
    ConnSpec::close(conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_is_made_listed_compared_set_live_undone_and_deleted() {
    let mut w = world().await;
    let live = create_database(&w.cluster, "shop", SHOP).await;
    put_stack(&w.core, "shop", r#"{"steps": ["cart", "pay"]}"#).await;
    let snapshot = snapshot_shop(&w.core).await.unwrap();
    let at_snapshot = content_fingerprint(&live).await;
    // Live moves on after the snapshot.
    run_sql(&live, "DELETE FROM orders WHERE id > 250").await;
    put_stack(&w.core, "shop", r#"{"steps": ["cart", "pay", "ship"]}"#).await;
    let live_now = content_fingerprint(&live).await;

    let create = BranchCreateOptions {
        workspace: "shop".into(),
        name: "try-migration".into(),
        from: Some(snapshot.id.clone()),
        ..Default::default()
    };
    let made = branch::create(&w.core, &create, &actor()).await.unwrap();
    assert_eq!(made.branch.database, "shop_branch_try_migration");
    assert_eq!(made.branch.workspace, "shop--try-migration");
    assert_eq!(made.branch.source, format!("snapshot {}", snapshot.id));
    let branch_db = ConnSpec::parse(&w.cluster.url("shop_branch_try_migration"), None).unwrap();
    assert_eq!(content_fingerprint(&branch_db).await, at_snapshot, "the branch holds the snapshot");
    assert_eq!(content_fingerprint(&live).await, live_now, "live is untouched");

    // Registered in tidemark.toml as a workspace of its own, without schedules.
    let config = LoadedConfig::load(Some(&w.core.config.path)).unwrap();
    let entry = config.config.workspaces.get("shop--try-migration").unwrap();
    assert_eq!(entry.branch_of.as_deref(), Some("shop"));
    assert_eq!(entry.schedules.as_deref(), Some(&[][..]));
    let listed = branch::list(&w.core, Some("shop"), &actor()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].size_bytes.unwrap() > 0 && listed[0].age_seconds.unwrap() >= 0, "{listed:?}");
    // The function stacks came along: live and the branch differ by the step added since.
    w.core.config = config;
    let diff = stacks_ops::StackDiffOptions {
        workspace: Some("shop".into()),
        stack: "api/checkout".into(),
        from: "live".into(),
        to: "live".into(),
        to_workspace: Some("shop--try-migration".into()),
    };
    let report = stacks_ops::diff(&w.core, &diff, &actor()).await.unwrap();
    assert_eq!(report.changes.len(), 1, "{report:?}");

    // Refused: the same name again, a bad name, a snapshot and a time together.
    let again = branch::create(&w.core, &create, &actor()).await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::AlreadyExists, "{}", again.report());
    for bad in [
        BranchCreateOptions { name: "Bad Name".into(), ..create.clone() },
        BranchCreateOptions { name: "other".into(), time: Some("2026-01-01T00:00:00Z".into()), ..create.clone() },
    ] {
        assert_eq!(branch::create(&w.core, &bad, &actor()).await.unwrap_err().kind(), ErrorKind::Usage);
    }

    // A migration tried on the branch, then the branch made live.
    run_sql(&branch_db, "ALTER TABLE orders ADD COLUMN note text DEFAULT 'migrated'").await;
    let migrated = content_fingerprint(&branch_db).await;
    let set_live = SetLiveOptions {
        workspace: "shop".into(),
        name: "try-migration".into(),
        confirm: "shpo".into(),
        ..Default::default()
    };
    assert_eq!(branch::set_live(&w.core, &set_live, &actor()).await.unwrap_err().kind(), ErrorKind::Usage);
    assert_eq!(content_fingerprint(&live).await, live_now);
    let switched =
        branch::set_live(&w.core, &SetLiveOptions { confirm: "shop".into(), ..set_live }, &actor()).await.unwrap();
    assert_eq!(content_fingerprint(&live).await, migrated, "the branch is live");
    assert_eq!(switched.previous_database.as_deref(), Some("shop_before_branch_try_migration"));
    assert!(branch::list(&w.core, None, &actor()).await.unwrap().is_empty(), "no longer a branch");
    let safety = crate::support::list(&w.core, "shop").await.unwrap();
    assert!(safety.iter().any(|s| s.id == switched.safety_snapshot));
    // Undo swaps the replaced database back.
    let opts = UndoOptions { workspace: "shop".into(), confirm: "shop".into(), ..Default::default() };
    undo(&w.core, &opts, &actor()).await.unwrap();
    assert_eq!(content_fingerprint(&live).await, live_now);

    // Delete: only with the branch's name repeated; then the database and the entry are gone.
    let other = BranchCreateOptions { name: "scratch".into(), from: None, ..create };
    branch::create(&w.core, &other, &actor()).await.unwrap();
    let delete = BranchDeleteOptions { workspace: "shop".into(), name: "scratch".into(), confirm: "shop".into() };
    assert_eq!(branch::delete(&w.core, &delete, &actor()).await.unwrap_err().kind(), ErrorKind::Usage);
    assert!(databases_like(&w.cluster, "shop_branch_scratch").await.len() == 1);
    let delete = BranchDeleteOptions { confirm: "scratch".into(), ..delete };
    branch::delete(&w.core, &delete, &actor()).await.unwrap();
    assert!(databases_like(&w.cluster, "shop_branch_%").await.is_empty());
    let config = LoadedConfig::load(Some(&w.core.config.path)).unwrap();
    assert!(!config.config.workspaces.contains_key("shop--scratch"));
    assert!(config.config.workspaces.contains_key("shop"), "the rest of the file stays");
    let missing = branch::delete(&w.core, &delete, &actor()).await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
}
