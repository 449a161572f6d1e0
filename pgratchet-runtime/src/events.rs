//! [`Event`]: one entry of the audit trail in `<table>_log`.

use serde::Serialize;

/// What an [`Event`] records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Action {
    /// A migration was applied.
    Apply,
    /// A migration outside a transaction failed (or released the migration lock, or lost its
    /// `running` row while it ran).
    Fail,
    /// A migration was rolled back.
    Rollback,
    /// A migration was recorded as applied without running it.
    Baseline,
    /// A record was cleared or re-stamped.
    Repair,
}

impl Action {
    /// The word stored in the log: `apply`, `fail`, `rollback`, `baseline` or `repair`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Apply => "apply",
            Action::Fail => "fail",
            Action::Rollback => "rollback",
            Action::Baseline => "baseline",
            Action::Repair => "repair",
        }
    }

    /// The action a stored word names; `None` for a word this runner does not write.
    pub(crate) fn parse(word: &str) -> Option<Action> {
        [
            Action::Apply,
            Action::Fail,
            Action::Rollback,
            Action::Baseline,
            Action::Repair,
        ]
        .into_iter()
        .find(|action| action.as_str() == word)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the audit log: an apply, failure, rollback, baseline or repair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Event {
    /// The migration's version.
    pub version: i64,
    /// What happened.
    pub action: Action,
    /// When (UTC, RFC 3339).
    pub at: String,
    /// The database role that did it.
    pub by: String,
    /// The host the runner ran on.
    pub host: Option<String>,
    /// How long it took, in milliseconds.
    pub duration_ms: Option<i64>,
    /// The error, or what a repair did.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_read_back_what_they_write() {
        for action in [
            Action::Apply,
            Action::Fail,
            Action::Rollback,
            Action::Baseline,
            Action::Repair,
        ] {
            assert_eq!(Action::parse(action.as_str()), Some(action));
        }
        assert_eq!(Action::parse("migrate"), None);
    }
}
