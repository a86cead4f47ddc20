//! Who may do what: the one place where that is decided. Roles are a fixed set, denied by
//! default; a token may be limited to some workspaces and can never get more than its
//! creator has. Front ends ask [`check`] before they call an operation; the operations
//! record what was done (see the audit trail).

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

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

    /// Whether this role may do `action`: the whole matrix (README "API" shows it).
    pub fn allows(self, action: Action) -> bool {
        use Action as A;
        match self {
            Role::Admin => true,
            Role::Auditor => matches!(action, A::ReadAudit),
            Role::Viewer => matches!(action, A::Read | A::ReadMetrics),
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
                )
            }
            Role::Developer => matches!(action, A::Read | A::ReadMetrics | A::WriteStacks),
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
    /// Replace a workspace's live database: an in-place restore, its undo, a branch made live.
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
    /// Export a snapshot as a bundle on the server and ask for download links to it.
    Export,
    /// Delete a branch: its database is dropped.
    DeleteBranch,
    /// Read the Prometheus metrics (they cover every workspace: only a token for all).
    ReadMetrics,
}

impl Action {
    pub const ALL: [Action; 15] = [
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
        Action::Export,
        Action::DeleteBranch,
        Action::ReadMetrics,
    ];
}

/// What a credential grants: a role, and the workspaces it is limited to (empty: all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Grant {
    pub role: Role,
    pub workspaces: Vec<String>,
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
        Action::ReplaceLive => "replace a workspace's live database (in-place restore, undo, branch set-live)",
        Action::MarkRestorePoint => "mark restore points",
        Action::Pin => "pin snapshots",
        Action::Unpin => "unpin snapshots",
        Action::Prune => "prune",
        Action::WriteStacks => "change function stacks",
        Action::ManageTokens => "manage tokens",
        Action::ReadAudit => "read the audit trail",
        Action::Export => "export snapshots and hand out download links",
        Action::DeleteBranch => "delete branches",
        Action::ReadMetrics => "read the metrics",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The matrix as README states it, cell by cell: a change to one is a change to both.
    #[test]
    fn every_cell_of_the_role_matrix() {
        use Action as A;
        let allowed: &[(Role, &[Action])] = &[
            (Role::Viewer, &[A::Read, A::ReadMetrics]),
            (
                Role::Operator,
                &[A::Read, A::ReadMetrics, A::Snapshot, A::Drill, A::Restore, A::MarkRestorePoint, A::Pin, A::Export],
            ),
            (Role::Developer, &[A::Read, A::ReadMetrics, A::WriteStacks]),
            (Role::Admin, &A::ALL),
            (Role::Auditor, &[A::ReadAudit]),
        ];
        for (role, actions) in allowed {
            for action in Action::ALL {
                assert_eq!(role.allows(action), actions.contains(&action), "{role} {action:?}");
            }
        }
        // What the issue names, refused.
        let (viewer, operator, auditor) = (Role::Viewer, Role::Operator, Role::Auditor);
        assert!(!viewer.allows(A::Restore) && !operator.allows(A::Prune) && !auditor.allows(A::Read));
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
