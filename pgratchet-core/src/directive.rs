//! Per-file directives: comment lines before a file's first statement.
//!
//! `-- migrate:no-transaction` (spaces after `--` optional): the file then runs outside a
//! transaction, each statement on its own. sqlx's `-- no-transaction` is accepted too, as sqlx
//! does, only as the file's first line. `-- migrate:allow` and `-- migrate:allow-file` belong to
//! the review (`lint`, which reads them anywhere in a file) and are accepted here whether or not
//! that feature is on. Any other `-- migrate:<word>` is an error rather than an ignored comment,
//! so that a typo cannot silently change how a file runs.

use crate::Problem;

/// The directives of one file (an up and its down each have their own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Directives {
    /// `-- migrate:no-transaction`: run the file outside a transaction, one statement at a time.
    pub no_transaction: bool,
}

/// Reads the directives of `sql` (BOM-stripped text); `file` names it in the error, relative to the
/// migrations directory. Returns the first unknown directive as an error.
pub fn parse(file: &str, sql: &str) -> Result<Directives, Problem> {
    let (directives, mut problems) = parse_all(file, sql);
    if problems.is_empty() {
        Ok(directives)
    } else {
        Err(problems.swap_remove(0))
    }
}

/// Like [`parse`], but with every problem, and the directives that were understood.
pub(crate) fn parse_all(file: &str, sql: &str) -> (Directives, Vec<Problem>) {
    let mut directives = Directives::default();
    let mut problems = Vec::new();
    // A BOM left on by a caller must not hide a directive on the first line.
    let sql = crate::checksum::strip_bom(sql);
    for (index, line) in sql.lines().enumerate() {
        let line_number = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let Some(comment) = trimmed.strip_prefix("--") else {
            // The first statement (or block comment) ends the directive lines.
            break;
        };
        let comment = comment.trim();
        if let Some(word) = strip_prefix_ci(comment, "migrate:") {
            let word = word.split_whitespace().next().unwrap_or("");
            if word.eq_ignore_ascii_case("no-transaction") {
                directives.no_transaction = true;
            } else if word.eq_ignore_ascii_case("allow") || word.eq_ignore_ascii_case("allow-file")
            {
                // The review's; see the module docs.
            } else {
                problems.push(Problem::at_line(
                    file,
                    line_number,
                    unknown_directive_message(file, line_number, word),
                ));
            }
        } else if index == 0 && comment.eq_ignore_ascii_case("no-transaction") {
            directives.no_transaction = true;
        }
    }
    (directives, problems)
}

fn unknown_directive_message(file: &str, line: u32, word: &str) -> String {
    let head = format!("unknown directive `-- migrate:{word}` in `{file}` line {line}");
    if word.eq_ignore_ascii_case("up") || word.eq_ignore_ascii_case("down") {
        // dbmate keeps both halves in one file behind these markers; here the down would run
        // as part of the up, so say how to split it.
        format!(
            "{head}: `-- migrate:up`/`-- migrate:down` sections (dbmate) are not supported; put \
             the up in `<version>_<name>.up.sql` and the down in `<version>_<name>.down.sql`"
        )
    } else {
        format!(
            "{head}: the directives are `-- migrate:no-transaction` and `-- migrate:allow <rule> -- <reason>`"
        )
    }
}

pub(crate) fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_tx(sql: &str) -> bool {
        match parse("3_x.sql", sql) {
            Ok(directives) => directives.no_transaction,
            Err(problem) => panic!("unexpected problem: {problem}"),
        }
    }

    #[test]
    fn no_transaction_forms() {
        assert!(no_tx(
            "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);"
        ));
        assert!(no_tx("--migrate:no-transaction\nSELECT 1;"));
        assert!(no_tx("  --   migrate:no-transaction   \r\nSELECT 1;"));
        assert!(no_tx("-- migrate: no-transaction because CIC\nSELECT 1;"));
        assert!(no_tx(
            "-- a comment\n\n-- migrate:no-transaction\n\nSELECT 1;"
        ));
        assert!(no_tx("-- no-transaction\nSELECT 1;"));
        assert!(no_tx("\u{feff}-- migrate:no-transaction\nSELECT 1;"));
        assert!(no_tx("-- migrate:no-transaction"));
        assert!(!no_tx("SELECT 1;"));
        assert!(!no_tx(""));
        // sqlx's form only counts on the first line.
        assert!(!no_tx("-- intro\n-- no-transaction\nSELECT 1;"));
        // After the first statement, it is just a comment.
        assert!(!no_tx("SELECT 1;\n-- migrate:no-transaction\n"));
        assert!(!no_tx("/* block */\n-- migrate:no-transaction\nSELECT 1;"));
        assert!(!no_tx("-- migrate-no-transaction\nSELECT 1;"));
        // The review's directives are known words, not typos.
        assert!(!no_tx(
            "-- migrate:allow ban-drop-column -- unused since v2\nALTER TABLE t DROP COLUMN c;"
        ));
        assert!(no_tx(
            "-- migrate:Allow-File ban-drop-table -- r\n-- migrate:no-transaction\nSELECT 1;"
        ));
    }

    #[test]
    fn unknown_directives() {
        let problem = parse("3_x.sql", "-- migrate:foo\nSELECT 1;").unwrap_err();
        assert_eq!(problem.file, "3_x.sql");
        assert_eq!(problem.line, Some(1));
        assert_eq!(
            problem.message,
            "unknown directive `-- migrate:foo` in `3_x.sql` line 1: the directives are `-- migrate:no-transaction` and `-- migrate:allow <rule> -- <reason>`"
        );
        let problem = parse("3_x.sql", "-- hello\n\n--migrate:no_transaction\n").unwrap_err();
        assert_eq!(problem.line, Some(3));
        assert_eq!(
            problem.to_string(),
            "unknown directive `-- migrate:no_transaction` in `3_x.sql` line 3: the directives are `-- migrate:no-transaction` and `-- migrate:allow <rule> -- <reason>`"
        );
        let problem = parse(
            "4_y.sql",
            "-- migrate:up\nCREATE TABLE t ();\n-- migrate:down\nDROP TABLE t;",
        )
        .unwrap_err();
        assert_eq!(
            problem.message,
            "unknown directive `-- migrate:up` in `4_y.sql` line 1: `-- migrate:up`/`-- migrate:down` sections (dbmate) are not supported; put the up in `<version>_<name>.up.sql` and the down in `<version>_<name>.down.sql`"
        );
        let (_, problems) = parse_all(
            "5_z.sql",
            "-- migrate:a\n-- migrate:no-transaction\n-- migrate:b\n",
        );
        assert_eq!(
            problems.iter().map(|p| p.line).collect::<Vec<_>>(),
            [Some(1), Some(3)]
        );
    }
}
