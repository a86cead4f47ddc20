//! `demo`: the newcomer's first command. Starts a throwaway Postgres, fills a sample shop
//! (tables and function stacks), creates a repository in a temp folder, takes a snapshot, restores it into a new
//! database and shows that source and copy match. Everything it started is removed at the
//! end, also on failure or Ctrl-C (the values own the cluster and the folders).

use std::collections::BTreeMap;

use serde::Serialize;

use super::Core;
use super::restore::{RestoreOptions, RestoreReport};
use super::snapshot::SnapshotOptions;
use super::stacks;
use crate::config::{Config, LoadedConfig, RepositoryConfig, WorkspaceConfig};
use crate::drill::verify::VerifyReport;
use crate::error::{Error, Result};
use crate::keys::{GeneratedIdentity, Recipients};
use crate::pg::ConnSpec;
use crate::pgcluster::{Cluster, ClusterOptions};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::manifest::Manifest;

const DEMO_SQL: &str = include_str!("demo.sql");
/// The demo shop's own restore-test assertions (next to the generic built-in ones).
const DEMO_RESTORE_TESTS: &str = include_str!("demo-restore-tests.sql");

#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub snapshot: crate::ops::snapshot::SnapshotSummary,
    pub snapshot_ms: u64,
    pub restore: RestoreReport,
    pub verify: VerifyReport,
    pub schema_identical: bool,
    /// Function stacks in the workspace, and whether the copy has the same live states,
    /// versions and change counts.
    pub stacks: usize,
    pub stacks_identical: bool,
    /// Media files in the snapshot, and whether the restored folder is byte-for-byte the same.
    pub media_files: usize,
    pub media_identical: bool,
    /// The restore drill of the snapshot, in a second throwaway cluster.
    pub drill: crate::drill::DrillReport,
    pub ok: bool,
    /// The folder that keeps the repository, config and identity (`--keep`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept: Option<String>,
}

/// The demo's folder: a temporary one (removed), or the one `--keep` names (kept).
enum Work {
    Temp(tempfile::TempDir),
    Kept(std::path::PathBuf),
}

impl Work {
    fn path(&self) -> &std::path::Path {
        match self {
            Work::Temp(t) => t.path(),
            Work::Kept(p) => p,
        }
    }
}

/// Runs the demo. `say` receives a line per step for the operator. With `keep`, the
/// repository, `tidemark.toml` and the identity stay in that folder (new or empty), to try
/// commands against; the Postgres cluster is removed in any case.
///
/// Errors: `Config` when the Postgres server binaries are missing, `Refused` for a `keep`
/// folder that is not empty, and whatever a step hits.
// Longer than ~100 lines: the demo is one script a newcomer reads top to bottom; each step prints what it shows.
pub async fn demo(
    actor: &crate::actor::Actor,
    progress: &Progress,
    say: &(dyn Fn(&str) + Sync),
    keep: Option<&std::path::Path>,
) -> Result<DemoReport> {
    let work = match keep {
        Some(dir) => {
            if dir.exists() && fs_err::read_dir(dir)?.next().is_some() {
                return Err(Error::new(
                    crate::error::ErrorKind::Refused,
                    format!("{} is not empty; demo --keep writes a new repository and config there", dir.display()),
                ));
            }
            fs_err::create_dir_all(dir)?;
            Work::Kept(std::path::absolute(dir)?)
        }
        None => Work::Temp(tempfile::Builder::new().prefix("tidemark-demo-").tempdir()?),
    };
    say("starting a throwaway PostgreSQL cluster...");
    let cluster = tokio::task::spawn_blocking(|| Cluster::start(&ClusterOptions::default()))
        .await
        .map_err(|e| Error::internal(format!("cluster start task: {e}")))??;
    say(&format!("  postgres is listening on 127.0.0.1:{}", cluster.port()));

    let admin = ConnSpec::parse(&cluster.url("postgres"), None)?;
    let mut conn = admin.connect().await?;
    sqlx::raw_sql("CREATE DATABASE shop").execute(&mut conn).await?;
    ConnSpec::close(conn).await;
    say("filling the sample workspace `shop` (customers, products, orders, events)...");
    let source = ConnSpec::parse(&cluster.url("shop"), None)?;
    let mut conn = source.connect().await?;
    sqlx::raw_sql(DEMO_SQL).execute(&mut conn).await?;
    ConnSpec::close(conn).await;

    let identity = GeneratedIdentity::generate();
    let recipients = Recipients::parse(std::slice::from_ref(&identity.recipient))?;
    let repo_url = url::Url::from_directory_path(work.path().join("repo"))
        .map_err(|()| Error::internal("temp path is not absolute"))?
        .to_string();
    let identity_file = matches!(work, Work::Kept(_)).then(|| work.path().join("tidemark-identity.txt"));
    let signing_key = crate::signing::SigningSecret::generate();
    let signing_file = work.path().join("tidemark-signing.key");
    signing_key.write_new_file(&signing_file)?;
    let repository = RepositoryConfig {
        url: repo_url.clone(),
        recipients: recipients.to_strings(),
        identity_file: identity_file.clone(),
        signing_key: Some(signing_file.clone()),
        trusted_signers: vec![signing_key.public().to_string()],
        ..Default::default()
    };
    let signing = crate::signing::Signing::from_config(Some(&signing_file), &repository.trusted_signers, false)?;
    let repo = Repository::init(&repository, &recipients).await?.with_signing(signing);
    say(&format!("created an encrypted repository at {repo_url}"));
    say("adding sample media files (product photos, a PDF) to the workspace's media folder...");
    let media_dir = work.path().join("media");
    write_sample_media(&media_dir)?;
    let media_url = url::Url::from_directory_path(&media_dir)
        .map_err(|()| Error::internal("temp path is not absolute"))?
        .to_string();
    let mut workspaces = BTreeMap::new();
    workspaces.insert(
        "shop".to_string(),
        WorkspaceConfig {
            media: Some(media_url),
            restore_tests: Some(work.path().join("shop-restore-tests")),
            ..WorkspaceConfig::at(cluster.url("shop"))
        },
    );
    workspaces.insert("shop_restored".to_string(), WorkspaceConfig::at(cluster.url("shop_restored")));
    let config = LoadedConfig {
        config: Config {
            drill: crate::config::DrillConfig { scratch_dir: Some(work.path().join("drills")), ..Default::default() },
            ..Config::new(repository, workspaces)
        },
        path: work.path().join("tidemark.toml"),
    };
    if let Some(file) = &identity_file {
        identity.write_new_file(file)?;
        fs_err::write(&config.path, config.config.render_initial())?;
    }
    let mut core =
        Core::from_parts(config, repo, Some(recipients), Some(identity.identities())).with_progress(progress.clone());
    core.cache_dir = Some(work.path().join("cache"));

    say("versioning two function stacks (api/checkout published as version 1, then changed)...");
    let put = |stack: &str, json: &str, message: Option<&str>| stacks::StackPutOptions {
        workspace: Some("shop".into()),
        stack: stack.into(),
        json: json.into(),
        origin: "demo".into(),
        author: Some("demo".into()),
        message: message.map(str::to_string),
    };
    let v1 = r#"{"route": "/checkout", "method": "POST", "steps": ["validate_cart", "charge", "email_receipt"]}"#;
    stacks::put(&core, &put("api/checkout", v1, Some("first version")), actor).await?;
    let publish = stacks::StackPublishOptions {
        workspace: Some("shop".into()),
        stack: "api/checkout".into(),
        author: Some("demo".into()),
        message: Some("go live".into()),
    };
    stacks::publish(&core, &publish, actor).await?;
    let v2 = r#"{"route": "/checkout", "method": "POST", "steps": ["validate_cart", "apply_discount", "charge", "email_receipt"]}"#;
    stacks::put(&core, &put("api/checkout", v2, Some("discounts")), actor).await?;
    stacks::put(&core, &put("function/apply_discount", r#"{"max_percent": 30}"#, None), actor).await?;

    say("taking a snapshot of `shop`...");
    let started = std::time::Instant::now();
    let opts = SnapshotOptions { workspace: "shop".into(), note: Some("demo".into()), ..Default::default() };
    let manifest: Manifest = super::snapshot::create(&core, &opts, actor).await?;
    let snapshot_ms = started.elapsed().as_millis() as u64;
    say(&format!(
        "  snapshot {}: {} tables, {} rows, {} bytes of data stored as {} bytes (zstd + age)",
        manifest.id,
        manifest.tables.len(),
        manifest.total_rows(),
        manifest.plain_bytes(),
        manifest.stored_bytes()
    ));

    say("restoring it into a new database `shop_restored`...");
    let target = cluster.url("shop_restored");
    let media_target = work.path().join("media-restored");
    let restore_opts = RestoreOptions {
        snapshot: manifest.id.clone(),
        target: target.clone().into(),
        media_target: Some(media_target.display().to_string()),
        ..Default::default()
    };
    let restore = super::restore::restore(&core, &restore_opts, actor).await?;

    say("comparing source and copy...");
    let target_spec = ConnSpec::parse(&target, None)?;
    let verify = crate::drill::verify::verify_database(&target_spec, &manifest).await?;
    let bin_dir = core.pg_bin_dir();
    let schema_identical = crate::drill::verify::schema_fingerprint(bin_dir.as_deref(), &source).await?
        == crate::drill::verify::schema_fingerprint(bin_dir.as_deref(), &target_spec).await?;
    let of = |ws: &str| stacks::StackListOptions { workspace: Some(ws.into()) };
    let source_stacks = stacks::list(&core, &of("shop"), actor).await?;
    let restored_stacks = stacks::list(&core, &of("shop_restored"), actor).await?;
    let stacks_identical = source_stacks == restored_stacks && !source_stacks.is_empty();
    let media_files = manifest.media.as_ref().map(|m| m.files.len()).unwrap_or(0);
    let media_identical = media_files > 0 && read_tree(&media_dir)? == read_tree(&media_target)?;

    say("running a restore drill of the snapshot: a second throwaway cluster, every check, then removed...");
    fs_err::create_dir_all(work.path().join("shop-restore-tests"))?;
    fs_err::write(work.path().join("shop-restore-tests/shop.sql"), DEMO_RESTORE_TESTS)?;
    let drill_opts = super::drill::DrillOptions {
        record: false,
        ..super::drill::DrillOptions::new("shop", super::drill::DrillSource::Snapshot(Some(manifest.id.clone())))
    };
    let drill = super::drill::drill(&core, &drill_opts, actor).await?;
    let ok = verify.ok && schema_identical && stacks_identical && media_identical && drill.passed;
    match &work {
        Work::Temp(_) => say("cleaning up the throwaway cluster and repository..."),
        Work::Kept(dir) => say(&format!(
            "stopping the throwaway cluster; the repository, tidemark.toml and the identity stay in {}",
            dir.display()
        )),
    }
    drop(cluster);
    let kept = match work {
        Work::Temp(t) => {
            drop(t);
            None
        }
        Work::Kept(dir) => Some(dir.display().to_string()),
    };
    Ok(DemoReport {
        snapshot: crate::ops::snapshot::SnapshotSummary::of(&manifest),
        snapshot_ms,
        restore,
        verify,
        schema_identical,
        stacks: source_stacks.len(),
        stacks_identical,
        media_files,
        media_identical,
        drill,
        ok,
        kept,
    })
}

/// A few files of the sizes and kinds a shop has: images (incompressible) and a document.
fn write_sample_media(root: &std::path::Path) -> Result<()> {
    for i in 1..=12u32 {
        let dir = root.join("products").join(format!("{i:03}"));
        fs_err::create_dir_all(&dir)?;
        let bytes: Vec<u8> =
            (0..64 * 1024u32).map(|j| (j.wrapping_mul(2654435761).wrapping_add(i) >> 11) as u8).collect();
        fs_err::write(dir.join("photo.jpg"), bytes)?;
    }
    fs_err::create_dir_all(root.join("docs"))?;
    fs_err::write(root.join("docs/terms of service.pdf"), "%PDF-1.4 tidemark demo terms\n".repeat(2000))?;
    Ok(())
}

/// Every file below `root` as (relative path, bytes), sorted.
fn read_tree(root: &std::path::Path) -> Result<Vec<(std::path::PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(dir) = folders.pop() {
        for entry in fs_err::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                folders.push(path);
            } else {
                let bytes = fs_err::read(&path)?;
                out.push((path.strip_prefix(root).unwrap_or(&path).to_path_buf(), bytes));
            }
        }
    }
    out.sort();
    Ok(out)
}
