//! Who may do what: the one place where that is decided. Roles are a fixed set, denied by
//! default; a token may be limited to some workspaces and can never get more than its
//! creator has. Front ends ask [`check`] before they call an operation; the operations
//! record what was done (see the audit trail).

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

/// An address as rules compare it: an IPv4 address that arrives IPv4-mapped on a
/// dual-stack socket (`::ffff:127.0.0.9`) is that IPv4 address.
pub fn canonical_ip(address: std::net::IpAddr) -> std::net::IpAddr {
    address.to_canonical()
}

/// An address or CIDR range as rules hold it (an IPv4-mapped IPv6 range is its IPv4 range);
/// `None` for text that is neither.
pub fn parse_net(text: &str) -> Option<ipnet::IpNet> {
    let net =
        text.parse::<ipnet::IpNet>().ok().or_else(|| text.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))?;
    Some(match net {
        ipnet::IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::IpNet::V4(ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).ok()?),
            None => net,
        },
        _ => net,
    })
}

/// A token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Reads workspaces, snapshots, jobs, drills, stacks, the PITR window, status.
    Viewer,
    /// Viewer, plus manual snapshots, drills, restores into a new database, new branches,
    /// restore points, pins, exports.
    Operator,
    /// Viewer, plus writing, publishing and reverting function stacks.
    Developer,
    /// Everything, including prune, unpin, in-place restores, branches made live or deleted,
    /// tokens and the audit trail.
    Admin,
    /// Reads and verifies the audit trail, nothing else.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Viewer, Role::Operator, Role::Developer, Role::Admin, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Developer => "developer",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }

    /// Whether this role may do `action`: the whole matrix (docs/reference/roles.md shows
    /// it, generated from here).
    pub fn allows(self, action: Action) -> bool {
        use Action as A;
        match self {
            Role::Admin => true,
            Role::Auditor => matches!(action, A::ReadAudit | A::ReadFleet | A::SignIn),
            Role::Viewer => matches!(action, A::Read | A::ReadMetrics | A::SignIn),
            Role::Operator => {
                matches!(
                    action,
                    A::Read
                        | A::ReadMetrics
                        | A::Snapshot
                        | A::Drill
                        | A::Restore
                        | A::MarkRestorePoint
                        | A::Pin
                        | A::Export
                        | A::SignIn
                )
            }
            Role::Developer => matches!(action, A::Read | A::ReadMetrics | A::WriteStacks | A::SignIn),
        }
    }

    /// Whether a holder of this role may hand out a token of `other`: never more than it
    /// has (every action `other` allows, this one allows too).
    pub fn may_grant(self, other: Role) -> bool {
        Action::ALL.iter().all(|a| !other.allows(*a) || self.allows(*a))
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(text: &str) -> Result<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text).ok_or_else(|| {
            Error::usage(format!("{text:?} is not a role: use one of {}", Role::ALL.map(Role::as_str).join(", ")))
        })
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Read workspaces, snapshots, jobs, drills, stacks, the PITR window, status; run a check.
    Read,
    /// Take a manual snapshot.
    Snapshot,
    /// Run a restore drill.
    Drill,
    /// Restore into a new database (also: create a branch).
    Restore,
    /// Change a workspace's live database: an in-place restore, its undo, a branch made
    /// live, tables restored into it beside the live ones.
    ReplaceLive,
    /// Mark a restore point.
    MarkRestorePoint,
    /// Pin a snapshot.
    Pin,
    /// Unpin a snapshot (it may then be deleted).
    Unpin,
    /// Apply retention (deletes backups).
    Prune,
    /// Write, publish and revert function stacks.
    WriteStacks,
    /// Create, list and revoke tokens.
    ManageTokens,
    /// Read and verify the audit trail.
    ReadAudit,
    /// See the fleet: the tidemark processes sharing the catalog and what each holds.
    ReadFleet,
    /// Export a snapshot as a bundle on the server and ask for download links to it.
    Export,
    /// Delete a branch: its database is dropped.
    DeleteBranch,
    /// Read the Prometheus metrics (they cover every workspace: only a token for all).
    ReadMetrics,
    /// Stop a job another actor started of an operation that needs only `Read` (a check);
    /// stopping any other job needs the permission to start it (`Operation`).
    CancelJobs,
    /// Sign in to the web console (every role: the pages then show what the role may see).
    SignIn,
}

impl Action {
    /// Its name in the docs (docs/reference/roles.md, the API reference's `needs`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Snapshot => "snapshot",
            Action::Drill => "drill",
            Action::Restore => "restore",
            Action::ReplaceLive => "replace-live",
            Action::MarkRestorePoint => "mark-restore-point",
            Action::Pin => "pin",
            Action::Unpin => "unpin",
            Action::Prune => "prune",
            Action::WriteStacks => "write-stacks",
            Action::ManageTokens => "manage-tokens",
            Action::ReadAudit => "read-audit",
            Action::ReadFleet => "read-fleet",
            Action::Export => "export",
            Action::DeleteBranch => "delete-branch",
            Action::ReadMetrics => "read-metrics",
            Action::CancelJobs => "cancel-jobs",
            Action::SignIn => "sign-in",
        }
    }

    pub const ALL: [Action; 18] = [
        Action::Read,
        Action::Snapshot,
        Action::Drill,
        Action::Restore,
        Action::ReplaceLive,
        Action::MarkRestorePoint,
        Action::Pin,
        Action::Unpin,
        Action::Prune,
        Action::WriteStacks,
        Action::ManageTokens,
        Action::ReadAudit,
        Action::ReadFleet,
        Action::Export,
        Action::DeleteBranch,
        Action::ReadMetrics,
        Action::CancelJobs,
        Action::SignIn,
    ];
}

/// What a credential grants: a role, and the workspaces it is limited to (empty: all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Grant {
    pub role: Role,
    pub workspaces: Vec<String>,
}

impl Grant {
    /// Whether this grant is for every workspace.
    pub fn is_global(&self) -> bool {
        self.workspaces.is_empty()
    }

    /// Whether everything limited to `workspaces` (empty: all of them) lies within this
    /// grant's own workspaces: what a scoped admin may see and manage of tokens and of
    /// the audit trail.
    pub fn covers(&self, workspaces: &[String]) -> bool {
        self.is_global() || (!workspaces.is_empty() && workspaces.iter().all(|w| self.workspaces.contains(w)))
    }
}

/// Whether `grant` may do `action` on `workspace` (`None`: not about one workspace).
///
/// Errors: `Forbidden` saying which: the role, or the workspace.
pub fn check(grant: &Grant, action: Action, workspace: Option<&str>) -> Result<()> {
    if !grant.role.allows(action) {
        return Err(Error::new(ErrorKind::Forbidden, format!("the role {} may not {}", grant.role, describe(action))));
    }
    if action == Action::ReadMetrics && !grant.workspaces.is_empty() {
        return Err(Error::new(
            ErrorKind::Forbidden,
            "the metrics cover every workspace, and this token is limited to some: use a token for all workspaces",
        ));
    }
    if let Some(ws) = workspace
        && !grant.workspaces.is_empty()
        && !grant.workspaces.iter().any(|w| w == ws)
    {
        return Err(Error::new(ErrorKind::Forbidden, format!("this token is not for workspace {ws}")));
    }
    Ok(())
}

fn describe(action: Action) -> &'static str {
    match action {
        Action::Read => "read backups",
        Action::Snapshot => "take snapshots",
        Action::Drill => "run drills",
        Action::Restore => "restore",
        Action::ReplaceLive => {
            "change a workspace's live database (in-place restore, undo, branch set-live, tables restored into it)"
        }
        Action::MarkRestorePoint => "mark restore points",
        Action::Pin => "pin snapshots",
        Action::Unpin => "unpin snapshots",
        Action::Prune => "prune",
        Action::WriteStacks => "change function stacks",
        Action::ManageTokens => "manage tokens",
        Action::ReadAudit => "read the audit trail",
        Action::ReadFleet => "see the fleet's members and what each holds",
        Action::Export => "export snapshots and hand out download links",
        Action::DeleteBranch => "delete branches",
        Action::ReadMetrics => "read the metrics",
        Action::CancelJobs => "stop another caller's job",
        Action::SignIn => "sign in to the web console",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The matrix in docs/reference/roles.md, generated from [`Role::allows`] (between its
    /// markers; `TIDEMARK_WRITE_DOCS=1 cargo test --lib role_matrix` rewrites it).
    #[test]
    fn the_role_matrix_in_the_docs_is_the_codes() {
        fn row(action: Action) -> &'static str {
            match action {
                Action::Read => "read workspaces, snapshots, jobs, drills, stacks, PITR window, status; check",
                Action::ReadMetrics => "read the metrics (`/metrics`; a token for every workspace)",
                Action::Snapshot => "take a manual snapshot",
                Action::Drill => "run a drill",
                Action::Restore => "restore into a new database; create a branch",
                Action::ReplaceLive => {
                    "change a workspace's live database (in-place restore, undo, branch set-live, tables restored into it)"
                }
                Action::DeleteBranch => "delete a branch (its database is dropped)",
                Action::Export => "export a snapshot on the server, ask for download links to it",
                Action::MarkRestorePoint => "mark a restore point",
                Action::Pin => "pin",
                Action::Unpin => "unpin",
                Action::Prune => "prune",
                Action::WriteStacks => "write, publish, revert function stacks",
                Action::ManageTokens => "manage tokens",
                Action::ReadAudit => "read and verify the audit trail",
                Action::ReadFleet => "see the fleet (`tidemark fleet`, `/v1/fleet`): members and what each holds",
                Action::CancelJobs => "stop another caller's job (any job: the right to start it)",
                Action::SignIn => "sign in to the web console (which shows what the role may see and do)",
            }
        }
        let mut table = String::from("| right | what it allows |");
        for role in Role::ALL {
            table.push_str(&format!(" {role} |"));
        }
        table.push_str("\n|---|---|");
        table.push_str(&":-:|".repeat(Role::ALL.len()));
        for action in Action::ALL {
            table.push_str(&format!("\n| `{}` | {} |", action.as_str(), row(action)));
            for role in Role::ALL {
                table.push_str(if role.allows(action) { " yes |" } else { " - |" });
            }
        }
        let (begin, end) = ("<!-- role-matrix:begin -->\n", "\n<!-- role-matrix:end -->");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference/roles.md");
        let text = fs_err::read_to_string(&path).unwrap();
        let (Some(b), Some(e)) = (text.find(begin), text.find(end)) else {
            panic!("{} lacks the markers", path.display())
        };
        let committed = &text[b + begin.len()..e];
        if committed != table && std::env::var_os("TIDEMARK_WRITE_DOCS").is_some() {
            fs_err::write(&path, format!("{}{table}{}", &text[..b + begin.len()], &text[e..])).unwrap();
            return;
        }
        assert_eq!(
            committed, table,
            "docs/reference/roles.md: run `TIDEMARK_WRITE_DOCS=1 cargo test --lib role_matrix`"
        );
    }

    /// The matrix as the issues state it, cell by cell: a change to one is a change to both.
    #[test]
    fn every_cell_of_the_role_matrix() {
        use Action as A;
        let allowed: &[(Role, &[Action])] = &[
            (Role::Viewer, &[A::Read, A::ReadMetrics, A::SignIn]),
            (
                Role::Operator,
                &[
                    A::Read,
                    A::ReadMetrics,
                    A::Snapshot,
                    A::Drill,
                    A::Restore,
                    A::MarkRestorePoint,
                    A::Pin,
                    A::Export,
                    A::SignIn,
                ],
            ),
            (Role::Developer, &[A::Read, A::ReadMetrics, A::WriteStacks, A::SignIn]),
            (Role::Admin, &A::ALL),
            (Role::Auditor, &[A::ReadAudit, A::ReadFleet, A::SignIn]),
        ];
        for (role, actions) in allowed {
            for action in Action::ALL {
                assert_eq!(role.allows(action), actions.contains(&action), "{role} {action:?}");
            }
        }
        // What the issue names, refused.
        let (viewer, operator, auditor) = (Role::Viewer, Role::Operator, Role::Auditor);
        assert!(!viewer.allows(A::Restore) && !operator.allows(A::Prune) && !auditor.allows(A::Read));
        // Each right has its own name, as serde spells it too.
        for action in Action::ALL {
            assert_eq!(serde_json::to_value(action).unwrap(), action.as_str(), "{action:?}");
        }
    }

    #[test]
    fn mapped_addresses_are_their_ipv4_selves() {
        let mapped: std::net::IpAddr = "::ffff:127.0.0.9".parse().unwrap();
        assert_eq!(canonical_ip(mapped), "127.0.0.9".parse::<std::net::IpAddr>().unwrap());
        assert_eq!(parse_net("::ffff:127.0.0.0/104").unwrap().to_string(), "127.0.0.0/8");
        assert_eq!(parse_net("::ffff:10.1.2.3").unwrap().to_string(), "10.1.2.3/32");
        assert_eq!(parse_net("2001:db8::/32").unwrap().to_string(), "2001:db8::/32");
        assert!(parse_net("127.0.0.1:80").is_none() && parse_net("example.com").is_none());
    }

    #[test]
    fn a_scoped_grant_covers_only_what_lies_within_its_workspaces() {
        let shop = Grant { role: Role::Admin, workspaces: vec!["shop".into()] };
        assert!(shop.covers(&["shop".into()]));
        assert!(!shop.covers(&[]), "everything, or nothing in particular, is not within one workspace");
        assert!(!shop.covers(&["shop".into(), "blog".into()]));
        let all = Grant { role: Role::Admin, workspaces: vec![] };
        assert!(all.covers(&[]) && all.covers(&["blog".into()]));
    }

    #[test]
    fn nobody_grants_more_than_they_have_and_tokens_stay_in_their_workspaces() {
        assert!(Role::Admin.may_grant(Role::Operator) && Role::Admin.may_grant(Role::Auditor));
        assert!(Role::Operator.may_grant(Role::Viewer) && Role::Operator.may_grant(Role::Operator));
        assert!(!Role::Operator.may_grant(Role::Admin) && !Role::Operator.may_grant(Role::Developer));
        assert!(!Role::Viewer.may_grant(Role::Auditor) && !Role::Auditor.may_grant(Role::Viewer));
        let shop = Grant { role: Role::Operator, workspaces: vec!["shop".into()] };
        check(&shop, Action::Snapshot, Some("shop")).unwrap();
        let e = check(&shop, Action::Snapshot, Some("blog")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Forbidden);
        assert_eq!(check(&shop, Action::Prune, Some("shop")).unwrap_err().kind(), ErrorKind::Forbidden);
        let all = Grant { role: Role::Viewer, workspaces: vec![] };
        check(&all, Action::Read, Some("anything")).unwrap();
        assert!("root".parse::<Role>().is_err() && "auditor".parse::<Role>().unwrap() == Role::Auditor);
    }
}
