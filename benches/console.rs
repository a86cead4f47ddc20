//! The web console's overview of 200 workspaces: `tidemark serve --api-only` as its own
//! process, 200 workspaces (one with a snapshot, the rest none yet: each row is evaluated
//! all the same), a viewer signed in, and wrk on loopback fetching `/` with the session's
//! cookie (handed to wrk's Lua script in its environment, not its arguments), one
//! connection at a time: the server's time per page. Beside it, in the same run, the
//! floor (`/healthz`: no session, no catalog) and the API's own JSON of the same overview
//! (`/v1/overview`: what the page is rendered from). The page's weight is its HTML plus
//! its stylesheet and script.
//!
//! ```text
//! cargo bench --bench console          # 10 s per route
//! BENCH_SECS=30 cargo bench --bench console
//! ```

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, field, millis, sh};
use tidemark::pgcluster::{Cluster, ClusterOptions};

const WORKSPACES: usize = 200;

fn main() {
    let secs: u64 = std::env::var("BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    assert!(Command::new("wrk").arg("--version").output().is_ok(), "wrk is needed: apt-get install wrk");
    let tidemark = env!("CARGO_BIN_EXE_tidemark");
    let work = tempfile::Builder::new().prefix("tidemark-console-bench-").tempdir().expect("temp dir");
    let w = work.path().display().to_string();
    let config = format!("{w}/tidemark.toml");
    eprintln!("a cluster, {WORKSPACES} workspaces, a snapshot...");
    let cluster = Cluster::start(&ClusterOptions::default()).expect("a throwaway cluster");
    sh(&format!(
        "psql -q -d '{}' -c 'CREATE DATABASE shop' && psql -q -d '{}' -c 'CREATE TABLE t (x int); INSERT INTO t VALUES (1)'",
        cluster.url("postgres"),
        cluster.url("shop")
    ));
    sh(&format!("{tidemark} --config {config} init --repo {w}/repo >/dev/null"));
    sh(&format!(
        "{tidemark} --config {config} workspace add ws000 --database-url '{}' >/dev/null",
        cluster.url("shop")
    ));
    sh(&format!("{tidemark} --config {config} snapshot create -w ws000 >/dev/null 2>&1"));
    let secret =
        sh(&format!("{tidemark} --config {config} token create --name bench --role viewer")).trim().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut text = std::fs::read_to_string(&config).unwrap();
    for i in 1..WORKSPACES {
        text.push_str(&format!("\n[workspaces.ws{i:03}]\ndatabase-url = \"{}\"\n", cluster.url("shop")));
    }
    text.push_str(&format!(
        "\n[api]\nlisten = \"127.0.0.1:{port}\"\nrequests-per-second = 0\nfailed-auth-per-minute = 0\n"
    ));
    std::fs::write(&config, text).unwrap();
    let mut server = Server::api_only(tidemark, &config);
    let base = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let (cookie, page_bytes, asset_bytes) = runtime.block_on(async {
        let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let started = Instant::now();
        let home = loop {
            match c.get(format!("{base}/")).send().await {
                Ok(r) => break r,
                Err(_) if started.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("the server did not start: {e}"),
            }
        };
        let pre = set_cookie(&home, "tidemark-signin");
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("token", secret.as_str()), ("csrf", pre.as_str())])
            .finish();
        let signed = c
            .post(format!("{base}/sign-in"))
            .header("cookie", format!("tidemark-signin={pre}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let cookie = format!("tidemark-session={}", set_cookie(&signed, "tidemark-session"));
        let page = c.get(format!("{base}/")).header("cookie", &cookie).send().await.unwrap().bytes().await.unwrap();
        let page_text = String::from_utf8_lossy(&page);
        assert_eq!(page_text.matches("<tr class=\"state-").count(), WORKSPACES, "every workspace is a row");
        let mut assets = 0;
        for a in ["/assets/console.css", "/assets/console.js"] {
            assets += c.get(format!("{base}{a}")).send().await.unwrap().bytes().await.unwrap().len();
        }
        (cookie, page.len(), assets)
    });
    let script = format!("{w}/auth.lua");
    std::fs::write(
        &script,
        "if os.getenv(\"BENCH_COOKIE\") then wrk.headers[\"Cookie\"] = os.getenv(\"BENCH_COOKIE\") end\n\
         if os.getenv(\"BENCH_TOKEN\") then wrk.headers[\"Authorization\"] = \"Bearer \" .. os.getenv(\"BENCH_TOKEN\") end\n",
    )
    .unwrap();
    let routes = [
        ("GET /healthz (the floor)", "/healthz", None),
        ("GET /v1/overview (the API's JSON, bearer token)", "/v1/overview", Some(("BENCH_TOKEN", secret.as_str()))),
        ("GET / (the console's overview page, session)", "/", Some(("BENCH_COOKIE", cookie.as_str()))),
    ];
    let mut rows = Vec::new();
    for (name, path, credential) in routes {
        eprintln!("wrk, 1 connection: {name}...");
        let mut wrk = Command::new("wrk");
        wrk.args(["-t1", "-c1", &format!("-d{secs}s"), "--latency", "-s", &script]).arg(format!("{base}{path}"));
        if let Some((k, v)) = credential {
            wrk.env(k, v);
        }
        let out = wrk.output().expect("wrk");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(!text.contains("Non-2xx"), "{name}: {text}");
        let rps = field(&text, "Requests/sec:").unwrap_or(0.0);
        let at = |p: &str| {
            text.lines().find(|l| l.trim_start().starts_with(p)).and_then(|l| millis(l.split_whitespace().nth(1)?))
        };
        rows.push((name, rps, at("50%"), at("99%")));
    }
    println!(
        "\nThe console's overview of {WORKSPACES} workspaces (wrk, 1 connection, {secs} s per route, this machine):\n"
    );
    println!("| route | requests/s | p50 | p99 |");
    println!("|---|---:|---:|---:|");
    for (name, rps, p50, p99) in &rows {
        let ms = |v: &Option<f64>| v.map_or("?".into(), |v| format!("{v:.2} ms"));
        println!("| {name} | {rps:.0} | {} | {} |", ms(p50), ms(p99));
    }
    let p99 = |i: usize| rows[i].3.unwrap_or(f64::NAN);
    println!(
        "\npage weight: {:.1} kB HTML + {:.1} kB stylesheet and script = {:.1} kB (goal 150 kB); p99 of the page {:.2} ms \
         (goal 50 ms) = {:.2}x the API's JSON of the same overview",
        page_bytes as f64 / 1000.0,
        asset_bytes as f64 / 1000.0,
        (page_bytes + asset_bytes) as f64 / 1000.0,
        p99(2),
        p99(2) / p99(1)
    );
    server.stop();
    drop(cluster);
}

fn set_cookie(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.split(';').next()?.strip_prefix(&format!("{name}=")).map(str::to_string))
        .unwrap_or_else(|| panic!("no {name} cookie"))
}
