//! A workspace's media store (a local folder or an object-store prefix), backed up
//! incrementally: every file is stored once in the repository, content-addressed by the
//! SHA-256 of its bytes; a local cache of (path, size, mtime) -> SHA-256 spares re-reading
//! unchanged files.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::RepositoryConfig;
use crate::error::{Error, Result};

/// A file of the media store as listed.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The store's own key (object_store percent-encodes some characters in it).
    pub location: Path,
    /// The file's name as people and file systems know it, `/`-separated.
    pub path: String,
    pub size: u64,
    pub modified: chrono::DateTime<chrono::Utc>,
}

/// Opens a media store URL (`file:///srv/media`, `s3://bucket/prefix`). S3 media use the
/// repository's S3 settings (endpoint, region, credentials).
pub fn open(url: &str, repository: &RepositoryConfig) -> Result<Arc<dyn ObjectStore>> {
    let cfg = RepositoryConfig { url: url.to_string(), ..repository.clone() };
    Ok(crate::repo::store::open(&cfg, false).map_err(|e| e.context(format!("opening the media store {url}")))?.store)
}

/// Every file of the store, sorted by path.
pub async fn list(store: &Arc<dyn ObjectStore>) -> Result<Vec<Listed>> {
    let metas: Vec<_> = store.list(None).try_collect().await?;
    let mut files: Vec<Listed> = metas
        .into_iter()
        .map(|m| Listed { path: decoded(&m.location), location: m.location, size: m.size, modified: m.last_modified })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn decoded(location: &Path) -> String {
    location
        .parts()
        .map(|p| percent_encoding::percent_decode_str(p.as_ref()).decode_utf8_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Streams a media file and returns the SHA-256 of its bytes and its size.
pub async fn hash(store: &Arc<dyn ObjectStore>, location: &Path) -> Result<(String, u64)> {
    let mut stream = store.get(location).await?.into_stream();
    let mut sha = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        sha.update(&chunk);
        size += chunk.len() as u64;
    }
    Ok((hex::encode(sha.finalize()), size))
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
        let dir = dir.map(|d| d.to_path_buf()).or_else(cache_dir);
        let file = dir.map(|d| d.join(repository_id).join(format!("{workspace}.media.json")));
        let mut cache: HashCache = file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
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
            std::fs::create_dir_all(file.parent().expect("cache file has a folder"))?;
            let tmp = file.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec(&self).expect("cache serializes"))?;
            std::fs::rename(&tmp, &file)
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
    fn hostile_paths_are_refused() {
        for bad in ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a\\..\\b", "", "a/.."] {
            assert!(validate_path(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "img/2026/cat.png", "..hidden", "a/b..c"] {
            assert!(validate_path(good).is_ok(), "{good:?}");
        }
    }
}
