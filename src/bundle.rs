//! Export bundles: one portable file holding a workspace's schema, table data, function
//! stacks and media, that standard tools read (`age -d | zstd -d | tar x`, `psql -f`,
//! `\copy`, `sha256sum -c`).
//!
//! A bundle is a tar, compressed with zstd and (unless plain) encrypted with age:
//!
//! ```text
//! manifest.json              what is inside: tables, columns, rows, content digests, locale
//! schema.sql                 pg_dump pre-data: types, functions, tables (psql -f)
//! post-data.sql              indexes, constraints, triggers (psql -f, after the data)
//! data/0001-public.orders.copy   one file per table, COPY text format
//! load.psql                  `\copy` of every data file and the sequences' values
//! stacks/<kind>/<name>.json  the function stacks' live documents
//! media/<path>               media files (--with-media)
//! SHA256SUMS                 last: `sha256sum -c SHA256SUMS` checks every file
//! ```
//!
//! The tar is written and read on a blocking thread; the async side hands it entries as
//! streams of bytes, so memory stays bounded whatever the size. A writer's file is
//! `<file>.partial` until it is complete.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::error::{Error, ErrorKind, Result};
use crate::keys::{Identities, Recipients};
use crate::repo::manifest::{MatViewEntry, SequenceEntry, SourceInfo};

/// The format name in `manifest.json`.
pub const FORMAT: &str = "tidemark-bundle-1";
/// The checksums file, the tar's last entry.
pub const SUMS: &str = "SHA256SUMS";

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleManifest {
    pub format: String,
    pub workspace: String,
    /// The snapshot it was exported from.
    pub snapshot: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub tidemark_version: String,
    /// The source database's locale and version (a new database is created like it).
    pub source: SourceInfo,
    pub schema_only: bool,
    pub tables: Vec<BundleTable>,
    pub sequences: Vec<SequenceEntry>,
    pub materialized_views: Vec<MatViewEntry>,
    /// The stack documents, by file.
    pub stacks: Vec<String>,
    /// Media files, by their path below `media/`.
    pub media: Vec<BundleMedia>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleTable {
    pub schema: String,
    pub name: String,
    /// The columns of the data file, in order (`\copy t (a, b) FROM file`).
    pub columns: Vec<String>,
    pub rows: u64,
    /// The snapshot's digest of the rows: checked after an import.
    pub content_digest: String,
    /// `data/...copy`; `None` in a schema-only bundle.
    pub file: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleMedia {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// How a bundle is protected.
#[derive(Clone)]
pub enum Protection {
    /// Encrypted with age to these recipients (authenticated: altered bytes fail).
    Encrypted(Recipients),
    /// zstd only: anyone with the file reads it; `SHA256SUMS` catches damage, not forgery.
    Plain,
}

/// `load.psql`: psql commands that load every data file (run in the unpacked folder) and
/// set every sequence, between `schema.sql` and `post-data.sql`.
pub fn load_script(manifest: &BundleManifest) -> String {
    let literal = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let mut out = String::from("-- psql -f schema.sql -f load.psql -f post-data.sql, in the unpacked bundle\n");
    for t in &manifest.tables {
        let Some(file) = &t.file else { continue };
        let table = crate::pg::qualified(&t.schema, &t.name);
        let columns: Vec<String> = t.columns.iter().map(|c| crate::pg::quote_ident(c)).collect();
        let list = if columns.is_empty() { String::new() } else { format!(" ({})", columns.join(", ")) };
        out.push_str(&format!("\\copy {table}{list} FROM {}\n", literal(file)));
    }
    if !manifest.sequences.is_empty() {
        // PERFORM in a DO block: the values are set without psql printing a row for each.
        out.push_str("DO $tidemark$ BEGIN\n");
        for s in &manifest.sequences {
            out.push_str(&format!(
                "  PERFORM pg_catalog.setval({}, {}, {});\n",
                literal(&crate::pg::qualified(&s.schema, &s.name)),
                s.last_value,
                s.is_called
            ));
        }
        out.push_str("END $tidemark$;\n");
    }
    out
}

/// The data file of the `index`-th table: a plain name whatever the table is called.
pub fn data_file(index: usize, schema: &str, name: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).take(60).collect()
    };
    format!("data/{:04}-{}.{}.copy", index + 1, clean(schema), clean(name))
}

enum Piece {
    Start { path: String, size: u64 },
    Chunk(Bytes),
}

/// Writes a bundle: entries in order, each with its exact size up front.
pub struct BundleWriter {
    tx: Option<mpsc::Sender<Piece>>,
    thread: tokio::task::JoinHandle<Result<u64>>,
    partial: PathBuf,
    path: PathBuf,
}

/// What the blocking writer writes into: a file, through age or not.
enum Sink {
    Plain(std::fs::File),
    Age(age::stream::StreamWriter<std::fs::File>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(f) => f.write(buf),
            Sink::Age(a) => a.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(f) => f.flush(),
            Sink::Age(a) => a.flush(),
        }
    }
}

impl Sink {
    fn finish(self) -> std::io::Result<std::fs::File> {
        match self {
            Sink::Plain(f) => Ok(f),
            Sink::Age(a) => a.finish(),
        }
    }
}

/// Reads one entry's bytes from the channel, hashing them.
struct EntryReader<'a> {
    rx: &'a mut mpsc::Receiver<Piece>,
    left: u64,
    buffer: Bytes,
    hash: Sha256,
}

impl Read for EntryReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buffer.is_empty() {
            if self.left == 0 {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Piece::Chunk(b)) => self.buffer = b,
                _ => {
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the entry ended early"));
                }
            }
        }
        let n = out.len().min(self.buffer.len()).min(self.left as usize);
        if n == 0 {
            return Err(std::io::Error::other("an entry is longer than its size"));
        }
        out[..n].copy_from_slice(&self.buffer[..n]);
        self.hash.update(&out[..n]);
        let _ = self.buffer.split_to(n);
        self.left -= n as u64;
        Ok(n)
    }
}

fn header(size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

impl BundleWriter {
    /// Starts writing `path` (as `<path>.partial`; an existing `path` is refused).
    ///
    /// Errors: `AlreadyExists` for an existing file; `Internal` when it cannot be created.
    pub fn create(path: &Path, protection: &Protection) -> Result<BundleWriter> {
        if path.exists() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{} exists; export writes a new file", path.display()),
            ));
        }
        let partial = PathBuf::from(format!("{}.partial", path.display()));
        use std::os::unix::fs::OpenOptionsExt;
        // Only the owner reads a bundle (a plain one holds every row as text).
        let file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&partial).map_err(|e| {
                Error::internal(format!(
                    "cannot create {}: {e} (a stopped export leaves it: remove it)",
                    partial.display()
                ))
            })?;
        let sink = match protection {
            Protection::Plain => Ok(Sink::Plain(file)),
            Protection::Encrypted(recipients) => age::Encryptor::with_recipients(recipients.iter())
                .map_err(|e| Error::new(ErrorKind::Key, format!("cannot encrypt: {e}")))
                .and_then(|encryptor| Ok(Sink::Age(encryptor.wrap_output(file)?))),
        };
        let sink = sink.inspect_err(|_| {
            let _ = fs_err::remove_file(&partial);
        })?;
        let (tx, mut rx) = mpsc::channel::<Piece>(16);
        let thread = tokio::task::spawn_blocking(move || {
            let encoder = zstd::stream::write::Encoder::new(sink, 3)?;
            let mut tar = tar::Builder::new(encoder);
            let mut sums = String::new();
            while let Some(piece) = rx.blocking_recv() {
                let Piece::Start { path, size } = piece else {
                    return Err(Error::internal("bundle: data before its entry"));
                };
                let mut reader = EntryReader { rx: &mut rx, left: size, buffer: Bytes::new(), hash: Sha256::new() };
                tar.append_data(&mut header(size, 0o644), &path, &mut reader)?;
                sums.push_str(&format!("{}  {path}\n", hex::encode(reader.hash.finalize())));
            }
            tar.append_data(&mut header(sums.len() as u64, 0o644), SUMS, sums.as_bytes())?;
            let file = tar.into_inner()?.finish()?.finish()?;
            file.sync_all()?;
            Ok(file.metadata()?.len())
        });
        Ok(BundleWriter { tx: Some(tx), thread, partial, path: path.to_path_buf() })
    }

    async fn send(&self, piece: Piece) -> Result<()> {
        let tx = self.tx.as_ref().expect("open until finish");
        if tx.send(piece).await.is_err() {
            return Err(Error::internal("the bundle writer stopped"));
        }
        Ok(())
    }

    /// Starts an entry of exactly `size` bytes; [`BundleWriter::write`] gives them.
    pub async fn start(&mut self, path: &str, size: u64) -> Result<()> {
        self.send(Piece::Start { path: path.to_string(), size }).await
    }

    /// More bytes of the current entry.
    pub async fn write(&mut self, bytes: Bytes) -> Result<()> {
        self.send(Piece::Chunk(bytes)).await
    }

    /// Adds an entry of `size` bytes from a stream.
    ///
    /// Errors: the stream's own (abandon the bundle then).
    pub async fn add_stream(
        &mut self,
        path: &str,
        size: u64,
        mut stream: crate::repo::pipeline::ObjectStream,
    ) -> Result<()> {
        self.start(path, size).await?;
        while let Some(chunk) = stream.recv().await {
            self.write(chunk?).await?;
        }
        Ok(())
    }

    /// Adds an entry held in memory.
    pub async fn add_bytes(&mut self, path: &str, bytes: Vec<u8>) -> Result<()> {
        self.start(path, bytes.len() as u64).await?;
        self.write(Bytes::from(bytes)).await
    }

    /// Writes `SHA256SUMS`, closes the file and gives it its name. Returns its size.
    ///
    /// Errors: what stopped the writer (the partial file is removed).
    pub async fn finish(mut self) -> Result<u64> {
        drop(self.tx.take());
        let written = match (&mut self.thread).await {
            Ok(r) => r,
            Err(e) => Err(Error::internal(format!("bundle writer: {e}"))),
        };
        match written {
            Ok(size) => {
                fs_err::rename(&self.partial, &self.path)?;
                Ok(size)
            }
            Err(e) => {
                let _ = fs_err::remove_file(&self.partial);
                Err(e.context(format!("writing {}", self.path.display())))
            }
        }
    }

    /// Stops and removes the partial file.
    pub async fn abandon(mut self) {
        drop(self.tx.take());
        let _ = (&mut self.thread).await;
        let _ = fs_err::remove_file(&self.partial);
    }
}

/// One entry read from a bundle: its path, size and bytes (as a stream).
pub struct BundleEntry {
    pub path: String,
    pub size: u64,
    pub data: crate::repo::pipeline::ObjectStream,
}

/// Reads a bundle on a blocking thread. Entries arrive in order; each must be drained (or
/// dropped) before the next comes. [`BundleReader::finish`] says whether every file matched
/// `SHA256SUMS` (and, encrypted, whether age authenticated every byte).
pub struct BundleReader {
    entries: mpsc::Receiver<BundleEntry>,
    thread: tokio::task::JoinHandle<Result<()>>,
}

impl BundleReader {
    /// Opens `path`: an age-encrypted bundle needs `identities`; a plain one is read as is.
    ///
    /// Errors: `NotFound` for a missing file; `Usage` for a file that is not a bundle;
    /// `Key` when encrypted and no identity matches.
    pub fn open(path: &Path, identities: Option<Identities>) -> Result<BundleReader> {
        let what = format!("bundle {}", path.display());
        let (plain, encrypted) = open_file(path, identities, &what)?;
        let first = [0x28, 0xb5, 0x2f, 0xfd];
        let mut plain = std::io::BufReader::new(plain);
        if !encrypted && !std::io::BufRead::fill_buf(&mut plain)?.starts_with(&first) {
            return Err(Error::usage(format!("{} is not a tidemark bundle (neither age nor zstd)", path.display())));
        }
        let plain: Box<dyn Read + Send> = Box::new(plain);
        let (tx, entries) = mpsc::channel::<BundleEntry>(1);
        let thread = tokio::task::spawn_blocking(move || read_all(plain, &tx, &what));
        Ok(BundleReader { entries, thread })
    }

    /// The next entry, or `None` after the last.
    pub async fn next(&mut self) -> Option<BundleEntry> {
        self.entries.recv().await
    }

    /// Waits for the reader: `Integrity` when a file did not match `SHA256SUMS`, when a
    /// file is missing from it or the bundle's bytes were altered.
    pub async fn finish(&mut self) -> Result<()> {
        while let Some(mut entry) = self.entries.recv().await {
            while entry.data.recv().await.is_some() {}
        }
        (&mut self.thread).await.map_err(|e| Error::internal(format!("bundle reader: {e}")))?
    }
}

/// Opens a file tidemark wrote: decrypted when it is an age file (`true`), as it is
/// otherwise (`false`).
///
/// Errors: `NotFound` for a missing file; `Key` when encrypted and no identity matches;
/// `Integrity` for a damaged age header.
pub fn open_file(path: &Path, identities: Option<Identities>, what: &str) -> Result<(Box<dyn Read + Send>, bool)> {
    let mut file =
        std::fs::File::open(path).map_err(|e| Error::not_found(format!("cannot open {}: {e}", path.display())))?;
    let mut magic = [0u8; 21];
    let n = file.read(&mut magic)?;
    let file = std::fs::File::open(path)?;
    if !magic[..n].starts_with(b"age-encryption.org/v1") {
        return Ok((Box::new(file), false));
    }
    let identities = identities.ok_or_else(|| {
        Error::new(ErrorKind::Key, format!("{what} is encrypted: an age identity is needed to read it"))
    })?;
    let decryptor = age::Decryptor::new_buffered(std::io::BufReader::new(file))
        .map_err(|e| crate::repo::pipeline::decrypt_error(e, what))?;
    let reader = decryptor.decrypt(identities.iter()).map_err(|e| crate::repo::pipeline::decrypt_error(e, what))?;
    Ok((Box::new(reader), true))
}

/// Writes one table's rows as JSON lines (`row_to_json`: numbers stay numbers with their
/// digits, `bytea` as `"\\x..."`, arrays as arrays, `json`/`jsonb` nested, times as ISO
/// text, `null` for NULL) into `path`, encrypted unless plain, in one statement's snapshot.
/// Returns the rows written.
///
/// Errors: `AlreadyExists` for an existing file; `NotFound` for a missing table;
/// `Database` from Postgres (the partial file is removed).
pub async fn export_jsonl(
    conn: &mut sqlx::postgres::PgConnection,
    (schema, name): (&str, &str),
    path: &Path,
    protection: &Protection,
) -> Result<u64> {
    use futures::TryStreamExt;
    let table = crate::pg::qualified(schema, name);
    let found: Option<String> =
        sqlx::query_scalar("SELECT to_regclass($1)::text").bind(&table).fetch_one(&mut *conn).await?;
    if found.is_none() {
        return Err(Error::not_found(format!("the workspace's database has no table {schema}.{name}")));
    }
    if path.exists() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("{} exists; export writes a new file", path.display()),
        ));
    }
    let partial = PathBuf::from(format!("{}.partial", path.display()));
    let (tx, mut rx) = mpsc::channel::<Bytes>(16);
    let (protection, target) = (protection.clone(), partial.clone());
    let writer = tokio::task::spawn_blocking(move || -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&target)?;
        let mut sink = match protection {
            Protection::Plain => Sink::Plain(file),
            Protection::Encrypted(r) => {
                let encryptor = age::Encryptor::with_recipients(r.iter())
                    .map_err(|e| Error::new(ErrorKind::Key, format!("cannot encrypt: {e}")))?;
                Sink::Age(encryptor.wrap_output(file)?)
            }
        };
        let mut out = std::io::BufWriter::new(&mut sink);
        while let Some(line) = rx.blocking_recv() {
            out.write_all(&line)?;
        }
        out.flush()?;
        drop(out);
        sink.finish()?.sync_all()?;
        Ok(())
    });
    // `alias.*`: the whole row, even when a column has the alias's name.
    let sql = format!("SELECT row_to_json(tidemark_row.*)::text FROM ONLY {table} AS tidemark_row");
    let mut rows = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)).fetch(&mut *conn);
    let mut n = 0u64;
    let read: Result<()> = async {
        while let Some(mut row) = rows.try_next().await? {
            row.push('\n');
            if tx.send(Bytes::from(row)).await.is_err() {
                break;
            }
            n += 1;
        }
        Ok(())
    }
    .await;
    drop(rows);
    drop(tx);
    let written = writer.await.map_err(|e| Error::internal(format!("jsonl writer: {e}")))?;
    match read.and(written) {
        Ok(()) => {
            fs_err::rename(&partial, path)?;
            Ok(n)
        }
        Err(e) => {
            let _ = fs_err::remove_file(&partial);
            Err(e)
        }
    }
}

/// Loads JSON lines (as [`export_jsonl`] writes them) into an existing table, in one
/// transaction, 1,000 rows a statement (`jsonb_populate_recordset`: each value is read by
/// its column's type; a key that is missing is NULL). Returns the rows loaded.
///
/// Errors: `NotFound` for a missing table; `Usage` naming the line that is not a JSON
/// object; `Database` from Postgres (nothing is then committed).
pub async fn import_jsonl(
    conn: &mut sqlx::postgres::PgConnection,
    (schema, name): (&str, &str),
    input: Box<dyn Read + Send>,
) -> Result<u64> {
    let table = crate::pg::qualified(schema, name);
    let columns: Option<Vec<String>> = sqlx::query_scalar(
        "SELECT array_agg(quote_ident(attname) ORDER BY attnum) FROM pg_attribute \
         WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped AND attgenerated = ''",
    )
    .bind(&table)
    .fetch_one(&mut *conn)
    .await?;
    let columns = columns
        .ok_or_else(|| Error::not_found(format!("the target has no table {schema}.{name}: create it first")))?
        .join(", ");
    let (tx, mut rx) = mpsc::channel::<Result<Vec<String>>>(4);
    let reader = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::new();
        for (i, line) in std::io::BufRead::lines(std::io::BufReader::new(input)).enumerate() {
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.blocking_send(Err(Error::integrity(format!("reading line {}: {e}", i + 1))));
                    return;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            if !line.trim_start().starts_with('{') {
                let _ = tx.blocking_send(Err(Error::usage(format!("line {} is not a JSON object", i + 1))));
                return;
            }
            batch.push(line);
            if batch.len() == 1000 && tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err() {
                return;
            }
        }
        if !batch.is_empty() {
            let _ = tx.blocking_send(Ok(batch));
        }
    });
    let insert = format!(
        "INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE \
         SELECT {columns} FROM jsonb_populate_recordset(NULL::{table}, $1::jsonb)"
    );
    sqlx::raw_sql("BEGIN").execute(&mut *conn).await?;
    let loaded: Result<u64> = async {
        let mut n = 0;
        while let Some(batch) = rx.recv().await {
            let batch = batch?;
            let array = format!("[{}]", batch.join(","));
            let done = sqlx::query(sqlx::AssertSqlSafe(insert.clone())).bind(array).execute(&mut *conn).await?;
            n += done.rows_affected();
        }
        Ok(n)
    }
    .await;
    let _ = reader.await;
    match loaded {
        Ok(n) => {
            sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
            Ok(n)
        }
        Err(e) => {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            Err(e)
        }
    }
}

fn damaged(what: &str, e: &std::io::Error) -> Error {
    Error::integrity(format!("{what} is damaged or was altered ({e}); nothing of it can be trusted"))
}

fn read_all(plain: Box<dyn Read + Send>, tx: &mpsc::Sender<BundleEntry>, what: &str) -> Result<()> {
    let decoder = zstd::stream::read::Decoder::new(plain).map_err(|e| damaged(what, &e))?;
    let mut archive = tar::Archive::new(decoder);
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut sums: Option<String> = None;
    for entry in archive.entries().map_err(|e| damaged(what, &e))? {
        let mut entry = entry.map_err(|e| damaged(what, &e))?;
        if entry.header().entry_type().is_dir() {
            continue; // a tar made by hand lists its folders
        }
        let path = entry.path().map_err(|e| damaged(what, &e))?.to_string_lossy().into_owned();
        let size = entry.size();
        if path == SUMS {
            let mut text = String::new();
            entry.read_to_string(&mut text).map_err(|e| damaged(what, &e))?;
            sums = Some(text);
            continue;
        }
        let (data_tx, data) = mpsc::channel(4);
        let wanted = tx.blocking_send(BundleEntry { path: path.clone(), size, data }).is_ok();
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = entry.read(&mut buf).map_err(|e| damaged(what, &e))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            if wanted {
                let _ = data_tx.blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])));
            }
        }
        seen.insert(path, hex::encode(hash.finalize()));
    }
    let sums =
        sums.ok_or_else(|| Error::integrity(format!("{what} has no {SUMS}: it is cut short or not a bundle")))?;
    let mut listed = BTreeMap::new();
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (sum, file) =
            line.split_once("  ").ok_or_else(|| Error::integrity(format!("{what}: {SUMS} is malformed")))?;
        listed.insert(file.to_string(), sum.to_string());
    }
    if listed != seen {
        let bad: Vec<&String> = seen
            .keys()
            .chain(listed.keys())
            .filter(|k| seen.get(*k) != listed.get(*k))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        return Err(Error::integrity(format!(
            "{what}: {} do not match {SUMS}: the bundle was altered or damaged",
            bad.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(())
}
