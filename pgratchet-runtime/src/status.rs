//! [`Status`] of each migration, and the rules of CONTRACT.md that decide whether a
//! run may go on.

use serde::Serialize;

use crate::history::read::Row;
use crate::state::State;
use crate::{Error, Migration};

/// One migration as seen by both sides: this set of migrations and the history table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Status {
    /// The version.
    pub version: i64,
    /// The name (from the file, or from the history table for an `unknown` one).
    pub name: String,
    /// The state.
    pub state: State,
    /// The file's checksum, when the migration is known here.
    pub checksum: Option<String>,
    /// The checksum recorded when it was applied, if it was.
    pub applied_checksum: Option<String>,
    /// When it was applied (UTC, RFC 3339), if it was.
    pub applied_at: Option<String>,
    /// How long it took, if it was applied.
    pub execution_time_ms: Option<i64>,
    /// Whether it has down SQL.
    pub reversible: bool,
    /// Whether it runs outside a transaction.
    pub no_transaction: bool,
    /// The error recorded with a `failed` migration.
    pub error: Option<String>,
}

/// Merges the set and the rows by version, in version order.
pub(crate) fn merge(migrations: &[Migration], rows: &[Row]) -> Vec<Status> {
    let mut statuses = Vec::with_capacity(migrations.len().max(rows.len()));
    let mut rows = rows.iter().peekable();
    let mut known = migrations.iter().peekable();
    loop {
        let take_row = match (known.peek(), rows.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(migration), Some(row)) => row.version < migration.version(),
        };
        if take_row {
            if let Some(row) = rows.next() {
                statuses.push(Status {
                    version: row.version,
                    name: row.name.clone(),
                    state: State::Unknown,
                    checksum: None,
                    applied_checksum: Some(row.checksum.clone()),
                    applied_at: row.applied_at.clone(),
                    execution_time_ms: Some(row.execution_time_ms),
                    reversible: false,
                    no_transaction: false,
                    error: row.error.clone(),
                });
            }
            continue;
        }
        let Some(migration) = known.next() else { break };
        let row = rows.next_if(|row| row.version == migration.version());
        let state = match row {
            None => State::Pending,
            Some(row) if row.state != State::Applied => row.state,
            Some(row) if row.checksum != migration.checksum() => State::Modified,
            Some(_) => State::Applied,
        };
        statuses.push(Status {
            version: migration.version(),
            name: migration.name().to_owned(),
            state,
            checksum: Some(migration.checksum().to_owned()),
            applied_checksum: row.map(|row| row.checksum.clone()),
            applied_at: row.and_then(|row| row.applied_at.clone()),
            execution_time_ms: row.map(|row| row.execution_time_ms),
            reversible: migration.down().is_some(),
            no_transaction: migration.no_transaction(),
            error: row.and_then(|row| row.error.clone()),
        });
    }
    statuses
}

/// The newest versions the rules compare against.
pub(crate) struct Newest {
    /// The newest version known here.
    pub(crate) known: Option<i64>,
    /// The newest version recorded as applied. Versions a newer release applied (`unknown`) count
    /// too: applying an older pending one under them would make that release find a version it
    /// does not know below its newest, and refuse to start (`Removed`).
    pub(crate) applied: Option<i64>,
}

impl Newest {
    pub(crate) fn of(statuses: &[Status]) -> Self {
        let newest = |keep: fn(State) -> bool| {
            statuses
                .iter()
                .filter(|status| keep(status.state))
                .map(|status| status.version)
                .max()
        };
        Newest {
            known: newest(|state| state != State::Unknown),
            applied: newest(|state| {
                matches!(state, State::Applied | State::Modified | State::Unknown)
            }),
        }
    }
}

/// The configurable part of the rules.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Policy {
    pub(crate) allow_out_of_order: bool,
    pub(crate) strict_unknown: bool,
}

/// What the rules allow: the versions to apply (up to `target`) and warnings.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    pub(crate) pending: Vec<i64>,
    pub(crate) warnings: Vec<String>,
}

/// Applies the rules of CONTRACT.md. `running` rows are left to the caller when
/// `running_is_in_progress` (behind a transaction pooler another starter may be applying it now).
pub(crate) fn judge(
    statuses: &[Status],
    policy: Policy,
    target: Option<i64>,
    running_is_in_progress: bool,
) -> Result<Verdict, Error> {
    let Newest {
        known: newest_known,
        applied: newest_applied,
    } = Newest::of(statuses);
    let mut verdict = Verdict::default();
    for status in statuses {
        let (version, name) = (status.version, status.name.clone());
        match status.state {
            State::Applied => {}
            State::Modified => {
                return Err(Error::Modified {
                    version,
                    name,
                    applied: status.applied_checksum.clone().unwrap_or_default(),
                    current: status.checksum.clone().unwrap_or_default(),
                })
            }
            State::Failed => {
                return Err(Error::Failed {
                    version,
                    name,
                    error: status.error.clone(),
                })
            }
            State::Running if running_is_in_progress => {
                if target.is_none_or(|target| version <= target) {
                    verdict.pending.push(version);
                }
            }
            State::Running => return Err(Error::Running { version, name }),
            State::Unknown => {
                if newest_known.is_some_and(|newest| version < newest) {
                    return Err(Error::Removed { version, name });
                }
                if policy.strict_unknown {
                    return Err(Error::Unknown { version, name });
                }
                verdict.warnings.push(format!(
                    "migration {version} `{name}` is applied but unknown to this binary: a newer release ran first; going on"
                ));
            }
            State::Pending => {
                if target.is_some_and(|target| version > target) {
                    continue;
                }
                if let Some(newest_applied) = newest_applied {
                    if version < newest_applied && !policy.allow_out_of_order {
                        return Err(Error::OutOfOrder {
                            version,
                            name,
                            newest_applied,
                        });
                    }
                }
                verdict.pending.push(version);
            }
        }
    }
    Ok(verdict)
}

#[cfg(test)]
mod tests;
