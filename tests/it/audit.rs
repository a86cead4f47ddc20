//! The audit trail on real parts: operations record who did what (the command line and
//! the library alike), the chain's head is checkpointed into the repository, and a catalog
//! whose last records were cut is caught by `audit verify` (exit code of `integrity`).

use std::process::Command;

use tidemark::ErrorKind;
use tidemark::actor::{Actor, ActorKind};
use tidemark::ops::audit;

use crate::support::{create_database, world};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_are_audited_checkpointed_and_a_cut_trail_is_caught() {
    let w = world().await;
    create_database(&w.cluster, "shop", "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);").await;
    let ana = Actor::new(ActorKind::Cli, "ana");
    let opts = tidemark::ops::snapshot::SnapshotOptions { workspace: "shop".into(), ..Default::default() };
    let m = tidemark::ops::snapshot::create_recorded(&w.core, &opts, &ana).await.unwrap();
    let pin = tidemark::ops::prune::PinOptions { id: m.id.clone(), pin: true, ..Default::default() };
    tidemark::ops::prune::set_pin(&w.core, &pin, &ana).await.unwrap();
    // Refused while another operation holds the workspace: audited as denied.
    let me = tidemark::catalog::lock::Holder::me("prune", &Actor::new(ActorKind::Cli, "bo"));
    let stop = tokio_util::sync::CancellationToken::new();
    let lock_wait = tidemark::catalog::lock::Wait::No;
    let catalog = w.core.catalog().await.unwrap();
    let held =
        tidemark::catalog::lock::WorkspaceLock::acquire_shared(catalog, "shop", &me, lock_wait, &stop).await.unwrap();
    let unpin = tidemark::ops::prune::PinOptions { pin: false, ..pin.clone() };
    let refused = tidemark::ops::prune::set_pin(&w.core, &unpin, &ana).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Busy);
    drop(held);
    // The command line acts as the OS user.
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["--config", w.core.config.path.to_str().unwrap(), "stacks", "put", "api/orders", "--file", "-"])
        .env_remove("CI")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(br#"{"route": "/orders"}"#)?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Under CI=true the command line acts as the CI job, named by the CI system.
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["--config", w.core.config.path.to_str().unwrap(), "snapshot", "pin", &m.id])
        .env("CI", "true")
        .env("GITHUB_WORKFLOW", "nightly-drills")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let records = audit::list(&w.core, &audit::AuditListOptions::default(), &ana).await.unwrap();
    let seen: Vec<(String, String, String)> =
        records.iter().map(|r| (r.entry.actor.to_string(), r.entry.action.clone(), r.entry.outcome.clone())).collect();
    let os_user = format!("cli:{}", tidemark::error::current_user());
    assert_eq!(
        seen,
        vec![
            ("cli:ana".into(), "snapshot".into(), "ok".into()),
            ("cli:ana".into(), "pin".into(), "ok".into()),
            ("cli:ana".into(), "unpin".into(), "denied".into()),
            (os_user, "stacks.put".into(), "ok".into()),
            ("ci:nightly-drills".into(), "pin".into(), "ok".into()),
        ]
    );
    assert_eq!(records[0].entry.details["snapshot"], m.id.as_str());
    assert_eq!(records[1].entry.target, format!("shop/{}", m.id));
    let report = audit::verify(&w.core, &ana).await.unwrap();
    assert_eq!((report.records, report.checkpoint.as_ref().map(|c| c.seq)), (5, Some(5)));
    // Only ciphertext in the repository's checkpoints.
    let chain = report.chain.unwrap();
    let checkpoints = w.repo_dir().join("audit").join(&chain);
    let names: Vec<String> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let signed = names.iter().filter(|n| n.ends_with(".json.age") && names.contains(&format!("{n}.sig"))).count();
    assert_eq!((names.len(), signed), (8, 4), "one signed checkpoint per record but the refused one: {names:?}");

    // Someone removes the last record from the catalog behind tidemark's back.
    let catalog = tidemark::catalog::Catalog::open_at(&w.core.config.catalog_location()).await.unwrap();
    drop(catalog);
    crate::support::catalog_sql(&w, "DELETE FROM audit WHERE seq = 5").await;
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["--config", w.core.config.path.to_str().unwrap(), "audit", "verify"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(ErrorKind::Integrity.exit_code()), "{stderr}");
    assert!(stderr.contains("ends at record 4") && stderr.contains("record 5"), "{stderr}");
}
