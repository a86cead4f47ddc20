//! `export`: a snapshot of a workspace as one portable bundle file (see [`crate::bundle`]):
//! schema, table data in COPY text, function stacks as JSON, media on request; encrypted to
//! the repository's recipients by default, to `--recipient` keys, or plain on request.

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::Core;
use crate::actor::Actor;
use crate::bundle::{BundleManifest, BundleMedia, BundleTable, BundleWriter, Protection, data_file};
use crate::error::{Error, Result};
use crate::keys::Recipients;
use crate::repo::pipeline::{Expect, read_verified};
use crate::restore::load::{self, SnapshotSource};

/// What `export` takes; the API's request body (`POST .../exports`) as it is: a request
/// picks the snapshot and the tables, and gets a bundle encrypted to the repository's
/// recipients, kept on the server (where it goes, what it is encrypted to, media and
/// formats are the host's to say).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ExportOptions {
    /// The workspace (the API's path names it).
    #[serde(skip)]
    pub workspace: String,
    /// A snapshot id, or `latest` (the default).
    #[schema(pattern = "^([0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}|latest)$")]
    pub snapshot: Option<String>,
    /// The bundle file to write (refused if it exists).
    #[serde(skip)]
    pub to: PathBuf,
    /// The schema only, no table data.
    pub schema_only: bool,
    /// Only these tables' data (`schema.name`); the schema stays whole.
    #[schema(max_items = 100)]
    pub tables: Vec<String>,
    /// The snapshot's media files too.
    #[serde(skip)]
    pub with_media: bool,
    /// Encrypt to these age recipients instead of the repository's.
    #[serde(skip)]
    pub recipients: Vec<String>,
    /// Not encrypted at all (zstd only).
    #[serde(skip)]
    pub plain: bool,
    /// `bundle` (the default) or `jsonl`: one table's rows as JSON lines, read from the
    /// live database (with exactly one `tables` entry).
    #[serde(skip)]
    pub format: Option<String>,
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub workspace: String,
    pub snapshot: String,
    pub file: String,
    pub bytes: u64,
    /// The age recipients it is encrypted to (empty: plain).
    pub encrypted_to: Vec<String>,
    pub tables: usize,
    pub rows: u64,
    pub media_files: usize,
    pub stacks: usize,
    pub total_ms: u64,
    /// Said when the bundle is plain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// What a plain export warns about.
pub const PLAIN_WARNING: &str = "the bundle is NOT encrypted: anyone who gets the file can read every row in it; \
     it is checked for damage (SHA256SUMS), not protected against changes";

/// What an export records as its job's end.
pub fn job_end(r: &ExportReport) -> crate::catalog::JobEnd {
    crate::catalog::JobEnd { snapshot_id: Some(r.snapshot.clone()), bytes: Some(r.bytes), ..Default::default() }
}

/// [`export`] as a recorded job, whichever front end asks.
pub async fn export_recorded(core: &Core, opts: &ExportOptions, actor: &Actor) -> Result<ExportReport> {
    let spec = super::job::JobSpec {
        workspace: opts.workspace.clone(),
        operation: crate::operation::Operation::Export,
        kind: None,
    };
    super::job::recorded(core, actor, spec, |core| async move { export(&core, opts, actor).await }, job_end).await
}

/// Writes a snapshot of `workspace` as a bundle.
///
/// Errors: `Usage` for `plain` with recipients, or an unknown table; `AlreadyExists` when
/// the file exists; `NotFound` for an unknown snapshot; `Integrity`/`Key` for objects that
/// do not verify (the partial file is removed).
pub async fn export(core: &Core, opts: &ExportOptions, actor: &Actor) -> Result<ExportReport> {
    let done = async {
        check_request(opts)?;
        export_bundle(core, opts).await
    }
    .await;
    let details = serde_json::json!({
        "file": opts.to, "snapshot": opts.snapshot, "plain": opts.plain, "tables": opts.tables,
        "schema_only": opts.schema_only, "with_media": opts.with_media,
    });
    super::audit::record(core, actor, crate::operation::Operation::Export, &opts.workspace, &done, details).await;
    done
}

/// What an export may be refused for before any work, for every front end (the API asks
/// before it starts the job, and the export asks again): its limits and its snapshot's
/// spelling.
///
/// Errors: `Usage`.
pub fn check_request(opts: &ExportOptions) -> Result<()> {
    super::check_tables(&opts.tables, "tables")?;
    match opts.snapshot.as_deref() {
        None | Some("latest") => Ok(()),
        Some(id) => crate::repo::layout::validate_snapshot_id(id),
    }
}

/// The protection asked for, and the recipients it names.
fn protection_of(core: &Core, opts: &ExportOptions) -> Result<(Protection, Vec<String>)> {
    Ok(match (opts.plain, opts.recipients.is_empty()) {
        (true, false) => {
            return Err(Error::usage(
                "a plain export and recipients to encrypt it to contradict each other: choose one",
            ));
        }
        (true, true) => (Protection::Plain, Vec::new()),
        (false, false) => {
            let r = Recipients::parse(&opts.recipients)?;
            (Protection::Encrypted(r.clone()), r.to_strings())
        }
        (false, true) => {
            let r = core.recipients()?.clone();
            (Protection::Encrypted(r.clone()), r.to_strings())
        }
    })
}

/// `--format jsonl`: one live table as JSON lines.
async fn export_jsonl(core: &Core, opts: &ExportOptions) -> Result<ExportReport> {
    let clock = Instant::now();
    let [table] = opts.tables.as_slice() else {
        return Err(Error::usage("the jsonl format exports one table: name exactly one"));
    };
    if opts.snapshot.is_some() || opts.with_media || opts.schema_only {
        return Err(Error::usage(
            "the jsonl format reads the live table: leave out the snapshot, media and schema-only options \
             (restore the table from a snapshot first to export that)",
        ));
    }
    let (protection, encrypted_to) = protection_of(core, opts)?;
    let (schema, name) = crate::pg::parse_table_name(table)?;
    let mut conn = core.workspace(&opts.workspace)?.conn()?.connect().await?;
    let rows = crate::bundle::export_jsonl(&mut conn, (&schema, &name), &opts.to, &protection).await;
    crate::pg::ConnSpec::close(conn).await;
    let rows = rows?;
    Ok(ExportReport {
        workspace: opts.workspace.clone(),
        snapshot: String::new(),
        file: opts.to.display().to_string(),
        bytes: fs_err::metadata(&opts.to)?.len(),
        encrypted_to,
        tables: 1,
        rows,
        media_files: 0,
        stacks: 0,
        total_ms: clock.elapsed().as_millis() as u64,
        warning: opts.plain.then(|| PLAIN_WARNING.to_string()),
    })
}

// Longer than ~100 lines: the bundle is written in one pass (manifest, tables, media, stacks) into one archive that is removed on any failure.
async fn export_bundle(core: &Core, opts: &ExportOptions) -> Result<ExportReport> {
    match opts.format.as_deref() {
        None | Some("bundle") => {}
        Some("jsonl") => return export_jsonl(core, opts).await,
        Some(other) => return Err(Error::usage(format!("the format is bundle or jsonl, not {other:?}"))),
    }
    let clock = Instant::now();
    let asked = opts.snapshot.clone().unwrap_or_else(|| "latest".into());
    let (workspace, id) = super::snapshot::resolve(core, &asked, Some(&opts.workspace)).await?;
    let (protection, encrypted_to) = protection_of(core, opts)?;
    let identities = core.identities()?;
    let manifest = core.repo.read_manifest(&workspace, &id, &identities).await?;
    let picked: Vec<&crate::repo::manifest::TableEntry> = match opts.tables.is_empty() {
        true => manifest.tables.iter().collect(),
        false => {
            let mut out = Vec::new();
            for t in &opts.tables {
                let (schema, name) = crate::pg::parse_table_name(t)?;
                let found = manifest.tables.iter().find(|e| e.schema == schema && e.name == name);
                out.push(found.ok_or_else(|| Error::not_found(format!("snapshot {id} has no table {schema}.{name}")))?);
            }
            out
        }
    };
    let source = SnapshotSource::new(&core.repo, &identities, &manifest);
    let stacks = match stack_documents(&source, &id).await {
        Ok(docs) => docs,
        Err(e) if e.kind() == crate::error::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let media: Vec<_> = match (&manifest.media, opts.with_media) {
        (Some(m), true) => m.files.clone(),
        _ => Vec::new(),
    };
    for f in &media {
        crate::source::media::validate_path(&f.path)?;
    }
    let bundle = BundleManifest {
        format: crate::bundle::FORMAT.into(),
        workspace: workspace.clone(),
        snapshot: id.clone(),
        created_at: chrono::Utc::now(),
        tidemark_version: env!("CARGO_PKG_VERSION").into(),
        source: manifest.source.clone(),
        schema_only: opts.schema_only,
        tables: picked
            .iter()
            .enumerate()
            .map(|(i, t)| BundleTable {
                schema: t.schema.clone(),
                name: t.name.clone(),
                columns: t.columns.clone(),
                rows: t.rows,
                content_digest: t.content_digest.clone(),
                file: (!opts.schema_only).then(|| data_file(i, &t.schema, &t.name)),
            })
            .collect(),
        sequences: manifest.sequences.clone(),
        materialized_views: manifest.materialized_views.clone(),
        stacks: stacks.iter().map(|(file, _)| file.clone()).collect(),
        media: media
            .iter()
            .map(|f| BundleMedia { path: f.path.clone(), size: f.size, sha256: f.sha256.clone() })
            .collect(),
    };

    let progress = core.progress();
    progress.set_prefix(format!("export {id}"));
    let mut writer = BundleWriter::create(&opts.to, &protection)?;
    let written = async {
        writer.add_bytes("manifest.json", serde_json::to_vec_pretty(&bundle)?).await?;
        progress.set_message("schema");
        writer
            .add_stream("schema.sql", manifest.schema_pre.plain_size, source.open(&manifest.schema_pre).await?)
            .await?;
        if !opts.schema_only {
            progress.set_tables(0, picked.len() as u64);
            for (i, (t, entry)) in picked.iter().zip(&bundle.tables).enumerate() {
                progress.set_message(format!("table {}.{}", t.schema, t.name));
                let size = t.parts.iter().map(|p| p.plain_size).sum();
                writer.start(entry.file.as_deref().expect("a data file"), size).await?;
                for part in &t.parts {
                    let mut stream = source.open(part).await?;
                    while let Some(chunk) = stream.recv().await {
                        writer.write(chunk?).await?;
                    }
                    progress.add_bytes(part.plain_size);
                }
                progress.set_tables(i as u64 + 1, picked.len() as u64);
            }
        }
        writer.add_bytes("load.psql", crate::bundle::load_script(&bundle).into_bytes()).await?;
        let post = &manifest.schema_post;
        writer.add_stream("post-data.sql", post.plain_size, source.open(post).await?).await?;
        for (file, json) in &stacks {
            writer.add_bytes(file, json.clone()).await?;
        }
        progress.set_message(format!("media: {} files", media.len()));
        for f in &media {
            let key = crate::repo::layout::media_object(&workspace, &f.sha256)?;
            let expect = Expect::Content { sha256: f.sha256.clone(), size: Some(f.size) };
            let stream = read_verified(&core.repo, &key, expect, &identities).await?;
            writer.add_stream(&format!("media/{}", f.path), f.size, stream).await?;
        }
        Ok::<_, Error>(())
    }
    .await;
    progress.finish();
    if let Err(e) = written {
        writer.abandon().await;
        return Err(e.context(format!("exporting snapshot {id} to {}", opts.to.display())));
    }
    let bytes = writer.finish().await?;
    Ok(ExportReport {
        workspace,
        snapshot: id,
        file: opts.to.display().to_string(),
        bytes,
        encrypted_to,
        tables: bundle.tables.len(),
        rows: if opts.schema_only { 0 } else { bundle.tables.iter().map(|t| t.rows).sum() },
        media_files: media.len(),
        stacks: stacks.len(),
        total_ms: clock.elapsed().as_millis() as u64,
        warning: opts.plain.then(|| PLAIN_WARNING.to_string()),
    })
}

/// The snapshot's function stacks as they were live, one JSON file each
/// (`stacks/<kind>/<name>.json`). `NotFound` when it has none.
async fn stack_documents(source: &SnapshotSource, id: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let stacks = load::table_rows(source, "tidemark", "stacks").await?;
    let changes = load::table_rows(source, "tidemark", "stack_changes").await?;
    use crate::stacks::snapshot::{Rows, live_documents};
    let live = live_documents(
        Rows { rows: &stacks.rows, columns: &stacks.columns },
        Rows { rows: &changes.rows, columns: &changes.columns },
        id,
    )?;
    let mut out = Vec::new();
    for (stack, doc) in &live {
        let text = serde_json::to_vec_pretty(&doc.value)?;
        out.push((format!("stacks/{stack}.json"), text));
    }
    Ok(out)
}
