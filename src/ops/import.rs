//! `import`: a bundle written by `export` into a new (or empty) database: the schema, every
//! table's data with `COPY FROM` as it streams out of the bundle, the post-data, sequence
//! values and materialized views, then every table's rows checked against the digests in
//! the bundle's manifest, and every file against `SHA256SUMS`. A bundle that fails any
//! check leaves nothing: the database made for it is dropped again.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use super::Core;
use crate::actor::Actor;
use crate::bundle::{BundleManifest, BundleReader, FORMAT};
use crate::error::{Error, Result};
use crate::pg::ConnSpec;
use crate::repo::pipeline::read_to_end;
use crate::restore::database::{self, TargetState};

/// What `import` takes.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The bundle file.
    pub file: PathBuf,
    /// A new database (created if missing, refused if not empty) by URL, or one the calling
    /// operation resolved (an in-place import: a database beside the workspace's).
    pub target: crate::restore::RestoreTarget,
    /// Where the bundle's media files go (a folder, `file://` or `s3://` URL); without it
    /// they are checked and skipped.
    pub media_target: Option<String>,
    /// Parallel connections building indexes (default: one per core).
    pub jobs: Option<usize>,
    /// The file is JSON lines (`export --format jsonl`): its rows go into this existing
    /// table of the target, in one transaction.
    pub table: Option<String>,
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub file: String,
    /// The workspace and snapshot the bundle was exported from.
    pub workspace: String,
    pub snapshot: String,
    pub target: String,
    pub created_database: bool,
    pub tables: usize,
    pub rows: u64,
    pub media_files: usize,
    pub total_ms: u64,
    /// Privilege statements the target's role may not give, skipped (see `RestoreReport`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_privileges: Vec<String>,
}

/// Imports a bundle into a new or empty database.
///
/// Errors: `NotFound` for a missing file; `Usage` for a file that is not a bundle; `Key`
/// when it is encrypted to keys this host lacks; `Integrity` when a file does not match
/// `SHA256SUMS`, the age authentication fails or the loaded rows differ from the manifest;
/// `Refused` for a target that is not empty; `Database` from Postgres. The database made
/// for it is dropped again on any failure.
pub async fn import(core: &Core, opts: &ImportOptions, actor: &Actor) -> Result<ImportReport> {
    let done = async {
        super::check_jobs(opts.jobs)?;
        import_bundle(core, opts).await
    }
    .await;
    let details = serde_json::json!({ "file": opts.file, "target": opts.target.describe() });
    // The bundle's workspace; before the bundle is read (or without one), the target.
    let target = match done.as_ref().map(|r| r.workspace.clone()) {
        Ok(ws) if !ws.is_empty() => ws,
        _ => opts.target.describe(),
    };
    super::audit::record(core, actor, crate::operation::Operation::Import, &target, &done, details).await;
    done
}

/// `--table`: JSON lines into one existing table.
async fn import_jsonl(core: &Core, opts: &ImportOptions, table: &str, target: &ConnSpec) -> Result<ImportReport> {
    let clock = Instant::now();
    let (schema, name) = crate::pg::parse_table_name(table)?;
    let identities = if core.has_identities() { Some(core.identities()?) } else { None };
    let what = opts.file.display().to_string();
    let (input, _) = crate::bundle::open_file(&opts.file, identities, &what)?;
    let mut conn = target.connect().await?;
    let rows = crate::bundle::import_jsonl(&mut conn, (&schema, &name), input).await;
    ConnSpec::close(conn).await;
    let rows = rows.map_err(|e| e.context(format!("loading {what} into {schema}.{name}; nothing was committed")))?;
    Ok(ImportReport {
        file: what,
        workspace: String::new(),
        snapshot: String::new(),
        target: target.display(),
        created_database: false,
        tables: 1,
        rows,
        media_files: 0,
        total_ms: clock.elapsed().as_millis() as u64,
        skipped_privileges: Vec::new(),
    })
}

// Longer than ~100 lines: an import reads the bundle's parts in their order into one new database and drops it on any failure.
async fn import_bundle(core: &Core, opts: &ImportOptions) -> Result<ImportReport> {
    let clock = Instant::now();
    let (target, _) = opts.target.resolve(|| {
        Err(Error::usage("an import goes into a new database (or, replacing the live one, beside it): name it"))
    })?;
    if let Some(table) = &opts.table {
        return import_jsonl(core, opts, table, &target).await;
    }
    let identities = if core.has_identities() { Some(core.identities()?) } else { None };
    let mut reader = BundleReader::open(&opts.file, identities)?;
    let what = format!("bundle {}", opts.file.display());
    let first = reader.next().await;
    let manifest: BundleManifest = match first {
        Some(entry) if entry.path == "manifest.json" => {
            let bytes = read_to_end(entry.data).await?;
            serde_json::from_slice(&bytes).map_err(|e| Error::integrity(format!("{what}: manifest.json: {e}")))?
        }
        _ => return Err(Error::integrity(format!("{what} does not start with manifest.json: not a tidemark bundle"))),
    };
    if manifest.format != FORMAT {
        return Err(Error::usage(format!("{what} is in format {:?}; this tidemark reads {FORMAT}", manifest.format)));
    }
    let media_target = match &opts.media_target {
        Some(t) => Some(crate::restore::media::MediaTarget::open(t, &core.config.config.repository)?),
        None => None,
    };
    let state = database::prepare_target(&target, &manifest.source).await?;
    let progress = core.progress();
    progress.set_prefix(format!("import {}", opts.file.display()));
    let loaded = async {
        database::mark_incomplete(&target, &format!("{} (import)", manifest.snapshot)).await?;
        let mut conn = target.connect().await?;
        sqlx::raw_sql("SET synchronous_commit = off").execute(&mut conn).await?;
        let (mut media_files, mut skipped) = (0usize, Vec::new());
        while let Some(entry) = reader.next().await {
            let path = entry.path.clone();
            if path == "schema.sql" {
                progress.set_message("schema");
                skipped =
                    database::apply_pre_data(core.pg_bin_dir().as_deref(), &target, entry.data, "schema.sql").await?;
            } else if path == "post-data.sql" {
                progress.set_message("indexes, constraints, triggers");
                let sql = read_to_end(entry.data).await?;
                let jobs = super::jobs_or_default(opts.jobs);
                crate::restore::load::apply_post_data(core.pg_bin_dir().as_deref(), &target, sql, jobs, progress)
                    .await?;
            } else if let Some(t) = manifest.tables.iter().find(|t| t.file.as_deref() == Some(path.as_str())) {
                progress.set_message(format!("table {}.{}", t.schema, t.name));
                let statement = database::copy_in_statement(&t.schema, &t.name, &t.columns, false);
                database::copy_in(&mut conn, &statement, entry.data, None)
                    .await
                    .map_err(|e| e.context(format!("loading {}.{} from {path}", t.schema, t.name)))?;
            } else if let Some(rel) = path.strip_prefix("media/") {
                let listed = manifest.media.iter().find(|m| m.path == rel).ok_or_else(|| {
                    Error::integrity(format!("{what} holds {path}, which its manifest does not list"))
                })?;
                if let Some(media) = &media_target {
                    let entry_info = crate::repo::manifest::MediaEntry {
                        path: listed.path.clone(),
                        size: listed.size,
                        modified: manifest.created_at,
                        sha256: listed.sha256.clone(),
                        stored_size: None,
                        mode: None,
                    };
                    crate::restore::media::write(media, &entry_info, entry.data).await?;
                    media_files += 1;
                }
            } else if !path.starts_with("stacks/") && path != "load.psql" {
                return Err(Error::integrity(format!("{what} holds {path}, which its manifest does not list")));
            }
        }
        Ok::<_, Error>((media_files, skipped))
    }
    .await;
    // Every byte must match SHA256SUMS (and age's authentication) before anything counts;
    // a load that failed on altered bytes says so rather than what Postgres made of them.
    let checked = reader.finish().await;
    let loaded = match (loaded, checked) {
        (_, Err(e)) => Err(e),
        (Err(e), Ok(())) => Err(e),
        (Ok(loaded), Ok(())) => finish_checks(&target, &manifest).await.map(|()| loaded),
    };
    progress.finish();
    match loaded {
        Ok((media_files, skipped_privileges)) => Ok(ImportReport {
            file: opts.file.display().to_string(),
            workspace: manifest.workspace.clone(),
            snapshot: manifest.snapshot.clone(),
            target: target.display(),
            created_database: state == TargetState::Created,
            tables: manifest.tables.len(),
            rows: if manifest.schema_only { 0 } else { manifest.tables.iter().map(|t| t.rows).sum() },
            media_files,
            total_ms: clock.elapsed().as_millis() as u64,
            skipped_privileges,
        }),
        Err(e) => {
            let e = e.context(format!("importing {} into {}", opts.file.display(), target.display()));
            if state == TargetState::Created {
                let _ = database::drop_database(&target).await;
                return Err(e.context("(the new database was dropped again)".to_string()));
            }
            Err(e)
        }
    }
}

/// Sequence values, materialized views, then every table's rows against the manifest's
/// digests; the database is marked complete only after.
async fn finish_checks(target: &ConnSpec, manifest: &BundleManifest) -> Result<()> {
    let mut conn = target.connect().await?;
    database::set_sequences(&mut conn, &manifest.sequences).await?;
    database::refresh_materialized_views(&mut conn, &manifest.materialized_views).await?;
    if !manifest.schema_only {
        for t in &manifest.tables {
            let digest = crate::source::postgres::table_digest(&mut conn, &t.schema, &t.name, &t.columns).await?;
            if digest.rows() != t.rows || digest.hex() != t.content_digest {
                return Err(Error::integrity(format!(
                    "{}.{} holds {} rows that do not match the bundle's manifest ({} rows)",
                    t.schema,
                    t.name,
                    digest.rows(),
                    t.rows
                )));
            }
        }
    }
    ConnSpec::close(conn).await;
    database::mark_complete(target).await
}
