//! Every operation tidemark does for a caller, each named once: its job name (what the
//! catalog records and `jobs` lists, for those that run as jobs), its audit action, its
//! workspace-lock label, the permission it needs, and whether it is heavy (a slot of the
//! API's heavy-job cap). Stopping a job asks the same permission as starting it, so the
//! job's name must say exactly which operation it is: an in-place restore is not a restore
//! into a new database, and a name this table does not know is refused.

use serde::{Deserialize, Serialize};

use crate::access::Action;

/// An operation ([`Operation::is_job`] says which run as jobs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    Snapshot,
    BaseBackup,
    Drill,
    /// Into a new database (the whole snapshot, or some tables).
    Restore,
    /// Tables into the workspace's live database, beside the live ones under new names.
    RestoreIntoLive,
    /// Over the workspace's live database, with an undo.
    RestoreInPlace,
    /// Swapping back the newest in-place restore.
    RestoreUndo,
    BranchCreate,
    BranchSetLive,
    Prune,
    /// Retention computed and reported, nothing deleted.
    PruneDryRun,
    Check,
    Export,
    /// Dropping a branch's database.
    BranchDelete,
    Pin,
    Unpin,
    /// Deleting one snapshot by hand.
    SnapshotDelete,
    /// Stopping a job.
    JobCancel,
    TokenCreate,
    TokenRevoke,
    /// Marking a restore point.
    RestorePoint,
    /// A download link to an export.
    ExportLink,
    /// An export downloaded through a link.
    ExportDownload,
    /// A bundle imported into a new database.
    Import,
    StackPut,
    StackPublish,
    StackRevert,
    /// Function stacks taken from a bundle.
    StackImport,
    /// Function stacks restored from a snapshot into the live database.
    RestoreStacks,
    /// A switch a dead process left half done, finished or undone.
    SwitchRecover,
    /// A new audit chain begun (a new catalog), linked to the repository's last one.
    AuditNewChain,
    /// A browser signed in to the web console (a session begun).
    SignIn,
    /// A console session ended by its browser.
    SignOut,
    /// What the primary repository holds and a copy lacks, sent to the copy.
    Copy,
}

impl Operation {
    pub const ALL: [Operation; 34] = [
        Operation::Snapshot,
        Operation::BaseBackup,
        Operation::Drill,
        Operation::Restore,
        Operation::RestoreIntoLive,
        Operation::RestoreInPlace,
        Operation::RestoreUndo,
        Operation::BranchCreate,
        Operation::BranchSetLive,
        Operation::Prune,
        Operation::PruneDryRun,
        Operation::Check,
        Operation::Export,
        Operation::BranchDelete,
        Operation::Pin,
        Operation::Unpin,
        Operation::SnapshotDelete,
        Operation::JobCancel,
        Operation::TokenCreate,
        Operation::TokenRevoke,
        Operation::RestorePoint,
        Operation::ExportLink,
        Operation::ExportDownload,
        Operation::Import,
        Operation::StackPut,
        Operation::StackPublish,
        Operation::StackRevert,
        Operation::StackImport,
        Operation::RestoreStacks,
        Operation::SwitchRecover,
        Operation::AuditNewChain,
        Operation::SignIn,
        Operation::SignOut,
        Operation::Copy,
    ];

    /// A restore of tables into the live database (beside the live ones), or into a new one.
    pub fn restore(into_live: bool) -> Operation {
        if into_live { Operation::RestoreIntoLive } else { Operation::Restore }
    }

    /// Its name: what its jobs are recorded under, and its audit action.
    pub fn job_name(self) -> &'static str {
        match self {
            Operation::Snapshot => "snapshot",
            Operation::BaseBackup => "basebackup",
            Operation::Drill => "drill",
            Operation::Restore => "restore",
            Operation::RestoreIntoLive => "restore-into-live",
            Operation::RestoreInPlace => "restore-in-place",
            Operation::RestoreUndo => "restore-undo",
            Operation::BranchCreate => "branch-create",
            Operation::BranchSetLive => "branch-set-live",
            Operation::Prune => "prune",
            Operation::PruneDryRun => "prune-dry-run",
            Operation::Check => "check",
            Operation::Export => "export",
            // The names the audit trail has used for these since they were first recorded.
            Operation::BranchDelete => "branch.delete",
            Operation::Pin => "pin",
            Operation::Unpin => "unpin",
            Operation::SnapshotDelete => "snapshot.delete",
            Operation::JobCancel => "job.cancel",
            Operation::TokenCreate => "token.create",
            Operation::TokenRevoke => "token.revoke",
            Operation::RestorePoint => "restore-point",
            Operation::ExportLink => "export.link",
            Operation::ExportDownload => "export.download",
            Operation::Import => "import",
            Operation::StackPut => "stacks.put",
            Operation::StackPublish => "stacks.publish",
            Operation::StackRevert => "stacks.revert",
            Operation::StackImport => "stacks.import",
            Operation::RestoreStacks => "restore.stacks",
            Operation::SwitchRecover => "switch.recover",
            Operation::AuditNewChain => "audit.new-chain",
            Operation::SignIn => "console.sign-in",
            Operation::SignOut => "console.sign-out",
            Operation::Copy => "copy",
        }
    }

    /// Whether it runs as a job (the catalog lists it, `jobs` shows its progress).
    pub fn is_job(self) -> bool {
        matches!(
            self,
            Operation::Snapshot
                | Operation::BaseBackup
                | Operation::Drill
                | Operation::Restore
                | Operation::RestoreIntoLive
                | Operation::RestoreInPlace
                | Operation::RestoreUndo
                | Operation::BranchCreate
                | Operation::BranchSetLive
                | Operation::Prune
                | Operation::PruneDryRun
                | Operation::Check
                | Operation::Export
                | Operation::Copy
        )
    }

    /// The action its audit records carry: the job's name, one spelling everywhere.
    pub fn audit_action(self) -> &'static str {
        self.job_name()
    }

    /// How a busy workspace names it to the next caller (the workspace lock's holder).
    pub fn lock_label(self) -> &'static str {
        self.job_name()
    }

    /// The operation a job's recorded name stands for; `None` for a name this version does
    /// not know (callers refuse it, never guess).
    pub fn from_job_name(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.is_job() && o.job_name() == name)
    }

    /// What starting it needs.
    pub fn permission(self) -> Action {
        match self {
            Operation::Snapshot | Operation::BaseBackup => Action::Snapshot,
            Operation::Drill => Action::Drill,
            Operation::Restore | Operation::BranchCreate => Action::Restore,
            // Tables beside the live ones write the live database: never with only the right
            // to make new databases (issue 32).
            Operation::RestoreIntoLive
            | Operation::RestoreInPlace
            | Operation::RestoreUndo
            | Operation::BranchSetLive => Action::ReplaceLive,
            Operation::Prune | Operation::PruneDryRun => Action::Prune,
            Operation::Check => Action::Read,
            Operation::Export | Operation::ExportLink => Action::Export,
            // The link stands in for the right of whoever asked for it (who had `Export`).
            Operation::ExportDownload => Action::Export,
            Operation::BranchDelete => Action::DeleteBranch,
            Operation::Pin => Action::Pin,
            Operation::Unpin => Action::Unpin,
            Operation::SnapshotDelete => Action::Prune,
            // Each job asks more: `cancel_permission` of its operation.
            Operation::JobCancel => Action::Read,
            Operation::TokenCreate | Operation::TokenRevoke => Action::ManageTokens,
            Operation::RestorePoint => Action::MarkRestorePoint,
            Operation::Import => Action::Restore,
            Operation::StackPut | Operation::StackPublish | Operation::StackRevert | Operation::StackImport => {
                Action::WriteStacks
            }
            Operation::RestoreStacks | Operation::SwitchRecover => Action::ReplaceLive,
            Operation::AuditNewChain => Action::ReadAudit,
            Operation::SignIn | Operation::SignOut => Action::SignIn,
            // Backups written to another repository: what writing them to the primary needs.
            Operation::Copy => Action::Snapshot,
        }
    }

    /// What stopping another actor's job of this operation needs: the permission to start
    /// it, and never less than running work (a reader may stop only its own checks).
    pub fn cancel_permission(self, own_job: bool) -> Action {
        match self.permission() {
            Action::Read if !own_job => Action::CancelJobs,
            permission => permission,
        }
    }

    /// Whether it takes one of the API's heavy-job slots (it restores or writes a whole
    /// snapshot somewhere).
    pub fn is_heavy(self) -> bool {
        matches!(
            self,
            Operation::Drill
                | Operation::Restore
                | Operation::RestoreIntoLive
                | Operation::RestoreInPlace
                | Operation::BranchCreate
                | Operation::Export
                | Operation::Copy
        )
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.job_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_its_own_name_and_jobs_read_back_from_it() {
        for op in Operation::ALL {
            let back = if op.is_job() { Some(op) } else { None };
            assert_eq!(Operation::from_job_name(op.job_name()), back, "{op}");
            assert_eq!(Operation::ALL.iter().filter(|o| o.job_name() == op.job_name()).count(), 1, "{op}");
        }
        assert_eq!(Operation::from_job_name("restore.in-place"), None);
        assert_eq!(Operation::ALL.iter().filter(|o| o.is_job()).count(), 14);
        assert!(Operation::Check.is_job() && !Operation::BranchDelete.is_job());
        assert_eq!(Operation::from_job_name(""), None);
    }

    #[test]
    fn what_replaces_live_data_is_never_stoppable_with_less() {
        for op in
            [Operation::RestoreIntoLive, Operation::RestoreInPlace, Operation::RestoreUndo, Operation::BranchSetLive]
        {
            assert_eq!(op.cancel_permission(true), Action::ReplaceLive);
            assert_eq!(op.cancel_permission(false), Action::ReplaceLive);
        }
        assert_eq!(Operation::Check.cancel_permission(true), Action::Read);
        assert_eq!(Operation::Check.cancel_permission(false), Action::CancelJobs);
        assert!(Operation::Export.is_heavy() && !Operation::Check.is_heavy());
    }
}
