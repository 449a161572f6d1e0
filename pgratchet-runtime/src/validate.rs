//! [`Validation`]: the migrations checked against the database, changing nothing.

use serde::Serialize;

use crate::status::{Newest, Policy};
use crate::{State, Status};

/// What is wrong, or worth a look, for one migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum IssueKind {
    /// Applied, and the file was edited since.
    Modified,
    /// Applied, unknown here, newer than every known version (a newer release ran first).
    Unknown,
    /// Applied, unknown here, older than the newest known version (a file was removed).
    Removed,
    /// A no-transaction migration failed.
    Failed,
    /// A no-transaction migration never finished.
    Running,
    /// Pending, but older than the newest applied migration.
    OutOfOrder,
    /// No down SQL: it cannot be rolled back.
    MissingDown,
}

/// One finding of [`Validation`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Issue {
    /// The migration's version.
    pub version: i64,
    /// Its name.
    pub name: String,
    /// What kind of finding.
    pub kind: IssueKind,
    /// Whether it stops a run (`false`: a warning).
    pub error: bool,
}

/// The result of validating: every migration's status and the findings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Validation {
    /// Every migration, known or recorded, in version order.
    pub statuses: Vec<Status>,
    /// What is wrong or worth a look.
    pub issues: Vec<Issue>,
}

impl Validation {
    pub(crate) fn new(statuses: Vec<Status>, policy: Policy) -> Self {
        let Newest {
            known: newest_known,
            applied: newest_applied,
        } = Newest::of(&statuses);
        let mut issues = Vec::new();
        for status in &statuses {
            let issue = |kind, error| Issue {
                version: status.version,
                name: status.name.clone(),
                kind,
                error,
            };
            match status.state {
                State::Modified => issues.push(issue(IssueKind::Modified, true)),
                State::Failed => issues.push(issue(IssueKind::Failed, true)),
                State::Running => issues.push(issue(IssueKind::Running, true)),
                State::Unknown if newest_known.is_some_and(|newest| status.version < newest) => {
                    issues.push(issue(IssueKind::Removed, true))
                }
                State::Unknown => issues.push(issue(IssueKind::Unknown, policy.strict_unknown)),
                State::Pending if newest_applied.is_some_and(|newest| status.version < newest) => {
                    issues.push(issue(IssueKind::OutOfOrder, !policy.allow_out_of_order))
                }
                _ => {}
            }
            if status.state != State::Unknown && !status.reversible {
                issues.push(issue(IssueKind::MissingDown, false));
            }
        }
        Validation { statuses, issues }
    }

    /// Whether nothing would stop a run.
    pub fn is_ok(&self) -> bool {
        !self.issues.iter().any(|issue| issue.error)
    }
}
