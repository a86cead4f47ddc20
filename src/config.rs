//! `tidemark.toml` and the environment: where the repository is, which keys to use, which
//! workspaces exist. Unknown keys are errors; secrets may come from the environment or files.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
pub use crate::keys::{IDENTITY_ENV, IDENTITY_FILE_ENV, IdentitySource, identity_source_from_env};
pub use crate::secret::Secret;

/// The environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "TIDEMARK_CONFIG";
/// The catalog file used when the config names none: beside tidemark.toml.
pub const DEFAULT_CATALOG_FILE: &str = "tidemark-catalog.sqlite";
/// The config file used when neither `--config` nor `TIDEMARK_CONFIG` is given.
pub const DEFAULT_CONFIG_FILE: &str = "tidemark.toml";
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    pub repository: RepositoryConfig,
    /// Copies of the repository (`[copies.NAME]`): the same keys as `[repository]`;
    /// `tidemark copy` fills them with what the primary holds, verified, and restores,
    /// checks and drills can read from one (`--repository NAME`). A copy holds the
    /// primary's objects byte for byte: the primary's recipients, identity and signing
    /// key are its own (it may trust other signers).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub copies: BTreeMap<String, RepositoryConfig>,
    #[serde(default)]
    pub postgres: PostgresConfig,
    #[serde(default)]
    pub workspaces: BTreeMap<String, WorkspaceConfig>,
    /// Folder of schedule/retention policies (`*.toml`). Default: `schedules/` beside the
    /// config file, else the built-in `daily` and `manual` policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedules_dir: Option<PathBuf>,
    /// The catalog (job history, the schedules' last runs, tokens, the audit trail, ...): a
    /// SQLite file (default: `tidemark-catalog.sqlite` beside the config file), or a
    /// PostgreSQL database (`postgres://user@host/db`) several tidemark processes share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<PathBuf>,
    /// A PostgreSQL catalog's password: `env:VARIABLE` or `file:/path` (never in the URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_password: Option<Secret>,
    /// How `tidemark serve` runs its jobs.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// Where and how restore drills run.
    #[serde(default)]
    pub drill: DrillConfig,
    /// The HTTP API `tidemark serve` also serves (off unless `listen` is set).
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Several tidemark processes sharing a PostgreSQL catalog.
    #[serde(default)]
    pub fleet: FleetConfig,
}

/// `[fleet]`: how the processes that share a catalog see each other die.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct FleetConfig {
    /// A process whose heartbeat (every third of this) stops for this long is dead: what it
    /// held (a workspace, a WAL stream, a scheduled slot) is taken over by another.
    #[serde(with = "duration_text")]
    pub lease_timeout: std::time::Duration,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig { lease_timeout: std::time::Duration::from_secs(30) }
    }
}

impl FleetConfig {
    /// Refuses a lease timeout a heartbeat cannot keep (under 3 s) or that would leave a
    /// dead process's work waiting for more than an hour.
    pub fn check(&self) -> Result<()> {
        let t = self.lease_timeout;
        if t < std::time::Duration::from_secs(3) || t > std::time::Duration::from_secs(3600) {
            return Err(Error::config(format!(
                "fleet.lease-timeout = {:?} is out of range: give between \"3s\" and \"1h\" (default \"30s\")",
                humantime::format_duration(t).to_string()
            )));
        }
        Ok(())
    }
}

/// `[metrics]`: Prometheus metrics on a listener of their own, without a token (for a
/// scrape on a private interface). `/metrics` is also on the API listener, for a viewer.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct MetricsConfig {
    /// `127.0.0.1:9187`: plain HTTP, `/metrics` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

/// `[api]`: the HTTP API.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApiConfig {
    /// `host:port` to listen on; unset: no API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Serve plain HTTP on an address that is not loopback (without `tls-cert`: a
    /// TLS-terminating proxy in front). Logged as a warning at every start.
    pub allow_plain_http: bool,
    /// The certificate chain (PEM, leaf first) the API serves HTTPS with; reloaded on SIGHUP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM); reloaded with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Client addresses (CIDR) that may call the API at all; empty: every address.
    pub allow_ips: Vec<String>,
    /// Client addresses refused whatever else says (deny wins).
    pub deny_ips: Vec<String>,
    /// Proxies whose `X-Forwarded-For` names the client; the peer address otherwise.
    pub trusted_proxies: Vec<String>,
    /// Requests a second per token and per client address (bursts of twice that); 0: off.
    pub requests_per_second: u32,
    /// Failed authentications a client address may make per minute; then it is refused
    /// (429) until the minute has passed.
    pub failed_auth_per_minute: u32,
    /// Heavy jobs (restores, drills, branches, exports) the API runs at once per workspace.
    pub heavy_jobs_per_workspace: u32,
    /// Heavy jobs one token may have running at once, over all workspaces.
    pub heavy_jobs_per_token: u32,
    /// A client that has not sent a request's headers within this long is cut off.
    #[serde(with = "duration_text")]
    pub header_read_timeout: std::time::Duration,
    /// The longest a new token may live (CLI and API). Set: tokens that never expire are
    /// refused too. Unset: 366 days, and `--never-expires` may be asked for.
    #[serde(skip_serializing_if = "Option::is_none", with = "optional_duration_text")]
    pub max_token_lifetime: Option<std::time::Duration>,
    /// How long an export made over the API is kept on the server (`exports/` beside the
    /// config) before `prune` of its workspace removes it (default: 3 days).
    #[serde(skip_serializing_if = "Option::is_none", with = "optional_duration_text")]
    pub keep_exports: Option<std::time::Duration>,
    /// A web console session with no request from its person for this long ends (the
    /// pages' own refreshes do not count).
    #[serde(with = "duration_text")]
    pub console_idle_timeout: std::time::Duration,
    /// A web console session ends this long after sign-in, however active.
    #[serde(with = "duration_text")]
    pub console_session_lifetime: std::time::Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: None,
            allow_plain_http: false,
            tls_cert: None,
            tls_key: None,
            allow_ips: Vec::new(),
            deny_ips: Vec::new(),
            trusted_proxies: Vec::new(),
            requests_per_second: 50,
            failed_auth_per_minute: 10,
            heavy_jobs_per_workspace: 1,
            heavy_jobs_per_token: 2,
            header_read_timeout: std::time::Duration::from_secs(10),
            max_token_lifetime: None,
            keep_exports: None,
            console_idle_timeout: std::time::Duration::from_secs(3600),
            console_session_lifetime: std::time::Duration::from_secs(12 * 3600),
        }
    }
}

/// `[drill]`: where drills restore, how long they may take, which assertions they run.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DrillConfig {
    /// A Postgres server for logical drills (`postgres://user@host/postgres`, its maintenance
    /// database): each drill creates and drops `tidemark_drill_<workspace>_<snapshot>` there.
    /// Default: a throwaway cluster tidemark starts itself (initdb on a free port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scratch_server: Option<String>,
    /// The scratch server's password: `env:VAR`, `file:/path`, or the literal text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scratch_password: Option<Secret>,
    /// Where drills put their throwaway clusters and media (default: the system temp folder).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scratch_dir: Option<PathBuf>,
    /// A drill that runs longer fails (its throwaway is removed all the same).
    #[serde(with = "duration_text")]
    pub timeout: std::time::Duration,
    /// How long one restore-test assertion may run.
    #[serde(with = "duration_text")]
    pub assertion_timeout: std::time::Duration,
    /// The folder of `*.sql` assertions every drill runs. Default: `restore-tests/` beside
    /// the config file, else the generic ones built into tidemark.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_tests: Option<PathBuf>,
}

impl Default for DrillConfig {
    fn default() -> Self {
        DrillConfig {
            scratch_server: None,
            scratch_password: None,
            scratch_dir: None,
            timeout: std::time::Duration::from_secs(6 * 3600),
            assertion_timeout: std::time::Duration::from_secs(300),
            restore_tests: None,
        }
    }
}

/// `[daemon]`: concurrency, retries, shutdown and notifications of `tidemark serve`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DaemonConfig {
    /// Jobs running at once across all workspaces (one workspace never runs two).
    pub max_concurrent_jobs: usize,
    /// Retries of a job that failed with a temporary error (unreachable database or store).
    pub retries: u32,
    /// Wait before the first retry; it doubles for each further retry.
    #[serde(with = "duration_text")]
    pub retry_backoff: std::time::Duration,
    /// On SIGTERM/SIGINT, how long running jobs may take to finish before they are aborted.
    #[serde(with = "duration_text")]
    pub shutdown_timeout: std::time::Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            max_concurrent_jobs: 2,
            retries: 3,
            retry_backoff: std::time::Duration::from_secs(60),
            shutdown_timeout: std::time::Duration::from_secs(300),
            webhook: None,
        }
    }
}

/// `[daemon.webhook]`: a JSON POST for every failed job (and, if asked, every success).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WebhookConfig {
    /// Often carries a token: write it as `env:VAR` or `file:PATH`. Never logged.
    pub url: Secret,
    #[serde(default)]
    pub on_success: bool,
    /// `workspace.stale` and `workspace.recovered` events, once per transition (default:
    /// on).
    #[serde(default = "yes")]
    pub on_stale: bool,
}

fn yes() -> bool {
    true
}

/// Optional durations written as text.
pub mod optional_duration_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<std::time::Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration_text::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<std::time::Duration>, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("bad duration {text:?}: {e} (write 7d, 36h)")))
    }
}

/// Durations written as text: `90s`, `5m`, `1h 30m`.
pub mod duration_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("bad duration {text:?}: {e} (write 90s, 5m, 1h)")))
    }
}

/// Where backups live and how to reach and encrypt them.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RepositoryConfig {
    /// `file:///path`, `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`.
    pub url: String,
    /// age recipients (`age1...`) every object is encrypted to. Backing up needs only these.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// age identity file (X25519 secret keys), needed to read the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,
    /// S3: endpoint for S3-compatible servers (`http://127.0.0.1:9000`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// S3: region (default from `AWS_REGION`, else `us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// S3: address buckets as `endpoint/bucket` instead of `bucket.endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    /// S3: allow plain `http://` endpoints (local test servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_http: Option<bool>,
    /// S3 credentials; default: the standard AWS environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<Secret>,
    /// Google Cloud Storage: the service account's JSON key (`file:/path/key.json` or
    /// `env:VARIABLE`); default: Google's application default credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<Secret>,
    /// Azure Blob Storage: the storage account's name (default: `AZURE_STORAGE_ACCOUNT_NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Azure Blob Storage: the account's access key, or a SAS token (one of the two; default:
    /// the standard `AZURE_STORAGE_*` environment variables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sas_token: Option<Secret>,
    /// Size of each multipart upload part, in MiB (S3 needs at least 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_size_mib: Option<usize>,
    /// The Ed25519 signing key (PKCS#8 PEM, mode 0600) that signs every manifest, record
    /// and WAL file written; needed to back up, not to restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<PathBuf>,
    /// The public keys whose signatures are trusted (base64 of the DER public key, as
    /// `tidemark signing-key show` prints). The signing key's own is trusted too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_signers: Vec<String>,
    /// S3 object lock: every object written gets a retain-until date in this mode (the
    /// bucket must have object lock enabled). `None`: no locks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<LockMode>,
    /// Added to every lock beyond the retention that needs the object (default 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "optional_duration_text")]
    pub lock_margin: Option<std::time::Duration>,
    /// A copy's own retention: in the copy, a snapshot of any kind is kept while younger
    /// than this (pins always). Default: what the primary's policies keep. Copies only.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "optional_duration_text")]
    pub keep_within: Option<std::time::Duration>,
    /// A copy's own point-in-time window: its base backups and WAL are kept for this long.
    /// Default: the workspace's `pitr-window` (or its policies'). Copies only.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "optional_duration_text")]
    pub pitr_window: Option<std::time::Duration>,
    /// A copy's WAL between copies: `serve` sends each workspace's newly archived WAL to
    /// this copy this often (and records its lag), so its point-in-time window follows the
    /// primary's within about this. Default: WAL goes over with each copy only. Copies only.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "optional_duration_text")]
    pub wal_interval: Option<std::time::Duration>,
    /// Accept unsigned records (repositories written before tidemark signed) and write
    /// unsigned ones when there is no signing key. Only from `--allow-unsigned`, never the
    /// config file.
    #[serde(skip)]
    pub allow_unsigned: bool,
}

/// The S3 object-lock mode: `governance` (a user with s3:BypassGovernanceRetention can
/// still delete) or `compliance` (nobody can, not even the account's root, until the date).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    Governance,
    Compliance,
}

impl LockMode {
    /// As S3 writes it.
    pub fn as_s3(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }
}

/// The name `--repository` gives `[repository]` (copies cannot take it).
pub const PRIMARY: &str = "primary";

/// The rules every repository table follows, `[repository]` or a copy (`section` names it).
fn validate_repository(section: &str, r: &RepositoryConfig) -> Result<()> {
    if r.url.trim().is_empty() {
        return Err(Error::config(format!("{section}.url is empty")));
    }
    let scheme = r.url.split_once("://").map(|(s, _)| s).unwrap_or_default();
    if r.object_lock.is_some() && scheme != "s3" {
        return Err(Error::config(format!(
            "{section}.object-lock is set, but tidemark sets per-object locks on S3 only and {section} is not s3://: \
             remove the setting. On Google Cloud Storage use a bucket retention policy, on Azure a container's \
             time-based immutability policy (tidemark never overwrites an object; prune's deletes of objects \
             still under the policy are then refused by the provider and reported)"
        )));
    }
    let keys_of = |keys: &[(&str, bool)], provider: &str, scheme_ok: bool| -> Result<()> {
        match keys.iter().find(|(_, set)| *set) {
            Some((key, _)) if !scheme_ok => Err(Error::config(format!(
                "{section}.{key} is a setting for {provider}, but {section}.url is not a {provider} URL: remove it"
            ))),
            _ => Ok(()),
        }
    };
    keys_of(
        &[("service-account", r.service_account.is_some())],
        "Google Cloud Storage",
        matches!(scheme, "gs" | "gcs"),
    )?;
    let azure = matches!(scheme, "az" | "azure");
    keys_of(
        &[
            ("account", r.account.is_some()),
            ("access-key", r.access_key.is_some()),
            ("sas-token", r.sas_token.is_some()),
        ],
        "Azure Blob Storage",
        azure,
    )?;
    if r.access_key.is_some() && r.sas_token.is_some() {
        return Err(Error::config(format!("{section}: give access-key or sas-token, not both")));
    }
    for (key, secret) in
        [("service-account", &r.service_account), ("access-key", &r.access_key), ("sas-token", &r.sas_token)]
    {
        if let Some(secret) = secret {
            Secret::reference(&format!("{section}.{key}"), secret.as_written())
                .map_err(|e| Error::config(e.message().to_string()))?;
        }
    }
    if let Some(mib) = r.part_size_mib
        && !(5..=5 * 1024).contains(&mib)
    {
        return Err(Error::config(format!("{section}.part-size-mib = {mib} is out of range: S3 needs 5 to 5120 MiB")));
    }
    Ok(())
}

/// A `[copies.NAME]` table: a repository's rules, a name `--repository` can take, and none
/// of what a copy takes from the primary (it holds the primary's objects byte for byte).
fn validate_copy(name: &str, copy: &RepositoryConfig, primary: &RepositoryConfig) -> Result<()> {
    let section = format!("copies.{name}");
    if name == PRIMARY || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') || name.len() > 40 {
        return Err(Error::config(format!(
            "[{section}]: a copy's name is letters, digits, '-' and '_' (at most 40), and not {PRIMARY:?}"
        )));
    }
    validate_repository(&section, copy)?;
    let own_keys = !copy.recipients.is_empty() && copy.recipients != primary.recipients;
    if copy.identity_file.is_some() && !own_keys {
        return Err(Error::config(format!(
            "{section}.identity-file: a copy without recipients of its own holds the primary's objects byte for \
             byte and is read with the primary's identity (repository.identity-file); remove it here, or give the \
             copy its own {section}.recipients"
        )));
    }
    if copy.signing_key.is_some() {
        return Err(Error::config(format!(
            "{section}.signing-key: a copy is signed with the primary's key (repository.signing-key); remove it \
             here (a copy may trust other signers: {section}.trusted-signers)"
        )));
    }
    if copy.url.trim_end_matches('/') == primary.url.trim_end_matches('/') {
        return Err(Error::config(format!("{section}.url is the primary's own URL: a copy must be elsewhere")));
    }
    Ok(())
}

/// Default of `repository.lock-margin`.
pub const DEFAULT_LOCK_MARGIN: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// Where the Postgres client tools (pg_dump, psql) and server binaries are.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PostgresConfig {
    /// Folder holding pg_dump, psql, initdb... Default: `pg_config --bindir`, then the newest
    /// `/usr/lib/postgresql/*/bin`, then `PATH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bin_dir: Option<PathBuf>,
}

/// One workspace: its database (and, later, media and stacks).
#[derive(Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WorkspaceConfig {
    /// `postgres://user@host:port/db?sslmode=...`; a password here works but `password` is better.
    pub database_url: String,
    /// The database password: `env:VAR`, `file:/path`, or the literal text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// The role for what creates, renames or drops the workspace's databases (in-place
    /// restore, undo, branches): `postgres://restorer@host:port/postgres` on the same
    /// server. It needs CREATEDB and the privileges of the live database's owner
    /// (`GRANT <owner> TO restorer`); restored databases belong to that owner. Default:
    /// `database-url`'s role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_database_url: Option<String>,
    /// The password of `restore-database-url`: `env:VAR`, `file:/path`, or the literal text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_password: Option<Secret>,
    /// The media store: `file:///srv/shop/media` or `s3://bucket/prefix` (S3 media use the
    /// repository's S3 settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<String>,
    /// The policies (file names in the schedules folder, without `.toml`) that apply to
    /// this workspace. Default: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedules: Option<Vec<String>>,
    /// `serve` streams this workspace's WAL continuously (see `tidemark wal stream`):
    /// `true`, or `"synchronous"` to run the receiver as a synchronous standby.
    #[serde(default, skip_serializing_if = "WalStream::is_off")]
    pub wal_stream: WalStream,
    /// Where the WAL stream keeps what it received and has not shipped yet (default:
    /// `wal-spool/<workspace>` beside the config); `pitr restore` reads it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_spool: Option<PathBuf>,
    /// How far back a point-in-time restore must stay possible (`7d`); retention keeps the
    /// base backups and WAL that needs. Default: the longest `keep-within` of its policies.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "optional_duration_text")]
    pub pitr_window: Option<std::time::Duration>,
    /// A folder of this workspace's own restore-test assertions (`*.sql`), run by its drills
    /// after the shared ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_tests: Option<PathBuf>,
    /// How long a database moved aside by an in-place restore (`<db>_before_*`, and
    /// `<db>_undone_*` after an undo) or `branch set-live` is kept before prune drops it
    /// (default: 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "optional_duration_text")]
    pub keep_replaced: Option<std::time::Duration>,
    /// Set on a branch (`tidemark branch create`): the workspace it was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_of: Option<String>,
    /// A branch's source: `snapshot <id>` or `time <RFC 3339>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_source: Option<String>,
    /// When the branch was made (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_created: Option<String>,
    /// `[workspaces.X.alerts]`: the ages past which the workspace is stale (`tidemark
    /// status`, the daemon's webhook events). Unset ones are derived from its policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertsConfig>,
}

/// `wal-stream` of a workspace: `false` (the default), `true`, or `"synchronous"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WalStream {
    #[default]
    Off,
    /// Streamed; the source does not wait for it.
    On,
    /// Streamed as a synchronous standby: with the receiver's application name in the
    /// source's `synchronous_standby_names`, a commit returns once its WAL is durable in the
    /// spool.
    Synchronous,
}

impl WalStream {
    pub fn is_off(&self) -> bool {
        *self == WalStream::Off
    }

    pub fn is_on(self) -> bool {
        self != WalStream::Off
    }
}

impl Serialize for WalStream {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            WalStream::Off => s.serialize_bool(false),
            WalStream::On => s.serialize_bool(true),
            WalStream::Synchronous => s.serialize_str("synchronous"),
        }
    }
}

impl<'de> Deserialize<'de> for WalStream {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<WalStream, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Flag(bool),
            Mode(String),
        }
        match Written::deserialize(d)? {
            Written::Flag(false) => Ok(WalStream::Off),
            Written::Flag(true) => Ok(WalStream::On),
            Written::Mode(m) if m == "synchronous" => Ok(WalStream::Synchronous),
            Written::Mode(m) => {
                Err(serde::de::Error::custom(format!("wal-stream is true, false or \"synchronous\", not {m:?}")))
            }
        }
    }
}

/// `[workspaces.X.alerts]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AlertsConfig {
    /// The newest good snapshot may be this old (default: the shortest snapshot interval of
    /// its policies plus 2h; daily: 26h).
    #[serde(skip_serializing_if = "Option::is_none", with = "optional_duration_text")]
    pub max_snapshot_age: Option<std::time::Duration>,
    /// The newest drill may be this old (default: the shortest drill interval plus a day;
    /// weekly: 8d).
    #[serde(skip_serializing_if = "Option::is_none", with = "optional_duration_text")]
    pub max_drill_age: Option<std::time::Duration>,
    /// The newest archived WAL may be this old (default: 5m where WAL is archived).
    #[serde(skip_serializing_if = "Option::is_none", with = "optional_duration_text")]
    pub max_wal_lag: Option<std::time::Duration>,
    /// Each copy (`[copies.NAME]`) may be this far behind the primary (default: the
    /// shortest interval of its copy policies, or snapshot policies with `copy-after`, plus
    /// 2h).
    #[serde(skip_serializing_if = "Option::is_none", with = "optional_duration_text")]
    pub max_copy_lag: Option<std::time::Duration>,
}

impl WorkspaceConfig {
    /// A workspace at `database_url` with nothing else set.
    pub fn at(database_url: impl Into<String>) -> WorkspaceConfig {
        WorkspaceConfig {
            database_url: database_url.into(),
            password: None,
            restore_database_url: None,
            restore_password: None,
            media: None,
            schedules: None,
            wal_stream: WalStream::Off,
            wal_spool: None,
            pitr_window: None,
            restore_tests: None,
            keep_replaced: None,
            branch_of: None,
            branch_source: None,
            branch_created: None,
            alerts: None,
        }
    }
}

impl fmt::Debug for WorkspaceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkspaceConfig")
            .field("database_url", &crate::pg::redact_url(&self.database_url))
            .field("password", &self.password)
            .field("restore_database_url", &self.restore_database_url.as_deref().map(crate::pg::redact_url))
            .field("restore_password", &self.restore_password)
            .field("media", &self.media)
            .field("schedules", &self.schedules)
            .field("wal_stream", &self.wal_stream)
            .field("wal_spool", &self.wal_spool)
            .field("pitr_window", &self.pitr_window)
            .field("restore_tests", &self.restore_tests)
            .finish()
    }
}

/// Where the catalog lives.
#[derive(Debug, Clone)]
pub enum CatalogLocation {
    /// A SQLite file (the embedded default: one host).
    File(PathBuf),
    /// A PostgreSQL database several tidemark processes share: its URL (without a
    /// password) and the password as a secret (`env:`/`file:`). `side` is the host's path
    /// for what stays on the host (the file locks beside the catalog).
    Postgres { url: String, password: Option<Secret>, side: PathBuf },
}

/// Whether the config's `catalog` names a PostgreSQL database rather than a file.
fn is_postgres_url(catalog: &Path) -> bool {
    let text = catalog.to_string_lossy();
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// A PostgreSQL catalog's URL as tidemark takes it: a `postgres://` URL without a password
/// (in its user part or a `password=` parameter). The config and process arguments are no
/// place for a secret; the password comes as a secret reference.
///
/// Errors: `Config` naming what is wrong, never echoing a password.
pub fn check_catalog_url(text: &str) -> Result<()> {
    let parsed = url::Url::parse(text)
        .map_err(|e| Error::config(format!("{} is not a URL: {e}", crate::pg::redact_url(text))))?;
    if parsed.password().is_some() || text.to_ascii_lowercase().contains("password=") {
        return Err(Error::config(format!("the URL {} carries a password", crate::pg::redact_url(text))));
    }
    crate::pg::ConnSpec::parse(text, None).map(drop)
}

/// A loaded config and the file it came from (relative paths in it are relative to that file).
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    pub path: PathBuf,
}

/// Which config file to use: `--config`, else `$TIDEMARK_CONFIG`, else `./tidemark.toml`.
pub fn config_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os(CONFIG_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_CONFIG_FILE),
    }
}

impl LoadedConfig {
    /// Reads and validates the config file.
    ///
    /// Errors: `Config` when the file is missing, not TOML, has unknown keys or bad values.
    pub fn load(explicit: Option<&Path>) -> Result<LoadedConfig> {
        let path = config_path(explicit);
        let text = fs_err::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::config(format!(
                    "no config file at {}. Run `tidemark init --repo URL` to create one, or pass \
                     --config FILE (or set {CONFIG_ENV})",
                    path.display()
                ))
            } else {
                Error::config(format!("cannot read {}: {e}", path.display()))
            }
        })?;
        let config = Config::parse(&text).map_err(|e| e.context(format!("reading {}", path.display())))?;
        Ok(LoadedConfig { config, path })
    }

    /// A path from the config, made absolute relative to the config file's folder.
    pub fn resolve_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_path_buf() } else { self.path.parent().unwrap_or(Path::new(".")).join(p) }
    }

    /// The folders of restore-test assertions a drill of `workspace` runs, shared first.
    /// `None` in the list stands for the generic assertions built into tidemark (used when no
    /// folder is configured and there is no `restore-tests/` beside the config file).
    pub fn restore_test_dirs(&self, workspace: &WorkspaceConfig) -> Vec<Option<PathBuf>> {
        let beside = self.resolve_path(Path::new("restore-tests"));
        let shared = match &self.config.drill.restore_tests {
            Some(dir) => Some(self.resolve_path(dir)),
            None => beside.is_dir().then_some(beside),
        };
        let mut dirs = vec![shared];
        if let Some(own) = &workspace.restore_tests {
            dirs.push(Some(self.resolve_path(own)));
        }
        dirs
    }

    /// The catalog file: `catalog` from the config, else `tidemark-catalog.sqlite` beside it;
    /// with a PostgreSQL catalog, `tidemark-catalog` beside the config, the path the host's
    /// own files go beside (the workspace locks, the daemon's lock file).
    pub fn catalog_path(&self) -> PathBuf {
        match self.config.catalog.as_deref() {
            Some(url) if is_postgres_url(url) => self.resolve_path(Path::new("tidemark-catalog")),
            Some(path) => self.resolve_path(path),
            None => self.resolve_path(Path::new(DEFAULT_CATALOG_FILE)),
        }
    }

    /// Where the catalog is: a file, or a PostgreSQL database with its password.
    pub fn catalog_location(&self) -> CatalogLocation {
        match self.config.catalog.as_deref() {
            Some(url) if is_postgres_url(url) => CatalogLocation::Postgres {
                url: url.to_string_lossy().into_owned(),
                password: self.config.catalog_password.clone(),
                side: self.catalog_path(),
            },
            _ => CatalogLocation::File(self.catalog_path()),
        }
    }

    /// Whether the catalog may hold anything yet: a file that exists, or any PostgreSQL
    /// catalog (opening one that is empty makes its tables, which costs nothing).
    pub fn catalog_may_exist(&self) -> bool {
        match self.catalog_location() {
            CatalogLocation::File(path) => path.exists(),
            CatalogLocation::Postgres { .. } => true,
        }
    }

    /// The workspace named `name`. Errors: `NotFound` listing the configured names.
    pub fn workspace(&self, name: &str) -> Result<&WorkspaceConfig> {
        self.config.workspaces.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.config.workspaces.keys().map(String::as_str).collect();
            Error::not_found(format!(
                "no workspace named {name:?} in {} (configured: {}). Add one with \
                 `tidemark workspace add {name} --database-url URL`",
                self.path.display(),
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))
        })
    }

    /// Where the identity comes from: `$TIDEMARK_IDENTITY`, `$TIDEMARK_IDENTITY_FILE`, or
    /// `repository.identity-file`.
    pub fn identity_source(&self) -> Option<IdentitySource> {
        self.identity_source_for(&self.config.repository)
    }

    /// [`Self::identity_source`] of a repository table (a copy with keys of its own has its
    /// own `identity-file`; see [`Config::repository_named`]).
    pub fn identity_source_for(&self, repository: &RepositoryConfig) -> Option<IdentitySource> {
        identity_source_from_env()
            .or_else(|| repository.identity_file.as_ref().map(|p| IdentitySource::File(self.resolve_path(p))))
    }
}

impl Config {
    /// A config of a repository and workspaces, everything else at its default.
    pub fn new(repository: RepositoryConfig, workspaces: BTreeMap<String, WorkspaceConfig>) -> Config {
        Config {
            repository,
            copies: BTreeMap::new(),
            postgres: Default::default(),
            workspaces,
            schedules_dir: None,
            catalog: None,
            catalog_password: None,
            daemon: Default::default(),
            drill: Default::default(),
            api: Default::default(),
            metrics: Default::default(),
            fleet: Default::default(),
        }
    }
}

impl Config {
    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| Error::config(format!("invalid config: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        if self.repository.url.trim().is_empty() {
            return Err(Error::config("repository.url is empty"));
        }
        self.fleet.check()?;
        let api = &self.api;
        if api.console_idle_timeout.is_zero() || api.console_idle_timeout > api.console_session_lifetime {
            return Err(Error::config(
                "api.console-idle-timeout must be more than 0 and at most api.console-session-lifetime",
            ));
        }
        match self.catalog.as_deref() {
            Some(url) if is_postgres_url(url) => {
                if let Some(password) = &self.catalog_password {
                    Secret::reference("catalog-password", password.as_written())
                        .map_err(|e| Error::config(e.message().to_string()))?;
                }
                check_catalog_url(&url.to_string_lossy()).map_err(|e| {
                    Error::config(format!(
                        "catalog: {}; give its password as catalog-password = \"env:VARIABLE\" or \"file:/path\" \
                         (the config is no place for a secret)",
                        e.message()
                    ))
                })?;
            }
            Some(_) if self.catalog_password.is_some() => {
                return Err(Error::config(
                    "catalog-password goes with a PostgreSQL catalog (catalog = \"postgres://...\")",
                ));
            }
            _ => {}
        }
        for r in &self.repository.recipients {
            crate::keys::parse_recipient(r)?;
        }
        for (name, ws) in &self.workspaces {
            validate_workspace_name(name)?;
            let live = crate::pg::ConnSpec::parse(&ws.database_url, None)
                .map_err(|e| e.context(format!("reading workspaces.{name}.database-url")))?;
            if let Some(url) = &ws.restore_database_url {
                let restorer = crate::pg::ConnSpec::parse(url, None)
                    .map_err(|e| e.context(format!("reading workspaces.{name}.restore-database-url")))?;
                if !restorer.same_server(&live) {
                    return Err(Error::config(format!(
                        "workspaces.{name}.restore-database-url names another server than its database-url: \
                         the restore role works on the workspace's own server"
                    )));
                }
            }
        }
        if self.daemon.max_concurrent_jobs == 0 {
            return Err(Error::config("daemon.max-concurrent-jobs = 0 would never run a job: use 1 or more"));
        }
        validate_repository("repository", &self.repository)?;
        for (key, set) in [
            ("keep-within", self.repository.keep_within.is_some()),
            ("pitr-window", self.repository.pitr_window.is_some()),
            ("wal-interval", self.repository.wal_interval.is_some()),
        ] {
            if set {
                return Err(Error::config(format!(
                    "repository.{key} is a copy's own retention ([copies.NAME]); the primary's is its policies' \
                     [retention] and the workspace's pitr-window"
                )));
            }
        }
        for (name, copy) in &self.copies {
            validate_copy(name, copy, &self.repository)?;
        }
        Ok(())
    }

    /// The recipients of copy `name` when they are its own (not the primary's): `copy`
    /// re-seals every object to them, and the copy's own `identity-file` reads it.
    pub fn own_keys(&self, name: &str) -> Option<&[String]> {
        let copy = self.copies.get(name)?;
        (!copy.recipients.is_empty() && copy.recipients != self.repository.recipients).then_some(&copy.recipients[..])
    }

    /// The repository called `name`: `None` (or the word `primary`) is `[repository]`, any
    /// other name a `[copies.NAME]`, completed with what copies take from the primary (the
    /// signing key; recipients and identity unless it has recipients of its own; the
    /// trusted signers when it names none).
    ///
    /// Errors: `Usage` for a name that is not configured, naming those that are.
    pub fn repository_named(&self, name: Option<&str>) -> Result<RepositoryConfig> {
        let Some(name) = name.filter(|n| *n != PRIMARY) else { return Ok(self.repository.clone()) };
        let Some(copy) = self.copies.get(name) else {
            let known: Vec<_> = std::iter::once(PRIMARY).chain(self.copies.keys().map(String::as_str)).collect();
            return Err(Error::usage(format!(
                "there is no repository called {name:?}: the config has {} (a copy is a [copies.NAME] table)",
                known.join(", ")
            )));
        };
        let primary = &self.repository;
        let mut out = copy.clone();
        if self.own_keys(name).is_none() {
            out.recipients.clone_from(&primary.recipients);
            out.identity_file.clone_from(&primary.identity_file);
        }
        out.signing_key.clone_from(&primary.signing_key);
        if out.trusted_signers.is_empty() {
            out.trusted_signers.clone_from(&primary.trusted_signers);
        }
        out.allow_unsigned = primary.allow_unsigned;
        Ok(out)
    }

    /// The config file text `init` writes: commented, so the operator can edit it.
    pub fn render_initial(&self) -> String {
        let mut out = String::new();
        out.push_str("# tidemark configuration. Unknown keys are errors.\n");
        out.push_str("# Secrets may be written as \"env:VARIABLE\" or \"file:/path\" instead of literal values.\n\n");
        out.push_str("[repository]\n");
        out.push_str(&format!("url = {}\n", toml_string(&self.repository.url)));
        out.push_str("# Backups are encrypted to every recipient; keep a second (break-glass) key offline.\n");
        out.push_str("recipients = [");
        out.push_str(&self.repository.recipients.iter().map(|r| toml_string(r)).collect::<Vec<_>>().join(", "));
        out.push_str("]\n");
        if let Some(id) = &self.repository.identity_file {
            out.push_str("# Without this file (or another listed identity) the backups cannot be restored.\n");
            out.push_str(&format!("identity-file = {}\n", toml_string(&id.display().to_string())));
        }
        for (key, value) in [("endpoint", self.repository.endpoint.clone()), ("region", self.repository.region.clone())]
        {
            if let Some(v) = value {
                out.push_str(&format!("{key} = {}\n", toml_string(&v)));
            }
        }
        if let Some(v) = self.repository.path_style {
            out.push_str(&format!("path-style = {v}\n"));
        }
        if let Some(v) = self.repository.allow_http {
            out.push_str(&format!("allow-http = {v}\n"));
        }
        if let Some(mode) = self.repository.object_lock {
            out.push_str(&format!("object-lock = {}\n", toml_string(&mode.as_s3().to_lowercase())));
        }
        if let Some(key) = &self.repository.signing_key {
            out.push_str("# Signs every manifest and WAL file; needed to back up. Keep it off restore-only hosts.\n");
            out.push_str(&format!("signing-key = {}\n", toml_string(&key.display().to_string())));
        }
        if !self.repository.trusted_signers.is_empty() {
            out.push_str("# Restore, drill, check and PITR accept only what these public keys signed.\n");
            out.push_str("trusted-signers = [");
            out.push_str(
                &self.repository.trusted_signers.iter().map(|r| toml_string(r)).collect::<Vec<_>>().join(", "),
            );
            out.push_str("]\n");
        }
        for (name, ws) in &self.workspaces {
            out.push_str(&render_workspace(name, ws));
        }
        out
    }
}

/// The TOML text of one `[workspaces.NAME]` table, as `workspace add` adds it.
pub fn render_workspace(name: &str, ws: &WorkspaceConfig) -> String {
    let mut out = format!("\n[workspaces.{name}]\ndatabase-url = {}\n", toml_string(&ws.database_url));
    if let Some(p) = &ws.password {
        out.push_str(&format!("password = {}\n", toml_string(p.as_written())));
    }
    if let Some(m) = &ws.media {
        out.push_str(&format!("media = {}\n", toml_string(m)));
    }
    if let Some(list) = &ws.schedules {
        let names: Vec<String> = list.iter().map(|n| toml_string(n)).collect();
        out.push_str(&format!("schedules = [{}]\n", names.join(", ")));
    }
    match ws.wal_stream {
        WalStream::Off => {}
        WalStream::On => out.push_str("wal-stream = true\n"),
        WalStream::Synchronous => out.push_str("wal-stream = \"synchronous\"\n"),
    }
    if let Some(dir) = &ws.wal_spool {
        out.push_str(&format!("wal-spool = {}\n", toml_string(&dir.display().to_string())));
    }
    if let Some(w) = ws.pitr_window {
        out.push_str(&format!("pitr-window = {}\n", toml_string(&humantime::format_duration(w).to_string())));
    }
    if let Some(dir) = &ws.restore_tests {
        out.push_str(&format!("restore-tests = {}\n", toml_string(&dir.display().to_string())));
    }
    for (key, value) in
        [("branch-of", &ws.branch_of), ("branch-source", &ws.branch_source), ("branch-created", &ws.branch_created)]
    {
        if let Some(v) = value {
            out.push_str(&format!("{key} = {}\n", toml_string(v)));
        }
    }
    out
}

/// Removes workspace `name`'s table from the config file at `path`, keeping everything
/// else (comments, layout) as it is (see [`edit_workspaces`]).
///
/// Errors: `NotFound` when the file has no such workspace; those of [`edit_workspaces`].
pub fn remove_workspace(path: &Path, name: &str) -> Result<()> {
    edit_workspaces(path, |workspaces| match workspaces.remove(name) {
        Some(_) => Ok(()),
        None => Err(Error::not_found(format!("{} has no workspace {name}", path.display()))),
    })
}

/// Adds `[workspaces.NAME]` to the config file at `path`, keeping everything else as it is
/// (see [`edit_workspaces`]).
///
/// Errors: `AlreadyExists` for a name the file has; those of [`edit_workspaces`].
pub fn add_workspace(path: &Path, name: &str, ws: &WorkspaceConfig) -> Result<()> {
    let table: toml_edit::DocumentMut = render_workspace(name, ws)
        .parse()
        .map_err(|e| Error::internal(format!("a workspace's table does not parse as TOML: {e}")))?;
    let mut entry = table["workspaces"][name].clone();
    // At the end of the file, after every table there is (not beside the other workspaces,
    // which may be anywhere).
    if let Some(t) = entry.as_table_mut() {
        t.set_position(Some(isize::MAX / 2));
    }
    edit_workspaces(path, |workspaces| {
        if workspaces.contains_key(name) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("workspace {name} is already in {}", path.display()),
            ));
        }
        workspaces.insert(name, entry);
        Ok(())
    })
}

/// The one way tidemark changes the operator's config file, for `workspace add|remove`
/// (a running server never does): under an exclusive lock of `<path>.lock` (two commands
/// at once apply one after the other, neither loses the other's change), read now, the
/// `[workspaces]` table changed by `change` with `toml_edit` (every other key, comment and
/// the layout kept), the result parsed as a config before it replaces the file atomically
/// with the old file's mode and owners.
///
/// Errors: `Config` when the file does not parse before or after; those of `change`;
/// `Unavailable`/`Io` kinds for the file system, naming the path.
pub fn edit_workspaces(path: &Path, change: impl FnOnce(&mut dyn toml_edit::TableLike) -> Result<()>) -> Result<()> {
    let lock_path = path.with_extension("toml.lock");
    let lock = fs_err::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path)?;
    lock.file().lock().map_err(|e| Error::from(e).context(format!("locking {}", lock_path.display())))?;
    let text = fs_err::read_to_string(path)?;
    let mut doc: toml_edit::DocumentMut =
        text.parse().map_err(|e| Error::config(format!("{} is not valid TOML: {e}", path.display())))?;
    if doc.get("workspaces").is_none() {
        let mut implicit = toml_edit::Table::new();
        implicit.set_implicit(true);
        doc.insert("workspaces", toml_edit::Item::Table(implicit));
    }
    let workspaces = doc
        .get_mut("workspaces")
        .and_then(toml_edit::Item::as_table_like_mut)
        .ok_or_else(|| Error::config(format!("{}: `workspaces` is not a table", path.display())))?;
    change(workspaces)?;
    let new = doc.to_string();
    Config::parse(&new)?;
    let tmp = path.with_extension("toml.tmp");
    fs_err::write(&tmp, &new)?;
    // The new file is the old one's: its mode and owners (the server's group may read it).
    let was = fs_err::metadata(path)?;
    fs_err::set_permissions(&tmp, was.permissions())?;
    {
        use std::os::unix::fs::MetadataExt;
        // Only root may give a file away; anyone else already owns what it writes.
        let _ = std::os::unix::fs::chown(&tmp, Some(was.uid()), Some(was.gid()));
    }
    fs_err::File::open(&tmp)?.sync_all()?;
    fs_err::rename(&tmp, path)?;
    Ok(())
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Workspace names become object-key segments and database-name suffixes: keep them plain.
pub fn validate_workspace_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 48
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Usage,
            format!(
                "workspace name {name:?} is not allowed: use 1-48 lowercase letters, digits, '_' or '-', \
                 starting with a letter or digit"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented config with every key (docs/reference/configuration.md's first block).
    fn documented_config() -> String {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let docs = fs_err::read_to_string(root.join("docs/reference/configuration.md")).unwrap();
        let start = docs.find("```toml\n").unwrap() + 8;
        let mut text = docs[start..start + docs[start..].find("```").unwrap()].to_string();
        // Its placeholder keys (`"age1..."`, `"age1...breakglass"`) as real ones.
        while let Some(at) = text.find("\"age1...") {
            let end = at + 1 + text[at + 1..].find('"').unwrap();
            let recipient = age::x25519::Identity::generate().to_public().to_string();
            text.replace_range(at..=end, &format!("{recipient:?}"));
        }
        text
    }

    /// `workspace add` then `workspace remove` (issue 32): the file is the same byte for
    /// byte, every key kept in between (alerts, keep-replaced, comments); eight adds at once
    /// all land.
    #[test]
    fn adding_and_removing_a_workspace_keeps_every_other_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tidemark.toml");
        let original = documented_config();
        let before = Config::parse(&original).unwrap();
        fs_err::write(&path, &original).unwrap();
        let ws = WorkspaceConfig {
            media: Some("file:///srv/media".into()),
            ..WorkspaceConfig::at("postgres://app@db:5432/added")
        };
        add_workspace(&path, "added", &ws).unwrap();
        let added = fs_err::read_to_string(&path).unwrap();
        assert!(added.starts_with(original.trim_end()), "{added}");
        let mut after = Config::parse(&added).unwrap();
        assert_eq!(after.workspaces.remove("added"), Some(ws.clone()));
        assert_eq!(serde_json::to_value(&after).unwrap(), serde_json::to_value(&before).unwrap());
        let again = add_workspace(&path, "added", &ws).unwrap_err();
        assert_eq!(again.kind(), ErrorKind::AlreadyExists);
        remove_workspace(&path, "added").unwrap();
        assert_eq!(fs_err::read_to_string(&path).unwrap(), original);

        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (path, ws) = (path.clone(), ws.clone());
                std::thread::spawn(move || add_workspace(&path, &format!("w{i}"), &ws).unwrap())
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let all = Config::parse(&fs_err::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(all.workspaces.len(), before.workspaces.len() + 8);
    }

    /// A PostgreSQL catalog: its URL without a password, the password by reference only;
    /// a file catalog takes no password. No message repeats a password.
    #[test]
    fn a_postgres_catalog_takes_its_password_by_reference_only() {
        let with = |top: &str| Config::parse(&format!("{top}\n[repository]\nurl = \"file:///tmp/r\"\n"));
        let ok = with("catalog = \"postgres://tidemark@db/tidemark\"\ncatalog-password = \"env:TDM_PW\"").unwrap();
        let loaded = LoadedConfig { config: ok, path: PathBuf::from("/etc/tidemark/tidemark.toml") };
        match loaded.catalog_location() {
            CatalogLocation::Postgres { url, password, side } => {
                assert_eq!(url, "postgres://tidemark@db/tidemark");
                assert_eq!(password.unwrap().env_var(), Some("TDM_PW"));
                assert_eq!(side, PathBuf::from("/etc/tidemark/tidemark-catalog"), "the host's locks beside the config");
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            "catalog = \"postgres://tidemark:hunter2@db/tidemark\"",
            "catalog = \"postgres://tidemark@db/tidemark?password=hunter2\"",
            "catalog = \"postgres://tidemark@db/tidemark\"\ncatalog-password = \"hunter2\"",
            "catalog = \"/var/lib/tidemark/catalog.sqlite\"\ncatalog-password = \"env:TDM_PW\"",
        ] {
            let e = with(bad).unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::Config, "{bad}");
            assert!(!e.report().contains("hunter2") && e.report().contains("catalog"), "{}", e.report());
        }
        let file = with("catalog = \"catalog.sqlite\"").unwrap();
        let loaded = LoadedConfig { config: file, path: PathBuf::from("/etc/tidemark/tidemark.toml") };
        assert!(
            matches!(loaded.catalog_location(), CatalogLocation::File(p) if p == Path::new("/etc/tidemark/catalog.sqlite"))
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = Config::parse("[repository]\nurl = \"file:///x\"\nrecipiants = []\n").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.message().contains("recipiants"), "{}", err.message());
    }

    /// docs/reference/configuration.md names every key of tidemark.toml: each field of the
    /// config's kebab-case tables (read from this file) appears there.
    #[test]
    fn every_config_key_is_in_the_reference() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let source = fs_err::read_to_string(root.join("src/config.rs")).unwrap();
        let docs = fs_err::read_to_string(root.join("docs/reference/configuration.md")).unwrap();
        let mut missing = Vec::new();
        let mut checked = 0;
        for table in source.split("rename_all = \"kebab-case\")]").skip(1) {
            let Some(body) = table.split_once("pub struct ").and_then(|(_, rest)| rest.split_once("\n}")).map(|b| b.0)
            else {
                continue;
            };
            let mut skipped = false;
            for line in body.lines().map(str::trim) {
                if line.starts_with("#[serde(skip)]") {
                    skipped = true;
                    continue;
                }
                let Some(field) = line.strip_prefix("pub ").and_then(|l| l.split_once(':')).map(|f| f.0) else {
                    continue;
                };
                if std::mem::take(&mut skipped) {
                    continue;
                }
                checked += 1;
                let key = field.replace('_', "-");
                let named = [format!("{key} ="), format!("[{key}]"), format!("[{key}."), format!(".{key}]")];
                if !named.iter().any(|n| docs.contains(n.as_str())) {
                    missing.push(key);
                }
            }
        }
        assert!(checked > 50, "only {checked} keys read: is the scan broken?");
        assert!(missing.is_empty(), "docs/reference/configuration.md lacks {missing:?}");
    }

    #[test]
    fn a_restore_role_works_on_the_workspaces_own_server() {
        let config = |restore: &str| {
            format!(
                "[repository]\nurl = \"file:///x\"\n[workspaces.shop]\ndatabase-url = \"postgres://backup@db1:5432/shop\"\n\
                 restore-database-url = \"{restore}\"\nrestore-password = \"env:RESTORER_PW\"\n"
            )
        };
        let parsed = Config::parse(&config("postgres://restorer@db1/postgres")).unwrap();
        let ws = &parsed.workspaces["shop"];
        assert_eq!(ws.restore_database_url.as_deref(), Some("postgres://restorer@db1/postgres"));
        assert_eq!(ws.restore_password, Some(Secret::literal("env:RESTORER_PW")));
        for elsewhere in ["postgres://restorer@db2/postgres", "postgres://restorer@db1:5433/postgres"] {
            let err = Config::parse(&config(elsewhere)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config);
            assert!(err.message().contains("restore-database-url names another server"), "{}", err.message());
        }
    }

    #[test]
    fn copies_take_the_primary_keys_and_refuse_what_cannot_be_right() {
        let base = "[repository]\nurl = \"file:///p\"\nrecipients = [\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"]\n\
                    identity-file = \"id.txt\"\nsigning-key = \"s.key\"\ntrusted-signers = [\"AAA\"]\n";
        let config = Config::parse(&format!(
            "{base}[copies.offsite]\nurl = \"az://backups/t\"\naccount = \"acct\"\naccess-key = \"env:AZ_KEY\"\n\
             [copies.gcs]\nurl = \"gs://b/t\"\nservice-account = \"file:/k.json\"\ntrusted-signers = [\"BBB\"]\n"
        ))
        .unwrap();
        let copy = config.repository_named(Some("offsite")).unwrap();
        assert_eq!(copy.url, "az://backups/t");
        assert_eq!(copy.recipients, config.repository.recipients);
        assert_eq!(copy.identity_file, config.repository.identity_file);
        assert_eq!(copy.signing_key, config.repository.signing_key);
        assert_eq!(copy.trusted_signers, vec!["AAA".to_string()], "the primary's signers by default");
        assert_eq!(config.repository_named(Some("gcs")).unwrap().trusted_signers, vec!["BBB".to_string()]);
        assert_eq!(config.repository_named(Some("primary")).unwrap().url, "file:///p");
        assert_eq!(config.repository_named(None).unwrap().url, "file:///p");
        let e = config.repository_named(Some("elsewhere")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.message().contains("primary, gcs, offsite"), "{}", e.message());
        assert!(config.own_keys("offsite").is_none() && config.own_keys("primary").is_none());

        // A copy with recipients of its own is read with its own identity (and signed with
        // the primary's key); one whose recipients are the primary's is not "its own".
        let own = Config::parse(&format!(
            "{base}[copies.vault]\nurl = \"file:///v\"\nrecipients = [\"age1other\"]\nidentity-file = \"vault.txt\"\n\
             [copies.same]\nurl = \"file:///s\"\nrecipients = {:?}\n",
            config.repository.recipients
        ))
        .unwrap();
        assert_eq!(own.own_keys("vault"), Some(&["age1other".to_string()][..]));
        let vault = own.repository_named(Some("vault")).unwrap();
        assert_eq!(vault.identity_file, Some(PathBuf::from("vault.txt")));
        assert_eq!(
            (vault.recipients, vault.signing_key),
            (vec!["age1other".to_string()], config.repository.signing_key.clone())
        );
        assert!(own.own_keys("same").is_none());
        assert_eq!(own.repository_named(Some("same")).unwrap().identity_file, config.repository.identity_file);

        for (table, said) in [
            ("[copies.x]\nurl = \"file:///c\"\nidentity-file = \"other.txt\"\n", "copies.x.identity-file"),
            ("[copies.x]\nurl = \"file:///c\"\nidentity-file = \"other.txt\"\n", "its own copies.x.recipients"),
            ("[copies.x]\nurl = \"file:///c\"\nsigning-key = \"other.key\"\n", "copies.x.signing-key"),
            ("[copies.primary]\nurl = \"file:///c\"\n", "not \"primary\""),
            ("[copies.\"a b\"]\nurl = \"file:///c\"\n", "letters, digits"),
            ("[copies.x]\nurl = \"file:///p/\"\n", "primary's own URL"),
            ("[copies.x]\nurl = \"\"\n", "copies.x.url is empty"),
            ("[copies.x]\nurl = \"az://c/t\"\nobject-lock = \"compliance\"\n", "immutability policy"),
            ("[copies.x]\nurl = \"s3://b/t\"\naccount = \"acct\"\n", "setting for Azure Blob Storage"),
            ("[copies.x]\nurl = \"s3://b/t\"\nservice-account = \"file:/k\"\n", "setting for Google Cloud Storage"),
            ("[copies.x]\nurl = \"az://c/t\"\naccess-key = \"plain-key-text\"\n", "env:VARIABLE or file:/path"),
            ("[copies.x]\nurl = \"az://c/t\"\naccess-key = \"env:A\"\nsas-token = \"env:B\"\n", "not both"),
        ] {
            let e = Config::parse(&format!("{base}{table}")).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{table}");
            assert!(e.message().contains(said), "{table}: {}", e.message());
            assert!(!e.message().contains("plain-key-text"), "a secret in an error: {}", e.message());
        }
        // A copy's own retention is a copy's: the primary's is its policies'.
        let with_copy_retention =
            format!("{base}[copies.x]\nurl = \"file:///c\"\nkeep-within = \"90d\"\npitr-window = \"30d\"\n");
        let copy = Config::parse(&with_copy_retention).unwrap().repository_named(Some("x")).unwrap();
        assert_eq!(copy.keep_within, Some(std::time::Duration::from_secs(90 * 86_400)));
        let e = Config::parse(&base.replace("[repository]\n", "[repository]\nkeep-within = \"90d\"\n")).unwrap_err();
        assert!(e.message().contains("a copy's own retention"), "{}", e.message());
    }

    #[test]
    fn rendered_config_parses_back() {
        let mut config = Config {
            copies: BTreeMap::new(),
            repository: RepositoryConfig {
                url: "s3://bucket/prefix".into(),
                recipients: vec!["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p".into()],
                identity_file: Some("id.txt".into()),
                endpoint: Some("http://127.0.0.1:9000".into()),
                path_style: Some(true),
                ..Default::default()
            },
            postgres: PostgresConfig::default(),
            workspaces: BTreeMap::new(),
            schedules_dir: None,
            catalog: None,
            catalog_password: None,
            daemon: DaemonConfig::default(),
            drill: DrillConfig::default(),
            api: Default::default(),
            metrics: Default::default(),
            fleet: Default::default(),
        };
        config.workspaces.insert(
            "shop".into(),
            WorkspaceConfig {
                password: Some(Secret::literal("env:SHOP_PW")),
                media: Some("file:///srv/shop/media".into()),
                ..WorkspaceConfig::at("postgres://u@h/shop")
            },
        );
        let parsed = Config::parse(&config.render_initial()).unwrap();
        assert_eq!(parsed.repository.url, "s3://bucket/prefix");
        assert_eq!(parsed.repository.path_style, Some(true));
        assert_eq!(parsed.workspaces["shop"].password, Some(Secret::literal("env:SHOP_PW")));
        assert_eq!(parsed.workspaces["shop"].media.as_deref(), Some("file:///srv/shop/media"));
    }

    #[test]
    fn daemon_settings_parse_with_defaults_and_bad_durations_are_refused() {
        let base = "[repository]\nurl = \"file:///x\"\n";
        let config = Config::parse(&format!("{base}[daemon]\nretry-backoff = \"30s\"\n")).unwrap();
        assert_eq!(config.daemon.retry_backoff, std::time::Duration::from_secs(30));
        assert_eq!(config.daemon.retries, DaemonConfig::default().retries);
        let err = Config::parse(&format!("{base}[daemon]\nshutdown-timeout = \"soon\"\n")).unwrap_err();
        assert!(err.message().contains("bad duration \"soon\""), "{}", err.message());
        let err = Config::parse(&format!("{base}[daemon]\nmax-concurrent-jobs = 0\n")).unwrap_err();
        assert!(err.message().contains("max-concurrent-jobs"), "{}", err.message());
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::literal("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        let ws = WorkspaceConfig::at("postgres://u:hunter2@h/db");
        assert!(!format!("{ws:?}").contains("hunter2"));
    }

    #[test]
    fn secret_from_env_names_the_variable_when_missing() {
        let err = Secret::literal("env:TIDEMARK_TEST_SURELY_UNSET").resolve().unwrap_err();
        assert!(err.message().contains("TIDEMARK_TEST_SURELY_UNSET"));
    }

    #[test]
    fn workspace_names_are_checked() {
        assert!(validate_workspace_name("shop-1").is_ok());
        assert!(validate_workspace_name("Shop").is_err());
        assert!(validate_workspace_name("../x").is_err());
        assert!(validate_workspace_name("").is_err());
    }
}
