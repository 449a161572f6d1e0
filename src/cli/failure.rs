//! How the command line ends when something failed: the message (with the command that fixes
//! it, where the library names an operation), and the exit code. The library says what to do in
//! terms of its API; the exit codes and command names are the CLI's alone.

use std::process::ExitCode;

use crate::Error;

pub(super) const EXIT_ERROR: u8 = 1;
pub(super) const EXIT_USAGE: u8 = 2;
pub(super) const EXIT_PENDING: u8 = 3;
pub(super) const EXIT_INVALID: u8 = 4;
const EXIT_LOCK_TIMEOUT: u8 = 5;
const EXIT_MIGRATION_FAILED: u8 = 6;

/// Why a command did not succeed.
pub(super) enum Failure {
    Usage(String),
    Runtime(Error),
    Other(String),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::Runtime(error)
    }
}

/// The exit code for an error of the library (see the README's table): 4 when something would
/// stop a run until a person acts, 5 when the lock (or another starter's row) was not had in
/// time, 6 when a migration's own SQL failed or its outcome needs a look, 1 otherwise.
pub(super) fn exit_code(error: &Error) -> u8 {
    match error {
        Error::LockTimeout { .. } | Error::RowLockTimeout { .. } => EXIT_LOCK_TIMEOUT,
        Error::Migration(_)
        | Error::HistoryTampered { .. }
        | Error::RecordRemoved { .. }
        | Error::LockReleased { .. }
        | Error::OutcomeUnknown { .. } => EXIT_MIGRATION_FAILED,
        Error::Modified { .. }
        | Error::Failed { .. }
        | Error::Running { .. }
        | Error::StillRunning { .. }
        | Error::Removed { .. }
        | Error::Unknown { .. }
        | Error::OutOfOrder { .. }
        | Error::Load(_)
        | Error::Irreversible { .. }
        | Error::GroupedNoTransaction { .. }
        | Error::SessionStateBehindPooler { .. } => EXIT_INVALID,
        _ => EXIT_ERROR,
    }
}

/// The command that does what the error's message asks of `Migrator::repair`, if it asks.
fn repair_hint(error: &Error) -> Option<String> {
    let version = match error {
        Error::Modified { version, .. }
        | Error::Failed { version, .. }
        | Error::Running { version, .. }
        | Error::StillRunning { version, .. }
        | Error::RecordRemoved { version, .. }
        | Error::LockReleased { version, .. } => *version,
        Error::Migration(failure) if failure.no_transaction => failure.version,
        _ => return None,
    };
    Some(format!(
        "hint: once that is done, the `repair --version {version}` command clears (or re-stamps) the record\n"
    ))
}

/// Prints `error` for clap's own output (help, version, usage errors) and returns its code.
pub(super) fn usage(error: clap::Error) -> ExitCode {
    let _ = error.print();
    if error.use_stderr() {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints the failure once (each cause once: tokio-postgres wraps the server's message in a bare
/// "db error", deadpool repeats its source's message in its own), as text or JSON, and returns
/// its exit code.
pub(super) fn report(json: bool, failure: Failure) -> ExitCode {
    let (code, value, text) = match &failure {
        Failure::Usage(message) => (
            EXIT_USAGE,
            serde_json::json!({ "message": message }),
            format!("error: {message}\n"),
        ),
        Failure::Other(message) => (
            EXIT_ERROR,
            serde_json::json!({ "message": message }),
            format!("error: {message}\n"),
        ),
        Failure::Runtime(error) => {
            let mut text = format!("error: {error}\n");
            let mut previous = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                let message = cause.to_string();
                let message = message.trim_end();
                if message != "db error" && !previous.contains(message) {
                    text.push_str(&format!("  caused by: {message}\n"));
                }
                previous = message.to_owned();
                source = cause.source();
            }
            if let Some(hint) = repair_hint(error) {
                text.push_str(&hint);
            }
            (
                exit_code(error),
                serde_json::to_value(error).unwrap_or_default(),
                text,
            )
        }
    };
    if json {
        println!("{}", serde_json::json!({ "error": value }));
    } else {
        eprint!("{text}");
    }
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_table() {
        let running = Error::Running {
            version: 2,
            name: "x".to_owned(),
        };
        assert_eq!(exit_code(&running), EXIT_INVALID);
        assert_eq!(
            exit_code(&Error::LockTimeout {
                waited: std::time::Duration::from_secs(1),
                holder: None
            }),
            EXIT_LOCK_TIMEOUT
        );
        assert_eq!(
            exit_code(&Error::HistoryTampered {
                version: 2,
                name: "x".to_owned()
            }),
            EXIT_MIGRATION_FAILED
        );
        assert_eq!(exit_code(&Error::NoCurrentSchema), EXIT_ERROR);
        assert_eq!(
            repair_hint(&running).as_deref(),
            Some("hint: once that is done, the `repair --version 2` command clears (or re-stamps) the record\n")
        );
        assert_eq!(repair_hint(&Error::NoCurrentSchema), None);
    }
}
