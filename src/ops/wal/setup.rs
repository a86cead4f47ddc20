//! `wal setup`: whether the server's OS user can run `wal push`/`wal fetch` with this
//! config, and what to fix when it cannot (`wal probe`: one round trip through the repository).

#[allow(clippy::wildcard_imports)]
use super::*;

/// What `wal probe` found, as the OS user it ran as.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    pub user: String,
    /// The first step that failed: `config`, `repository`, `identity`; `None`: all passed.
    pub failed: Option<String>,
    pub error: Option<String>,
}

/// Run by `wal setup` as the server's OS user (the hidden `wal probe`): reads the config
/// (already done by the caller), writes and deletes an object where WAL goes, and for a
/// restore loads the identity and lists the WAL. Never fails: the answer says what broke.
pub async fn probe(core: &Core, workspace: Option<&str>, restore: bool) -> Probe {
    let user = crate::error::current_user();
    let workspace = match core.workspace_or_only(workspace) {
        Ok(w) => w,
        Err(e) => return Probe { user, failed: Some("config".into()), error: Some(e.report()) },
    };
    let tag = format!("{}-{}", std::process::id(), rand::random::<u32>());
    if let Err(e) = core.repo.probe_write(&crate::repo::layout::wal_probe(&workspace, &tag)).await {
        return Probe { user, failed: Some("repository".into()), error: Some(e.report()) };
    }
    if restore {
        let read = async { archive::list(&core.repo, &workspace).await.and(core.identities().map(|_| ())) };
        match read.await {
            // Readable, and what was read is damaged or unsigned: not the server user's
            // access, which is all this checks; the restore refuses the WAL as `integrity`.
            Err(e) if e.kind() == crate::error::ErrorKind::Integrity => {}
            Err(e) => {
                let step = if e.kind() == crate::error::ErrorKind::Key || e.kind() == crate::error::ErrorKind::Config {
                    "identity"
                } else {
                    "repository"
                };
                return Probe { user, failed: Some(step.into()), error: Some(e.report()) };
            }
            Ok(()) => {}
        }
    }
    Probe { user, failed: None, error: None }
}

/// What `wal setup` checked and what to run to fix it.
#[derive(Debug, Clone, Serialize)]
pub struct SetupReport {
    pub workspace: String,
    /// The OS user the Postgres server (and so archive_command/restore_command) runs as.
    pub user: String,
    /// How the server runs tidemark.
    pub command: String,
    pub restore: bool,
    pub ok: bool,
    /// The first problem found (see `problems`).
    pub problem: Option<String>,
    /// Every problem found: the files the server's user must read are checked each, so
    /// one run says everything to fix.
    pub problems: Vec<String>,
    /// Commands that fix them, to run as root (or the owner of the files).
    pub fixes: Vec<String>,
    /// Every installed copy of tidemark found (this one, the `tidemark` programs on PATH,
    /// `/usr/local/bin`, `/usr/bin`), when there is more than one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<String>,
    /// Which of them the server runs, and why, when there is more than one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The report as answered: `problem` is the first of `problems`.
pub(super) fn finished(mut report: SetupReport) -> SetupReport {
    report.problem = report.problems.first().cloned();
    report
}

/// What makes the binary runnable by the server's user.
pub(super) fn install_fix(exe: &std::path::Path) -> String {
    format!(
        "install -m 755 {} /usr/local/bin/tidemark   # then use /usr/local/bin/tidemark in archive_command and restore_command",
        exe.display()
    )
}

/// What makes a file readable by the server's user's `group`: the config (any mode with
/// group read, its folder searchable) or a key (mode 640).
pub(super) fn read_fixes(group: &str, file: &std::path::Path, key: bool) -> Vec<String> {
    if key {
        return vec![format!("chgrp {group} {0} && chmod 640 {0}", file.display())];
    }
    let mut fixes = vec![format!("chgrp {group} {0} && chmod g+r {0}", file.display())];
    if let Some(dir) = file.parent() {
        fixes.push(format!("chmod o+x {}   # each folder on the way must be searchable", dir.display()));
    }
    fixes
}

/// Checks, as the OS user the Postgres server runs as, that it can run tidemark, read the
/// config, write the repository's WAL (push) and, with `restore`, read the identity and
/// the WAL (fetch): what `archive_command` and `restore_command` need. `command`: how the
/// server runs tidemark (default: this binary). When tidemark does not run as root, the
/// server is taken to run as this user.
///
/// Errors: `Config` when there is no `postgres` user to check as (as root).
// Longer than ~100 lines: one check after another of what the server's OS user can reach, each adding its fix to the report.
pub async fn setup(core: &Core, workspace: Option<&str>, restore: bool, command: Option<&str>) -> Result<SetupReport> {
    let workspace = core.workspace_or_only(workspace)?;
    let run_as = crate::pgcluster::server_user()?;
    let user = match run_as {
        Some((uid, _)) => nix::unistd::User::from_uid(uid).ok().flatten().map(|u| u.name).unwrap_or_default(),
        None => crate::error::current_user(),
    };
    let (exe, copies, note) = match command {
        Some(c) => (std::path::PathBuf::from(c), Vec::new(), None),
        None => crate::wal::server_user::server_binary(run_as, &user).await?,
    };
    let config = std::path::absolute(&core.config.path)?;
    let mut report = SetupReport {
        workspace: workspace.clone(),
        user: user.clone(),
        command: exe.display().to_string(),
        restore,
        ok: false,
        problem: None,
        problems: Vec::new(),
        fixes: Vec::new(),
        copies: copies.iter().map(|c| c.display().to_string()).collect(),
        note,
    };
    let group = format!("$(id -gn {user})");
    // The files the server's user needs, each checked, so that one run names them all.
    let repository = &core.config.config.repository;
    if !crate::wal::server_user::can(run_as, 'x', &exe).await {
        report.problems.push(format!("{user} cannot run {}", exe.display()));
        report.fixes.push(install_fix(&exe));
    }
    if !crate::wal::server_user::can(run_as, 'r', &config).await {
        report.problems.push(format!("{user} cannot read the config {}", config.display()));
        report.fixes.extend(read_fixes(&group, &config, false));
    }
    // archive_command signs what it pushes; restore_command decrypts with the identity.
    let keys = [
        ("signing key", repository.signing_key.as_ref(), true),
        ("identity", repository.identity_file.as_ref(), restore),
    ];
    for (what, file, needed) in keys {
        let Some(file) = file.filter(|_| needed).map(|f| core.config.resolve_path(f)) else { continue };
        if !crate::wal::server_user::can(run_as, 'r', &file).await {
            report.problems.push(format!("{user} cannot read the {what} {}", file.display()));
            report.fixes.extend(read_fixes(&group, &file, true));
        }
    }
    if !report.problems.is_empty() {
        return Ok(finished(report));
    }
    let mut child = tokio::process::Command::new(&exe);
    child.arg("--config").arg(&config).args(["--json", "wal", "probe", "--workspace", &workspace]);
    if restore {
        child.arg("--restore");
    }
    child
        .env_clear()
        .envs(crate::wal::recovery::restore_command_env(&core.config.config, core.copy_name()))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    child.current_dir("/").stdin(std::process::Stdio::null());
    if let Some((uid, gid)) = run_as {
        child.uid(uid.as_raw()).gid(gid.as_raw());
    }
    let out = match child.output().await {
        Ok(out) => out,
        Err(e) => {
            report.problems.push(format!("{user} cannot run {}: {e}", exe.display()));
            report.fixes.push(install_fix(&exe));
            return Ok(finished(report));
        }
    };
    let probe: Option<Probe> = serde_json::from_slice(&out.stdout).ok();
    let Some(probe) = probe else {
        // No answer: it could not read the config (or is another program).
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        report.problems.push(format!("{user} cannot use the config {}: {stderr}", config.display()));
        // archive_command signs what it pushes: the server's user reads the signing key.
        let key = repository.signing_key.as_ref().filter(|_| stderr.contains("signing key"));
        match key {
            Some(key) => report.fixes.extend(read_fixes(&group, &core.config.resolve_path(key), true)),
            None => report.fixes.extend(read_fixes(&group, &config, false)),
        }
        return Ok(finished(report));
    };
    match probe.failed.as_deref() {
        None => report.ok = true,
        Some(step) => {
            report.problems.push(format!("as {user}, the {step} check failed: {}", probe.error.unwrap_or_default()));
            match (step, core.repo.local_root()) {
                ("repository", Some(root)) => {
                    let wal = root.join("workspaces").join(&workspace).join("wal");
                    report.fixes.push(format!("mkdir -p {0} && chown -R {user}:{group} {0}", wal.display()));
                    report.fixes.push(format!(
                        "chmod o+x {} {}   # each folder on the way must be searchable",
                        root.display(),
                        root.join("workspaces").join(&workspace).display()
                    ));
                }
                ("repository", None) => report.fixes.push(
                    "give the server's environment the repository credentials (as env: secrets in the config, \
                     or AWS_* variables of the server's service)"
                        .into(),
                ),
                ("identity", _) => match &repository.identity_file {
                    Some(file) => report.fixes.extend(read_fixes(&group, &core.config.resolve_path(file), true)),
                    None => report.fixes.push(format!(
                        "set repository.identity-file in {} to a file {user} can read (mode 640, group {group})",
                        config.display()
                    )),
                },
                _ => {}
            }
        }
    }
    Ok(finished(report))
}
