//! Issue 16.4: export and import. A bundle holds the workspace whole (schema, rows, stacks,
//! media), standard tools read it, import brings back exactly the source, and a bundle
//! whose bytes were altered is refused with nothing left behind.

use std::process::Command;

use tidemark::ErrorKind;
use tidemark::keys::GeneratedIdentity;
use tidemark::ops::export::{ExportOptions, export};
use tidemark::ops::import::{ImportOptions, import};
use tidemark::pg::ConnSpec;

use crate::support::{
    World, actor, content_fingerprint, create_database, databases_like, schema_of, snapshot_shop, world,
};

const HARD_CASES: &str = include_str!("fixtures/hard_cases.sql");

fn export_opts(to: &std::path::Path) -> ExportOptions {
    ExportOptions { workspace: "shop".into(), to: to.to_path_buf(), ..Default::default() }
}

fn import_opts(w: &World, file: &std::path::Path, db: &str) -> ImportOptions {
    ImportOptions { file: file.to_path_buf(), target: w.cluster.url(db).into(), ..Default::default() }
}

fn sh(script: &str) -> String {
    let out = Command::new("bash").arg("-c").arg(format!("set -euo pipefail\n{script}")).output().expect("bash");
    assert!(out.status.success(), "{script}\nfailed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_workspace_imports_exactly_and_reads_with_standard_tools() {
    let w = world().await;
    let source = create_database(&w.cluster, "shop", HARD_CASES).await;
    let stack = tidemark::ops::stacks::StackPutOptions {
        workspace: Some("shop".into()),
        stack: "api/checkout".into(),
        json: r#"{"steps": ["cart", "pay"]}"#.into(),
        origin: "test".into(),
        ..Default::default()
    };
    tidemark::ops::stacks::put(&w.core, &stack, &actor()).await.unwrap();
    snapshot_shop(&w.core).await.unwrap();
    let file = w.dir.path().join("shop.tidemark");
    let report = export(&w.core, &export_opts(&file), &actor()).await.unwrap();
    assert_eq!(report.encrypted_to.len(), 1);
    assert!(report.warning.is_none() && report.stacks == 1 && report.rows > 0, "{report:?}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600, "only the owner reads it");
    // The file is an age file: nothing of the rows is readable without the identity.
    let head = std::fs::read(&file).unwrap();
    assert!(head.starts_with(b"age-encryption.org/v1"));
    assert!(!head.windows(6).any(|w| w == b"CREATE"));
    // A second export to the same file is refused; the first stays.
    let again = export(&w.core, &export_opts(&file), &actor()).await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::AlreadyExists);

    // Import: the same rows, sequences and schema as the source.
    let imported = import(&w.core, &import_opts(&w, &file, "shop_imported"), &actor()).await.unwrap();
    assert!(imported.created_database);
    let copy = ConnSpec::parse(&w.cluster.url("shop_imported"), None).unwrap();
    assert_eq!(content_fingerprint(&copy).await, content_fingerprint(&source).await);
    assert_eq!(schema_of(&copy).await, schema_of(&source).await);

    // By hand, with age, zstd, tar, sha256sum and psql only (the commands of docs/guide/04-restores.md).
    let out = w.dir.path().join("by-hand");
    std::fs::create_dir_all(&out).unwrap();
    let psql = tidemark::pg::tool(tidemark::pg::bin_dir(None).as_deref(), "psql");
    let url = w.cluster.url("by_hand");
    create_database(&w.cluster, "by_hand", "SELECT 1").await;
    let tables = sh(&format!(
        "cd '{out}'\n\
         age -d -i '{id}' '{file}' | zstd -d | tar x\n\
         sha256sum -c --quiet SHA256SUMS\n\
         '{psql}' -X -q -v ON_ERROR_STOP=1 -d '{url}' -f schema.sql -f load.psql -f post-data.sql\n\
         jq -r '.tables | length' manifest.json",
        out = out.display(),
        id = w.identity_file().display(),
        file = file.display(),
        psql = psql.display(),
    ));
    assert!(tables.trim().lines().last().unwrap().parse::<usize>().unwrap() > 3, "{tables}");
    let stack_doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("stacks/api/checkout.json")).unwrap()).unwrap();
    assert_eq!(stack_doc, serde_json::json!({"steps": ["cart", "pay"]}));
    // Every table's rows and every sequence as the source has them (materialized views are
    // refreshed by hand after: `manifest.json` lists them).
    let by_hand = ConnSpec::parse(&url, None).unwrap();
    let (got, want) = (content_fingerprint(&by_hand).await, content_fingerprint(&source).await);
    let data = |m: &std::collections::BTreeMap<String, String>| {
        m.iter().filter(|(k, _)| !k.starts_with("m ")).map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>()
    };
    assert_eq!(data(&got), data(&want));
    assert_eq!(schema_of(&by_hand).await, schema_of(&source).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_bundle_is_refused_and_leaves_nothing() {
    let w = world().await;
    create_database(&w.cluster, "shop", HARD_CASES).await;
    snapshot_shop(&w.core).await.unwrap();

    // Encrypted: one flipped byte anywhere fails age's authentication.
    let file = w.dir.path().join("shop.tidemark");
    export(&w.core, &export_opts(&file), &actor()).await.unwrap();
    let original = std::fs::read(&file).unwrap();
    for at in [original.len() / 3, original.len() - 40] {
        let mut bytes = original.clone();
        bytes[at] ^= 0x20;
        std::fs::write(&file, &bytes).unwrap();
        let err = import(&w.core, &import_opts(&w, &file, "altered"), &actor()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Integrity, "{}", err.report());
        assert!(databases_like(&w.cluster, "altered").await.is_empty(), "the database is dropped again");
    }

    // Plain: a warning, no encryption; a changed file inside fails SHA256SUMS.
    let plain = w.dir.path().join("plain.tidemark");
    let report = export(&w.core, &ExportOptions { plain: true, ..export_opts(&plain) }, &actor()).await.unwrap();
    assert!(report.warning.as_deref().unwrap().contains("NOT encrypted"));
    assert!(report.encrypted_to.is_empty());
    let dir = w.dir.path().join("plain-x");
    std::fs::create_dir_all(&dir).unwrap();
    sh(&format!(
        "cd '{d}' && zstd -d < '{f}' | tar x && sed -i '1s/^./X/' data/0001-*.copy && \
         tar c manifest.json schema.sql data load.psql post-data.sql SHA256SUMS | zstd -q > '{d}/edited.tidemark'",
        d = dir.display(),
        f = plain.display()
    ));
    let err = import(&w.core, &import_opts(&w, &dir.join("edited.tidemark"), "edited"), &actor()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{}", err.report());
    assert!(err.report().contains("do not match SHA256SUMS"), "{}", err.report());
    assert!(databases_like(&w.cluster, "edited").await.is_empty());
    // Not a bundle at all.
    std::fs::write(w.dir.path().join("junk"), b"hello").unwrap();
    let err = import(&w.core, &import_opts(&w, &w.dir.path().join("junk"), "junk"), &actor()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage, "{}", err.report());

    // To another recipient: this host's identity cannot read it; the recipient's can.
    let other = GeneratedIdentity::generate();
    let theirs = w.dir.path().join("theirs.tidemark");
    let opts = ExportOptions { recipients: vec![other.recipient.clone()], ..export_opts(&theirs) };
    export(&w.core, &opts, &actor()).await.unwrap();
    let err = import(&w.core, &import_opts(&w, &theirs, "theirs"), &actor()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Key, "{}", err.report());
    let key = w.dir.path().join("other.txt");
    other.write_new_file(&key).unwrap();
    sh(&format!("age -d -i '{}' '{}' | zstd -d | tar t | grep -q SHA256SUMS", key.display(), theirs.display()));

    // Schema only, and one table's data.
    let schema = w.dir.path().join("schema.tidemark");
    let report = export(&w.core, &ExportOptions { schema_only: true, ..export_opts(&schema) }, &actor()).await.unwrap();
    assert_eq!(report.rows, 0);
    import(&w.core, &import_opts(&w, &schema, "schema_only"), &actor()).await.unwrap();
    let unknown = ExportOptions { tables: vec!["public.nope".into()], ..export_opts(&w.dir.path().join("t")) };
    assert_eq!(export(&w.core, &unknown, &actor()).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert!(!w.dir.path().join("t").exists() && !w.dir.path().join("t.partial").exists());
}

/// `--format jsonl`: every column type comes back as it was, NULL apart from empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_round_trips_through_json_lines_with_every_type() {
    let w = world().await;
    let ddl = "CREATE TYPE mood AS ENUM ('sad', 'ok'); \
        CREATE TABLE things (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n numeric, n2 numeric(30, 10), \
          f float8, b bytea, arr int[], arr2 text[][], j jsonb, js json, ts timestamptz, t timestamp, d date, \
          iv interval, u uuid, m mood, txt text, flag boolean, big bigint, doubled int GENERATED ALWAYS AS (2 * 21) STORED);";
    let rows = "INSERT INTO things (n, n2, f, b, arr, arr2, j, js, ts, t, d, iv, u, m, txt, flag, big) VALUES \
        (1.50, 12345678901234567890.0123456789, 0.1, '\\x00ff10', '{1,NULL,3}', '{{a,b},{\"c d\",NULL}}', \
         '{\"k\": [1, \"two\", null, {\"q\": \"\\\"quoted\\\" \\\\ back\"}], \"u\": \"日本\"}', '{\"raw\":  1}', \
         '2026-11-29 10:15:00.123456+00', '2026-01-01 00:00:00', '2026-02-28', '1 day 02:03:04', \
         'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'ok', E'line\\nnext\\ttab \\\\ backslash', true, 9223372036854775807), \
        ('NaN', NULL, 'Infinity', '', '{}', NULL, 'null', NULL, 'infinity', NULL, '-infinity', NULL, NULL, NULL, '', false, -1), \
        (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);";
    let live = create_database(&w.cluster, "shop", &format!("{ddl} {rows}")).await;
    let file = w.dir.path().join("things.jsonl");
    let opts = ExportOptions {
        tables: vec!["public.things".into()],
        format: Some("jsonl".into()),
        plain: true,
        ..export_opts(&file)
    };
    let report = export(&w.core, &opts, &actor()).await.unwrap();
    assert_eq!(report.rows, 3);
    let text = std::fs::read_to_string(&file).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["arr"], serde_json::json!([1, null, 3]), "arrays are JSON arrays: {first}");
    assert_eq!(first["j"]["u"], "日本", "jsonb is nested: {first}");
    assert!(text.lines().nth(2).unwrap().contains("\"txt\":null"));

    // Into the same table elsewhere; and encrypted the same way.
    let other = create_database(&w.cluster, "other", ddl).await;
    let loaded = ImportOptions { table: Some("public.things".into()), ..import_opts(&w, &file, "other") };
    assert_eq!(import(&w.core, &loaded, &actor()).await.unwrap().rows, 3);
    let key = "r public.things";
    assert_eq!(content_fingerprint(&other).await.get(key), content_fingerprint(&live).await.get(key));
    let sealed = w.dir.path().join("things.jsonl.age");
    export(&w.core, &ExportOptions { plain: false, to: sealed.clone(), ..opts.clone() }, &actor()).await.unwrap();
    assert!(std::fs::read(&sealed).unwrap().starts_with(b"age-encryption.org/v1"));
    let again = create_database(&w.cluster, "again", ddl).await;
    let loaded = ImportOptions { table: Some("things".into()), ..import_opts(&w, &sealed, "again") };
    import(&w.core, &loaded, &actor()).await.unwrap();
    assert_eq!(content_fingerprint(&again).await.get(key), content_fingerprint(&live).await.get(key));

    // A line that is not JSON: nothing committed. A missing table: said so.
    std::fs::write(w.dir.path().join("bad.jsonl"), format!("{}\nnot json\n", text.lines().next().unwrap())).unwrap();
    let bad =
        ImportOptions { table: Some("things".into()), ..import_opts(&w, &w.dir.path().join("bad.jsonl"), "other") };
    let err = import(&w.core, &bad, &actor()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage, "{}", err.report());
    assert_eq!(content_fingerprint(&other).await.get(key), content_fingerprint(&live).await.get(key));
    let missing = ImportOptions { table: Some("nope".into()), ..import_opts(&w, &file, "other") };
    assert_eq!(import(&w.core, &missing, &actor()).await.unwrap_err().kind(), ErrorKind::NotFound);
    // Two tables, or a snapshot, with jsonl: refused.
    let two = ExportOptions { tables: vec!["things".into(), "things".into()], ..opts.clone() };
    assert_eq!(export(&w.core, &two, &actor()).await.unwrap_err().kind(), ErrorKind::Usage);
}

/// `import --replace`: the bundle goes in beside the live database, is checked, and only
/// then replaces it (after a pre-restore snapshot); undo swaps back; an altered bundle
/// leaves the live database as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_replaces_the_live_database_with_an_undo() {
    use tidemark::ops::inplace::{InPlaceOptions, UndoOptions, restore_in_place, undo};
    let w = world().await;
    let live = create_database(&w.cluster, "shop", HARD_CASES).await;
    snapshot_shop(&w.core).await.unwrap();
    let exported = content_fingerprint(&live).await;
    let file = w.dir.path().join("shop.tidemark");
    export(&w.core, &export_opts(&file), &actor()).await.unwrap();
    let mut conn = live.connect().await.unwrap();
    sqlx::raw_sql("DELETE FROM app.big WHERE true; CREATE TABLE app.later_table (x int)")
        .execute(&mut conn)
        .await
        .unwrap();
    ConnSpec::close(conn).await;
    let changed = content_fingerprint(&live).await;

    let replace = InPlaceOptions {
        workspace: "shop".into(),
        confirm: "shop".into(),
        bundle: Some(file.clone()),
        ..Default::default()
    };
    let report = restore_in_place(&w.core, &replace, &actor()).await.unwrap();
    assert_eq!(content_fingerprint(&live).await, exported);
    assert!(report.import.is_some() && report.verified_tables > 5, "{report:?}");
    let opts = UndoOptions { workspace: "shop".into(), confirm: "shop".into(), ..Default::default() };
    undo(&w.core, &opts, &actor()).await.unwrap();
    assert_eq!(content_fingerprint(&live).await, changed);

    // An altered bundle: refused before the switch, live as it was, nothing left beside it.
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    let err = restore_in_place(&w.core, &replace, &actor()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{}", err.report());
    assert!(err.report().contains("was not touched"), "{}", err.report());
    assert_eq!(content_fingerprint(&live).await, changed);
    assert!(databases_like(&w.cluster, "shop_restoring%").await.is_empty());
    // Without the confirmation: refused.
    let err =
        restore_in_place(&w.core, &InPlaceOptions { confirm: "x".into(), ..replace }, &actor()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
}

/// Exports made over the API are kept on the server until `prune` finds them older than
/// `[api] keep-exports`: then removed and named (a dry run only names them); younger ones,
/// other workspaces' and files that are not exports stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_removes_server_exports_older_than_keep_exports() {
    use tidemark::ops::prune::{PruneOptions, prune};
    let mut w = world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int PRIMARY KEY)").await;
    let (old, young) = ("a".repeat(32), "b".repeat(32));
    let file = |ws: &str, id: &str| tidemark::ops::link::export_file(&w.core, ws, id).unwrap();
    let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(24 * 3600);
    let mut made = Vec::new();
    for (ws, id, name) in [
        ("shop", old.as_str(), format!("{old}.tidemark")),
        ("shop", old.as_str(), format!("{}.tidemark.partial", "c".repeat(32))),
        ("shop", young.as_str(), format!("{young}.tidemark")),
        ("shop", old.as_str(), "notes.txt".to_string()),
        ("blog", old.as_str(), format!("{old}.tidemark")),
    ] {
        let path = file(ws, id).with_file_name(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"bundle").unwrap();
        if !path.to_string_lossy().contains(&young) {
            std::fs::File::options().write(true).open(&path).unwrap().set_modified(day_ago).unwrap();
        }
        made.push(path);
    }
    w.core.config.config.api.keep_exports = Some(std::time::Duration::from_secs(3600));
    let opts = |dry_run| PruneOptions { workspace: "shop".into(), dry_run, ..Default::default() };
    let dry = tidemark::ops::prune::prune_recorded(&w.core, &opts(true), &actor()).await.unwrap();
    assert_eq!(dry.exports_removed, [old.clone(), "c".repeat(32)]);
    // Issue 31.6: a dry run is not recorded as a prune.
    let trail = w.core.catalog().await.unwrap().audit_records(None).await.unwrap();
    let actions: Vec<&str> = trail.iter().map(|r| r.entry.action.as_str()).collect();
    assert!(actions.contains(&"prune-dry-run") && !actions.contains(&"prune"), "{actions:?}");
    assert!(made.iter().all(|p| p.exists()), "a dry run removes nothing");
    let done = prune(&w.core, &opts(false), &actor()).await.unwrap();
    assert_eq!(done.exports_removed, dry.exports_removed);
    let left: Vec<bool> = made.iter().map(|p| p.exists()).collect();
    assert_eq!(left, [false, false, true, true, true], "younger, not an export, another workspace's: kept");
}
