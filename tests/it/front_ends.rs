//! Issue 32.2: every rule on an operation's input lives in the operation, so the command
//! line and the API refuse the same bad input with the same kind (exit code, HTTP status
//! and `kind`), before any work: no job, no database, no file.

use reqwest::{Method, StatusCode};
use tidemark::ErrorKind;
use tidemark::access::Role;
use tidemark::api::AddressRules;

use crate::api::{call, client, json, start, token};
use crate::support::{create_database, databases_like, world};

/// One bad input, as each front end spells it.
struct Case {
    what: &'static str,
    /// The command line's arguments (after `--config`).
    cli: Vec<String>,
    /// The API's route (under `/v1/workspaces/`) and JSON body.
    route: &'static str,
    body: String,
    kind: ErrorKind,
}

fn case(what: &'static str, cli: &[&str], route: &'static str, body: &str, kind: ErrorKind) -> Case {
    Case { what, cli: cli.iter().map(ToString::to_string).collect(), route, body: body.to_string(), kind }
}

/// The same input as a list: `n` table names, as flags and as a JSON array.
fn many_tables(n: usize) -> (Vec<String>, String) {
    let names: Vec<String> = (0..n).map(|i| format!("public.t{i}")).collect();
    let flags = names.iter().flat_map(|t| ["--table".to_string(), t.clone()]).collect();
    (flags, serde_json::to_string(&names).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_and_the_api_refuse_the_same_bad_input_with_the_same_kind() {
    let w = world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);").await;
    let server = start(&w, AddressRules::default()).await;
    let c = client("127.0.0.2");
    let admin = token(&w, "admin", Role::Admin, &[], &[]).await;
    let copy = w.cluster.url("copy");
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("shop.tidemark").display().to_string();
    let id = "20261129T101500Z-1a2b3c";
    fn restore<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        [&["restore"][..], extra].concat()
    }
    let (table_flags, table_list) = many_tables(tidemark::ops::MAX_TABLES + 1);

    let mut cases = vec![
        case(
            "jobs above the limit",
            &restore(&["latest", "-w", "shop", "--target", &copy, "--jobs", "500"]),
            "shop/restores",
            r#"{"database": "copy", "jobs": 500}"#,
            ErrorKind::Usage,
        ),
        case(
            "a snapshot and a time",
            &restore(&[id, "--time", "2026-11-22 10:15:00+00", "-w", "shop", "--target", &copy]),
            "shop/restores",
            &format!(r#"{{"snapshot": "{id}", "time": "2026-11-22T10:15:00Z", "database": "copy"}}"#),
            ErrorKind::Usage,
        ),
        case(
            "a snapshot id that is not one",
            &restore(&["../x", "-w", "shop", "--target", &copy]),
            "shop/restores",
            r#"{"snapshot": "../x", "database": "copy"}"#,
            ErrorKind::Usage,
        ),
        case(
            "a time that is not one",
            &restore(&["--time", "yesterday-ish", "-w", "shop", "--target", &copy]),
            "shop/restores",
            r#"{"time": "yesterday-ish", "database": "copy"}"#,
            ErrorKind::Usage,
        ),
        case(
            "tables into the live database without new names",
            &restore(&["latest", "-w", "shop", "--table", "public.t", "--into-live"]),
            "shop/restores",
            r#"{"tables": ["public.t"], "into_live": true}"#,
            ErrorKind::Usage,
        ),
        case(
            "new names without tables",
            &restore(&["latest", "-w", "shop", "--target", &copy, "--as", "public.t2"]),
            "shop/restores",
            r#"{"database": "copy", "as": ["public.t2"]}"#,
            ErrorKind::Usage,
        ),
        case(
            "the workspace's own database",
            &restore(&["latest", "-w", "shop", "--target", &w.cluster.url("shop")]),
            "shop/restores",
            r#"{"database": "shop"}"#,
            ErrorKind::Refused,
        ),
        case(
            "a system database",
            &restore(&["latest", "-w", "shop", "--target", &w.cluster.url("template1")]),
            "shop/restores",
            r#"{"database": "template1"}"#,
            ErrorKind::Refused,
        ),
        case(
            "an in-place restore not confirmed",
            &restore(&["latest", "--in-place", "-w", "shop", "--confirm", "nope"]),
            "shop/restores/in-place",
            r#"{"confirm": "nope"}"#,
            ErrorKind::Usage,
        ),
        case(
            "an in-place restore from a snapshot and a time",
            &restore(&[id, "--time", "2026-11-22 10:15:00+00", "--in-place", "-w", "shop", "--confirm", "shop"]),
            "shop/restores/in-place",
            &format!(r#"{{"snapshot": "{id}", "time": "2026-11-22T10:15:00Z", "confirm": "shop"}}"#),
            ErrorKind::Usage,
        ),
        case(
            "a branch name that is not one",
            &["branch", "create", "shop", "Bad Name"],
            "shop/branches",
            r#"{"name": "Bad Name"}"#,
            ErrorKind::Usage,
        ),
        case(
            "a branch with jobs above the limit",
            &["branch", "create", "shop", "try", "--jobs", "500"],
            "shop/branches",
            r#"{"name": "try", "jobs": 500}"#,
            ErrorKind::Usage,
        ),
        case(
            "an export of a snapshot id that is not one",
            &["export", "-w", "shop", "--to", &bundle, "--snapshot", "../x"],
            "shop/exports",
            r#"{"snapshot": "../x"}"#,
            ErrorKind::Usage,
        ),
        case(
            "a drill of a snapshot id that is not one",
            &["drill", "-w", "shop", "--snapshot", "../x"],
            "shop/drills",
            r#"{"snapshot": "../x"}"#,
            ErrorKind::Usage,
        ),
        case(
            "a workspace that is not configured",
            &["snapshot", "create", "-w", "nope"],
            "nope/snapshots",
            "{}",
            ErrorKind::NotFound,
        ),
        case(
            "a restore point name with a control character",
            &["pitr", "mark", "before\u{1}deploy", "-w", "shop"],
            "shop/restore-points",
            r#"{"name": "before\u0001deploy"}"#,
            ErrorKind::Usage,
        ),
        case(
            "a stack revert to a state that is not one",
            &["stacks", "revert", "api/checkout", "--to", "yesterday", "-w", "shop"],
            "shop/stacks/api/checkout/revert",
            r#"{"to": "yesterday"}"#,
            ErrorKind::Usage,
        ),
    ];
    // More tables than a restore or an export picks at once.
    let mut restore_many =
        case("too many tables", &restore(&["latest", "-w", "shop", "--target", &copy]), "", "", ErrorKind::Usage);
    restore_many.cli.extend(table_flags.iter().cloned());
    restore_many.route = "shop/restores";
    restore_many.body = format!(r#"{{"database": "copy", "tables": {table_list}}}"#);
    let mut export_many =
        case("too many tables to export", &["export", "-w", "shop", "--to", &bundle], "", "", ErrorKind::Usage);
    export_many.cli.extend(table_flags);
    export_many.route = "shop/exports";
    export_many.body = format!(r#"{{"tables": {table_list}}}"#);
    cases.extend([restore_many, export_many]);

    let config = w.core.config.path.display().to_string();
    for case in &cases {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args(["--config", &config])
            .args(&case.cli)
            .env_remove("CI")
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(case.kind.exit_code()), "{}: command line said {stderr}", case.what);

        let url = format!("{}/v1/workspaces/{}", server.base, case.route);
        let answer = call(&c, Method::POST, &url, Some(&admin), Some(&case.body)).await;
        let status = answer.status();
        let body = json(answer).await;
        assert_eq!(status, StatusCode::from_u16(case.kind.http_status()).unwrap(), "{}: API said {body}", case.what);
        assert_eq!(body["error"]["kind"], case.kind.name(), "{}: {body}", case.what);
    }
    // Nothing was made by any of them: no job, no database, no bundle.
    let jobs = json(call(&c, Method::GET, &format!("{}/v1/jobs", server.base), Some(&admin), None).await).await;
    assert_eq!(jobs.as_array().map(Vec::len), Some(0), "{jobs}");
    assert!(databases_like(&w.cluster, "copy%").await.is_empty());
    assert!(databases_like(&w.cluster, "shop_%").await.is_empty());
    assert!(!std::path::Path::new(&bundle).exists());
}
