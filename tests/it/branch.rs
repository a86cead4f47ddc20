//! Issue 16.3: branches. A branch is a workspace's database from a snapshot, beside the live
//! one, a row in the catalog (issue 32: never an entry in tidemark.toml); `set-live` makes
//! it the workspace's database with the guarded switch (undo possible); `delete` drops it.

use tidemark::ErrorKind;
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
    let w = world().await;
    let config_before = std::fs::read(&w.core.config.path).unwrap();
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

    // A row in the catalog, a record in the repository; the config untouched. It answers
    // to `shop--try-migration` as a workspace without schedules.
    assert_eq!(std::fs::read(&w.core.config.path).unwrap(), config_before, "tidemark.toml is not written");
    let row = w.core.catalog().await.unwrap().branch("shop", "try-migration").await.unwrap().unwrap();
    assert_eq!(row.database, "shop_branch_try_migration");
    let record = tidemark::repo::layout::branch("shop", "try-migration");
    assert!(w.core.repo.stored_size(&record).await.unwrap().is_some(), "the branch's record");
    let as_workspace = w.core.workspace_or_branch("shop--try-migration").await.unwrap();
    assert_eq!(as_workspace.config.branch_of.as_deref(), Some("shop"));
    assert_eq!(as_workspace.config.schedules.as_deref(), Some(&[][..]));
    // The workspace cannot be removed while it has a branch (its database would be left).
    let remove = tidemark::ops::workspace::WorkspaceRemoveOptions { name: "shop".into(), confirm: "shop".into() };
    let kept = tidemark::ops::workspace::remove(&w.core.config, &remove).await.unwrap_err();
    assert!(kept.kind() == ErrorKind::Usage && kept.message().contains("shop--try-migration"), "{}", kept.report());
    assert_eq!(std::fs::read(&w.core.config.path).unwrap(), config_before);
    let listed = branch::list(&w.core, Some("shop"), &actor()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].size_bytes.unwrap() > 0 && listed[0].age_seconds.unwrap() >= 0, "{listed:?}");
    assert!(!listed[0].in_config);
    // The function stacks came along: live and the branch differ by the step added since.
    let diff = stacks_ops::StackDiffOptions {
        workspace: Some("shop".into()),
        stack: "api/checkout".into(),
        from: "live".into(),
        to: "live".into(),
        to_workspace: Some("shop--try-migration".into()),
    };
    let report = stacks_ops::diff(&w.core, &diff, &actor()).await.unwrap();
    assert_eq!(report.changes.len(), 1, "{report:?}");
    // Every command takes it as a workspace, in this process and in the next one.
    let of_branch =
        tidemark::ops::snapshot::SnapshotOptions { workspace: "shop--try-migration".into(), ..Default::default() };
    let taken = tidemark::ops::snapshot::create(&w.core, &of_branch, &actor()).await.unwrap();
    assert_eq!(taken.workspace, "shop--try-migration");
    let next = tidemark::ops::Core::open(w.core.config.clone()).await.unwrap().with_branches().await;
    assert_eq!(next.workspace("shop--try-migration").unwrap().config.branch_of.as_deref(), Some("shop"));

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
    assert!(w.core.catalog().await.unwrap().branches(None).await.unwrap().is_empty());
    assert!(w.core.repo.stored_size(&record).await.unwrap().is_none(), "the record went with it");
    assert_eq!(std::fs::read(&w.core.config.path).unwrap(), config_before, "tidemark.toml is not written");
    let missing = branch::delete(&w.core, &delete, &actor()).await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);

    // A maker that died mid-restore left its row `creating` and a half-made database: the
    // next delete (or create) of the name, finding the branch's lock free, clears both.
    let catalog = w.core.catalog().await.unwrap();
    let left = tidemark::catalog::branches::BranchRow {
        workspace: "shop".into(),
        name: "crashed".into(),
        database: "shop_branch_crashed".into(),
        source: "snapshot x".into(),
        state: tidemark::catalog::branches::BranchState::Creating,
        created_at: chrono::Utc::now(),
        actor: None,
    };
    catalog.claim_branch(&left).await.unwrap();
    create_database(&w.cluster, "shop_branch_crashed", "CREATE TABLE half (id int);").await;
    let opts = BranchDeleteOptions { workspace: "shop".into(), name: "crashed".into(), confirm: "crashed".into() };
    let cleared = branch::delete(&w.core, &opts, &actor()).await.unwrap_err();
    assert_eq!(cleared.kind(), ErrorKind::NotFound, "{}", cleared.report());
    assert!(databases_like(&w.cluster, "shop_branch_crashed").await.is_empty(), "the half-made database went");
    assert!(catalog.branch("shop", "crashed").await.unwrap().is_none());
    catalog.claim_branch(&left).await.unwrap();
    let again = BranchCreateOptions { workspace: "shop".into(), name: "crashed".into(), ..Default::default() };
    branch::create(&w.core, &again, &actor()).await.unwrap();
    assert_eq!(branch::list(&w.core, Some("shop"), &actor()).await.unwrap().len(), 1);
}

/// Issue 32: branches made and deleted at once through both front ends (the API's jobs and
/// the command line's operations): each name is made once and deleted once, no database is
/// left without its branch, and tidemark.toml stays byte for byte as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branches_made_and_deleted_at_once_lose_nothing_and_leave_the_config_alone() {
    use reqwest::Method;
    let mut w = world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);").await;
    snapshot_shop(&w.core).await.unwrap();
    w.core.config.config.api.requests_per_second = 0;
    w.core.config.config.api.heavy_jobs_per_workspace = 100;
    w.core.config.config.api.heavy_jobs_per_token = 100;
    let config_before = std::fs::read(&w.core.config.path).unwrap();
    let server = crate::api::start(&w, tidemark::api::AddressRules::default()).await;
    let secret = crate::api::token(&w, "brancher", tidemark::access::Role::Admin, &[], &[]).await;
    let c = crate::api::client("127.0.0.4");
    let names = ["b0", "b1", "b2", "b3"];
    let base = format!("{}/v1/workspaces/shop/branches", server.base);

    // Eight creates: each name once over the API, once as the command line does.
    let api = names.map(|name| {
        let (c, base, secret) = (c.clone(), base.clone(), secret.clone());
        async move {
            let body = format!(r#"{{"name": "{name}"}}"#);
            let started = crate::api::call(&c, Method::POST, &base, Some(&secret), Some(&body)).await;
            assert_eq!(started.status(), reqwest::StatusCode::ACCEPTED);
            let origin = base.split("/v1/").next().unwrap().to_string();
            crate::api::finished(&c, &origin, &started, &secret).await["status"] == "succeeded"
        }
    });
    let cli = names.map(|name| {
        let core = w.core.clone();
        async move {
            let opts = BranchCreateOptions { workspace: "shop".into(), name: name.into(), ..Default::default() };
            match branch::create_recorded(&core, &opts, &actor()).await {
                Ok(_) => true,
                Err(e) => {
                    // Taken by the other front end: it holds the name (busy), or has made it.
                    assert!(matches!(e.kind(), ErrorKind::AlreadyExists | ErrorKind::Busy), "{}", e.report());
                    false
                }
            }
        }
    });
    let (api, cli) = tokio::join!(futures::future::join_all(api), futures::future::join_all(cli));
    for (i, name) in names.iter().enumerate() {
        assert!(api[i] ^ cli[i], "{name} made exactly once: api {} cli {}", api[i], cli[i]);
    }
    let made = branch::list(&w.core, Some("shop"), &actor()).await.unwrap();
    assert_eq!(made.len(), 4, "{made:?}");
    assert_eq!(databases_like(&w.cluster, "shop_branch_%").await.len(), 4);

    // Eight deletes: each name twice at once; one drops it, the other finds it gone or taken.
    let api = names.map(|name| {
        let (c, base, secret) = (c.clone(), base.clone(), secret.clone());
        async move {
            let url = format!("{base}/{name}?confirm={name}");
            crate::api::call(&c, Method::DELETE, &url, Some(&secret), None).await.status()
        }
    });
    let cli = names.map(|name| {
        let core = w.core.clone();
        async move {
            let opts = BranchDeleteOptions { workspace: "shop".into(), name: name.into(), confirm: name.into() };
            branch::delete(&core, &opts, &actor()).await.map_err(|e| e.kind())
        }
    });
    let (api, cli) = tokio::join!(futures::future::join_all(api), futures::future::join_all(cli));
    for (i, name) in names.iter().enumerate() {
        let by_api = api[i].is_success();
        assert!(by_api ^ cli[i].is_ok(), "{name} deleted exactly once: api {} cli {:?}", api[i], cli[i]);
        if by_api {
            assert!(matches!(cli[i], Err(ErrorKind::NotFound | ErrorKind::Busy)), "{:?}", cli[i]);
        } else {
            assert!(api[i] == reqwest::StatusCode::NOT_FOUND || api[i] == reqwest::StatusCode::CONFLICT, "{}", api[i]);
        }
    }
    assert!(branch::list(&w.core, None, &actor()).await.unwrap().is_empty());
    assert!(databases_like(&w.cluster, "shop_branch_%").await.is_empty(), "no database orphaned");
    assert_eq!(std::fs::read(&w.core.config.path).unwrap(), config_before, "tidemark.toml is not written");
}
