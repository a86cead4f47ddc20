//! What the benches share: running shell steps, timing a command with GNU time (wall,
//! client CPU, peak RSS), the median of repeated runs, and the benchmark dataset.
#![allow(dead_code)] // each bench is its own crate and uses a part of this

use std::path::{Path, PathBuf};
use std::process::Command;

use tidemark::pgcluster::Cluster;

/// One measured command.
pub struct Measured {
    pub name: String,
    pub wall: f64,
    pub cpu: f64,
    pub max_rss_mib: f64,
    pub bytes: Option<u64>,
}

/// Where a bench writes (dumps need room): $BENCH_DIR or the system temp dir.
pub fn bench_dir() -> PathBuf {
    std::env::var_os("BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir)
}

/// The prefix that runs a command as the server's OS user (`runuser -u postgres --` as
/// root, nothing otherwise).
pub fn as_postgres() -> &'static str {
    if nix::unistd::Uid::effective().is_root() { "runuser -u postgres --" } else { "" }
}

/// Panics with how to install `tool` when `tool <arg>` cannot run.
pub fn need(tool: &str, arg: &str) {
    assert!(Command::new(tool).arg(arg).output().is_ok(), "{tool} is needed: apt-get install {tool}");
}

/// `BENCH_<NAME>` as a number, else `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Runs a bash script (`set -euo pipefail`); panics with its stderr when it fails.
pub fn sh(script: &str) -> String {
    let out = Command::new("bash").arg("-c").arg(format!("set -euo pipefail\n{script}")).output().expect("bash");
    assert!(out.status.success(), "failed: {script}\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Times `script` with GNU time; `output` is measured with `du` afterwards.
pub fn measure(name: &str, script: &str, output: Option<&Path>, work: &Path) -> Measured {
    eprintln!("running {name}...");
    let stats = work.join("time.txt");
    sh(&format!(
        "sync; /usr/bin/time -f '%e %U %S %M' -o {} bash -c {}",
        stats.display(),
        shell_quote(&format!("set -euo pipefail; {script}"))
    ));
    let text = std::fs::read_to_string(&stats).unwrap();
    let fields: Vec<f64> = text.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    let bytes = output.map(|p| sh(&format!("du -sb {} | cut -f1", p.display())).trim().parse().unwrap_or(0));
    Measured { name: name.into(), wall: fields[0], cpu: fields[1] + fields[2], max_rss_mib: fields[3] / 1024.0, bytes }
}

/// Runs `f` `n` times and keeps the run with the median wall time (the machine is shared
/// with the server, so single runs vary by tens of percent).
pub fn median_of(n: usize, mut f: impl FnMut() -> Measured) -> Measured {
    median(n, (0..n.max(1)).map(|_| f()).collect())
}

/// The run with the median wall time of runs made elsewhere (alternating tools).
pub fn median(n: usize, mut runs: Vec<Measured>) -> Measured {
    runs.sort_by(|a, b| a.wall.total_cmp(&b.wall));
    let mut median = runs.swap_remove(runs.len() / 2);
    median.name = if n > 1 { format!("{} (median of {n})", median.name) } else { median.name };
    median
}

pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Writes `{work}/pgbackrest.conf`: stanza `bench` of `cluster`, repository `{work}/pgbr`
/// (zstd level 1, AES-256), two processes, asynchronous archive-get, its run files in
/// `{work}/pgbr-run`; readable by the server's user.
pub fn pgbackrest_conf(work: &str, cluster: &Cluster) {
    let (data, port, socket) =
        (cluster.data_dir().display(), cluster.port(), cluster.data_dir().parent().unwrap().display());
    sh(&format!(
        "cat > {work}/pgbackrest.conf <<EOF\n[global]\nrepo1-path={work}/pgbr\nrepo1-retention-full=2\n\
         compress-type=zst\ncompress-level=1\nrepo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=bench-only-passphrase\n\
         log-level-console=warn\nlog-path={work}/pgbr-run\nlock-path={work}/pgbr-run\nspool-path={work}/pgbr-run\nprocess-max=2\n\
         [bench]\npg1-path={data}\npg1-port={port}\npg1-host-user=postgres\npg1-user=postgres\n\
         pg1-socket-path={socket}\n[global:archive-get]\narchive-async=y\nEOF\n\
         chmod 644 {work}/pgbackrest.conf"
    ));
}

/// The script that restores pgBackRest's newest backup of stanza `bench` into `dir` and
/// starts it on `port` (recovery to the end of the archive, then promotion; its log in
/// `{work}/pgbr-run/<log>`).
pub fn pgbackrest_restore(work: &str, dir: &str, port: u16, log: &str) -> String {
    let pg_ctl = tidemark::pg::tool(tidemark::pg::bin_dir(None).as_deref(), "pg_ctl").display().to_string();
    let as_pg = as_postgres();
    format!(
        "mkdir -m 700 {dir} && chown postgres {dir} 2>/dev/null || true; \
         {as_pg} pgbackrest --config={work}/pgbackrest.conf --stanza=bench --pg1-path={dir} --type=default restore && \
         printf \"port = {port}\\narchive_mode = off\\nunix_socket_directories = ''\\nlisten_addresses = 'localhost'\\nrecovery_target_action = promote\\n\" >> {dir}/postgresql.auto.conf && \
         {as_pg} {pg_ctl} -D {dir} -l {work}/pgbr-run/{log} -w -t 3600 start >/dev/null"
    )
}

/// A shell loop that waits (an hour at most) until the server on `port` has left recovery.
pub fn wait_promoted(port: u16) -> String {
    let psql = tidemark::pg::tool(tidemark::pg::bin_dir(None).as_deref(), "psql").display().to_string();
    format!(
        "for i in $(seq 1 18000); do r=$({psql} -X -At -h 127.0.0.1 -p {port} -U postgres -d postgres -c 'SELECT pg_is_in_recovery()' 2>/dev/null || true); \
         [ \"$r\" = f ] && break; sleep 0.2; done; [ \"$r\" = f ]"
    )
}

/// Server settings of the benchmark cluster (the same for every tool measured).
pub fn cluster_settings() -> Vec<(String, String)> {
    vec![
        ("shared_buffers".into(), "512MB".into()),
        ("max_wal_size".into(), "8GB".into()),
        ("checkpoint_timeout".into(), "30min".into()),
        ("maintenance_work_mem".into(), "256MB".into()),
    ]
}

/// Makes database `bench` on `cluster`: pgbench at `scale`, a jsonb table and a partly
/// incompressible bytea table. Returns its size in bytes.
pub fn make_dataset(cluster: &Cluster, scale: u32) -> u64 {
    let bin = tidemark::pg::bin_dir(None);
    let tool = |name: &str| tidemark::pg::tool(bin.as_deref(), name).display().to_string();
    let url = cluster.url("bench");
    sh(&format!("{} -X -q -d {} -c 'CREATE DATABASE bench'", tool("psql"), cluster.url("postgres")));
    sh(&format!("{} -i -q -s {scale} {url} 2>&1 | tail -1", tool("pgbench")));
    let rows = scale * 3000;
    sh(&format!(
        "{} -X -q -v ON_ERROR_STOP=1 -d {url} <<'SQL'\n\
         CREATE TABLE docs (id bigint PRIMARY KEY, doc jsonb NOT NULL);\n\
         INSERT INTO docs SELECT i, jsonb_build_object('user', 'user' || (i % 9973), 'tags', jsonb_build_array('a', 'b', i % 17),\n\
           'score', random(), 'text', repeat(md5(i::text), 3)) FROM generate_series(1, {rows}) i;\n\
         CREATE TABLE blobs (id bigint PRIMARY KEY, data bytea NOT NULL);\n\
         INSERT INTO blobs SELECT i, decode(string_agg(md5(random()::text), ''), 'hex')\n\
           FROM generate_series(1, {blob_rows}) i, generate_series(1, 64) j GROUP BY i;\n\
         VACUUM ANALYZE; CHECKPOINT;\n\
         SQL",
        tool("psql"),
        blob_rows = scale * 2000,
    ));
    sh(&format!("{} -X -At -d {url} -c \"SELECT pg_database_size('bench')\"", tool("psql"))).trim().parse().unwrap_or(0)
}

/// A `tidemark serve` (or other server) process of a bench: SIGTERM by `stop`, killed when
/// dropped.
pub struct Server(pub std::process::Child);

impl Server {
    /// `tidemark --config CONFIG serve --api-only`, quiet, outside any CI (its actor).
    pub fn api_only(tidemark: &str, config: &str) -> Server {
        Server(
            Command::new(tidemark)
                .args(["--config", config, "serve", "--api-only"])
                .env_remove("CI")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("tidemark serve"),
        )
    }

    pub fn stop(&mut self) {
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The number after `name` on a line of wrk's output (`Requests/sec:`).
pub fn field(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.trim().strip_prefix(name)).and_then(|v| v.trim().parse().ok())
}

/// A wrk duration (`850.00us`, `1.23ms`, `2.00s`) in milliseconds.
pub fn millis(text: &str) -> Option<f64> {
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
    let value: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        _ => return None,
    })
}
