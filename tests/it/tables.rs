//! Issue 16.2: one table back. Only the picked tables' objects are read; their indexes,
//! constraints, defaults, owned sequences, triggers and row-level security come along;
//! foreign keys to tables that are not restored are left out and listed; into the live
//! database only under a new name, never over a table; a failure leaves nothing.

use sqlx::Row;
use tidemark::ErrorKind;
use tidemark::ops::restore::{RestoreOptions, RestoreTarget, restore};
use tidemark::pg::ConnSpec;
use tidemark::repo::layout;

use crate::support::{World, actor, content_fingerprint, create_database, snapshot_shop, world};

const SHOP: &str = "
CREATE TYPE state AS ENUM ('open', 'paid');
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer int NOT NULL REFERENCES customers (id),
    total numeric(12, 2) NOT NULL DEFAULT 0 CHECK (total >= 0),
    state state NOT NULL DEFAULT 'open',
    tags text[],
    note text,
    ticket serial UNIQUE
);
CREATE INDEX orders_by_total ON orders (total);
CREATE INDEX recent_orders ON orders (id) WHERE state = 'open';
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_orders ON orders USING (customer > 0);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.note := 'touched'; RETURN NEW; END $$;
CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION touch();
CREATE TABLE lines (order_id bigint REFERENCES orders (id), qty int);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;
CREATE TABLE events (id bigserial PRIMARY KEY, body text);
INSERT INTO customers (name) SELECT 'c' || g FROM generate_series(1, 50) g;
INSERT INTO orders (customer, total, state, tags, note)
    SELECT 1 + g % 50, g * 1.25, CASE WHEN g % 2 = 0 THEN 'paid'::state ELSE 'open' END,
           ARRAY['a', NULL, 'b c'], CASE WHEN g % 3 = 0 THEN NULL WHEN g % 3 = 1 THEN '' ELSE 'n' || g END
    FROM generate_series(1, 2000) g;
INSERT INTO lines SELECT g, 1 FROM generate_series(1, 2000) g;
INSERT INTO events (body) SELECT md5(g::text) || repeat(md5((g * 7)::text), 20) FROM generate_series(1, 20000) g;
";

fn tables(id: &str, picks: &[&str]) -> RestoreOptions {
    RestoreOptions {
        snapshot: id.into(),
        workspace: Some("shop".into()),
        tables: picks.iter().map(ToString::to_string).collect(),
        ..Default::default()
    }
}

async fn scalar(spec: &ConnSpec, sql: &str) -> String {
    let mut conn = spec.connect().await.unwrap();
    let v: Option<String> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(&mut conn).await.unwrap();
    ConnSpec::close(conn).await;
    v.unwrap_or_default()
}

async fn relations(spec: &ConnSpec) -> Vec<String> {
    let mut conn = spec.connect().await.unwrap();
    let names = sqlx::query(
        "SELECT c.relkind::text || ' ' || c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .map(|r| r.get::<String, _>(0))
    .collect();
    ConnSpec::close(conn).await;
    names
}

async fn databases(w: &World) -> Vec<String> {
    crate::support::databases_like(&w.cluster, "%")
        .await
        .into_iter()
        .filter(|d| !d.starts_with("template") && d != "tidemark_test_catalog")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_table_comes_back_into_a_new_database_with_what_belongs_to_it() {
    let w = world().await;
    let live = create_database(&w.cluster, "shop", SHOP).await;
    let snapshot = snapshot_shop(&w.core).await.unwrap();
    let at_snapshot = content_fingerprint(&live).await;

    let target = w.cluster.url("only_orders");
    let report = restore(
        &w.core,
        &RestoreOptions { target: target.clone().into(), ..tables(&snapshot.id, &["public.orders"]) },
        &actor(),
    )
    .await
    .unwrap();
    let done = report.table_restore.as_ref().unwrap();
    assert!(report.created_database);
    assert_eq!(report.tables, 1);
    assert_eq!(report.rows, 2000);
    // Only that table's objects (and the schema) were read: the big events table was not.
    assert!(done.bytes_read * 4 < done.snapshot_bytes, "{done:?}");
    // The foreign key to customers (not restored) is left out and named.
    assert_eq!(done.left_out_foreign_keys.len(), 1, "{done:?}");
    let key = &done.left_out_foreign_keys[0];
    assert_eq!((key.table.as_str(), key.references.as_str()), ("orders", "customers"));
    assert!(key.definition.starts_with("FOREIGN KEY (customer) REFERENCES"), "{key:?}");

    let spec = ConnSpec::parse(&target, None).unwrap();
    // The table, its indexes and sequences, nothing else (no customers, lines, events, view).
    let rels = relations(&spec).await;
    assert_eq!(
        rels,
        [
            "S orders_id_seq",
            "S orders_ticket_seq",
            "i orders_by_total",
            "i orders_pkey",
            "i orders_ticket_key",
            "i recent_orders",
            "r orders"
        ],
        "{rels:?}"
    );
    // Rows and sequence values as at the snapshot (an SQL-only fingerprint).
    let got = content_fingerprint(&spec).await;
    for key in ["r public.orders", "S public.orders_id_seq", "S public.orders_ticket_seq"] {
        assert_eq!(got.get(key), at_snapshot.get(key), "{key}");
    }
    // Defaults, the check, the identity, row-level security, its policy and the trigger came along.
    let def = scalar(
        &spec,
        "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'orders'::regclass AND adnum = 3",
    )
    .await;
    assert_eq!(def, "0");
    assert_eq!(scalar(&spec, "SELECT relrowsecurity::text FROM pg_class WHERE relname = 'orders'").await, "true");
    assert_eq!(scalar(&spec, "SELECT string_agg(polname, ',') FROM pg_policy").await, "own_orders");
    assert_eq!(
        scalar(&spec, "SELECT string_agg(tgname, ',') FROM pg_trigger WHERE NOT tgisinternal").await,
        "orders_touch"
    );
    assert_eq!(
        scalar(&spec, "SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint WHERE contype = 'c' AND conrelid = 'orders'::regclass").await,
        "orders_total_check"
    );
    let mut conn = spec.connect().await.unwrap();
    let next: i64 = sqlx::query_scalar("INSERT INTO orders (customer, total) VALUES (1, 1) RETURNING id")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(next, 2001, "the identity continues where the snapshot was");
    ConnSpec::close(conn).await;

    // Into a database that is not empty: refused, nothing changed.
    let before = content_fingerprint(&spec).await;
    let err = restore(
        &w.core,
        &RestoreOptions { target: target.into(), ..tables(&snapshot.id, &["public.customers"]) },
        &actor(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused, "{}", err.report());
    assert_eq!(content_fingerprint(&spec).await, before);
    // Two tables together keep the key between them.
    let both = w.cluster.url("two_tables");
    let report = restore(
        &w.core,
        &RestoreOptions { target: both.clone().into(), ..tables(&snapshot.id, &["orders", "customers"]) },
        &actor(),
    )
    .await
    .unwrap();
    assert!(report.table_restore.unwrap().left_out_foreign_keys.is_empty());
    let both = ConnSpec::parse(&both, None).unwrap();
    assert_eq!(
        scalar(&both, "SELECT string_agg(conname, ',') FROM pg_constraint WHERE contype = 'f'").await,
        "orders_customer_fkey"
    );
    // No scratch database is left behind.
    assert_eq!(databases(&w).await, ["only_orders", "postgres", "shop", "two_tables"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_comes_back_beside_the_live_one_and_never_over_it() {
    let w = world().await;
    let live = create_database(&w.cluster, "shop", SHOP).await;
    let snapshot = snapshot_shop(&w.core).await.unwrap();
    let at_snapshot = content_fingerprint(&live).await;
    let mut conn = live.connect().await.unwrap();
    sqlx::raw_sql(
        "DELETE FROM lines; DELETE FROM orders WHERE id % 4 = 0; INSERT INTO orders (customer, total) VALUES (2, 5);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    ConnSpec::close(conn).await;
    let damaged = content_fingerprint(&live).await;

    let into_live = |name: &str| RestoreOptions {
        target: RestoreTarget::BesideLive,
        rename_to: vec![name.to_string()],
        ..tables(&snapshot.id, &["public.orders"])
    };
    let report = restore(&w.core, &into_live("public.orders_restored"), &actor()).await.unwrap();
    let done = report.table_restore.unwrap();
    assert_eq!(done.tables[0].restored_as, "public.orders_restored");
    assert_eq!(done.tables[0].sequences, ["public.orders_restored_id_seq", "public.orders_restored_ticket_seq"]);
    let now = content_fingerprint(&live).await;
    // Everything live is as it was; the restored table holds the snapshot's rows.
    for (key, value) in &damaged {
        assert_eq!(now.get(key), Some(value), "{key} changed");
    }
    assert_eq!(now.get("r public.orders_restored"), at_snapshot.get("r public.orders"));
    assert_eq!(now.get("S public.orders_restored_id_seq"), at_snapshot.get("S public.orders_id_seq"));
    assert_eq!(now.len(), damaged.len() + 3, "the table and its two sequences: {now:?}");
    let rels = relations(&live).await;
    for index in [
        "orders_restored_pkey",
        "orders_restored_by_total",
        "orders_restored_ticket_key",
        "orders_restored_recent_orders",
    ] {
        assert!(rels.contains(&format!("i {index}")), "{index} missing from {rels:?}");
    }
    // The key to customers is left out (the live customers may have changed).
    assert_eq!(done.left_out_foreign_keys.len(), 1);

    // Over an existing table (the restored one, or the live one): refused, nothing changed.
    for name in ["public.orders_restored", "orders"] {
        let err = restore(&w.core, &into_live(name), &actor()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Refused, "{}", err.report());
        assert!(err.report().contains("never restores over an existing table"), "{}", err.report());
        assert_eq!(content_fingerprint(&live).await, now);
    }
    // Into live without a new name: refused before anything.
    let err = restore(&w.core, &RestoreOptions { rename_to: vec![], ..into_live("x") }, &actor()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage, "{}", err.report());
    // A table the snapshot does not have: named, with a hint.
    let err = RestoreOptions { tables: vec!["public.order".into()], ..into_live("o2") };
    let err = restore(&w.core, &err, &actor()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{}", err.report());
    assert!(err.report().contains("did you mean public.orders"), "{}", err.report());

    // A damaged object: the transaction rolls back, nothing is left in live.
    let part = &snapshot.tables.iter().find(|t| t.name == "orders").unwrap().parts[0];
    let key = layout::SnapshotObject::key_for_name("shop", &snapshot.id, &part.name).unwrap();
    let file = w.repo_dir().join(key.as_ref());
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    let err = restore(&w.core, &into_live("public.orders_again"), &actor()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{}", err.report());
    assert_eq!(content_fingerprint(&live).await, now);
    assert!(!relations(&live).await.iter().any(|r| r.contains("orders_again")));
    // Into a new database: it is dropped again.
    let target = w.cluster.url("gone_again");
    let err =
        restore(&w.core, &RestoreOptions { target: target.into(), ..tables(&snapshot.id, &["orders"]) }, &actor())
            .await
            .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{}", err.report());
    assert_eq!(databases(&w).await, ["postgres", "shop"]);
}

/// `--time`: a table, and a whole database, as they were at a moment (recovered in a
/// throwaway cluster, copied from there, checked against it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_and_a_database_come_back_from_a_moment() {
    use crate::pitr::{MARKERS_BEFORE_BASE, archive_everything, commit_marker, one_row};
    let w = crate::pitr::archiving_world().await;
    let live = create_database(&w.cluster, "shop", &format!("{MARKERS_BEFORE_BASE}{SHOP}")).await;
    crate::support::basebackup(&w.core).await.unwrap();
    commit_marker(&live, "a").await;
    let then = content_fingerprint(&live).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let between: chrono::DateTime<chrono::Utc> = one_row(&live, "SELECT clock_timestamp()").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut conn = live.connect().await.unwrap();
    sqlx::raw_sql("DELETE FROM lines; DELETE FROM orders WHERE id > 100").execute(&mut conn).await.unwrap();
    ConnSpec::close(conn).await;
    commit_marker(&live, "b").await;
    archive_everything(&live, &w.core).await;
    let at = RestoreOptions {
        snapshot: String::new(),
        time: Some(between.to_rfc3339()),
        tidemark_command: Some(env!("CARGO_BIN_EXE_tidemark").to_string()),
        workspace: Some("shop".into()),
        ..Default::default()
    };

    // One table as it was, beside the live one.
    let table = RestoreOptions {
        tables: vec!["public.orders".into()],
        target: RestoreTarget::BesideLive,
        rename_to: vec!["public.orders_then".into()],
        ..at.clone()
    };
    let report = restore(&w.core, &table, &actor()).await.unwrap();
    assert_eq!((report.snapshot.as_str(), report.time), ("", Some(between)));
    assert!(report.point_in_time.is_some());
    let done = report.table_restore.unwrap();
    assert_eq!(done.tables[0].rows, 2000);
    let now = content_fingerprint(&live).await;
    assert_eq!(now.get("r public.orders_then"), then.get("r public.orders"));
    assert_eq!(now.get("S public.orders_then_id_seq"), then.get("S public.orders_id_seq"));
    assert_ne!(now.get("r public.orders"), then.get("r public.orders"), "the live table is left as it is");

    // The whole database as it was, into a new one.
    let whole = RestoreOptions { target: w.cluster.url("shop_then").into(), ..at.clone() };
    let report = restore(&w.core, &whole, &actor()).await.unwrap();
    assert!(report.created_database && report.tables > 5 && report.rows > 22_000, "{report:?}");
    let copy = ConnSpec::parse(&w.cluster.url("shop_then"), None).unwrap();
    assert_eq!(content_fingerprint(&copy).await, then);

    // Both a snapshot and a moment, or a moment outside the window: refused, nothing made.
    let both = RestoreOptions { snapshot: "latest".into(), target: w.cluster.url("nope").into(), ..at.clone() };
    assert_eq!(restore(&w.core, &both, &actor()).await.unwrap_err().kind(), ErrorKind::Usage);
    let early =
        RestoreOptions { time: Some("2001-01-01T00:00:00Z".into()), target: w.cluster.url("nope").into(), ..at };
    assert_eq!(restore(&w.core, &early, &actor()).await.unwrap_err().kind(), ErrorKind::Refused);
    assert!(!crate::support::databases_like(&w.cluster, "nope").await.iter().any(|d| d == "nope"));
}
