//! The media of a snapshot: every file of the workspace's media store, hashed (a cache
//! spares unchanged files), each distinct content stored once in the repository.

use futures::{StreamExt, TryStreamExt};

use super::copy::Destination;
use super::media;
use crate::config::RepositoryConfig;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repo::layout;
use crate::repo::manifest::{MediaEntry, MediaSummary};
use crate::repo::pipeline::ObjectWriter;

/// Backs up the media store incrementally: hash what changed (the cache spares the rest),
/// upload each content not yet in the repository once, list every file in the manifest.
/// A problem with one file (a symlink, unreadable, gone or changed during the run) skips
/// that file and names it in `skipped`: the database part of a snapshot is never lost to
/// a media file. A problem with the store itself fails the snapshot.
pub async fn backup_media(
    dest: &Destination,
    url: &str,
    repository: &RepositoryConfig,
    cache_dir: Option<&std::path::Path>,
    jobs: usize,
    progress: &Progress,
) -> Result<MediaSummary> {
    let source = media::open(url, repository)?;
    let listing = source.list().await.map_err(|e| e.context(format!("listing the media store {url}")))?;
    let mut skipped = listing.skipped;
    let files = listing.files;
    progress.set_message(format!("media: {} files", files.len()));
    let mut cache = media::HashCache::load(cache_dir, &dest.repo.descriptor().id, &dest.workspace);
    let hashed: Vec<Result<(media::Listed, String), media::Skipped>> = futures::stream::iter(files.iter().cloned())
        .map(|file| {
            let (source, cached) = (source.clone(), cache.get(&file).map(str::to_string));
            async move {
                let sha = match cached {
                    Some(sha) => sha,
                    None => match source.hash(&file).await {
                        Ok((sha, _)) => sha,
                        Err(media::MediaError::File(reason)) => {
                            return Ok(Err(media::Skipped { path: file.path, reason }));
                        }
                        Err(media::MediaError::Store(e)) => {
                            return Err(e.context(format!("reading media file {}", file.path)));
                        }
                    },
                };
                Ok::<_, Error>(Ok((file, sha)))
            }
        })
        .buffered(jobs)
        .try_collect()
        .await?;
    let mut kept = Vec::with_capacity(hashed.len());
    for h in hashed {
        match h {
            Ok((file, sha)) => {
                cache.put(&file, &sha);
                kept.push((file, sha));
            }
            Err(skip) => skipped.push(skip),
        }
    }
    // Each distinct content once, and only if the repository does not have it yet.
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<(media::Listed, String)> =
        kept.iter().filter(|(_, sha)| seen.insert(sha.clone())).cloned().collect();
    // Owned values in each task: borrowed ones make this future not `Send` for the daemon
    // (rustc's higher-ranked lifetime limitation with async closures in streams).
    let uploads: Vec<Uploaded> = futures::stream::iter(unique)
        .map(|(file, sha)| {
            let (source, dest, progress) = (source.clone(), dest.clone(), progress.clone());
            async move {
                let key = layout::media_object(&dest.workspace, &sha)?;
                if let Some(stored) = dest.repo.stored_size(&key).await? {
                    return Ok(Uploaded::Present(sha, Some(stored)));
                }
                upload_media(&dest, &source, &file, &sha, key, &progress).await
            }
        })
        .buffer_unordered(jobs)
        .try_collect()
        .await?;
    let mut new = Vec::new();
    let mut lost = std::collections::HashSet::new();
    let mut stored_sizes = std::collections::HashMap::new();
    for u in uploads {
        match u {
            Uploaded::New(sha, plain, stored) => {
                new.push(plain);
                stored_sizes.insert(sha, stored);
            }
            Uploaded::Present(sha, stored) => {
                stored_sizes.extend(stored.map(|s| (sha, s)));
            }
            Uploaded::Skipped(sha, reason) => {
                lost.insert(sha.clone());
                // Every file with that content goes: none of them is in the repository.
                for (file, _) in kept.iter().filter(|(_, s)| *s == sha) {
                    skipped.push(media::Skipped { path: file.path.clone(), reason: reason.clone() });
                }
            }
        }
    }
    kept.retain(|(_, sha)| !lost.contains(sha));
    cache.save(&files);
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    for s in &skipped {
        tracing::warn!(workspace = %dest.workspace, file = %s.path, "media file skipped: it {}", s.reason);
    }
    Ok(MediaSummary {
        source: url.to_string(),
        bytes: kept.iter().map(|(f, _)| f.size).sum(),
        new_files: new.len() as u64,
        new_bytes: new.iter().sum(),
        files: kept
            .into_iter()
            .map(|(f, sha256)| MediaEntry {
                path: f.path,
                size: f.size,
                modified: f.modified,
                stored_size: stored_sizes.get(&sha256).copied(),
                sha256,
                mode: f.mode,
            })
            .collect(),
        skipped,
    })
}

/// What became of one media content.
enum Uploaded {
    /// Stored now (its content hash, plain and stored bytes).
    New(String, u64, u64),
    /// The repository had it (with its stored size, when known).
    Present(String, Option<u64>),
    /// The file could not be read (its content hash, why): it is skipped.
    Skipped(String, String),
}

/// Streams one media file into the repository under its content hash, checking that the
/// bytes still hash to it (a file changed since it was hashed is skipped, not a lie).
async fn upload_media(
    dest: &Destination,
    source: &media::MediaSource,
    file: &media::Listed,
    sha: &str,
    key: crate::repo::Key,
    progress: &Progress,
) -> Result<Uploaded> {
    use sha2::Digest;
    let mut writer = ObjectWriter::new(&dest.repo, key, format!("media/{sha}"), &dest.recipients)?.content_addressed();
    let mut hasher = sha2::Sha256::new();
    let copied: Result<(), media::MediaError> = async {
        let mut stream = source.read(file).await?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| source.classify(e))?;
            hasher.update(&chunk);
            progress.add_bytes(chunk.len() as u64);
            writer.write(&chunk).await.map_err(media::MediaError::Store)?;
        }
        Ok(())
    }
    .await;
    match copied {
        Ok(()) => {}
        Err(media::MediaError::File(reason)) => {
            writer.abort().await;
            return Ok(Uploaded::Skipped(sha.to_string(), reason));
        }
        Err(media::MediaError::Store(e)) => {
            writer.abort().await;
            return Err(e.context(format!("uploading media file {}", file.path)));
        }
    }
    if hex::encode(hasher.finalize()) != sha {
        writer.abort().await;
        return Ok(Uploaded::Skipped(sha.to_string(), "changed while it was backed up".into()));
    }
    let plain_size = writer.plain_size();
    match writer.finish_unhashed().await {
        Ok(stored_size) => Ok(Uploaded::New(sha.to_string(), plain_size, stored_size)),
        // Another snapshot stored the same content at the same moment: it is there.
        Err(e) if e.kind() == crate::error::ErrorKind::AlreadyExists => Ok(Uploaded::Present(sha.to_string(), None)),
        Err(e) => Err(e),
    }
}
