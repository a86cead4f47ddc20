//! What the Postgres server's OS user can reach: which files it may read or run, and which
//! installed copy of tidemark it runs (`wal setup`, `pitr restore --start`).

use crate::error::{Error, Result};

/// Whether the server's OS user (`run_as`; `None`: this process's) passes `test -{flag}`
/// on `path`: reads it (`r`), runs it (`x`), with every folder on the way searchable.
pub async fn can(run_as: Option<(nix::unistd::Uid, nix::unistd::Gid)>, flag: char, path: &std::path::Path) -> bool {
    let mut test = tokio::process::Command::new("/bin/sh");
    test.args(["-c", &format!("test -{flag} \"$1\""), "sh"]).arg(path);
    test.env_clear().current_dir("/").stdin(std::process::Stdio::null());
    test.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    if let Some((uid, gid)) = run_as {
        test.uid(uid.as_raw()).gid(gid.as_raw());
    }
    test.status().await.is_ok_and(|s| s.success())
}

/// The tidemark the server's user will run: this binary when that user can run it, else
/// another installed copy of the same version that it can (a `cargo install` in root's
/// home comes first in root's PATH, while the server needs the copy in `/usr/local/bin`).
/// Returns it, every copy found when there are several, and a note saying which one the
/// server runs.
///
/// Errors: `Internal` when this binary's own path is unknown.
pub async fn server_binary(
    run_as: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
    user: &str,
) -> Result<(std::path::PathBuf, Vec<std::path::PathBuf>, Option<String>)> {
    let this =
        std::env::current_exe().map_err(|e| Error::from(e).context("finding the path of this tidemark binary"))?;
    let copies = installed_copies(&this);
    if can(run_as, 'x', &this).await {
        let note = (copies.len() > 1).then(|| {
            format!("{} copies of tidemark are installed; the server runs this one, {}", copies.len(), this.display())
        });
        return Ok((this, if copies.len() > 1 { copies } else { Vec::new() }, note));
    }
    let ours = version_of(&this).await;
    for copy in copies.iter().filter(|c| **c != this) {
        if can(run_as, 'x', copy).await && version_of(copy).await == ours && ours.is_some() {
            let note = format!(
                "{} copies of tidemark are installed; {user} cannot run this one ({}), so the server runs {} (the \
                 same version). `tidemark` in your shell is {}: remove it (`cargo uninstall tidemark`) or put {} \
                 first in PATH so both are the same",
                copies.len(),
                this.display(),
                copy.display(),
                this.display(),
                copy.parent().map(|p| p.display().to_string()).unwrap_or_default()
            );
            return Ok((copy.clone(), copies.clone(), Some(note)));
        }
    }
    let note = (copies.len() > 1).then(|| {
        format!(
            "{} copies of tidemark are installed and {user} can run none of version {}: install this one",
            copies.len(),
            ours.as_deref().unwrap_or("(unknown)")
        )
    });
    Ok((this, if copies.len() > 1 { copies } else { Vec::new() }, note))
}

/// This binary and every other `tidemark` on PATH or in the usual places, each once
/// (by its real path), this one first.
fn installed_copies(this: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<std::path::PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.extend(["/usr/local/bin", "/usr/bin"].map(std::path::PathBuf::from));
    let real = |p: &std::path::Path| fs_err::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let mut copies = vec![this.to_path_buf()];
    let mut seen = vec![real(this)];
    for dir in dirs {
        let candidate = dir.join("tidemark");
        if !candidate.is_file() {
            continue;
        }
        let canonical = real(&candidate);
        if !seen.contains(&canonical) {
            seen.push(canonical);
            copies.push(candidate);
        }
    }
    copies
}

/// What `<binary> --version` prints (`tidemark X.Y.Z`), or `None` when it does not run.
async fn version_of(binary: &std::path::Path) -> Option<String> {
    let out = tokio::process::Command::new(binary).arg("--version").stdin(std::process::Stdio::null()).output().await;
    out.ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}
