//! No lock-in: with the identity and the stock `age`, `zstd` and `psql` tools, a person
//! restores a table without tidemark.

use std::process::Command;

use tidemark::pg::ConnSpec;

use crate::support::{content_fingerprint, create_database, world};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_restores_with_age_zstd_and_psql() {
    let w = world().await;
    let source = create_database(
        &w.cluster,
        "shop",
        "CREATE SCHEMA app; CREATE TABLE app.people (id int PRIMARY KEY, name text, tags text[], doc jsonb); \
         INSERT INTO app.people SELECT i, E'name\\t' || i, ARRAY['a', NULL], jsonb_build_object('i', i) \
         FROM generate_series(1, 5000) i;",
    )
    .await;
    let manifest = crate::support::snapshot_shop(&w.core).await.unwrap();
    let snap_dir = w.repo_dir().join("workspaces/shop/snapshots").join(&manifest.id);
    let identity = w.identity_file();
    let psql = tidemark::pg::tool(tidemark::pg::bin_dir(None).as_deref(), "psql");
    let target_url = w.cluster.url("by_hand");
    create_database(&w.cluster, "by_hand", "SELECT 1").await;

    // The commands docs/reference/repository-format.md gives for a restore by hand.
    let script = format!(
        "set -euo pipefail\n\
         age -d -i '{id}' '{dir}/schema-pre.sql.zst.age' | zstd -d | '{psql}' -X -q -v ON_ERROR_STOP=1 -d '{url}'\n\
         age -d -i '{id}' '{dir}/tables/app.people.copy.zst.age' | zstd -d > '{tmp}/people.copy'\n\
         '{psql}' -X -q -v ON_ERROR_STOP=1 -d '{url}' -c \"\\\\copy app.people FROM '{tmp}/people.copy'\"\n\
         age -d -i '{id}' '{dir}/schema-post.sql.zst.age' | zstd -d | '{psql}' -X -q -v ON_ERROR_STOP=1 -d '{url}'\n",
        id = identity.display(),
        dir = snap_dir.display(),
        psql = psql.display(),
        url = target_url,
        tmp = w.dir.path().display(),
    );
    let out = Command::new("bash").arg("-c").arg(&script).output().expect("bash");
    assert!(out.status.success(), "by-hand restore failed: {}", String::from_utf8_lossy(&out.stderr));
    let target = ConnSpec::parse(&target_url, None).unwrap();
    assert_eq!(content_fingerprint(&source).await, content_fingerprint(&target).await);
}
