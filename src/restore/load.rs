//! Loading a snapshot: its database into an empty target (schema, tables in parallel with
//! `COPY FROM`, post-data, sequences, materialized views) and its media into a folder or
//! prefix; and reading a small table's rows (the function stacks). Every byte comes from a
//! verified object stream.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;
use tokio::task::JoinSet;

use sqlx::AssertSqlSafe;

use super::database;
use super::media::MediaTarget;
use super::postdata::Entry;
use crate::error::{Error, ErrorKind, Result};
use crate::keys::Identities;
use crate::pg::{ConnSpec, qualified};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::layout::SnapshotObject;
use crate::repo::manifest::{Manifest, MediaEntry, ObjectEntry, TableEntry};
use crate::repo::pipeline::{Expect, ObjectStream, read_object, read_to_end, read_verified};

/// A snapshot to read from: where its objects are, the keys that open them, its manifest.
#[derive(Clone)]
pub struct SnapshotSource {
    pub repo: Repository,
    pub identities: Identities,
    pub manifest: Arc<Manifest>,
}

impl SnapshotSource {
    pub fn new(repo: &Repository, identities: &Identities, manifest: &Manifest) -> SnapshotSource {
        SnapshotSource { repo: repo.clone(), identities: identities.clone(), manifest: Arc::new(manifest.clone()) }
    }

    /// One of the snapshot's objects, streamed and verified.
    ///
    /// Errors: `Integrity` when it is missing (at once) or does not verify (at its end).
    pub async fn open(&self, entry: &ObjectEntry) -> Result<ObjectStream> {
        let path = SnapshotObject::key_for_name(&self.manifest.workspace, &self.manifest.id, &entry.name)?;
        read_object(&self.repo, &path, entry, &self.identities).await
    }
}

/// The rows of a table as `COPY` text fields (`None`: NULL), and its columns.
pub struct TableRows {
    pub rows: Vec<Vec<Option<String>>>,
    pub columns: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreTimings {
    pub check_ms: u64,
    pub pre_data_ms: u64,
    /// From the first table load's start to the last one's end (indexes of tables already
    /// loaded are built during this window).
    pub data_ms: u64,
    /// Post-data after the last table was loaded: the indexes and constraints still to
    /// build, then foreign keys, triggers and the rest in one transaction.
    pub post_data_ms: u64,
    pub finish_ms: u64,
    pub media_ms: u64,
    pub total_ms: u64,
    /// Where the time went, table by table (largest first).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TablePhases>,
}

/// One table's load and index builds, as offsets from the start of the data phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TablePhases {
    /// `schema.name`.
    pub table: String,
    pub plain_bytes: u64,
    pub parts: usize,
    /// Loaded whole in the transaction that truncated it, with `COPY ... FREEZE`: rows are
    /// written frozen and all-visible, so nothing rewrites the pages later to set hint bits
    /// (and on a server with `wal_level = minimal` the load writes no WAL). A table split
    /// over several connections cannot be (one transaction per connection).
    pub frozen: bool,
    pub load_started_ms: u64,
    pub loaded_ms: u64,
    /// Indexes and constraints built on it as soon as it was loaded.
    pub indexes: usize,
    /// Time spent building them (summed over connections).
    pub index_ms: u64,
    /// When its last index or constraint was built.
    pub done_ms: u64,
}

/// Tells a caller (a drill's checks) which tables are whole, by their index in the
/// manifest's `tables`, while the restore goes on: rows committed and every index and
/// constraint on the table built (so reading it waits for no lock of the restore's).
pub type TableLoaded = tokio::sync::mpsc::UnboundedSender<usize>;

/// Loads a snapshot's database into `target` (an empty database): the schema's pre-data,
/// then the tables and their indexes on `jobs` connections: largest tables first, each
/// table's indexes and constraints as soon as that table is in, so every connection stays
/// busy to the end. Then foreign keys, triggers and the rest of post-data, sequence values
/// and materialized views. Returns the phases' times and the privilege statements the
/// target's role may not give (skipped, see [`database::apply_pre_data`]). `loaded` hears
/// of each table once its rows and indexes are in.
///
/// Errors: `Integrity`/`Key` for an object that does not verify (named), `Database` from
/// Postgres.
pub async fn load_database(
    from: &SnapshotSource,
    target: &ConnSpec,
    bin_dir: Option<&Path>,
    jobs: usize,
    progress: &Progress,
    loaded: Option<TableLoaded>,
) -> Result<(RestoreTimings, Vec<String>)> {
    let manifest = &from.manifest;
    let mut timings = RestoreTimings::default();

    let t = Instant::now();
    progress.set_message("schema (pre-data)");
    let pre = from.open(&manifest.schema_pre).await?;
    let skipped_privileges = database::apply_pre_data(bin_dir, target, pre, "the schema (pre-data)").await?;
    timings.pre_data_ms = t.elapsed().as_millis() as u64;

    let post = read_to_end(from.open(&manifest.schema_post).await?)
        .await
        .map_err(|e| e.context("reading the schema (post-data)".to_string()))?;
    let split = std::str::from_utf8(&post).ok().and_then(super::postdata::split);
    let mut conn = target.connect().await?;
    let wal_level: String = sqlx::query_scalar("SELECT current_setting('wal_level')").fetch_one(&mut conn).await?;
    ConnSpec::close(conn).await;
    let plan = Plan::new(&manifest.tables, split.as_ref(), jobs, wal_level != "minimal");
    // pg_dump's session preamble of the post-data (its builds expect it), then ours.
    let preamble = split.as_ref().map(|s| s.preamble.as_str()).unwrap_or_default();
    let settings = format!("{preamble}\n{}", session_settings(manifest, jobs));
    let t = Instant::now();
    let (phases, loads_done) = run_plan(Some(from), target, plan, jobs, &settings, progress, loaded).await?;
    timings.data_ms = loads_done.as_millis() as u64;
    timings.tables = phases;

    progress.set_message("foreign keys, triggers (post-data)");
    match &split {
        Some(split) => database::apply_serial_post_data(target, split).await?,
        None => {
            let stream = crate::repo::pipeline::stream_of(post);
            database::apply_sql(bin_dir, target, stream, "the schema (post-data)").await?;
        }
    }
    timings.post_data_ms = t.elapsed().saturating_sub(loads_done).as_millis() as u64;

    let t = Instant::now();
    progress.set_message("sequences and materialized views");
    let mut conn = target.connect().await?;
    database::set_sequences(&mut conn, &manifest.sequences).await?;
    database::refresh_materialized_views(&mut conn, &manifest.materialized_views).await?;
    ConnSpec::close(conn).await;
    timings.finish_ms = t.elapsed().as_millis() as u64;
    Ok((timings, skipped_privileges))
}

/// Applies a post-data section on its own, to tables that are loaded already (an import):
/// indexes and constraints on up to `jobs` connections through the same scheduler as a
/// restore, then foreign keys, triggers and the rest in dump order in one transaction.
/// Text the splitter does not understand goes to psql whole.
///
/// Errors: `Database` naming the statement kind that failed.
pub async fn apply_post_data(
    bin_dir: Option<&Path>,
    target: &ConnSpec,
    sql: Vec<u8>,
    jobs: usize,
    progress: &Progress,
) -> Result<()> {
    let Some(split) = std::str::from_utf8(&sql).ok().and_then(super::postdata::split) else {
        let stream = crate::repo::pipeline::stream_of(sql);
        return database::apply_sql(bin_dir, target, stream, "the schema (post-data)").await;
    };
    let plan = Plan::new(&[], Some(&split), jobs, false);
    let settings = format!("{}\nSET synchronous_commit = off;", split.preamble);
    run_plan(None, target, plan, jobs, &settings, progress, None).await?;
    database::apply_serial_post_data(target, &split).await
}

/// Settings of every loading connection: no wait for the WAL flush at commit (a restore
/// that dies is redone whole anyway), memory for the largest index build and parallel
/// workers for an index build (one per other connection; neither below the server's own
/// setting).
fn session_settings(manifest: &crate::repo::manifest::Manifest, jobs: usize) -> String {
    let largest = manifest.tables.iter().map(|t| t.parts.iter().map(|p| p.plain_size).sum::<u64>()).max().unwrap_or(0);
    // A btree's sort holds about a quarter of the table's text for a key of a few columns.
    let mib = (largest / 4 / 1_048_576).clamp(64, 1024);
    format!(
        "SET synchronous_commit = off; \
         SELECT set_config('maintenance_work_mem', \
           greatest(pg_size_bytes(current_setting('maintenance_work_mem')), {bytes})::text || 'B', false); \
         SELECT set_config('max_parallel_maintenance_workers', \
           greatest(current_setting('max_parallel_maintenance_workers')::int, {workers})::text, false);",
        bytes = mib * 1_048_576,
        workers = jobs.clamp(1, 8) - 1,
    )
}

/// A unit of work for one connection.
enum Work {
    /// A whole table (all its parts) in one transaction that truncates it first, with FREEZE.
    Table(usize),
    /// One part of a table split over several connections.
    Part(usize, usize),
    /// An index or constraint (the table it is on, if known).
    Build(Option<usize>, Entry),
}

/// What is ready to run and what waits for a table.
struct Plan {
    ready: VecDeque<Work>,
    /// Per table: parts not yet loaded.
    parts_left: Vec<usize>,
    /// Per table: builds waiting for it.
    waiting: Vec<Vec<Entry>>,
    /// Builds on tables this does not know: after every load.
    after_loads: Vec<Entry>,
    loads_left: usize,
    tables_done: usize,
    /// Largest table first.
    phases: Vec<TablePhases>,
    /// Per table: where its phases are.
    phase_at: Vec<usize>,
    /// Per table: builds not yet done.
    builds_left: Vec<usize>,
}

impl Plan {
    /// `may_split`: large tables may be split over connections (see [`split_table`]).
    fn new(tables: &[TableEntry], split: Option<&super::postdata::Split>, jobs: usize, may_split: bool) -> Plan {
        let n = tables.len();
        let sizes: Vec<u64> = tables.iter().map(|t| t.parts.iter().map(|p| p.plain_size).sum()).collect();
        let total: u64 = sizes.iter().sum();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
        let mut plan = Plan {
            ready: VecDeque::new(),
            parts_left: tables.iter().map(|t| t.parts.len()).collect(),
            waiting: vec![Vec::new(); n],
            after_loads: Vec::new(),
            loads_left: 0,
            tables_done: 0,
            phases: Vec::with_capacity(n),
            phase_at: vec![0; n],
            builds_left: vec![0; n],
        };
        let by_name: std::collections::HashMap<(&str, &str), usize> =
            tables.iter().enumerate().map(|(i, t)| ((t.schema.as_str(), t.name.as_str()), i)).collect();
        for entry in split.into_iter().flat_map(super::postdata::Split::parallel) {
            let table = entry.table().and_then(|(s, t)| by_name.get(&(s.as_str(), t.as_str())).copied());
            match table {
                Some(i) => {
                    plan.waiting[i].push(entry.clone());
                    plan.builds_left[i] += 1;
                }
                None => plan.after_loads.push(entry.clone()),
            }
        }
        for &i in &order {
            let t = &tables[i];
            plan.phase_at[i] = plan.phases.len();
            let split_over = may_split && split_table(sizes[i], total, t.parts.len(), jobs);
            plan.phases.push(TablePhases {
                table: format!("{}.{}", t.schema, t.name),
                plain_bytes: sizes[i],
                parts: t.parts.len(),
                frozen: !split_over && !t.parts.is_empty(),
                indexes: plan.builds_left[i],
                ..Default::default()
            });
            if t.parts.is_empty() {
                continue;
            }
            plan.loads_left += 1;
            if split_over {
                // Largest parts first; the parts of one table go out one after another.
                plan.ready.extend((0..t.parts.len()).map(|p| Work::Part(i, p)));
            } else {
                plan.ready.push_back(Work::Table(i));
            }
        }
        // Tables without rows are loaded already: their builds can start at once.
        for (i, t) in tables.iter().enumerate() {
            if t.parts.is_empty() {
                plan.table_loaded(i);
            }
        }
        if plan.loads_left == 0 {
            plan.ready.extend(plan.after_loads.drain(..).map(|e| Work::Build(None, e)));
        }
        plan
    }

    /// Table `i` is in: its builds go to the front of the queue (they keep the
    /// connections busy while the largest tables still load).
    fn table_loaded(&mut self, i: usize) {
        for entry in std::mem::take(&mut self.waiting[i]).into_iter().rev() {
            self.ready.push_front(Work::Build(Some(i), entry));
        }
        self.tables_done += 1;
    }

    fn phase(&mut self, i: usize) -> &mut TablePhases {
        &mut self.phases[self.phase_at[i]]
    }
}

/// Whether a table is split over several connections (without FREEZE) rather than loaded
/// whole on one: only a table larger than its share of the work (`total / jobs`), in parts,
/// with more than one connection to share it. Measured at pgbench scale 100 on two cores
/// (`benches/restore.rs`): the 1 GB `pgbench_accounts` split over two connections restores
/// in 9.2-9.6 s, loaded whole and frozen in 10.6 s (its primary key then builds in 2 s
/// instead of 3.8 s, but the other connection idles while it loads). On a server with
/// `wal_level = minimal` (a drill's throwaway cluster) a whole table's load writes no WAL,
/// so tables are never split there.
fn split_table(size: u64, total: u64, parts: usize, jobs: usize) -> bool {
    jobs > 1 && parts > 1 && size > total / jobs as u64
}

/// Runs `plan` on `jobs` connections; `from` is where its loads read (`None`: a plan of
/// builds only).
async fn run_plan(
    from: Option<&SnapshotSource>,
    target: &ConnSpec,
    plan: Plan,
    jobs: usize,
    settings: &str,
    progress: &Progress,
    loaded: Option<TableLoaded>,
) -> Result<(Vec<TablePhases>, std::time::Duration)> {
    let clock = Instant::now();
    let tables = from.map_or(0, |f| f.manifest.tables.len());
    if tables > 0 {
        progress.set_tables(0, tables as u64);
    }
    let shared = Arc::new(Shared {
        plan: Mutex::new(plan),
        changed: tokio::sync::Notify::new(),
        clock,
        loads_done: Mutex::new(std::time::Duration::ZERO),
    });
    if let Some(tx) = &loaded {
        let plan = shared.plan.lock().expect("plan lock");
        for i in (0..tables).filter(|&i| plan.parts_left[i] == 0 && plan.builds_left[i] == 0) {
            let _ = tx.send(i);
        }
    }
    let mut set = JoinSet::new();
    let builds = shared.plan.lock().expect("plan lock").ready.len();
    let workers = if tables > 0 { jobs.max(1) } else { jobs.max(1).min(builds) };
    for _ in 0..workers {
        let (shared, from, target, progress) = (shared.clone(), from.cloned(), target.clone(), progress.clone());
        let (settings, loaded) = (settings.to_string(), loaded.clone());
        set.spawn(async move {
            let mut conn = target.connect().await?;
            sqlx::raw_sql(AssertSqlSafe(settings)).execute(&mut conn).await?;
            while let Some(work) = shared.next().await {
                shared.run(&mut conn, from.as_ref(), work, &progress, loaded.as_ref()).await?;
            }
            ConnSpec::close(conn).await;
            Ok::<_, Error>(())
        });
    }
    while let Some(joined) = set.join_next().await {
        let outcome =
            joined.unwrap_or_else(|e| Err(Error::new(ErrorKind::Internal, format!("a load task failed: {e}"))));
        if let Err(e) = outcome {
            set.abort_all();
            return Err(e);
        }
    }
    let phases = std::mem::take(&mut shared.plan.lock().expect("plan lock").phases);
    let loads_done = *shared.loads_done.lock().expect("clock lock");
    Ok((phases, loads_done))
}

struct Shared {
    plan: Mutex<Plan>,
    changed: tokio::sync::Notify,
    clock: Instant,
    loads_done: Mutex<std::time::Duration>,
}

impl Shared {
    /// The next piece of work; waits while every remaining piece waits for a table still
    /// loading on another connection; `None` when everything is done.
    async fn next(&self) -> Option<Work> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut plan = self.plan.lock().expect("plan lock");
                if let Some(work) = plan.ready.pop_front() {
                    return Some(work);
                }
                if plan.loads_left == 0 {
                    return None;
                }
            }
            notified.await;
        }
    }

    fn ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    async fn run(
        &self,
        conn: &mut sqlx::PgConnection,
        from: Option<&SnapshotSource>,
        work: Work,
        progress: &Progress,
        loaded: Option<&TableLoaded>,
    ) -> Result<()> {
        match work {
            Work::Table(i) => {
                let from = from.expect("a plan with loads has their snapshot");
                let manifest = &from.manifest;
                self.plan.lock().expect("plan lock").phase(i).load_started_ms = self.ms();
                load_table_frozen(conn, from, i, progress).await?;
                self.loaded(manifest, i, manifest.tables[i].parts.len(), progress, loaded);
            }
            Work::Part(i, p) => {
                let from = from.expect("a plan with loads has their snapshot");
                let manifest = &from.manifest;
                {
                    let mut plan = self.plan.lock().expect("plan lock");
                    let now = self.ms();
                    let phase = plan.phase(i);
                    if phase.load_started_ms == 0 {
                        phase.load_started_ms = now;
                    }
                }
                let table = &manifest.tables[i];
                let entry = &table.parts[p];
                let statement = database::copy_in_statement(&table.schema, &table.name, &table.columns, false);
                let stream = from.open(entry).await?;
                database::copy_in(conn, &statement, stream, Some(progress)).await.map_err(|e| {
                    e.context(format!("loading table {}.{} ({})", table.schema, table.name, entry.name))
                })?;
                self.loaded(manifest, i, 1, progress, loaded);
            }
            Work::Build(table, entry) => {
                let t = Instant::now();
                sqlx::raw_sql(AssertSqlSafe(entry.sql.clone())).execute(&mut *conn).await.map_err(|e| {
                    Error::from(e).context(format!(
                        "building {} `{}`",
                        entry.kind.to_lowercase(),
                        entry.sql.lines().next().unwrap_or("")
                    ))
                })?;
                if let Some(i) = table {
                    let mut plan = self.plan.lock().expect("plan lock");
                    plan.builds_left[i] -= 1;
                    let now = self.ms();
                    let phase = plan.phase(i);
                    phase.index_ms += t.elapsed().as_millis() as u64;
                    phase.done_ms = phase.done_ms.max(now);
                    if plan.builds_left[i] == 0
                        && let Some(tx) = loaded
                    {
                        let _ = tx.send(i);
                    }
                }
            }
        }
        Ok(())
    }

    /// `parts` more parts of table `i` are in; when it is whole, its builds are ready.
    fn loaded(
        &self,
        manifest: &crate::repo::manifest::Manifest,
        i: usize,
        parts: usize,
        progress: &Progress,
        loaded: Option<&TableLoaded>,
    ) {
        let mut plan = self.plan.lock().expect("plan lock");
        plan.parts_left[i] -= parts;
        if plan.parts_left[i] > 0 {
            return;
        }
        let now = self.ms();
        let phase = plan.phase(i);
        phase.loaded_ms = now;
        phase.done_ms = now;
        plan.table_loaded(i);
        plan.loads_left -= 1;
        progress.set_tables(plan.tables_done as u64, manifest.tables.len() as u64);
        if plan.loads_left == 0 {
            *self.loads_done.lock().expect("clock lock") = self.clock.elapsed();
            let rest: Vec<Entry> = plan.after_loads.drain(..).collect();
            plan.ready.extend(rest.into_iter().map(|e| Work::Build(None, e)));
            progress.set_message("indexes, constraints (post-data)");
        }
        let whole = plan.builds_left[i] == 0;
        drop(plan);
        if whole && let Some(tx) = loaded {
            let _ = tx.send(i);
        }
        self.changed.notify_waiters();
    }
}

/// Loads every part of table `i` in one transaction that truncates it first, so `COPY ...
/// FREEZE` may write its rows frozen. A failure rolls the whole table back.
async fn load_table_frozen(
    conn: &mut sqlx::PgConnection,
    from: &SnapshotSource,
    i: usize,
    progress: &Progress,
) -> Result<()> {
    let table = &from.manifest.tables[i];
    let name = qualified(&table.schema, &table.name);
    let statement = database::copy_in_statement(&table.schema, &table.name, &table.columns, true);
    sqlx::raw_sql(AssertSqlSafe(format!("BEGIN; TRUNCATE ONLY {name}"))).execute(&mut *conn).await?;
    let loaded = async {
        for entry in &table.parts {
            let stream = from.open(entry).await?;
            database::copy_in(conn, &statement, stream, Some(progress))
                .await
                .map_err(|e| e.context(format!("loading table {}.{} ({})", table.schema, table.name, entry.name)))?;
        }
        Ok::<_, Error>(())
    }
    .await;
    match loaded {
        Ok(()) => {
            sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
            Ok(())
        }
        Err(e) => {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            Err(e)
        }
    }
}

/// Restores media files into `target`, `jobs` at a time, each verified against its hash.
///
/// Errors: `Integrity` for a file that does not verify or a path that would escape the
/// target; those of the store.
pub async fn load_media(
    from: &SnapshotSource,
    target: &MediaTarget,
    files: &[MediaEntry],
    jobs: usize,
    progress: &Progress,
) -> Result<()> {
    progress.set_message(format!("media: {} files", files.len()));
    futures::stream::iter(files.to_vec())
        .map(|entry| {
            let from = from.clone();
            async move {
                let key = crate::repo::layout::media_object(&from.manifest.workspace, &entry.sha256)?;
                let expect = Expect::Content { sha256: entry.sha256.clone(), size: Some(entry.size) };
                let stream = read_verified(&from.repo, &key, expect, &from.identities).await?;
                super::media::write(target, &entry, stream)
                    .await
                    .map_err(|e| e.context(format!("restoring media file {}", entry.path)))?;
                progress.add_bytes(entry.size);
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(jobs.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// The rows (COPY text fields) and columns of table `schema.name` in a snapshot (a small
/// table: it is read into memory).
///
/// Errors: `NotFound` when the snapshot has no such table; `Integrity` for damaged data.
pub async fn table_rows(from: &SnapshotSource, schema: &str, name: &str) -> Result<TableRows> {
    let manifest = &from.manifest;
    let table = manifest
        .tables
        .iter()
        .find(|t| t.schema == schema && t.name == name)
        .ok_or_else(|| Error::not_found(format!("snapshot {} has no table {schema}.{name}", manifest.id)))?;
    let mut text = Vec::new();
    for part in &table.parts {
        text.extend(read_to_end(from.open(part).await?).await?);
    }
    let text = String::from_utf8(text).map_err(|_| Error::integrity(format!("{schema}.{name} data is not UTF-8")))?;
    let rows = text.lines().map(super::copytext::fields).collect();
    Ok(TableRows { rows, columns: table.columns.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::postdata::split;

    fn table(name: &str, part_sizes: &[u64]) -> TableEntry {
        TableEntry {
            schema: "public".into(),
            name: name.into(),
            columns: vec!["id".into()],
            rows: 1,
            content_digest: String::new(),
            parts: part_sizes
                .iter()
                .enumerate()
                .map(|(i, &size)| ObjectEntry {
                    name: format!("{name}.{i}"),
                    plain_size: size,
                    plain_blake3: String::new(),
                    stored_size: size,
                    stored_sha256: String::new(),
                })
                .collect(),
        }
    }

    const POST: &str = "--\n-- Name: big big_pkey; Type: CONSTRAINT; Schema: public; Owner: me\n--\n\n\
ALTER TABLE ONLY public.big\n    ADD CONSTRAINT big_pkey PRIMARY KEY (id);\n\n\
--\n-- Name: small_v; Type: INDEX; Schema: public; Owner: me\n--\n\n\
CREATE INDEX small_v ON public.small USING btree (id);\n\n\
--\n-- Name: parent_v; Type: INDEX; Schema: public; Owner: me\n--\n\n\
CREATE INDEX parent_v ON ONLY public.parent USING btree (id);\n\n\
--\n-- Name: empty_v; Type: INDEX; Schema: public; Owner: me\n--\n\n\
CREATE INDEX empty_v ON public.empty USING btree (id);\n\n\
--\n-- Name: small small_big_fkey; Type: FK CONSTRAINT; Schema: public; Owner: me\n--\n\n\
ALTER TABLE ONLY public.small\n    ADD CONSTRAINT small_big_fkey FOREIGN KEY (id) REFERENCES public.big(id);\n";

    fn describe(work: &Work) -> String {
        match work {
            Work::Table(i) => format!("table {i}"),
            Work::Part(i, p) => format!("part {i}.{p}"),
            Work::Build(_, e) => format!("build {}", e.sql.lines().next().unwrap_or("")),
        }
    }

    fn ready(plan: &Plan) -> Vec<String> {
        plan.ready.iter().map(describe).collect()
    }

    #[test]
    fn a_tables_indexes_wait_for_it_and_then_go_first() {
        let tables = [table("small", &[100]), table("big", &[600, 500]), table("empty", &[])];
        let split = split(POST).unwrap();
        let mut plan = Plan::new(&tables, Some(&split), 2, true);
        // The large table is split over both connections (it is most of the work), the
        // small one is whole; the empty table's index can start at once; the index on a
        // table without data (a partitioned parent) waits for every load; foreign keys are
        // not in the plan (they run after it, in one transaction).
        assert_eq!(
            ready(&plan),
            ["build CREATE INDEX empty_v ON public.empty USING btree (id);", "part 1.0", "part 1.1", "table 0"]
        );
        assert_eq!(plan.loads_left, 2);
        assert_eq!(
            plan.phases.iter().map(|p| (p.table.as_str(), p.frozen)).collect::<Vec<_>>(),
            [("public.big", false), ("public.small", true), ("public.empty", false)]
        );
        plan.ready.clear();
        plan.parts_left[0] = 0;
        plan.table_loaded(0);
        plan.loads_left -= 1;
        assert_eq!(ready(&plan), ["build CREATE INDEX small_v ON public.small USING btree (id);"]);
        plan.ready.clear();
        plan.table_loaded(1);
        assert_eq!(ready(&plan), ["build ALTER TABLE ONLY public.big"]);
        assert_eq!(plan.after_loads.len(), 1, "the parent's index waits for every load");
    }

    #[test]
    fn a_plan_without_loads_builds_everything_at_once() {
        // An import: its tables are in already; every index and constraint is ready, in
        // dump order, and nothing waits for a load.
        let plan = Plan::new(&[], Some(&split(POST).unwrap()), 2, false);
        assert_eq!(plan.loads_left, 0);
        assert_eq!(
            ready(&plan),
            [
                "build ALTER TABLE ONLY public.big",
                "build CREATE INDEX small_v ON public.small USING btree (id);",
                "build CREATE INDEX parent_v ON ONLY public.parent USING btree (id);",
                "build CREATE INDEX empty_v ON public.empty USING btree (id);",
            ]
        );
    }

    #[test]
    fn tables_are_whole_and_frozen_unless_one_is_most_of_the_work() {
        let tables = [table("small", &[100]), table("big", &[600, 500])];
        let whole = |jobs, may_split| {
            let plan = Plan::new(&tables, None, jobs, may_split);
            plan.ready.iter().map(describe).collect::<Vec<_>>()
        };
        assert_eq!(whole(2, false), ["table 1", "table 0"], "never split where loads write no WAL");
        assert_eq!(whole(1, true), ["table 1", "table 0"], "one connection: nothing to share");
        assert_eq!(whole(2, true), ["part 1.0", "part 1.1", "table 0"]);
        assert!(!split_table(500, 1200, 2, 2), "not more than its share");
        assert!(!split_table(900, 1000, 1, 4), "one part cannot be split");
        assert!(split_table(900, 1000, 3, 4));
    }
}
