//! [`Core`]: the one context every operation runs in.
//!
//! Longer than ~300 lines: `Core`'s accessors belong to the one type.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::config::{IdentitySource, LoadedConfig, WorkspaceConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::{Identities, Recipients};
use crate::pg::ConnSpec;
use crate::progress::Progress;
use crate::repo::Repository;

use super::{alerts, metrics};

/// The one context every operation runs in, whichever front end calls it: the loaded
/// config, the open repository, the keys, the catalog (one pool, opened on first use),
/// each configured workspace resolved once, and, per job, where progress goes and the
/// signal that stops it. The identity is loaded only when an operation needs to read, so
/// a backup host never needs it (and a missing identity file cannot stop backups); the
/// catalog is opened only by operations that record something, so `wal fetch` run by the
/// server's OS user never touches it.
#[derive(Clone)]
pub struct Core {
    pub config: LoadedConfig,
    pub repo: Repository,
    /// The copy `repo` is (`[copies.NAME]`), `None` for the primary: listings then read the
    /// copy itself, never the catalog's index of the primary.
    copy: Option<String>,
    recipients: Option<Recipients>,
    identity_source: Option<IdentitySource>,
    identities: Arc<OnceLock<Identities>>,
    catalog: Arc<tokio::sync::OnceCell<Catalog>>,
    workspaces: Arc<std::sync::Mutex<BTreeMap<String, Arc<Workspace>>>>,
    /// Workspaces whose snapshot index this process is comparing with the repository now
    /// (one comparison at a time per workspace, however many listings ask).
    index_syncs: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    progress: Progress,
    stop: CancellationToken,
    /// Where local caches (the media hash cache) live; default: `$TIDEMARK_CACHE_DIR`,
    /// `$XDG_CACHE_HOME/tidemark`, `~/.cache/tidemark`.
    pub cache_dir: Option<PathBuf>,
    /// The daemon's newest health evaluation (`alerts::watch`), read by `/metrics`.
    pub monitor: alerts::Monitor,
    /// This process's metrics (`/metrics`).
    pub metrics: Arc<metrics::Metrics>,
}

/// A claimed comparison of a workspace's snapshot index, given back when dropped.
pub(crate) struct IndexSyncClaim {
    busy: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    workspace: String,
}

impl Drop for IndexSyncClaim {
    fn drop(&mut self) {
        self.busy.lock().expect("index lock").remove(&self.workspace);
    }
}

/// A configured workspace as operations use it: its settings, and its connection spec
/// (the URL parsed and the password secret read once, on first use: a host that only
/// ships WAL never needs the password). Resolved once per core, again only if the config
/// entry changes.
pub struct Workspace {
    pub name: String,
    pub config: WorkspaceConfig,
    conn: OnceLock<ConnSpec>,
}

impl Workspace {
    /// How to connect to the workspace database.
    ///
    /// Errors: `Config` for a malformed URL or a password secret that cannot be read.
    pub fn conn(&self) -> Result<&ConnSpec> {
        if let Some(spec) = self.conn.get() {
            return Ok(spec);
        }
        let spec = ConnSpec::parse(&self.config.database_url, self.config.password.as_ref())?;
        Ok(self.conn.get_or_init(|| spec))
    }

    /// How to connect for work that creates, renames or drops the workspace's databases:
    /// `restore-database-url` (its database part replaced by the live database's name),
    /// or the workspace's own connection.
    ///
    /// Errors: `Config` for a malformed URL, an unreadable password, or a URL that names
    /// no database.
    pub fn restorer(&self) -> Result<ConnSpec> {
        let live = self.conn()?;
        let db =
            live.database().ok_or_else(|| Error::config(format!("workspace {}'s URL names no database", self.name)))?;
        match &self.config.restore_database_url {
            None => Ok(live.clone()),
            Some(url) => Ok(ConnSpec::parse(url, self.config.restore_password.as_ref())
                .map_err(|e| e.context(format!("reading workspaces.{}.restore-database-url", self.name)))?
                .with_database(&db)),
        }
    }
}

impl Core {
    /// This core with `repo` in place of its repository (the same one, writing with other
    /// settings: object-lock holds).
    pub fn with_repo(&self, repo: Repository) -> Core {
        Core { repo, ..self.clone() }
    }

    /// Opens the repository named by the config and parses its keys.
    ///
    /// Errors: those of [`Repository::open`], and `Key`/`Config` for malformed keys.
    pub async fn open(config: LoadedConfig) -> Result<Core> {
        Core::open_at(config, None).await
    }

    /// Opens the repository called `name` (see [`Self::open_repository`]; `None`: the
    /// primary) and parses the keys: a restore, check or drill from a copy works while the
    /// primary is away. When the primary cannot be reached, the error names the copies.
    ///
    /// Errors: those of [`Self::open`]; `Usage` for a name the config does not have.
    pub async fn open_at(config: LoadedConfig, name: Option<&str>) -> Result<Core> {
        let name = name.filter(|n| *n != crate::config::PRIMARY);
        let repo_config = config.config.repository_named(name)?;
        let repo = match open_repository(&config, &repo_config).await {
            Ok(repo) => repo,
            Err(e) if name.is_none() && !config.config.copies.is_empty() && e.kind() != ErrorKind::Key => {
                let copies: Vec<String> =
                    config.config.copies.iter().map(|(n, c)| format!("{n} ({})", c.url)).collect();
                return Err(e.context(format!(
                    "the primary repository ({}) cannot be used; the config has copies: {}. `restore`, \
                     `pitr restore`, `drill` and `check` read one with --repository NAME",
                    repo_config.url,
                    copies.join(", ")
                )));
            }
            Err(e) => match name {
                Some(name) if e.kind() == ErrorKind::NotFound => {
                    return Err(Error::not_found(format!(
                        "copy {name} ({}) holds no repository yet: `tidemark copy --to {name}` fills it",
                        repo_config.url
                    )));
                }
                Some(name) => return Err(e.context(format!("opening copy {name} ({})", repo_config.url))),
                None => return Err(e),
            },
        };
        let (recipients, identity_source) = keys_of(&config, &repo_config)?;
        let mut core = Core::assemble(config, repo, recipients, identity_source, OnceLock::new());
        core.copy = name.map(str::to_string);
        Ok(core)
    }

    /// The repository called `name` (`None`: this core's own; `primary`: `[repository]`;
    /// else a `[copies.NAME]`), opened with its own trusted signers and object-lock settings.
    ///
    /// Errors: `Usage` for a name the config does not have; those of [`Repository::open`].
    pub async fn open_repository(&self, name: Option<&str>) -> Result<Repository> {
        let Some(asked) = name else { return Ok(self.repo.clone()) };
        match Some(asked).filter(|n| *n != crate::config::PRIMARY) {
            None if self.copy.is_none() => Ok(self.repo.clone()),
            Some(n) if self.copy.as_deref() == Some(n) => Ok(self.repo.clone()),
            name => {
                let cfg = self.config.config.repository_named(name)?;
                open_repository(&self.config, &cfg).await.map_err(|e| match name {
                    Some(n) => e.context(format!("opening copy {n} ({})", cfg.url)),
                    None => e,
                })
            }
        }
    }

    /// This core reading from the repository called `name` (see [`Self::open_repository`];
    /// `None`: this core as it is): what `--repository` gives restores, checks and drills.
    ///
    /// Errors: those of [`Self::open_repository`].
    pub async fn on_repository(&self, name: Option<&str>) -> Result<Core> {
        let Some(asked) = name else { return Ok(self.clone()) };
        let copy = Some(asked).filter(|n| *n != crate::config::PRIMARY).map(str::to_string);
        if copy == self.copy {
            return Ok(self.clone());
        }
        let repo = self.open_repository(Some(asked)).await?;
        let (old, new) = (
            self.config.config.repository_named(self.copy.as_deref())?,
            self.config.config.repository_named(copy.as_deref())?,
        );
        if old.recipients == new.recipients {
            return Ok(Core { repo, copy, ..self.clone() });
        }
        // A copy with keys of its own is read with its own identity.
        let (recipients, identity_source) = keys_of(&self.config, &new)?;
        let identities = Arc::new(OnceLock::new());
        Ok(Core { repo, copy, recipients, identity_source, identities, ..self.clone() })
    }

    /// The copy this core reads from (`[copies.NAME]`), `None` for the primary.
    pub fn copy_name(&self) -> Option<&str> {
        self.copy.as_deref()
    }

    fn assemble(
        config: LoadedConfig,
        repo: Repository,
        recipients: Option<Recipients>,
        identity_source: Option<IdentitySource>,
        identities: OnceLock<Identities>,
    ) -> Core {
        Core {
            copy: None,
            workspaces: Default::default(),
            index_syncs: Default::default(),
            config,
            repo,
            recipients,
            identity_source,
            identities: Arc::new(identities),
            catalog: Arc::new(tokio::sync::OnceCell::new()),
            progress: Progress::hidden(),
            stop: CancellationToken::new(),
            cache_dir: None,
            monitor: alerts::Monitor::default(),
            metrics: Arc::new(metrics::Metrics::new()),
        }
    }

    /// A core from parts already at hand (the demo, tests).
    pub fn from_parts(
        config: LoadedConfig,
        repo: Repository,
        recipients: Option<Recipients>,
        identities: Option<Identities>,
    ) -> Core {
        let loaded = OnceLock::new();
        if let Some(ids) = identities {
            let _ = loaded.set(ids);
        }
        Core::assemble(config, repo, recipients, None, loaded)
    }

    /// Claims the comparison of `workspace`'s snapshot index with the repository for this
    /// process: `None` while another listing does it.
    pub(crate) fn claim_index_sync(&self, workspace: &str) -> Option<IndexSyncClaim> {
        let mut busy = self.index_syncs.lock().expect("index lock");
        busy.insert(workspace.to_string())
            .then(|| IndexSyncClaim { busy: self.index_syncs.clone(), workspace: workspace.to_string() })
    }

    /// This core with progress going to `progress` (a terminal line, a job record).
    pub fn with_progress(&self, progress: Progress) -> Core {
        Core { progress, ..self.clone() }
    }

    /// This core with operations stopping when `stop` is cancelled (Ctrl-C, SIGTERM, a
    /// cancelled job).
    pub fn with_stop(&self, stop: CancellationToken) -> Core {
        Core { stop, ..self.clone() }
    }

    /// Where the running operation reports progress.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Cancelled when the running operation should stop.
    pub fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    /// Runs `work` until it ends or the stop signal fires; then it is dropped (what an
    /// operation that commits last, like a snapshot, leaves is invisible) and the result is
    /// `Interrupted`.
    pub async fn until_stopped<T>(&self, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        tokio::select! {
            r = work => r,
            () = self.stop.cancelled() => Err(Error::new(
                ErrorKind::Interrupted,
                "interrupted (Ctrl-C, SIGTERM or a daemon shutdown): nothing of it is visible",
            )),
        }
    }

    /// The catalog, opened (and migrated) on first use; one pool for every operation.
    ///
    /// Errors: `Unavailable` when the catalog cannot be opened, `Integrity` when damaged.
    pub async fn catalog(&self) -> Result<&Catalog> {
        let location = self.config.catalog_location();
        let lease_timeout = self.config.config.fleet.lease_timeout;
        self.catalog
            .get_or_try_init(|| async move {
                let catalog = Catalog::open_at(&location).await?;
                catalog.set_lease_timeout(lease_timeout);
                Ok(catalog)
            })
            .await
    }

    /// A configured workspace, resolved.
    ///
    /// Errors: `NotFound` naming the configured ones.
    pub fn workspace(&self, name: &str) -> Result<Arc<Workspace>> {
        let config = match self.config.workspace(name) {
            Ok(config) => config,
            // A branch (`<workspace>--<name>`) this core knows of.
            Err(e) => {
                let resolved = self.workspaces.lock().expect("workspaces lock");
                return resolved.get(name).filter(|w| w.config.branch_of.is_some()).cloned().ok_or(e);
            }
        };
        let mut resolved = self.workspaces.lock().expect("workspaces lock");
        if let Some(ws) = resolved.get(name).filter(|ws| ws.config == *config) {
            return Ok(ws.clone());
        }
        let ws = Arc::new(Workspace { name: name.to_string(), config: config.clone(), conn: OnceLock::new() });
        resolved.insert(name.to_string(), ws.clone());
        Ok(ws)
    }

    /// The keys backups are encrypted to. Errors: `Key` when none are configured.
    pub fn recipients(&self) -> Result<&Recipients> {
        self.recipients.as_ref().ok_or_else(|| {
            Error::new(ErrorKind::Key, "no age recipients configured: set repository.recipients in tidemark.toml")
        })
    }

    /// The keys that read the repository, loaded on first use.
    ///
    /// Errors: `Key` when none are configured or the identity cannot be read.
    pub fn identities(&self) -> Result<Identities> {
        if let Some(ids) = self.identities.get() {
            return Ok(ids.clone());
        }
        let source = self.identity_source.as_ref().ok_or_else(|| {
            let table = match self.copy.as_deref() {
                Some(copy) if self.config.config.own_keys(copy).is_some() => format!("copies.{copy}"),
                _ => "repository".to_string(),
            };
            Error::new(
                ErrorKind::Key,
                format!(
                    "reading the repository needs its age identity: set {table}.identity-file in tidemark.toml, or \
                     {} / {}",
                    crate::config::IDENTITY_FILE_ENV,
                    crate::config::IDENTITY_ENV
                ),
            )
        })?;
        let ids = Identities::load(source)?;
        let _ = self.identities.set(ids.clone());
        Ok(ids)
    }

    /// Whether an identity is configured (it may still fail to load).
    pub fn has_identities(&self) -> bool {
        self.identity_source.is_some() || self.identities.get().is_some()
    }

    /// The workspace named (it must be configured), or the only one configured: how every
    /// command that works on one configured workspace resolves `--workspace`.
    ///
    /// Errors: `NotFound` for a name the config does not have; `Usage` when none is named
    /// and the config has several (or none).
    /// Workspace `name` from the config, or a ready branch (`<workspace>--<branch>`) from
    /// the catalog as it is now, as a workspace of its own (no schedules); the branch is
    /// then known to [`Core::workspace`] too.
    ///
    /// Errors: as [`Core::workspace`] for a name that is neither; `Unavailable` for the
    /// catalog.
    pub async fn workspace_or_branch(&self, name: &str) -> Result<Arc<Workspace>> {
        let unknown = match self.workspace(name) {
            Ok(ws) => return Ok(ws),
            Err(e) => e,
        };
        let Some((of, branch)) = name.split_once("--") else { return Err(unknown) };
        let ready = crate::catalog::branches::BranchState::Ready;
        let Some(row) = self.catalog().await?.branch(of, branch).await?.filter(|b| b.state == ready) else {
            return Err(unknown);
        };
        self.know_branch(&row)
    }

    /// This core, with the catalog's branches answering as workspaces of their own (what
    /// the command line and `serve` open; `wal push`/`wal fetch`, run by the server's OS
    /// user, never touch the catalog). A catalog that does not exist yet holds none, and is
    /// not made for it; one that cannot be read is logged, and branches are then not served.
    pub async fn with_branches(self) -> Core {
        if self.config.catalog_may_exist()
            && let Err(e) = self.load_branches().await
        {
            tracing::warn!(error = %e.report(), "branches are not served as workspaces");
        }
        self
    }

    /// Every ready branch of the catalog, known to [`Core::workspace`] as a workspace.
    ///
    /// Errors: `Unavailable` for the catalog.
    pub async fn load_branches(&self) -> Result<()> {
        let ready = crate::catalog::branches::BranchState::Ready;
        for row in self.catalog().await?.branches(None).await?.into_iter().filter(|b| b.state == ready) {
            if let Err(e) = self.know_branch(&row) {
                tracing::warn!(error = %e.report(), branch = %row.name, "a branch is not served as a workspace");
            }
        }
        Ok(())
    }

    /// A branch as a workspace of this core (`forget`: no longer).
    pub(crate) fn know_branch(&self, row: &crate::catalog::branches::BranchRow) -> Result<Arc<Workspace>> {
        let name = format!("{}--{}", row.workspace, row.name);
        let config = super::branch::as_workspace(&row.workspace, &self.workspace(&row.workspace)?.config, row)?;
        let ws = Arc::new(Workspace { name: name.clone(), config, conn: OnceLock::new() });
        self.workspaces.lock().expect("workspaces lock").insert(name, ws.clone());
        Ok(ws)
    }

    /// Forgets branch `name` of `workspace` as a workspace of this core.
    pub(crate) fn forget_branch(&self, workspace: &str, name: &str) {
        self.workspaces.lock().expect("workspaces lock").remove(&format!("{workspace}--{name}"));
    }

    pub fn workspace_or_only(&self, workspace: Option<&str>) -> Result<String> {
        if let Some(ws) = workspace {
            self.workspace(ws)?;
            return Ok(ws.to_string());
        }
        let names: Vec<&String> = self.config.config.workspaces.keys().collect();
        match names.as_slice() {
            [only] => Ok((*only).clone()),
            _ => Err(Error::usage(format!(
                "say which workspace (the config has {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                }
            ))),
        }
    }

    /// A workspace whose backups are read: configured here, or present in the repository
    /// (another host's, a workspace since removed from the config).
    ///
    /// Errors: `NotFound` naming the configured ones when it is neither; `Unavailable`
    /// for the store.
    pub async fn known_workspace(&self, workspace: &str) -> Result<()> {
        crate::config::validate_workspace_name(workspace)?;
        if self.config.config.workspaces.contains_key(workspace)
            || self.repo.list_workspaces().await?.iter().any(|w| w == workspace)
        {
            return Ok(());
        }
        self.config.workspace(workspace).map(|_| ())
    }

    /// Where the Postgres tools are.
    pub fn pg_bin_dir(&self) -> Option<PathBuf> {
        crate::pg::bin_dir(self.config.config.postgres.bin_dir.as_deref())
    }

    /// Where throwaway clusters and files go (`[drill] scratch-dir`, else the system's
    /// temp folder).
    pub fn scratch_root(&self) -> PathBuf {
        match &self.config.config.drill.scratch_dir {
            Some(dir) => self.config.resolve_path(dir),
            None => std::env::temp_dir(),
        }
    }
}

/// Opens a repository with the config's signing key, the table's own trusted signers and
/// its object-lock settings.
async fn open_repository(config: &LoadedConfig, cfg: &crate::config::RepositoryConfig) -> Result<Repository> {
    let signing = crate::signing::Signing::from_config(
        cfg.signing_key.as_ref().map(|p| config.resolve_path(p)).as_deref(),
        &cfg.trusted_signers,
        cfg.allow_unsigned,
    )?;
    Ok(Repository::open(cfg).await?.with_signing(signing).with_object_lock(super::hold::settings_of(config, cfg)))
}

/// The recipients a repository is written to and where its identity is read from.
///
/// Errors: `Key`/`Config` for a malformed recipient.
fn keys_of(
    config: &LoadedConfig,
    repository: &crate::config::RepositoryConfig,
) -> Result<(Option<Recipients>, Option<IdentitySource>)> {
    let recipients = match repository.recipients.is_empty() {
        true => None,
        false => Some(Recipients::parse(&repository.recipients)?),
    };
    Ok((recipients, config.identity_source_for(repository)))
}
