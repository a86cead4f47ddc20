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

/// Where a restore writes: one of these, said once (never a combination of fields that
/// must agree). Every front end makes one with [`RestoreTarget::from_options`]; operations
/// that resolved their target themselves give it as [`RestoreTarget::Resolved`].
#[derive(Debug, Clone)]
pub enum RestoreTarget {
    /// A database by URL (the command line's): created if missing, refused if not empty.
    /// `password`: the server's password as `env:VARIABLE` or `file:/path`, when the URL
    /// carries none.
    Url { url: String, password: Option<String> },
    /// A database of this name on the workspace's own server, with the workspace's
    /// credentials (a request's `database`: no server and no password come from a request).
    OnWorkspaceServer(crate::pg::DatabaseName),
    /// The workspace's live database, beside its tables (only with tables and their new
    /// names; a restore never goes over an existing table).
    BesideLive,
    /// A database its calling operation resolved, credentials and all (a drill's scratch
    /// server, an in-place restore's copy, a branch). `reserved`: a name that operation
    /// reserved for itself, which the target guard then lets it use.
    Resolved { conn: crate::pg::ConnSpec, reserved: bool },
}

impl Default for RestoreTarget {
    /// No target yet: refused by the restore until one is given.
    fn default() -> RestoreTarget {
        RestoreTarget::Url { url: String::new(), password: None }
    }
}

impl From<String> for RestoreTarget {
    /// A database URL, its password (if any) in it or found by libpq's rules.
    fn from(url: String) -> RestoreTarget {
        RestoreTarget::Url { url, password: None }
    }
}

impl RestoreTarget {
    /// From the options the front ends have: a URL with its password reference (the
    /// command line's), a database name on the workspace's server (a request's), or "into
    /// the live database"; exactly one of them.
    ///
    /// Errors: `Usage` for none, for more than one, for a name that is not a database's,
    /// or for a password given as is (the messages name the options, not a front end's
    /// spelling of them).
    pub fn from_options(
        url: Option<String>,
        password: Option<String>,
        database: Option<&str>,
        into_live: bool,
    ) -> crate::error::Result<RestoreTarget> {
        use crate::error::Error;
        if let Some(text) = &password {
            crate::secret::Secret::reference("the target's password", text)?;
        }
        match (url, database, into_live) {
            (None, None, true) => Ok(RestoreTarget::BesideLive),
            (Some(_), _, true) | (_, Some(_), true) => Err(Error::usage(
                "tables restored into the live database go into the workspace's database: leave out the target",
            )),
            (Some(_), Some(_), false) => {
                Err(Error::usage("give the target as a URL or as a database name on the workspace's server, not both"))
            }
            (Some(url), None, false) => Ok(RestoreTarget::Url { url, password }),
            (None, Some(name), false) => Ok(RestoreTarget::OnWorkspaceServer(crate::pg::DatabaseName::new(name)?)),
            (None, None, false) => Err(Error::usage(
                "a restore needs a target: a new database (or tables into the live database beside the live ones)",
            )),
        }
    }

    /// The target as a report or the audit trail shows it: never with a password.
    pub fn describe(&self) -> String {
        match self {
            RestoreTarget::Url { url, .. } => crate::pg::redact_url(url),
            RestoreTarget::OnWorkspaceServer(name) => format!("database {name} on the workspace's server"),
            RestoreTarget::BesideLive => "the workspace's live database".to_string(),
            RestoreTarget::Resolved { conn, .. } => conn.display(),
        }
    }

    /// Into the workspace's live database (beside its tables).
    pub fn is_live(&self) -> bool {
        matches!(self, RestoreTarget::BesideLive)
    }

    /// The database it names, with its credentials, and whether the calling operation
    /// reserved the name; `workspace`: the connection of the workspace restored (asked
    /// only for the targets on its server).
    ///
    /// Errors: `Usage` for no target or a URL that is not one; those of `workspace`.
    pub fn resolve(
        &self,
        workspace: impl FnOnce() -> crate::error::Result<crate::pg::ConnSpec>,
    ) -> crate::error::Result<(crate::pg::ConnSpec, bool)> {
        match self {
            RestoreTarget::Url { url, .. } if url.is_empty() => Err(crate::error::Error::usage(
                "a restore needs a target: a new database (or tables into the live database beside the live ones)",
            )),
            RestoreTarget::Url { url, password } => {
                let password = match password {
                    Some(text) => Some(crate::secret::Secret::reference("the target's password", text)?),
                    None => None,
                };
                Ok((crate::pg::ConnSpec::parse(url, password.as_ref())?, false))
            }
            RestoreTarget::OnWorkspaceServer(name) => Ok((workspace()?.with_database(name.as_str()), false)),
            RestoreTarget::BesideLive => Ok((workspace()?, false)),
            RestoreTarget::Resolved { conn, reserved } => Ok((conn.clone(), *reserved)),
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

    #[test]
    fn a_target_is_one_of_a_url_a_name_or_the_live_database() {
        let url = || Some("postgres://h/db".to_string());
        assert!(matches!(RestoreTarget::from_options(url(), None, None, false).unwrap(), RestoreTarget::Url { .. }));
        let named = RestoreTarget::from_options(None, None, Some("shop_copy"), false).unwrap();
        let live = crate::pg::ConnSpec::parse("postgres://u@h:5432/shop", None).unwrap();
        let (conn, reserved) = named.resolve(|| Ok(live.clone())).unwrap();
        assert_eq!((conn.database().as_deref(), reserved), (Some("shop_copy"), false), "on the workspace's server");
        assert!(RestoreTarget::from_options(None, None, None, true).unwrap().is_live());
        for (url, password, database, into_live) in [
            (None, None, None, false),
            (url(), None, None, true),
            (None, None, Some("copy"), true),
            (url(), None, Some("copy"), false),
            (None, None, Some("copy; DROP DATABASE shop"), false),
            (url(), Some("hunter2".to_string()), None, false),
        ] {
            let e = RestoreTarget::from_options(url, password, database, into_live).unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::Usage, "{database:?} {into_live}");
            assert!(!e.message().contains("--") && !e.message().contains("hunter2"), "{}", e.message());
        }
        let with_password = RestoreTarget::from("postgres://u:hunter2@h/db".to_string());
        assert!(!with_password.describe().contains("hunter2"), "{}", with_password.describe());
        let e = RestoreTarget::default().resolve(|| Ok(live.clone())).unwrap_err();
        assert!(e.message().contains("needs a target"), "{}", e.message());
    }
}
