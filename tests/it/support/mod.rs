//! Real parts for every test: a Postgres cluster of its own (initdb on a free port), a
//! repository in a temp folder or on a local S3 server (moto), keys, and comparisons of
//! databases that do not rely on tidemark's own digest code.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Row};
use tidemark::config::{Config, LoadedConfig, RepositoryConfig, Secret, WorkspaceConfig};
use tidemark::keys::{GeneratedIdentity, Recipients};
use tidemark::ops::Core;
use tidemark::pg::{ConnSpec, qualified};
use tidemark::pgcluster::{Cluster, ClusterOptions};
use tidemark::repo::Repository;
use tidemark::signing::{Signing, SigningSecret};

pub fn start_cluster() -> Cluster {
    Cluster::start(&ClusterOptions::default()).expect("start a throwaway postgres")
}

/// Creates database `db` in the cluster and runs `sql` in it.
pub async fn create_database(cluster: &Cluster, db: &str, sql: &str) -> ConnSpec {
    let admin = ConnSpec::parse(&cluster.url("postgres"), None).unwrap();
    let mut conn = admin.connect().await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {}", tidemark::pg::quote_ident(db))))
        .execute(&mut conn)
        .await
        .unwrap();
    let spec = ConnSpec::parse(&cluster.url(db), None).unwrap();
    let mut conn = spec.connect().await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(&mut conn).await.unwrap();
    spec
}

/// A test world: one cluster, one repository, keys, and a Core with workspace `shop`
/// pointing at database `shop` of the cluster.
pub struct World {
    pub cluster: Cluster,
    pub dir: tempfile::TempDir,
    pub identity: GeneratedIdentity,
    pub core: Core,
    pub repo_config: RepositoryConfig,
}

impl World {
    pub fn repo_dir(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    pub fn identity_file(&self) -> PathBuf {
        self.dir.path().join("identity.txt")
    }
}

/// A world with a local (file://) repository.
pub async fn world() -> World {
    let cluster = tokio::task::spawn_blocking(start_cluster).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = url::Url::from_directory_path(dir.path().join("repo")).unwrap().to_string();
    world_with_repo(cluster, dir, RepositoryConfig { url, ..Default::default() }).await
}

/// Logs of tidemark in test output, filtered by `TIDEMARK_LOG` (e.g. `TIDEMARK_LOG=info`).
pub fn init_logs() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("TIDEMARK_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}

pub async fn world_with_repo(cluster: Cluster, dir: tempfile::TempDir, mut repo_config: RepositoryConfig) -> World {
    init_logs();
    let identity = GeneratedIdentity::generate();
    identity.write_new_file(&dir.path().join("identity.txt")).unwrap();
    repo_config.recipients = vec![identity.recipient.clone()];
    repo_config.identity_file = Some(dir.path().join("identity.txt"));
    let signer = SigningSecret::generate();
    signer.write_new_file(&dir.path().join("signing.key")).unwrap();
    repo_config.signing_key = Some(dir.path().join("signing.key"));
    repo_config.trusted_signers = vec![signer.public().to_string()];
    let recipients = Recipients::parse(&repo_config.recipients).unwrap();
    let repo = Repository::init(&repo_config, &recipients).await.unwrap().with_signing(signing_of(&repo_config));
    let mut workspaces = BTreeMap::new();
    workspaces.insert("shop".to_string(), WorkspaceConfig::at(cluster.url("shop")));
    let mut config =
        LoadedConfig { config: Config::new(repo_config.clone(), workspaces), path: dir.path().join("tidemark.toml") };
    // `TIDEMARK_TEST_CATALOG=postgres`: the whole suite on a PostgreSQL catalog (a database
    // of the world's own cluster) instead of the SQLite file.
    if on_postgres_catalog() {
        let admin = ConnSpec::parse(&cluster.url("postgres"), None).unwrap();
        let mut conn = admin.connect().await.unwrap();
        sqlx::raw_sql("CREATE DATABASE tidemark_test_catalog").execute(&mut conn).await.unwrap();
        config.config.catalog = Some(cluster.url("tidemark_test_catalog").into());
    }
    std::fs::write(&config.path, config.config.render_initial()).unwrap();
    if let Some(url) = config.config.catalog.as_ref().filter(|_| on_postgres_catalog()) {
        set_catalog_lines(&config.path, &format!("catalog = \"{}\"", url.display()));
    }
    let mut core = Core::from_parts(config, repo, Some(recipients), Some(identity.identities()));
    core.cache_dir = Some(dir.path().join("cache"));
    World { cluster, dir, identity, core, repo_config }
}

/// The signing setup a config names (what `Core::open` builds).
pub fn signing_of(cfg: &RepositoryConfig) -> Signing {
    Signing::from_config(cfg.signing_key.as_deref(), &cfg.trusted_signers, cfg.allow_unsigned).unwrap()
}

/// Everything a database holds, computed with SQL alone (independent of tidemark's
/// digests): per table and materialized view a row count and an md5 over the sorted row
/// texts; per sequence its value.
pub async fn content_fingerprint(spec: &ConnSpec) -> BTreeMap<String, String> {
    let mut conn = spec.connect().await.unwrap();
    let rels = sqlx::query(
        "SELECT n.nspname::text, c.relname::text, c.relkind::text, c.relispopulated FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'm', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
           AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut out = BTreeMap::new();
    for r in rels {
        let (schema, name, kind, populated): (String, String, String, bool) = (r.get(0), r.get(1), r.get(2), r.get(3));
        let q = qualified(&schema, &name);
        let value = if kind == "S" {
            let row = sqlx::query(AssertSqlSafe(format!("SELECT last_value::text || '/' || is_called::text FROM {q}")))
                .fetch_one(&mut conn)
                .await
                .unwrap();
            row.get::<String, _>(0)
        } else if !populated {
            "unpopulated".to_string()
        } else {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') FROM {q} AS t"
            )))
            .fetch_one(&mut conn)
            .await
            .unwrap();
            row.get::<String, _>(0)
        };
        out.insert(format!("{kind} {schema}.{name}"), value);
    }
    out
}

pub async fn schema_of(spec: &ConnSpec) -> String {
    tidemark::drill::verify::schema_fingerprint(tidemark::pg::bin_dir(None).as_deref(), spec).await.unwrap()
}

/// A local S3 server (moto) on a free port, killed on drop.
pub struct S3Server {
    child: Child,
    pub port: u16,
}

impl S3Server {
    pub async fn start() -> S3Server {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server must be installed (pip install 'moto[server]'); .ci/run installs it");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        S3Server { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn create_bucket(&self, bucket: &str) {
        let response = reqwest::Client::new().put(format!("{}/{bucket}", self.endpoint())).send().await.unwrap();
        assert!(response.status().is_success(), "create bucket: {}", response.status());
    }

    /// A bucket with S3 object lock enabled (which also turns on versioning).
    pub async fn create_locked_bucket(&self, bucket: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint()))
            .header("x-amz-bucket-object-lock-enabled", "true")
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "create bucket: {}", response.status());
    }

    /// Repository settings for `s3://bucket/prefix` on this server.
    pub fn repo_config(&self, bucket: &str, prefix: &str) -> RepositoryConfig {
        RepositoryConfig {
            url: format!("s3://{bucket}/{prefix}"),
            endpoint: Some(self.endpoint()),
            region: Some("us-east-1".into()),
            path_style: Some(true),
            allow_http: Some(true),
            access_key_id: Some(Secret::literal("testing")),
            secret_access_key: Some(Secret::literal("testing")),
            part_size_mib: Some(5),
            ..Default::default()
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something listens on `port`.
async fn listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Azurite's well-known development account and key (public, in Microsoft's docs).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A local Azure Blob Storage emulator (Azurite, from npm; `scripts/setup-debian.sh`
/// installs it) on a free port, in memory, killed on drop.
pub struct AzureServer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl AzureServer {
    pub async fn start() -> AzureServer {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("azurite-blob")
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--silent", "--inMemoryPersistence"])
            .args(["--skipApiVersionCheck", "--disableTelemetry", "--loose"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("azurite-blob must be installed (scripts/setup-debian.sh); .ci/run installs it");
        listening(port, "azurite-blob").await;
        AzureServer { child, port, _dir: dir }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port)
    }

    /// Creates a container (a SharedKey-signed `PUT ?restype=container`).
    pub async fn create_container(&self, container: &str) {
        use base64::Engine;
        use hmac::Mac;
        let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let version = "2021-08-06";
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n\
             /{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{container}\nrestype:container"
        );
        let key = base64::engine::general_purpose::STANDARD.decode(AZURITE_KEY).unwrap();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(to_sign.as_bytes());
        let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let response = reqwest::Client::new()
            .put(format!("{}/{container}?restype=container", self.endpoint()))
            .header("x-ms-date", date)
            .header("x-ms-version", version)
            .header("Authorization", format!("SharedKey {AZURITE_ACCOUNT}:{signature}"))
            .header("Content-Length", "0")
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert!(status.is_success(), "create container: {status} {}", response.text().await.unwrap_or_default());
    }

    /// Repository settings for `az://container/prefix` on this server, the account key as
    /// a `file:` secret in `dir`.
    pub fn repo_config(&self, container: &str, prefix: &str, dir: &std::path::Path) -> RepositoryConfig {
        let key = dir.join(format!("azure-{container}-key"));
        std::fs::write(&key, AZURITE_KEY).unwrap();
        RepositoryConfig {
            url: format!("az://{container}/{prefix}"),
            endpoint: Some(self.endpoint()),
            allow_http: Some(true),
            account: Some(AZURITE_ACCOUNT.into()),
            access_key: Some(Secret::reference("access-key", &format!("file:{}", key.display())).unwrap()),
            part_size_mib: Some(5),
            ..Default::default()
        }
    }
}

impl Drop for AzureServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every object in the repository as (key, bytes).
pub async fn all_objects(core: &Core) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for o in core.repo.list(&tidemark::repo::Key::default()).await.unwrap() {
        let bytes = core.repo.get(&o.key).await.unwrap().expect("a listed object is there");
        out.push((o.key.to_string(), bytes.to_vec()));
    }
    out
}

/// The names of the cluster's databases matching an SQL `LIKE` pattern, sorted.
pub async fn databases_like(cluster: &Cluster, pattern: &str) -> Vec<String> {
    let admin = ConnSpec::parse(&cluster.url("postgres"), None).unwrap();
    let mut conn = admin.connect().await.unwrap();
    let names = sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE $1 ORDER BY 1")
        .bind(pattern)
        .fetch_all(&mut conn)
        .await
        .unwrap();
    ConnSpec::close(conn).await;
    names
}

/// Who the tests act as.
pub fn actor() -> tidemark::actor::Actor {
    tidemark::actor::Actor::new(tidemark::actor::ActorKind::Cli, "tester")
}

/// A manual snapshot of workspace `shop` with default options.
pub async fn snapshot_shop(core: &Core) -> tidemark::Result<tidemark::repo::manifest::Manifest> {
    let opts = tidemark::ops::snapshot::SnapshotOptions { workspace: "shop".into(), ..Default::default() };
    tidemark::ops::snapshot::create(core, &opts, &actor()).await
}

/// `check` of workspace `shop`.
pub async fn check(core: &Core, read_data: bool) -> tidemark::Result<tidemark::ops::check::CheckReport> {
    let opts = tidemark::ops::check::CheckOptions { workspace: "shop".into(), read_data, ..Default::default() };
    tidemark::ops::check::check(core, &opts, &actor()).await
}

/// A base backup of workspace `shop`.
pub async fn basebackup(core: &Core) -> tidemark::Result<tidemark::wal::base::BaseManifest> {
    let opts = tidemark::ops::basebackup::BaseBackupOptions { workspace: "shop".into(), ..Default::default() };
    tidemark::ops::basebackup::basebackup(core, &opts, &actor()).await
}

/// `pitr mark` in workspace `shop`.
pub async fn mark(core: &Core, name: &str) -> tidemark::Result<tidemark::ops::pitr::RestorePoint> {
    let opts = tidemark::ops::pitr::MarkOptions { workspace: "shop".into(), name: name.into() };
    tidemark::ops::pitr::mark(core, &opts, &actor()).await
}

/// Pins or unpins a snapshot.
pub async fn set_pin(core: &Core, id: &str, workspace: Option<&str>, pin: bool) -> tidemark::Result<String> {
    let opts = tidemark::ops::prune::PinOptions {
        id: id.into(),
        workspace: workspace.map(str::to_string),
        pin,
        wait: Default::default(),
    };
    tidemark::ops::prune::set_pin(core, &opts, &actor()).await
}

/// `snapshot list` of a workspace.
pub async fn list(core: &Core, workspace: &str) -> tidemark::Result<Vec<tidemark::ops::snapshot::SnapshotSummary>> {
    tidemark::ops::snapshot::list(
        core,
        &tidemark::ops::snapshot::ListOptions {
            workspace: workspace.into(),
            from_repository: true,
            ..Default::default()
        },
        &actor(),
    )
    .await
}

/// `snapshot show`.
pub async fn show(
    core: &Core,
    id: &str,
    workspace: Option<&str>,
) -> tidemark::Result<tidemark::repo::manifest::Manifest> {
    let opts = tidemark::ops::snapshot::ShowOptions { id: id.into(), workspace: workspace.map(str::to_string) };
    tidemark::ops::snapshot::show(core, &opts, &actor()).await
}

/// `pitr window` of a workspace.
pub async fn window(core: &Core, workspace: &str) -> tidemark::Result<tidemark::wal::window::Window> {
    tidemark::ops::pitr::window(core, &tidemark::ops::pitr::WindowOptions { workspace: workspace.into() }, &actor())
        .await
}

/// `drill history`.
pub async fn drill_history(
    core: &Core,
    workspace: Option<&str>,
    limit: u32,
) -> tidemark::Result<Vec<tidemark::ops::drill::DrillEntry>> {
    let opts = tidemark::ops::drill::HistoryOptions { workspace: workspace.map(str::to_string), limit };
    tidemark::ops::drill::history(core, &opts, &actor()).await
}

/// `catalog rebuild [--replace]`.
pub async fn rebuild(core: &Core, replace_damaged: bool) -> tidemark::Result<tidemark::ops::catalog::RebuildReport> {
    tidemark::ops::catalog::rebuild(core, &tidemark::ops::catalog::RebuildOptions { replace_damaged }, &actor()).await
}

/// Runs `count_sql` (a `count(*)`) until it says 0, for up to 5 s (sessions that are
/// ending); returns the last count.
pub async fn count_until_zero(spec: &ConnSpec, count_sql: &'static str) -> i64 {
    let mut conn = spec.connect().await.unwrap();
    let mut count = -1;
    for _ in 0..100 {
        count = sqlx::query_scalar(count_sql).fetch_one(&mut conn).await.unwrap();
        if count == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    ConnSpec::close(conn).await;
    count
}

/// Puts top-level `lines` (`catalog = ...`) at the top of a config file, replacing the
/// catalog keys it had (a suite run on a PostgreSQL catalog wrote one).
pub fn set_catalog_lines(path: &std::path::Path, lines: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let kept: Vec<&str> =
        text.lines().filter(|l| !l.starts_with("catalog =") && !l.starts_with("catalog-password =")).collect();
    std::fs::write(path, format!("{lines}\n{}\n", kept.join("\n"))).unwrap();
}

/// Whether this run keeps the worlds' catalogs in PostgreSQL (`TIDEMARK_TEST_CATALOG=postgres`).
pub fn on_postgres_catalog() -> bool {
    std::env::var("TIDEMARK_TEST_CATALOG").is_ok_and(|v| v == "postgres")
}

/// The test catalog's database in a PostgreSQL run.
const TEST_CATALOG: &str = "tidemark_test_catalog";

/// Runs `sql` on the world's catalog as it is, behind tidemark's back (attacks on it).
pub async fn catalog_sql(w: &World, sql: &str) {
    if on_postgres_catalog() {
        let mut conn = ConnSpec::parse(&w.cluster.url(TEST_CATALOG), None).unwrap().connect().await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(&mut conn).await.unwrap();
    } else {
        use sqlx::Connection;
        let url = format!("sqlite://{}", w.core.config.catalog_path().display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(&mut conn).await.unwrap();
    }
}

/// Loses the world's catalog (its file, or its PostgreSQL database made anew and empty).
pub async fn lose_catalog(w: &World) {
    if on_postgres_catalog() {
        let mut conn = ConnSpec::parse(&w.cluster.url("postgres"), None).unwrap().connect().await.unwrap();
        for sql in [format!("DROP DATABASE {TEST_CATALOG} WITH (FORCE)"), format!("CREATE DATABASE {TEST_CATALOG}")] {
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
        }
    } else {
        let catalog = w.core.config.catalog_path();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", catalog.display()));
        }
    }
}

/// How many bytes the world's catalog takes (its file, or its PostgreSQL database).
pub async fn catalog_bytes(w: &World) -> u64 {
    if on_postgres_catalog() {
        let mut conn = ConnSpec::parse(&w.cluster.url("postgres"), None).unwrap().connect().await.unwrap();
        let size: i64 =
            sqlx::query_scalar("SELECT pg_database_size($1)").bind(TEST_CATALOG).fetch_one(&mut conn).await.unwrap();
        size as u64
    } else {
        std::fs::metadata(w.core.config.catalog_path()).map(|m| m.len()).unwrap_or(0)
    }
}

/// The files the world's catalog is kept in: the SQLite file and its journal, or (after a
/// checkpoint) every file of the PostgreSQL cluster's data directory.
pub async fn catalog_files(w: &World) -> Vec<PathBuf> {
    if on_postgres_catalog() {
        let mut conn = ConnSpec::parse(&w.cluster.url("postgres"), None).unwrap().connect().await.unwrap();
        sqlx::raw_sql("CHECKPOINT").execute(&mut conn).await.unwrap();
        let mut files = Vec::new();
        let mut dirs = vec![w.cluster.data_dir().to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() { dirs.push(path) } else { files.push(path) }
            }
        }
        files
    } else {
        let catalog = w.core.config.catalog_path();
        ["", "-wal", "-shm"].iter().map(|s| PathBuf::from(format!("{}{s}", catalog.display()))).collect()
    }
}
