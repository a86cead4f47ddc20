//! Throwaway Postgres clusters: initdb on a free port in a temp folder, pg_ctl start/stop,
//! everything run as the `postgres` OS user when tidemark runs as root (Postgres refuses
//! root). Used by `demo`, by drills and by the tests. A cluster stops and its folder is
//! removed when the value is dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::unistd::{Gid, Uid, User};

use crate::error::{Error, ErrorKind, Result};

/// How to start a cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Folder with initdb/pg_ctl (default: [`crate::pg::bin_dir`]).
    pub bin_dir: Option<PathBuf>,
    /// Extra `postgresql.conf` settings (`("wal_level", "replica")`).
    pub settings: Vec<(String, String)>,
    /// Where the cluster's temp folder goes (default: the system temp folder).
    pub parent: Option<PathBuf>,
    /// Data checksums on every page (`initdb --data-checksums`): what a drill's throwaway
    /// has, so a page damaged on its way back is found.
    pub data_checksums: bool,
}

/// A running throwaway cluster, superuser `postgres`, trust authentication on 127.0.0.1.
pub struct Cluster {
    dir: tempfile::TempDir,
    data: PathBuf,
    port: u16,
    bin_dir: Option<PathBuf>,
    run_as: Option<(Uid, Gid)>,
    running: bool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cluster(port {}, {})", self.port, self.data.display())
    }
}

impl Cluster {
    /// Creates and starts a cluster. Blocking (seconds): call from `spawn_blocking` in async code.
    ///
    /// Errors: `Config` when the server binaries or the `postgres` user are missing,
    /// `Internal` with the server log when it does not start.
    pub fn start(opts: &ClusterOptions) -> Result<Cluster> {
        let bin_dir = crate::pg::bin_dir(opts.bin_dir.as_deref());
        let initdb = crate::pg::tool(bin_dir.as_deref(), "initdb");
        let run_as = server_user()?;
        let dir = match &opts.parent {
            Some(parent) => tempfile::Builder::new().prefix("tidemark-pg-").tempdir_in(parent)?,
            None => tempfile::Builder::new().prefix("tidemark-pg-").tempdir()?,
        };
        if let Some((uid, gid)) = run_as {
            nix::unistd::chown(dir.path(), Some(uid), Some(gid)).map_err(|e| {
                Error::from(std::io::Error::from(e)).context(format!("handing {} to postgres", dir.path().display()))
            })?;
        }
        let data = dir.path().join("data");
        let mut cmd = Command::new(&initdb);
        cmd.arg("-D").arg(&data).args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"]);
        if opts.data_checksums {
            cmd.arg("--data-checksums");
        }
        run(&mut cmd, run_as, dir.path()).map_err(|e| match e.kind() {
            ErrorKind::NotFound => {
                crate::pg::tool_spawn_error(&initdb, &std::io::Error::from(std::io::ErrorKind::NotFound))
            }
            _ => e.context("running initdb".to_string()),
        })?;
        let mut cluster = Cluster { dir, data, port: 0, bin_dir, run_as, running: false };
        let mut last_error = None;
        for _ in 0..5 {
            cluster.port = free_port()?;
            cluster.write_settings(opts)?;
            match cluster.pg_ctl_start() {
                Ok(()) => {
                    cluster.running = true;
                    return Ok(cluster);
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn write_settings(&self, opts: &ClusterOptions) -> Result<()> {
        let mut conf = format!(
            "\n# tidemark throwaway cluster\nport = {}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = {}\nfsync = off\nfull_page_writes = off\n\
             synchronous_commit = off\nmax_connections = 50\n",
            self.port,
            crate::pg::conf_quote(&self.dir.path().display().to_string())
        );
        for (k, v) in &opts.settings {
            conf.push_str(&format!("{k} = {}\n", crate::pg::conf_quote(v)));
        }
        fs_err::write(self.data.join("postgresql.auto.conf"), conf)?;
        Ok(())
    }

    fn pg_ctl_start(&self) -> Result<()> {
        let log = self.dir.path().join("server.log");
        let mut cmd = Command::new(crate::pg::tool(self.bin_dir.as_deref(), "pg_ctl"));
        cmd.arg("-D").arg(&self.data).arg("-l").arg(&log).args(["-w", "-t", "60", "start"]);
        run(&mut cmd, self.run_as, self.dir.path())
            .map_err(|e| e.context(format!("starting postgres on port {}; server log:\n{}", self.port, log_tail(&log))))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server without a shutdown checkpoint and removes it with its folder: for
    /// a cluster nobody will start again (writing its dirty buffers out would be wasted).
    pub fn discard(mut self) {
        if self.running {
            let mut cmd = Command::new(crate::pg::tool(self.bin_dir.as_deref(), "pg_ctl"));
            cmd.arg("-D").arg(&self.data).args(["-m", "immediate", "-w", "stop"]);
            if run(&mut cmd, self.run_as, self.dir.path()).is_ok() {
                self.running = false;
            }
        }
    }

    /// Stops the server (fast shutdown). Also done on drop.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let mut cmd = Command::new(crate::pg::tool(self.bin_dir.as_deref(), "pg_ctl"));
        cmd.arg("-D").arg(&self.data).args(["-m", "fast", "-w", "stop"]);
        if run(&mut cmd, self.run_as, self.dir.path()).is_err() {
            let mut cmd = Command::new(crate::pg::tool(self.bin_dir.as_deref(), "pg_ctl"));
            cmd.arg("-D").arg(&self.data).args(["-m", "immediate", "-w", "stop"]);
            let _ = run(&mut cmd, self.run_as, self.dir.path());
        }
        self.running = false;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Who runs Postgres servers: the `postgres` OS user when tidemark runs as root (the server
/// refuses root), else the current user (`None`).
///
/// Errors: `Config` when running as root and there is no `postgres` user.
pub fn server_user() -> Result<Option<(Uid, Gid)>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let user = User::from_name("postgres")
        .ok()
        .flatten()
        .ok_or_else(|| Error::config("running as root needs a `postgres` OS user to run the server as"))?;
    Ok(Some((user.uid, user.gid)))
}

/// Hands a file, or a folder and everything in it, to the server user (when tidemark runs as root).
pub fn hand_over(path: &Path) -> Result<()> {
    let Some((uid, gid)) = server_user()? else { return Ok(()) };
    let chown = |p: &Path| {
        nix::unistd::chown(p, Some(uid), Some(gid))
            .map_err(|e| Error::from(std::io::Error::from(e)).context(format!("handing {} to postgres", p.display())))
    };
    chown(path)?;
    if path.is_dir() {
        for entry in walk(path)? {
            chown(&entry)?;
        }
    }
    Ok(())
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs_err::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() && !path.is_symlink() {
            out.extend(walk(&path)?);
        }
        out.push(path);
    }
    Ok(out)
}

/// Starts the server of an existing data directory with `pg_ctl start` (as the server
/// user), logging to `log`; it keeps running after tidemark exits. `env`: the variables
/// its commands need beyond the minimal environment (see [`run`]).
///
/// Errors: `Internal` with the end of the server log when it does not start.
pub fn start_data_dir(bin_dir: Option<&Path>, data: &Path, log: &Path, env: &[(String, String)]) -> Result<()> {
    let run_as = server_user()?;
    let mut cmd = Command::new(crate::pg::tool(bin_dir, "pg_ctl"));
    cmd.arg("-D").arg(data).arg("-l").arg(log).args(["-w", "-t", "600", "start"]);
    run_with(&mut cmd, run_as, data, env)
        .map_err(|e| e.context(format!("starting postgres on {}:\n{}", data.display(), log_tail(log))))
}

/// Stops the server of a data directory (fast shutdown).
pub fn stop_data_dir(bin_dir: Option<&Path>, data: &Path) -> Result<()> {
    let run_as = server_user()?;
    let mut cmd = Command::new(crate::pg::tool(bin_dir, "pg_ctl"));
    cmd.arg("-D").arg(data).args(["-m", "fast", "-w", "stop"]);
    run(&mut cmd, run_as, data)
}

/// Stops the server of a data directory at once (immediate shutdown: for throwaways).
pub fn stop_data_dir_now(bin_dir: Option<&Path>, data: &Path) -> Result<()> {
    let run_as = server_user()?;
    let mut cmd = Command::new(crate::pg::tool(bin_dir, "pg_ctl"));
    cmd.arg("-D").arg(data).args(["-m", "immediate", "-w", "stop"]);
    run(&mut cmd, run_as, data)
}

/// What `pg_checksums --check` found in a stopped data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksumScan {
    pub files: u64,
    pub blocks: u64,
    /// `(file relative to the data directory, block)` of each page whose checksum failed.
    pub bad: Vec<(String, u64)>,
}

/// Checks every page's checksum of a stopped data directory (`pg_checksums --check`, as the
/// server's user).
///
/// Errors: `Config` when pg_checksums is missing; `Database` with what it said when it
/// cannot check (a running server, a cluster without checksums).
pub fn verify_checksums(bin_dir: Option<&Path>, data: &Path) -> Result<ChecksumScan> {
    let tool = crate::pg::tool(bin_dir, "pg_checksums");
    let mut cmd = Command::new(&tool);
    cmd.arg("--check").arg("-D").arg(data);
    let out = output_of(&mut cmd, server_user()?, data).map_err(|e| match e.kind() {
        ErrorKind::NotFound => crate::pg::tool_spawn_error(&tool, &std::io::Error::from(std::io::ErrorKind::NotFound)),
        _ => e,
    })?;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let scan = parse_checksum_scan(&stdout, &stderr, data);
    match (out.status.code(), &scan) {
        (Some(0), _) => Ok(scan),
        (Some(1), scan) if !scan.bad.is_empty() => Ok(scan.clone()),
        _ => Err(Error::new(ErrorKind::Database, format!("pg_checksums failed ({}): {stdout}{stderr}", out.status))),
    }
}

/// Reads pg_checksums' totals (stdout) and failures (stderr: `checksum verification failed
/// in file "DATA/base/5/16389", block 1: ...`).
fn parse_checksum_scan(stdout: &str, stderr: &str, data: &Path) -> ChecksumScan {
    let total = |label: &str| -> u64 {
        stdout.lines().find_map(|l| l.strip_prefix(label)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    };
    let prefix = format!("{}/", data.display());
    let bad = stderr
        .lines()
        .filter_map(|line| {
            let rest = line.split_once("checksum verification failed in file \"")?.1;
            let (file, rest) = rest.split_once('"')?;
            let block = rest.split_once("block ")?.1.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
            Some((file.strip_prefix(&prefix).unwrap_or(file).to_string(), block))
        })
        .collect();
    ChecksumScan { files: total("Files scanned:"), blocks: total("Blocks scanned:"), bad }
}

/// The last lines of a server log, for error messages.
pub fn log_tail(log: &Path) -> String {
    let text = fs_err::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
    tail.join("\n")
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Runs a server tool, as `run_as` when given; fails with its output.
///
/// The tool (and the server it starts) gets a minimal environment, never tidemark's own:
/// that holds S3 keys, database passwords and webhook URLs, which a server's processes
/// (and whoever can read their environment) have no business with. `extra` adds what a
/// server needs on purpose (a restored server's restore_command reaches the repository).
fn run(cmd: &mut Command, run_as: Option<(Uid, Gid)>, cwd: &Path) -> Result<()> {
    run_with(cmd, run_as, cwd, &[])
}

/// Variables a server tool keeps from tidemark's environment.
pub const SERVER_ENV: [&str; 2] = ["PATH", "TZ"];

fn run_with(cmd: &mut Command, run_as: Option<(Uid, Gid)>, cwd: &Path, extra: &[(String, String)]) -> Result<()> {
    let out = output_with(cmd, run_as, cwd, extra)?;
    if out.status.success() {
        Ok(())
    } else {
        // The server's own tools refused (initdb, pg_ctl): what they said, as Postgres's.
        Err(Error::new(
            ErrorKind::Database,
            format!(
                "{} failed ({}): {}{}",
                cmd.get_program().display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ))
    }
}

fn output_of(cmd: &mut Command, run_as: Option<(Uid, Gid)>, cwd: &Path) -> Result<std::process::Output> {
    output_with(cmd, run_as, cwd, &[])
}

/// Runs a server tool with only [`SERVER_ENV`] of tidemark's environment (and `extra`), as
/// `run_as`, and returns what it did.
fn output_with(
    cmd: &mut Command,
    run_as: Option<(Uid, Gid)>,
    cwd: &Path,
    extra: &[(String, String)],
) -> Result<std::process::Output> {
    use std::os::unix::process::CommandExt;
    cmd.env_clear();
    for key in SERVER_ENV {
        if let Some(value) = std::env::var_os(key) {
            cmd.env(key, value);
        }
    }
    cmd.envs(extra.iter().map(|(k, v)| (k, v)));
    cmd.current_dir(cwd).stdin(Stdio::null()).env("LC_ALL", "C");
    match run_as {
        Some((uid, gid)) => {
            cmd.uid(uid.as_raw()).gid(gid.as_raw()).env("HOME", cwd);
        }
        None => {
            if let Some(home) = std::env::var_os("HOME") {
                cmd.env("HOME", home);
            }
        }
    }
    cmd.output().map_err(|e| Error::from(e).context(format!("running {}", cmd.get_program().display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checksum_scan_names_each_failed_page_relative_to_the_data_directory() {
        let stdout = "Checksum operation completed\nFiles scanned:   950\nBlocks scanned:  3023\nBad checksums:  2\n";
        let stderr = "pg_checksums: error: checksum verification failed in file \"/srv/d/base/5/16389\", block 1: \
                      calculated checksum A71E but block contains F7C9\n\
                      pg_checksums: error: checksum verification failed in file \"/srv/d/base/5/16390.1\", block 131072: x\n";
        let scan = parse_checksum_scan(stdout, stderr, Path::new("/srv/d"));
        assert_eq!((scan.files, scan.blocks), (950, 3023));
        assert_eq!(scan.bad, vec![("base/5/16389".to_string(), 1), ("base/5/16390.1".to_string(), 131_072)]);
        let clean = parse_checksum_scan("Files scanned:  3\nBlocks scanned:  9\n", "", Path::new("/srv/d"));
        assert!(clean.bad.is_empty() && clean.blocks == 9);
    }
}
