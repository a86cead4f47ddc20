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

mod options;
pub use options::*;

/// What an export records as its job's end.
pub fn job_end(r: &ExportReport) -> crate::catalog::JobEnd {
    crate::catalog::JobEnd { snapshot_id: Some(r.snapshot.clone()), bytes: Some(r.bytes), ..Default::default() }
}

/// [`export`] as a recorded job, whichever front end asks.
pub async fn export_recorded(core: &Core, opts: &ExportOptions, actor: &Actor) -> Result<ExportReport> {
    check_request(opts)?;
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
