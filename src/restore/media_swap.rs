//! The media half of an in-place restore's switch (and of its undo). A local media folder
//! is swapped with two renames, like the database. An object store has no rename, so a
//! media prefix (`s3://bucket/media`) is swapped by server-side copies between prefixes
//! beside it, in an order that keeps a whole copy of each side at every step:
//!
//! 1. before the switch, the snapshot's files are restored into `media.restoring-<id>/`;
//! 2. the live objects are copied to `media.before-<id>/`, and only once all are there is
//!    the marker `media.before-<id>.swapped` written (undo looks for it);
//! 3. the live prefix is made equal to the restored one (copies, then deletes of objects the
//!    snapshot does not have), and the restored prefix is removed.
//!
//! A failure in 2 leaves the live objects untouched; a failure in 3 (or in the database
//! switch after it) copies the `before` objects back. The window in which the live prefix
//! is mixed grows with the number of objects (one copy request each), unlike the renames
//! of a folder.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::repo::bucket::BucketRoot;

/// The media an in-place restore swapped, as its report says.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MediaSwapped {
    /// The live media folder or prefix, now holding the snapshot's files.
    pub live: String,
    /// Where the media it held went (`None`: dropped, `--drop-previous`).
    pub previous: Option<String>,
}

/// Where a workspace's media are during an in-place restore of `id`.
pub enum MediaSwap {
    Folders { live: PathBuf, incoming: PathBuf, aside: PathBuf, undone: PathBuf },
    Store { root: BucketRoot, url: url::Url, live: String, incoming: String, aside: String, undone: String },
}

impl MediaSwap {
    /// The places beside the workspace's media store for an in-place restore tagged `id`
    /// (`None` when the workspace has no media store).
    ///
    /// Errors: `Usage` for media at an object store's root (there is no prefix beside it);
    /// `Config` for a URL that cannot be opened.
    pub fn beside(
        url: Option<&str>,
        repository: &crate::config::RepositoryConfig,
        id: &str,
    ) -> Result<Option<MediaSwap>> {
        let Some(url) = url else { return Ok(None) };
        let tag = id.to_ascii_lowercase().replace('-', "_");
        let folder = match url::Url::parse(url) {
            Ok(u) if u.scheme() == "file" => u.to_file_path().ok(),
            Ok(_) => None,
            Err(_) => Some(PathBuf::from(url)),
        };
        if let Some(live) = folder {
            let live = PathBuf::from(live.to_string_lossy().trim_end_matches('/'));
            let with = |suffix: &str| PathBuf::from(format!("{}{suffix}{tag}", live.display()));
            return Ok(Some(MediaSwap::Folders {
                incoming: with(".restoring-"),
                aside: with(".before-"),
                undone: with(".undone-"),
                live,
            }));
        }
        let (root, live) = BucketRoot::open(url, repository)?;
        if live.is_empty() {
            return Err(Error::usage(format!(
                "the media store {url} is a whole bucket; an in-place restore needs a prefix beside it to \
                 restore into (use s3://bucket/media), or restore the media elsewhere with `tidemark restore ID \
                 --target URL --media-target s3://...`"
            )));
        }
        let with = |suffix: &str| format!("{live}{suffix}{tag}");
        let url = url::Url::parse(url).map_err(|e| Error::config(format!("media store {url:?}: {e}")))?;
        Ok(Some(MediaSwap::Store {
            incoming: with(".restoring-"),
            aside: with(".before-"),
            undone: with(".undone-"),
            root,
            url,
            live,
        }))
    }

    /// What a report says of a switch of these media: the live folder (or prefix URL) and
    /// where the media it held went (`None` when they were dropped).
    pub fn swapped_report(&self, dropped: bool) -> MediaSwapped {
        let (live, aside) = match self {
            MediaSwap::Folders { live, aside, .. } => (live.display().to_string(), aside.display().to_string()),
            MediaSwap::Store { url, live, aside, .. } => {
                let at = |prefix: &str| {
                    let mut url = url.clone();
                    url.set_path(&format!("/{prefix}"));
                    url.to_string()
                };
                (at(live), at(aside))
            }
        };
        MediaSwapped { live, previous: (!dropped).then_some(aside) }
    }

    /// Where the restore writes the snapshot's media: a folder or a URL.
    pub fn incoming_target(&self) -> String {
        match self {
            MediaSwap::Folders { incoming, .. } => incoming.display().to_string(),
            MediaSwap::Store { url, incoming, .. } => {
                let mut url = url.clone();
                url.set_path(&format!("/{incoming}"));
                url.to_string()
            }
        }
    }

    /// Refuses to start when an earlier in-place restore of the same id left something.
    ///
    /// Errors: `AlreadyExists` naming it; `Unavailable` for the store.
    pub async fn ensure_clear(&self) -> Result<()> {
        let left = match self {
            MediaSwap::Folders { incoming, aside, .. } => {
                [incoming, aside].into_iter().find(|p| p.exists()).map(|p| p.display().to_string())
            }
            MediaSwap::Store { root, incoming, aside, .. } => {
                let mut left = None;
                for prefix in [incoming, aside] {
                    if root.count(prefix).await? > 0 || root.has(&marker(prefix)).await? {
                        left = Some(format!("{prefix}/ in the media bucket"));
                        break;
                    }
                }
                left
            }
        };
        match left {
            Some(what) => Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{what} exists (an earlier in-place restore); remove it first"),
            )),
            None => Ok(()),
        }
    }

    /// Removes what the restore wrote (after a failure before the switch).
    pub async fn discard_incoming(&self) {
        match self {
            MediaSwap::Folders { incoming, .. } => {
                let _ = fs_err::remove_dir_all(incoming);
            }
            MediaSwap::Store { root, incoming, .. } => {
                let _ = root.remove_all(incoming).await;
            }
        }
    }

    /// The switch: the live media move aside and the restored ones take their place. On
    /// failure the live media are as they were (put back from the aside copy for a store).
    ///
    /// Errors: `Internal` for a rename; `Unavailable` for the store.
    pub async fn switch(&self) -> Result<()> {
        match self {
            MediaSwap::Folders { live, incoming, aside, .. } => {
                fs_err::create_dir_all(live)?;
                swap_folders(live, incoming, aside)
            }
            MediaSwap::Store { root, live, incoming, aside, .. } => {
                if let Err(e) = root.mirror(live, aside).await {
                    let _ = root.remove_all(aside).await;
                    return Err(e.context("copying the live media aside; they were not touched"));
                }
                root.put(&marker(aside), b"tidemark: the media before an in-place restore\n").await?;
                if let Err(e) = root.mirror(incoming, live).await {
                    return Err(match root.mirror(aside, live).await {
                        Ok(_) => e.context("making the restored media live; the live media were put back"),
                        Err(back) => e.context(format!(
                            "making the restored media live, and putting the live media back ({}); they are \
                             whole under {aside}/",
                            back.message()
                        )),
                    });
                }
                clear_live(root, incoming).await
            }
        }
    }

    /// Finishes a [`MediaSwap::switch`] that a dead process left at any point (a switch
    /// whose database was switched): from a state where it has not started, it makes the
    /// whole switch; from one between its steps, the steps left.
    ///
    /// Errors: `Refused` when the folders are in no state a switch leaves; those of the
    /// switch.
    pub async fn finish_switch(&self) -> Result<()> {
        match self {
            MediaSwap::Folders { live, incoming, aside, .. } => {
                match (live.exists(), incoming.exists(), aside.exists()) {
                    (_, true, false) => self.switch().await,
                    (false, true, true) => rename(incoming, live),
                    (true, false, true) => Ok(()),
                    state => Err(unexpected(&[live, incoming, aside], state)),
                }
            }
            MediaSwap::Store { root, live, incoming, aside, .. } => {
                if root.has(&live_marker(incoming)).await? {
                    return clear_live(root, incoming).await;
                }
                if !root.has(&marker(aside)).await? {
                    // The aside copy is not whole: the live objects were only read so far.
                    return self.switch().await;
                }
                root.mirror(incoming, live).await?;
                clear_live(root, incoming).await
            }
        }
    }

    /// Finishes a [`MediaSwap::switch_back`] (and [`MediaSwap::finish_undo`]) that a dead
    /// process left at any point (an undo whose database was switched).
    ///
    /// Errors: `Refused` when the folders are in no state an undo leaves; those of the undo.
    pub async fn finish_switch_back(&self) -> Result<()> {
        match self {
            MediaSwap::Folders { live, aside, undone, .. } => match (live.exists(), aside.exists(), undone.exists()) {
                (true, true, false) => self.switch_back().await,
                (false, true, true) => rename(aside, live),
                (true, false, true) => Ok(()),
                state => Err(unexpected(&[live, aside, undone], state)),
            },
            MediaSwap::Store { root, live, aside, undone, .. } => {
                if !root.has(&live_marker(aside)).await? {
                    if root.has(&marker(undone)).await? {
                        root.mirror(aside, live).await?;
                    } else {
                        self.switch_back().await?;
                    }
                }
                self.finish_undo().await;
                Ok(())
            }
        }
    }

    /// Drops the media moved aside (`--drop-previous`).
    ///
    /// Errors: those of the file system or the store.
    pub async fn drop_aside(&self) -> Result<()> {
        match self {
            MediaSwap::Folders { aside, .. } => Ok(fs_err::remove_dir_all(aside)?),
            MediaSwap::Store { root, aside, .. } => {
                root.remove_all(aside).await?;
                root.delete(&marker(aside)).await
            }
        }
    }

    /// Whether an in-place restore swapped these media (their aside copy is whole).
    ///
    /// Errors: `Unavailable` when the store cannot say (an undo must not go on without).
    pub async fn swapped(&self) -> Result<bool> {
        match self {
            MediaSwap::Folders { aside, .. } => Ok(aside.exists()),
            MediaSwap::Store { root, aside, .. } => root.has(&marker(aside)).await,
        }
    }

    /// The undo's switch: the live media move to `undone`, the aside ones take their place.
    ///
    /// Errors: `Internal` for a rename; `Unavailable` for the store (the live media are then
    /// put back).
    pub async fn switch_back(&self) -> Result<()> {
        match self {
            MediaSwap::Folders { live, aside, undone, .. } => swap_folders(live, aside, undone),
            MediaSwap::Store { root, live, aside, undone, .. } => {
                root.mirror(live, undone).await.map_err(|e| e.context("copying the live media aside"))?;
                root.put(&marker(undone), b"tidemark: the media an undo replaced\n").await?;
                if let Err(e) = root.mirror(aside, live).await {
                    let _ = root.mirror(undone, live).await;
                    return Err(e.context("putting the media from before the restore back"));
                }
                Ok(())
            }
        }
    }

    /// After an undo: the aside copy is live now (a folder was renamed; a prefix is removed).
    pub async fn finish_undo(&self) {
        if let MediaSwap::Store { root, aside, .. } = self
            && clear_live(root, aside).await.is_ok()
        {
            let _ = root.delete(&marker(aside)).await;
        }
    }
}

/// The marker beside a whole aside prefix (a sibling key, never one of the media files).
fn marker(prefix: &str) -> String {
    format!("{prefix}.swapped")
}

/// The marker beside a prefix whose objects are live now: what is left of it is clutter to
/// remove, never a copy to make live again (a removal cut short leaves part of it).
fn live_marker(prefix: &str) -> String {
    format!("{prefix}.live")
}

/// `prefix` was made live: it is marked so, removed, and the marker with it. A removal that
/// fails is only clutter, never a reason to call the switch failed.
async fn clear_live(root: &BucketRoot, prefix: &str) -> Result<()> {
    root.put(&live_marker(prefix), b"tidemark: these media are live now\n").await?;
    match root.remove_all(prefix).await {
        Ok(_) => root.delete(&live_marker(prefix)).await,
        Err(e) => {
            tracing::warn!(prefix = %prefix, error = %e.report(), "a media prefix made live was not removed");
            Ok(())
        }
    }
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    fs_err::rename(from, to).map_err(|e| {
        Error::new(ErrorKind::Unavailable, format!("cannot rename {} to {}: {e}", from.display(), to.display()))
    })
}

/// Folders in no state a switch leaves: a person looks.
fn unexpected(folders: &[&PathBuf], state: (bool, bool, bool)) -> Error {
    let (a, b, c) = state;
    let shown: Vec<String> = folders
        .iter()
        .zip([a, b, c])
        .map(|(f, there)| format!("{} {}", f.display(), if there { "exists" } else { "is missing" }))
        .collect();
    Error::new(
        ErrorKind::Refused,
        format!("the media folders are in no state a switch leaves ({}); look at them", shown.join(", ")),
    )
}

/// `live` moves to `aside` and `incoming` takes its place (renames in one filesystem); the
/// first is put back when the second fails.
///
/// Errors: `Unavailable` naming the folder that could not be renamed.
fn swap_folders(live: &Path, incoming: &Path, aside: &Path) -> Result<()> {
    rename(live, aside)?;
    crate::faults::point("media-moved-aside");
    if let Err(e) = rename(incoming, live) {
        let _ = fs_err::rename(aside, live);
        return Err(e);
    }
    Ok(())
}
