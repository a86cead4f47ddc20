//! A workspace's media store (a local folder or an object-store prefix), backed up
//! incrementally, without ever following a symlink out of a folder (see [`MediaSource`]): every file is stored once in the repository, content-addressed by the
//! SHA-256 of its bytes; a local cache of (path, size, mtime) -> SHA-256 spares re-reading
//! unchanged files.

use std::collections::HashMap;
use std::path::PathBuf;

use futures::StreamExt;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::RepositoryConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::repo::Key;
use crate::repo::bucket::Bucket;

/// A file of the media store as listed.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The store's own key (it percent-encodes some characters); for a local folder,
    /// unused.
    pub location: Key,
    /// The file's name as people and file systems know it, `/`-separated.
    pub path: String,
    pub size: u64,
    pub modified: chrono::DateTime<chrono::Utc>,
    /// Permission bits of a file in a local folder.
    pub mode: Option<u32>,
}

pub use crate::repo::manifest::Skipped;

/// What a media store holds: the regular files to back up, and what was passed over.
#[derive(Debug, Default)]
pub struct Listing {
    pub files: Vec<Listed>,
    pub skipped: Vec<Skipped>,
}

/// A workspace's media store. A local folder is read by tidemark itself, never following a
/// symlink (an object store's local folder follows them, so a link to `/etc/shadow` or to
/// tidemark's own identity would be backed up and restored as a copy): symlinks and
/// anything that is not a regular file are skipped and named, and every file is opened
/// without following links and checked to be inside the folder.
#[derive(Clone)]
pub enum MediaSource {
    Folder(PathBuf),
    Store(Bucket),
}

/// Opens a media store URL (`file:///srv/media`, `s3://bucket/prefix`). S3 media use the
/// repository's S3 settings (endpoint, region, credentials).
///
/// Errors: `Config` for a URL that cannot be opened.
pub fn open(url: &str, repository: &RepositoryConfig) -> Result<MediaSource> {
    if let Ok(parsed) = url::Url::parse(url)
        && parsed.scheme() == "file"
    {
        let root = parsed.to_file_path().map_err(|()| Error::config(format!("{url} is not a local folder")))?;
        return Ok(MediaSource::Folder(root));
    }
    let bucket = Bucket::open(url, repository).map_err(|e| e.context(format!("opening the media store {url}")))?;
    Ok(MediaSource::Store(bucket))
}

impl MediaSource {
    /// Every file of the store, sorted by path, and what was skipped.
    ///
    /// Errors: `Unavailable` when the store (or the folder itself) cannot be listed; a
    /// problem with one entry below it only skips that entry.
    pub async fn list(&self) -> Result<Listing> {
        let mut listing = match self {
            MediaSource::Folder(root) => {
                let root = root.clone();
                tokio::task::spawn_blocking(move || list_folder(&root))
                    .await
                    .map_err(|e| Error::internal(format!("media listing task: {e}")))??
            }
            MediaSource::Store(bucket) => {
                let files = bucket
                    .list()
                    .await?
                    .into_iter()
                    .map(|o| Listed { location: o.key, path: o.path, size: o.size, modified: o.modified, mode: None })
                    .collect();
                Listing { files, skipped: Vec::new() }
            }
        };
        listing.files.sort_by(|a, b| a.path.cmp(&b.path));
        listing.skipped.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(listing)
    }

    /// The bytes of one file, streamed.
    ///
    /// Errors: `MediaError::File` for a problem with this file alone (gone, unreadable, a
    /// symlink, outside the folder), `MediaError::Store` for the store.
    pub async fn read(&self, file: &Listed) -> Result<BoxStream<'static, Result<bytes::Bytes>>, MediaError> {
        match self {
            MediaSource::Folder(root) => {
                let (root, rel) = (root.clone(), file.path.clone());
                let opened = tokio::task::spawn_blocking(move || open_inside(&root, &rel))
                    .await
                    .map_err(|e| MediaError::Store(Error::internal(format!("media read task: {e}"))))?
                    .map_err(MediaError::File)?;
                let stream = tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(opened), 1 << 20);
                Ok(stream.map(|chunk| chunk.map_err(Error::from)).boxed())
            }
            MediaSource::Store(bucket) => match bucket.read(&file.location).await {
                Ok(Some(stream)) => Ok(stream),
                Ok(None) => Err(MediaError::File("it was deleted".into())),
                Err(e) => Err(MediaError::Store(e)),
            },
        }
    }

    /// Streams a media file and returns the SHA-256 of its bytes and its size.
    pub async fn hash(&self, file: &Listed) -> Result<(String, u64), MediaError> {
        let mut stream = self.read(file).await?;
        let mut sha = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.classify(e))?;
            sha.update(&chunk);
            size += chunk.len() as u64;
        }
        Ok((hex::encode(sha.finalize()), size))
    }

    /// A read error part-way through a file: the file's problem in a folder (an I/O
    /// error on one file), the store's for an object store.
    pub fn classify(&self, e: Error) -> MediaError {
        match self {
            MediaSource::Folder(_) => MediaError::File(e.message().to_string()),
            MediaSource::Store(_) => MediaError::Store(e),
        }
    }
}

/// Why a media file could not be read.
#[derive(Debug)]
pub enum MediaError {
    /// This file alone: skip it and say why.
    File(String),
    /// The store: the snapshot cannot read its media.
    Store(Error),
}

/// Walks a media folder without following symlinks.
fn list_folder(root: &std::path::Path) -> Result<Listing> {
    let mut listing = Listing::default();
    let top = std::fs::read_dir(root).map_err(|e| {
        Error::new(ErrorKind::Unavailable, format!("cannot read the media folder {}: {e}", root.display()))
    })?;
    let mut pending = vec![(String::new(), top)];
    while let Some((prefix, entries)) = pending.pop() {
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    listing.skipped.push(Skipped { path: prefix.clone(), reason: format!("cannot be listed: {e}") });
                    continue;
                }
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let skip = |reason: String| Skipped { path: path.clone(), reason };
            // `symlink_metadata`: the entry itself, never what a link points to.
            let meta = match fs_err::symlink_metadata(entry.path()) {
                Ok(m) => m,
                Err(e) => {
                    listing.skipped.push(skip(format!("cannot be read: {e}")));
                    continue;
                }
            };
            let kind = meta.file_type();
            if kind.is_symlink() {
                let target = fs_err::read_link(entry.path()).map(|t| t.display().to_string()).unwrap_or_default();
                listing.skipped.push(skip(format!("is a symlink (to {target}); symlinks are not followed")));
            } else if kind.is_dir() {
                match std::fs::read_dir(entry.path()) {
                    Ok(below) => pending.push((path, below)),
                    Err(e) => listing.skipped.push(skip(format!("is a folder that cannot be read: {e}"))),
                }
            } else if !kind.is_file() {
                listing.skipped.push(skip("is not a regular file (a device, pipe or socket)".into()));
            } else if validate_path(&path).is_err() {
                listing.skipped.push(skip("has a name that cannot be restored safely".into()));
            } else {
                let modified = meta.modified().map(chrono::DateTime::<chrono::Utc>::from).unwrap_or_default();
                use std::os::unix::fs::PermissionsExt;
                let mode = Some(meta.permissions().mode() & 0o777);
                listing.files.push(Listed { location: Key::default(), path, size: meta.len(), modified, mode });
            }
        }
    }
    Ok(listing)
}

/// Opens `rel` below `root` for reading without following a symlink in its last part, then
/// checks what was opened: a regular file whose real path is inside `root` (a folder on
/// the way swapped for a link since it was listed leads elsewhere). Errors: why not.
fn open_inside(root: &std::path::Path, rel: &str) -> std::result::Result<std::fs::File, String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    validate_path(rel).map_err(|e| e.message().to_string())?;
    let real_root = fs_err::canonicalize(root).map_err(|e| format!("the media folder cannot be read: {e}"))?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
        .open(root.join(rel))
        .map_err(|e| match e.raw_os_error() {
            Some(code) if code == nix::errno::Errno::ELOOP as i32 => "is a symlink now; it is not followed".into(),
            _ if e.kind() == std::io::ErrorKind::NotFound => "was deleted while the snapshot ran".into(),
            _ => format!("cannot be read: {e}"),
        })?;
    let real = fs_err::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|e| format!("cannot be checked: {e}"))?;
    if !real.starts_with(&real_root) {
        return Err(format!("leads outside the media folder (to {}); not read", real.display()));
    }
    let meta = file.metadata().map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    Ok(file)
}

/// The hash cache: (path, size, mtime) -> SHA-256, one JSON file per repository and
/// workspace under the user's cache folder. It only spares reading a file whose size and
/// modification time are unchanged (as restic and rsync trust them); what is in the
/// repository is always checked in the repository itself.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct HashCache {
    entries: HashMap<String, CacheEntry>,
    #[serde(skip)]
    file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheEntry {
    size: u64,
    modified: chrono::DateTime<chrono::Utc>,
    sha256: String,
}

impl HashCache {
    /// Loads the cache for a repository and workspace from `dir` (default: the user's cache
    /// folder); a missing or unreadable cache is empty.
    pub fn load(dir: Option<&std::path::Path>, repository_id: &str, workspace: &str) -> HashCache {
        let dir = dir.map(std::path::Path::to_path_buf).or_else(cache_dir);
        let file = dir.map(|d| d.join(repository_id).join(format!("{workspace}.media.json")));
        let mut cache: HashCache = file
            .as_ref()
            .and_then(|f| fs_err::read(f).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        cache.file = file;
        cache
    }

    pub fn get(&self, file: &Listed) -> Option<&str> {
        self.entries
            .get(&file.path)
            .filter(|e| e.size == file.size && e.modified == file.modified)
            .map(|e| e.sha256.as_str())
    }

    pub fn put(&mut self, file: &Listed, sha256: &str) {
        self.entries.insert(
            file.path.clone(),
            CacheEntry { size: file.size, modified: file.modified, sha256: sha256.to_string() },
        );
    }

    /// Keeps only `files` and writes the cache atomically (temp file + rename). Failing to
    /// write it costs only time on the next snapshot, so errors are logged, not returned.
    pub fn save(mut self, files: &[Listed]) {
        let keep: std::collections::HashSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
        self.entries.retain(|k, _| keep.contains(k.as_str()));
        let Some(file) = self.file.clone() else { return };
        let result = (|| -> std::io::Result<()> {
            fs_err::create_dir_all(file.parent().expect("cache file has a folder"))?;
            let tmp = file.with_extension("json.tmp");
            fs_err::write(&tmp, serde_json::to_vec(&self).expect("cache serializes"))?;
            fs_err::rename(&tmp, &file)
        })();
        if let Err(e) = result {
            tracing::warn!("could not write the media hash cache {}: {e}", file.display());
        }
    }
}

fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("TIDEMARK_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("tidemark"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("tidemark"))
}

/// Checks a media path from a manifest before anything is written for it: relative, no
/// `.`/`..`/empty segments, no backslashes or NULs.
///
/// Errors: `Integrity` naming the path.
pub fn validate_path(path: &str) -> Result<()> {
    let ok = !path.is_empty()
        && !path.starts_with('/')
        && !path.contains(['\\', '\0'])
        && path.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if ok {
        Ok(())
    } else {
        Err(Error::integrity(format!(
            "the manifest names the media file {path:?}, which could escape the restore target; refused"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_opened_only_inside_the_folder_and_never_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("media"), dir.path().join("outside"));
        fs_err::create_dir_all(root.join("real")).unwrap();
        fs_err::create_dir_all(&outside).unwrap();
        fs_err::write(root.join("real/a.txt"), b"inside").unwrap();
        fs_err::write(outside.join("a.txt"), b"outside").unwrap();
        assert!(open_inside(&root, "real/a.txt").is_ok());
        // A folder on the way that is a link (swapped in after the listing, say).
        std::os::unix::fs::symlink(&outside, root.join("sub")).unwrap();
        let e = open_inside(&root, "sub/a.txt").unwrap_err();
        assert!(e.contains("outside the media folder"), "{e}");
        // The file itself a link, even to a file inside.
        std::os::unix::fs::symlink(root.join("real/a.txt"), root.join("link")).unwrap();
        assert!(open_inside(&root, "link").unwrap_err().contains("symlink"));
        assert!(open_inside(&root, "gone").unwrap_err().contains("deleted"));
        assert!(open_inside(&root, "../outside/a.txt").is_err());
        // The root itself may be reached through a link: what is inside it is still inside.
        std::os::unix::fs::symlink(&root, dir.path().join("alias")).unwrap();
        assert!(open_inside(&dir.path().join("alias"), "real/a.txt").is_ok());
    }

    #[test]
    fn hostile_paths_are_refused() {
        for bad in ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a\\..\\b", "", "a/.."] {
            assert!(validate_path(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "img/2026/cat.png", "..hidden", "a/b..c"] {
            assert!(validate_path(good).is_ok(), "{good:?}");
        }
    }
}
