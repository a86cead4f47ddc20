//! API tokens on real parts: made on the command line (secret shown once, stored only as a
//! hash), turned into an actor with a grant, and refused when malformed, unknown, revoked,
//! expired, used from another address, or asking for more than their creator has.

use std::process::{Command, Output};

use tidemark::ErrorKind;
use tidemark::access::{self, Action, Grant, Role};
use tidemark::actor::{Actor, ActorKind};
use tidemark::ops::token::{self, TokenCreateOptions};

use crate::support::{World, world};

fn cli(w: &World, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["--config", w.core.config.path.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_shown_once_kept_as_hashes_and_refused_when_they_should_be() {
    let w = world().await;
    let made =
        cli(&w, &["token", "create", "--name", "ci-drills", "--role", "operator", "-w", "shop", "--expires", "30d"]);
    assert!(made.status.success(), "{}", text(&made));
    let secret = String::from_utf8(made.stdout.clone()).unwrap().trim().to_string();
    assert!(token::well_formed(&secret), "{secret}");
    assert!(!String::from_utf8_lossy(&made.stderr).contains(&secret), "the secret is printed once, on stdout");

    // It works, as an API actor with the operator's rights in shop only.
    let addr = "127.0.0.2".parse().unwrap();
    let actor = token::authenticate(&w.core, &secret, Some(addr), chrono::Utc::now()).await.unwrap();
    assert_eq!((actor.kind, actor.name.as_str()), (ActorKind::Api, "ci-drills"));
    let grant = actor.grant();
    access::check(&grant, Action::Drill, Some("shop")).unwrap();
    assert_eq!(access::check(&grant, Action::Prune, Some("shop")).unwrap_err().kind(), ErrorKind::Forbidden);
    assert_eq!(access::check(&grant, Action::Drill, Some("blog")).unwrap_err().kind(), ErrorKind::Forbidden);
    let listed = cli(&w, &["--json", "token", "list"]);
    let tokens: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(tokens[0]["last_used_address"], "127.0.0.2");

    // Refusals: malformed, a changed character, unknown but well formed.
    let refused = async |s: &str| token::authenticate(&w.core, s, Some(addr), chrono::Utc::now()).await.unwrap_err();
    for bad in ["", "Bearer x", "tdm_short", &secret[..secret.len() - 1], &secret.replace("tdm_", "tdm-")] {
        let e = refused(bad).await;
        assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{bad}: {}", e.report());
    }
    let other = token::create(
        &w.core,
        &TokenCreateOptions {
            name: "throwaway".into(),
            role: Role::Viewer,
            workspaces: vec![],
            expires: None,
            never_expires: false,
            allow_ips: vec!["127.0.0.3/32".into()],
        },
        &crate::support::actor(),
    )
    .await
    .unwrap();
    // Used from another address than its allow list says.
    let e = token::authenticate(&w.core, &other.secret, Some(addr), chrono::Utc::now()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden);
    token::authenticate(&w.core, &other.secret, Some("127.0.0.3".parse().unwrap()), chrono::Utc::now()).await.unwrap();
    // Expired (as of a later moment) and revoked.
    let later = chrono::Utc::now() + chrono::Duration::days(31);
    let e = token::authenticate(&w.core, &secret, Some(addr), later).await.unwrap_err();
    assert!(e.kind() == ErrorKind::Unauthenticated && e.message().contains("expired"), "{}", e.report());
    let revoked = cli(&w, &["token", "revoke", "ci-drills"]);
    assert!(revoked.status.success(), "{}", text(&revoked));
    let e = refused(&secret).await;
    assert!(e.kind() == ErrorKind::Unauthenticated && e.message().contains("revoked"), "{}", e.report());
    assert!(!e.report().contains(&secret[4..]), "an error never repeats the secret");

    // A token's holder cannot make a token with more than it has.
    let operator = Actor {
        grant: Some(Grant { role: Role::Operator, workspaces: vec!["shop".into()] }),
        ..Actor::new(ActorKind::Api, "ops")
    };
    let ask = |role: Role, workspaces: Vec<String>| TokenCreateOptions {
        name: "more".into(),
        role,
        workspaces,
        expires: None,
        never_expires: false,
        allow_ips: vec![],
    };
    let e = token::create(&w.core, &ask(Role::Viewer, vec!["shop".into()]), &operator).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden, "an operator may not manage tokens at all: {}", e.report());

    // The secret is nowhere but in the creator's hands: not in the catalog's files, the
    // token list, or the audit trail.
    for path in crate::support::catalog_files(&w).await {
        if let Ok(bytes) = std::fs::read(&path) {
            assert!(!bytes.windows(secret.len()).any(|win| win == secret.as_bytes()), "{path:?} holds the secret");
        }
    }
    let everything =
        format!("{}{}", text(&cli(&w, &["--json", "token", "list"])), text(&cli(&w, &["--json", "audit", "list"])));
    assert!(!everything.contains(&secret[4..]) && everything.contains("token.create"), "{everything}");
    let bad = cli(&w, &["token", "create", "--name", "x", "--role", "root"]);
    assert_eq!(bad.status.code(), Some(ErrorKind::Usage.exit_code()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_lifetimes_default_maximum_and_never() {
    let mut w = world().await;
    let ask = |name: &str, expires: Option<u64>, never_expires: bool| TokenCreateOptions {
        name: name.into(),
        role: Role::Viewer,
        workspaces: vec![],
        expires: expires.map(|d| std::time::Duration::from_secs(d * 24 * 3600)),
        never_expires,
        allow_ips: vec![],
    };
    let me = crate::support::actor();
    let days =
        |t: &token::TokenCreated| t.token.expires_at.map(|at| (at - t.token.created_at).num_hours() as f64 / 24.0);
    // Built in: 7 days by default, 366 at most, forever when asked.
    let made = token::create(&w.core, &ask("default", None, false), &me).await.unwrap();
    assert_eq!(days(&made).map(f64::round), Some(7.0));
    let e = token::create(&w.core, &ask("too-long", Some(367), false), &me).await.unwrap_err();
    assert!(e.kind() == ErrorKind::Usage && e.message().contains("366 days"), "{}", e.report());
    let forever = token::create(&w.core, &ask("forever", None, true), &me).await.unwrap();
    assert_eq!(forever.token.expires_at, None);
    // A configured maximum: longer is refused, the default shortens to it, forever is refused.
    w.core.config.config.api.max_token_lifetime = Some(std::time::Duration::from_secs(3 * 24 * 3600));
    let e = token::create(&w.core, &ask("four-days", Some(4), false), &me).await.unwrap_err();
    assert!(e.kind() == ErrorKind::Usage && e.message().contains("3 days"), "{}", e.report());
    let e = token::create(&w.core, &ask("forever-2", None, true), &me).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused, "{}", e.report());
    let made = token::create(&w.core, &ask("capped", None, false), &me).await.unwrap();
    assert_eq!(days(&made).map(f64::round), Some(3.0));
    let used = token::create(&w.core, &ask("two-days", Some(2), false), &me).await.unwrap();

    // The last use is written to the minute, and at once from another address.
    let last_use = async || {
        let all = token::list(&w.core, &me).await.unwrap();
        let t = all.into_iter().find(|t| t.id == used.token.id).unwrap();
        (t.last_used_at, t.last_used_address)
    };
    let (a, b) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
    // Microseconds: what either catalog engine keeps.
    let t0 = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6);
    token::authenticate(&w.core, &used.secret, Some(a), t0).await.unwrap();
    assert_eq!(last_use().await, (Some(t0), Some("127.0.0.2".into())));
    let t1 = t0 + chrono::Duration::seconds(10);
    token::authenticate(&w.core, &used.secret, Some(a), t1).await.unwrap();
    assert_eq!(last_use().await.0, Some(t0), "not written again within the minute");
    token::authenticate(&w.core, &used.secret, Some(b), t1).await.unwrap();
    assert_eq!(last_use().await, (Some(t1), Some("127.0.0.3".into())), "another address at once");
    let t2 = t1 + chrono::Duration::seconds(61);
    token::authenticate(&w.core, &used.secret, Some(b), t2).await.unwrap();
    assert_eq!(last_use().await.0, Some(t2), "a minute later");
}

/// The daemon's own logs, at the most verbose level, while its API is used with a good, a
/// mistyped, a revoked and a foreign secret: none of them appears there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_the_servers_logs() {
    let w = world().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = std::fs::read_to_string(&w.core.config.path).unwrap();
    std::fs::write(&w.core.config.path, format!("{config}\n[api]\nlisten = \"127.0.0.1:{port}\"\n")).unwrap();
    let made = cli(&w, &["token", "create", "--name", "logged", "--role", "viewer"]);
    assert!(made.status.success(), "{}", text(&made));
    let secret = String::from_utf8(made.stdout).unwrap().trim().to_string();
    let revoked =
        String::from_utf8(cli(&w, &["token", "create", "--name", "gone", "--role", "viewer"]).stdout).unwrap();
    assert!(cli(&w, &["token", "revoke", "gone"]).status.success());
    let mut server = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["--config", w.core.config.path.to_str().unwrap(), "serve", "--api-only"])
        .env("TIDEMARK_LOG", "trace")
        .env_remove("CI")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(up, "the server did not start");
    let mistyped = format!("{}x", &secret[..secret.len() - 1]);
    let foreign = "tdm_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for s in [secret.as_str(), mistyped.as_str(), revoked.trim(), foreign] {
        for path in ["/v1/workspaces", "/v1/workspaces/shop/snapshots", "/v1/tokens", "/v1/nope"] {
            let _ = client.get(format!("{base}{path}")).bearer_auth(s).send().await.unwrap();
        }
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        let _ = server.wait();
        let mut logs = String::new();
        use std::io::Read;
        server.stdout.take().unwrap().read_to_string(&mut logs).unwrap();
        server.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
        logs
    })
    .await
    .unwrap();
    assert!(out.contains("serving the API"), "the logs were captured: {}", &out[..out.len().min(2000)]);
    for (what, s) in
        [("good", secret.as_str()), ("mistyped", &mistyped), ("revoked", revoked.trim()), ("foreign", foreign)]
    {
        // The body of a secret (its display id, `tdm_` and 8 characters, may be named).
        assert!(!out.contains(&s[12..]), "the {what} secret is in the server's logs");
    }
}
