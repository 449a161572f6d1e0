//! [`LockHolder`]: who holds the migration lock, as `pg_stat_activity` shows them.

use std::fmt;

use serde::Serialize;

/// The session holding the migration lock, as `pg_stat_activity` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LockHolder {
    /// The holder's backend process id.
    pub pid: i32,
    /// Its `application_name`.
    pub application_name: String,
    /// Its state (`active`, `idle`, `idle in transaction`, ...).
    pub state: Option<String>,
    /// When its current transaction started.
    pub xact_start: Option<String>,
    /// When its connection started.
    pub backend_start: Option<String>,
    /// Its current or last query.
    pub query: Option<String>,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if !self.application_name.is_empty() {
            write!(f, " ({})", self.application_name)?;
        }
        if let Some(state) = &self.state {
            write!(f, ", {state}")?;
        }
        if let Some(start) = self.xact_start.as_ref().or(self.backend_start.as_ref()) {
            write!(f, " since {start}")?;
        }
        if let Some(query) = &self.query {
            let query: String = query.chars().take(120).collect();
            write!(f, ", query: {}", query.replace('\n', " "))?;
        }
        Ok(())
    }
}
