//! Statements that cannot run the way a file asks to be run.
//!
//! A transactional file (the default) runs in one transaction, so statements PostgreSQL refuses in
//! a transaction block, and statements that end or start a transaction themselves, are errors at
//! build time rather than at deploy time. psql meta-commands and `COPY ... FROM STDIN` are errors
//! in any file: the server does not understand the former, and a migration cannot stream data for
//! the latter. Statements are matched by the shape of their top-level keywords, so a word in a
//! string, a comment, a dollar-quoted body or a parenthesis never matches.

use crate::lexer::{self, significant_tokens, TokenKind};
use crate::Problem;

mod refused;
mod words;

use words::Words;

const NO_TRANSACTION_FIX: &str = "put `-- migrate:no-transaction` on the file's first line \
                                  (each statement then runs on its own)";

/// Every problem of `sql` (BOM-stripped text of `file`, relative to the migrations directory),
/// run inside a transaction unless `no_transaction`.
pub fn check(file: &str, sql: &str, no_transaction: bool) -> Vec<Problem> {
    let mut problems = Vec::new();
    // A BOM left on by a caller would glue itself to the first keyword.
    let sql = crate::checksum::strip_bom(sql);
    for statement in lexer::split(sql) {
        let words = Words::of(statement.text);
        let at = |message: String| {
            Problem::at_line(
                file,
                statement.line,
                format!("`{file}` line {}: {message}", statement.line),
            )
        };
        if let Some(command) = meta_command(statement.text) {
            problems.push(at(meta_command_message(command)));
        } else if let Some(message) = copy_message(&words) {
            problems.push(at(message.to_string()));
        } else if let Some(message) = lock_release_message(statement.text, &words) {
            problems.push(at(message.to_string()));
        } else if no_transaction {
            continue;
        } else if let Some(refusal) = refused::refusal(&words) {
            problems.push(at(format!(
                "`{}` cannot run inside a transaction block; {NO_TRANSACTION_FIX}{}",
                refusal.shape, refusal.fix
            )));
        } else if let Some(shape) = transaction_control(&words.top) {
            problems.push(at(format!(
                "`{shape}` would control the transaction this migration already runs in (each \
                 migration is one transaction, committed when the file succeeds); remove it, or \
                 put `-- migrate:no-transaction` on the file's first line to manage transactions \
                 yourself"
            )));
        }
    }
    problems
}

/// The psql meta-command in a statement, if any: a backslash outside quotes and comments, at the
/// statement's start (`\i x`) or after it (`SELECT ... \gexec`, `\g`, `\gset`, `\;`). The
/// server never sees a backslash there as SQL.
///
/// `\.` is left out: it ends the data of a `COPY ... FROM STDIN`, which is refused for itself.
fn meta_command(text: &str) -> Option<&str> {
    significant_tokens(text)
        .filter(|token| token.kind == TokenKind::Punct(b'\\'))
        .map(|token| {
            let rest = &text[token.start..];
            let end = rest[1..]
                .find(|c: char| c.is_whitespace())
                .map_or(rest.len(), |at| at + 1);
            &rest[..end]
        })
        .find(|command| *command != "\\.")
}

fn meta_command_message(command: &str) -> String {
    let fix = match command {
        "\\i" | "\\ir" | "\\include" | "\\include_relative" => {
            "; to include another file, copy its statements into this migration"
        }
        "\\c" | "\\connect" => "; a migration runs on the connection the runner was given",
        "\\gexec" => {
            "; run the statements it would generate in the migration itself, or build them \
                       in a `DO` block with `EXECUTE`"
        }
        "\\g" | "\\;" => "; end the statement with `;`",
        _ => "",
    };
    format!(
        "`{command}` is a psql meta-command, which the server does not understand (migrations are \
         sent to the server as plain SQL, not run through psql); remove it{fix}"
    )
}

fn copy_message(words: &Words) -> Option<&'static str> {
    if !words.starts(&["COPY"]) {
        None
    } else if words.contains(&["FROM", "STDIN"]) {
        Some(
            "`COPY ... FROM STDIN` needs the client to stream the data, which a migration cannot \
             do; write the rows as `INSERT ... VALUES`, or use `COPY ... FROM '<file on the \
             database server>'`",
        )
    } else if words.contains(&["TO", "STDOUT"]) {
        Some(
            "`COPY ... TO STDOUT` sends rows to the client, which a migration cannot receive; \
             remove it, or use `COPY ... TO '<file on the database server>'`",
        )
    } else {
        None
    }
}

/// A statement that releases every session advisory lock, the runner's migration lock with them,
/// so that a second starter could run at the same time: refused in any file. The function is
/// looked for in string and dollar-quoted bodies too (a `DO` block, dynamic SQL).
fn lock_release_message(text: &str, words: &Words) -> Option<&'static str> {
    const UNLOCK_ALL: &str = "pg_advisory_unlock_all";
    if words.starts(&["DISCARD", "ALL"]) {
        return Some(
            "`DISCARD ALL` releases every session advisory lock, the migration lock included, so \
             a second starter could run at the same time; remove it (`DISCARD PLANS`, `DISCARD \
             SEQUENCES` and `DISCARD TEMP` reset the rest, and the runner resets the session after \
             a migration)",
        );
    }
    let calls_unlock_all = significant_tokens(text).any(|token| {
        let token_text = &text[token.start..token.end];
        match token.kind {
            TokenKind::Word => token_text.eq_ignore_ascii_case(UNLOCK_ALL),
            TokenKind::Quoted => token_text.to_ascii_lowercase().contains(UNLOCK_ALL),
            _ => false,
        }
    });
    calls_unlock_all.then_some(
        "`pg_advisory_unlock_all()` releases every session advisory lock, the migration lock \
         included, so a second starter could run at the same time; remove it (release a lock of \
         your own with `pg_advisory_unlock(key)`, or take it with `pg_advisory_xact_lock`, which \
         ends with the transaction)",
    )
}

/// Whether a statement builds, drops or detaches `CONCURRENTLY` (`CREATE [UNIQUE] INDEX`, `DROP
/// INDEX`, `REINDEX`, `ALTER TABLE ... DETACH PARTITION`). These take a lock that blocks neither
/// reads nor writes, but wait for every older transaction: under a `lock_timeout` those waits
/// count as lock waits, so one long transaction anywhere makes them fail and leave an INVALID
/// index. The runner runs them with `lock_timeout = 0`.
pub fn runs_concurrently(statement: &str) -> bool {
    refused::refusal(&Words::of(statement))
        .is_some_and(|refusal| refusal.shape.contains("CONCURRENTLY"))
}

/// The shape of a statement that starts or ends a transaction itself.
fn transaction_control(words: &[String]) -> Option<&'static str> {
    let first = words.first().map(String::as_str)?;
    let second = words.get(1).map(String::as_str);
    match first {
        "BEGIN" if second != Some("ATOMIC") => Some("BEGIN"),
        "START" if second == Some("TRANSACTION") => Some("START TRANSACTION"),
        "COMMIT" => Some("COMMIT"),
        "END" => Some("END"),
        "ABORT" => Some("ABORT"),
        "PREPARE" if second == Some("TRANSACTION") => Some("PREPARE TRANSACTION"),
        "ROLLBACK" => {
            // `ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] x` stays inside the transaction.
            let to = match second {
                Some("WORK" | "TRANSACTION") => words.get(2),
                _ => words.get(1),
            };
            (to.map(String::as_str) != Some("TO")).then_some("ROLLBACK")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
