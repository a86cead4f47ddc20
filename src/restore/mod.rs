//! Writing a workspace back: creating or checking the target database, applying schema SQL
//! with psql, loading tables with `COPY FROM`, setting sequences, refreshing materialized
//! views. Every byte fed to Postgres comes from a verified object stream.

pub mod copytext;
pub mod database;
pub mod load;
pub mod media;
pub mod media_swap;
pub mod postdata;
pub mod tables;

/// Where a restore (a branch, an in-place restore) starts from: what every front end's
/// "a snapshot or a time" becomes, checked once ([`RestoreSource::from_options`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreSource {
    /// The workspace's newest snapshot.
    Latest,
    /// A snapshot id (checked as one).
    Snapshot(String),
    /// A moment (point-in-time recovery).
    Time(chrono::DateTime<chrono::Utc>),
}

impl RestoreSource {
    /// From the two options every front end has: a snapshot (an id or `latest`; empty or
    /// left out: the newest unless a time is given) and a time; not both.
    ///
    /// Errors: `Usage` for both, a snapshot id that is not one, or a time that is not one
    /// (the message names the options, not a front end's spelling of them).
    pub fn from_options(snapshot: Option<&str>, time: Option<&str>) -> crate::error::Result<RestoreSource> {
        let snapshot = snapshot.filter(|s| !s.is_empty());
        match (snapshot, time) {
            (Some(_), Some(_)) => {
                Err(crate::error::Error::usage("give a snapshot or a time to restore from, not both"))
            }
            (_, Some(time)) => Ok(RestoreSource::Time(crate::wal::window::parse_time(time)?)),
            (None | Some("latest"), None) => Ok(RestoreSource::Latest),
            (Some(id), None) => {
                crate::repo::layout::validate_snapshot_id(id)?;
                Ok(RestoreSource::Snapshot(id.to_string()))
            }
        }
    }

    /// The snapshot asked for as the snapshot options spell it (`latest`, an id), or `None`
    /// for a moment.
    pub fn snapshot(&self) -> Option<&str> {
        match self {
            RestoreSource::Latest => Some("latest"),
            RestoreSource::Snapshot(id) => Some(id),
            RestoreSource::Time(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_a_snapshot_or_a_time_never_both() {
        assert_eq!(RestoreSource::from_options(None, None).unwrap(), RestoreSource::Latest);
        assert_eq!(RestoreSource::from_options(Some(""), None).unwrap(), RestoreSource::Latest);
        assert_eq!(RestoreSource::from_options(Some("latest"), None).unwrap(), RestoreSource::Latest);
        let id = "20261129T101500Z-1a2b3c";
        assert_eq!(RestoreSource::from_options(Some(id), None).unwrap(), RestoreSource::Snapshot(id.into()));
        let time = RestoreSource::from_options(Some(""), Some("2026-11-22 10:15:00+00")).unwrap();
        assert!(matches!(time, RestoreSource::Time(_)) && time.snapshot().is_none());
        for (snapshot, time) in
            [(Some(id), Some("2026-11-22 10:15:00+00")), (Some("../x"), None), (None, Some("yesterday-ish"))]
        {
            let e = RestoreSource::from_options(snapshot, time).unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::Usage, "{snapshot:?} {time:?}");
            assert!(!e.message().contains("--"), "names a flag: {}", e.message());
        }
    }
}
