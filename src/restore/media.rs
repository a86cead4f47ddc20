//! Restoring media files into a local folder or an object-store prefix, safe against
//! hostile names: every path is checked before anything is written (no `..`, no absolute
//! paths), and in a folder no file is written through a symlink or outside the target.
//! Each file is written to a temporary name beside it and renamed once its SHA-256 matches.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::repo::bucket::Bucket;
use crate::repo::manifest::MediaEntry;
use crate::repo::pipeline::ObjectStream;

/// Where media are restored to.
#[derive(Clone)]
pub enum MediaTarget {
    Folder(PathBuf),
    Store(Bucket),
}

impl MediaTarget {
    /// A local path or `file://` URL is a folder (created if missing); other URLs open an
    /// object store with the repository's settings.
    pub fn open(target: &str, repository: &crate::config::RepositoryConfig) -> Result<MediaTarget> {
        if !target.contains("://") || target.starts_with("file://") {
            let path = match url::Url::parse(target) {
                Ok(u) if u.scheme() == "file" => {
                    u.to_file_path().map_err(|()| Error::usage(format!("{target} is not a local path")))?
                }
                _ => PathBuf::from(target),
            };
            fs_err::create_dir_all(&path)
                .map_err(|e| Error::usage(format!("cannot create the media target {}: {e}", path.display())))?;
            return Ok(MediaTarget::Folder(path));
        }
        Ok(MediaTarget::Store(Bucket::open(target, repository)?))
    }
}

/// Writes one media file from its verified stream.
///
/// Errors: `Integrity` for a path that would leave the target or pass through a symlink,
/// or content that does not hash to the manifest's SHA-256.
pub async fn write(target: &MediaTarget, entry: &MediaEntry, mut data: ObjectStream) -> Result<()> {
    crate::source::media::validate_path(&entry.path)?;
    let mut sha = Sha256::new();
    match target {
        MediaTarget::Folder(root) => {
            let (dir, file) = prepare_folder(root, &entry.path)?;
            let mut tmp = tempfile::Builder::new().prefix(".tidemark-").tempfile_in(&dir)?;
            while let Some(chunk) = data.recv().await {
                let chunk = chunk?;
                sha.update(&chunk);
                tmp.write_all(&chunk)?;
            }
            check(&sha.finalize(), entry)?;
            tmp.as_file().sync_all()?;
            let _ = tmp.as_file().set_modified(entry.modified.into());
            if let Some(mode) = entry.mode {
                // The recorded permission bits (the temporary file is 0600).
                use std::os::unix::fs::PermissionsExt;
                tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode & 0o777))?;
            }
            tmp.persist(&file).map_err(|e| Error::from(e.error))?;
        }
        MediaTarget::Store(bucket) => {
            let mut upload = bucket.upload(&entry.path).await?;
            while let Some(chunk) = data.recv().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        upload.abort().await;
                        return Err(e);
                    }
                };
                sha.update(&chunk);
                upload.write(&chunk).await?;
            }
            if let Err(e) = check(&sha.finalize(), entry) {
                upload.abort().await;
                return Err(e);
            }
            upload.finish().await?;
        }
    }
    Ok(())
}

fn check(sha: &[u8], entry: &MediaEntry) -> Result<()> {
    if hex::encode(sha) == entry.sha256 {
        Ok(())
    } else {
        Err(Error::integrity(format!("media file {} did not restore to its recorded content", entry.path)))
    }
}

/// Creates the folders of `rel` under `root`, refusing any that is a symlink or not a
/// folder, and refusing a final name that is a symlink or a folder.
fn prepare_folder(root: &Path, rel: &str) -> Result<(PathBuf, PathBuf)> {
    let segments: Vec<&str> = rel.split('/').collect();
    let (name, parents) = segments.split_last().expect("validated: not empty");
    let mut dir = root.to_path_buf();
    for seg in parents {
        dir.push(seg);
        match fs_err::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => return Err(refused(rel, &dir, "is a symlink")),
            Ok(m) if !m.is_dir() => return Err(refused(rel, &dir, "is not a folder")),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs_err::create_dir(&dir)?,
            Err(e) => return Err(e.into()),
        }
    }
    let file = dir.join(name);
    if let Ok(m) = fs_err::symlink_metadata(&file)
        && (m.file_type().is_symlink() || m.is_dir())
    {
        return Err(refused(rel, &file, "is a symlink or a folder"));
    }
    Ok((dir, file))
}

fn refused(rel: &str, at: &Path, why: &str) -> Error {
    Error::integrity(format!(
        "refusing to restore media file {rel:?}: {} {why}, and writing through it could leave the target",
        at.display()
    ))
}
