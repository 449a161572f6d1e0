//! [`State`]: what became of one migration, in the words of the API, the CLI and JSON.

use serde::Serialize;

/// The state of one migration; the same words in the API, the CLI and JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Applied, and the file's checksum matches the recorded one.
    Applied,
    /// Known here, not applied yet.
    Pending,
    /// Applied, but the file was edited since (checksums differ).
    Modified,
    /// A no-transaction migration that started and never finished (its process died).
    Running,
    /// A no-transaction migration that failed.
    Failed,
    /// Recorded in the database, not in this set of migrations.
    Unknown,
}

impl State {
    /// The lowercase word for the state, e.g. `"pending"`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Applied => "applied",
            State::Pending => "pending",
            State::Modified => "modified",
            State::Running => "running",
            State::Failed => "failed",
            State::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
