//! The data of a snapshot: the schema sections and every table, copied by a pool of
//! connections that share one exported snapshot, each part streamed through the pipeline
//! into its object while its rows are digested.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

use super::digest::RowDigest;
use super::postgres::{self, BlockRange, Section, SnapshotSession};
use crate::error::{Error, Result};
use crate::keys::Recipients;
use crate::pg::ConnSpec;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::layout::SnapshotObject;
use crate::repo::manifest::ObjectEntry;
use crate::repo::pipeline::ObjectWriter;

/// One unit of data work: a table or a block range of it.
struct WorkItem {
    table: usize,
    part: Option<u32>,
    range: Option<BlockRange>,
    estimate: i64,
}

pub struct PartResult {
    pub table: usize,
    pub part: Option<u32>,
    pub entry: ObjectEntry,
    pub digest: RowDigest,
}

/// Where a snapshot's objects go.
#[derive(Clone)]
pub struct Destination {
    pub repo: Repository,
    pub recipients: Recipients,
    pub workspace: String,
    pub id: String,
}

impl Destination {
    pub fn writer(&self, object: &SnapshotObject) -> Result<ObjectWriter> {
        ObjectWriter::new(&self.repo, object.key(&self.workspace, &self.id), object.name(), &self.recipients)
    }
}

/// Streams one section of the schema (`pg_dump`, in the snapshot's exported snapshot)
/// into its object.
pub async fn dump_schema(
    dest: &Destination,
    spec: &ConnSpec,
    bin_dir: Option<&std::path::Path>,
    snapshot_name: &str,
    section: Section,
) -> Result<ObjectEntry> {
    let object = match section {
        Section::PreData => SnapshotObject::SchemaPre,
        Section::PostData => SnapshotObject::SchemaPost,
    };
    let mut child = postgres::spawn_schema_dump(bin_dir, spec, snapshot_name, section)?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut writer = dest.writer(&object)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = stdout.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        writer.write(&buf[..n]).await?;
    }
    postgres::wait_tool(child, &format!("pg_dump {section:?}")).await?;
    writer.finish().await
}

/// Copies every table (tables above `split_bytes` in block ranges, largest first) with
/// `jobs` connections that share the session's exported snapshot, each part streamed
/// into its object while its rows are digested.
///
/// Errors: `Database` for a COPY that fails (named), `Unavailable` for the store; the
/// other workers are stopped.
pub async fn copy_tables(
    dest: &Destination,
    session: &SnapshotSession,
    spec: &ConnSpec,
    split_bytes: u64,
    jobs: usize,
    progress: &Progress,
) -> Result<Vec<PartResult>> {
    let mut items = Vec::new();
    for (i, t) in session.tables.iter().enumerate() {
        let ranges = session.block_ranges(t, split_bytes);
        let split = ranges.len() > 1;
        let share = t.bytes / ranges.len() as i64;
        for (p, range) in ranges.into_iter().enumerate() {
            items.push(WorkItem { table: i, part: split.then_some(p as u32), range, estimate: share });
        }
    }
    // Largest first, so the long poles start early and the tail is short.
    items.sort_by_key(|w| std::cmp::Reverse(w.estimate));
    let total_items = items.len();
    // Progress counts tables (a table split into parts is done when its last part is),
    // never parts.
    let mut parts_left = vec![0usize; session.tables.len()];
    for item in &items {
        parts_left[item.table] += 1;
    }
    let table_count = session.tables.len() as u64;
    let queue = Arc::new(Mutex::new(VecDeque::from(items)));
    let done = Arc::new(Mutex::new((parts_left, 0u64)));
    let tables = Arc::new(session.tables.clone());
    let jobs = jobs.max(1).min(total_items.max(1));
    progress.set_tables(0, table_count);

    let mut set = JoinSet::new();
    for _ in 0..jobs {
        let (queue, done, tables) = (queue.clone(), done.clone(), tables.clone());
        let (dest, spec, progress) = (dest.clone(), spec.clone(), progress.clone());
        let snapshot_name = session.snapshot_name.clone();
        set.spawn(async move {
            let mut conn = postgres::import_snapshot(&spec, &snapshot_name).await?;
            let mut results = Vec::new();
            loop {
                let item = queue.lock().expect("queue lock").pop_front();
                let Some(item) = item else { break };
                let table = &tables[item.table];
                let object = SnapshotObject::TablePart {
                    schema: table.schema.clone(),
                    table: table.name.clone(),
                    part: item.part,
                };
                let statement = postgres::copy_out_statement(&table.schema, &table.name, &table.columns, item.range);
                let mut writer = dest.writer(&object)?;
                let mut digest = RowDigest::new();
                let copied: Result<()> = async {
                    let mut rows = postgres::copy_out(&mut conn, &statement).await?;
                    // COPY yields a row at a time: report progress per MiB, not per row.
                    let mut unreported = 0u64;
                    while let Some(chunk) = rows.next().await {
                        let chunk = chunk?;
                        digest.update(&chunk);
                        unreported += chunk.len() as u64;
                        if unreported >= 1 << 20 {
                            progress.add_bytes(std::mem::take(&mut unreported));
                        }
                        writer.write(&chunk).await?;
                    }
                    progress.add_bytes(unreported);
                    Ok(())
                }
                .await;
                if let Err(e) = copied {
                    writer.abort().await;
                    return Err(e.context(format!("copying table {}.{}", table.schema, table.name)));
                }
                digest.finish();
                let entry = writer.finish().await?;
                results.push(PartResult { table: item.table, part: item.part, entry, digest });
                let mut done = done.lock().expect("done lock");
                let (parts_left, tables_done) = &mut *done;
                parts_left[item.table] -= 1;
                if parts_left[item.table] == 0 {
                    *tables_done += 1;
                    progress.set_tables(*tables_done, table_count);
                }
            }
            sqlx::raw_sql("COMMIT").execute(&mut conn).await?;
            ConnSpec::close(conn).await;
            Ok::<_, Error>(results)
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(results)) => all.extend(results),
            Ok(Err(e)) => {
                set.abort_all();
                return Err(e);
            }
            Err(join) => {
                set.abort_all();
                return Err(Error::internal(format!("a copy task failed: {join}")));
            }
        }
    }
    Ok(all)
}
