//! One file through squawk: parse with its grammar, lint with a fresh linter, never panic.

use std::panic::{self, AssertUnwindSafe};

use squawk_syntax::SourceFile;

use super::{Config, RuleName};

/// What squawk said about one file.
pub(super) struct Judged {
    pub(super) violations: Vec<Violation>,
    pub(super) parse_errors: Vec<ParseError>,
}

pub(super) struct Violation {
    pub(super) rule: RuleName,
    /// Where it starts, in bytes.
    pub(super) offset: usize,
    pub(super) message: String,
    pub(super) help: Option<String>,
}

pub(super) struct ParseError {
    pub(super) offset: usize,
    pub(super) message: String,
}

/// Lints `sql` as one file, in a transaction unless `no_transaction`. A panic inside squawk is
/// caught and returned as its message: the macro must not panic whatever a dependency does.
pub(super) fn judge(config: &Config, sql: &str, no_transaction: bool) -> Result<Judged, String> {
    panic::catch_unwind(AssertUnwindSafe(|| {
        let parse = SourceFile::parse(sql);
        // A fresh linter for every file: it keeps ignores between calls, and a
        // `squawk-disable-assume-in-transaction` comment changes its settings for good.
        let mut linter = config.linter(!no_transaction);
        let violations = linter
            .lint(&parse, sql)
            .into_iter()
            .map(|violation| Violation {
                rule: RuleName::Squawk(violation.code),
                offset: usize::from(violation.text_range.start()),
                message: violation.message,
                help: violation.help,
            })
            .collect();
        let parse_errors = parse
            .errors()
            .into_iter()
            .map(|error| ParseError {
                offset: usize::from(error.range().start()),
                message: error.message().to_owned(),
            })
            .collect();
        Judged {
            violations,
            parse_errors,
        }
    }))
    .map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned())
    })
}
