//! `-- migrate:allow <rule>[,<rule>] -- <reason>` (the statement after it) and
//! `-- migrate:allow-file <rule>[,<rule>] -- <reason>` (the whole file).

use std::ops::Range;

use super::RuleName;
use crate::directive::strip_prefix_ci;
use crate::lexer;

/// How an allow is written, for the help of a malformed one.
pub(super) const SYNTAX_HELP: &str =
    "write `-- migrate:allow <rule>[,<rule>] -- <why it is safe here>` on the line before \
     the statement (or `-- migrate:allow-file ...` for the whole file)";

/// One allow directive of a file.
#[derive(Debug)]
pub(super) struct Allow {
    /// Its 1-based line.
    pub(super) line: u32,
    pub(super) rules: Vec<RuleName>,
    /// The bytes it covers: its statement, or the whole file.
    covers: Range<usize>,
    whole_file: bool,
    /// Whether it suppressed a finding.
    pub(super) used: bool,
}

impl Allow {
    pub(super) fn directive(&self) -> &'static str {
        if self.whole_file {
            "allow-file"
        } else {
            "allow"
        }
    }

    pub(super) fn rules_text(&self) -> String {
        let names: Vec<String> = self.rules.iter().map(ToString::to_string).collect();
        names.join(",")
    }

    pub(super) fn scope_text(&self) -> &'static str {
        if self.whole_file {
            "in this file"
        } else {
            "in the statement after it"
        }
    }
}

/// The well-formed allows of `sql`, and each malformed one as its line and what is wrong.
pub(super) fn parse(sql: &str) -> (Vec<Allow>, Vec<(u32, String)>) {
    let statements = lexer::split(sql);
    let mut allows = Vec::new();
    let mut invalid = Vec::new();
    for (offset, comment) in lexer::line_comments(sql) {
        let Some((whole_file, rest)) = directive(comment) else {
            continue;
        };
        let line = lexer::line_of(sql, offset);
        let directive = if whole_file { "allow-file" } else { "allow" };
        let (rules_text, reason) = match rest.split_once("--") {
            Some((rules, reason)) => (rules, reason.trim()),
            None => (rest, ""),
        };
        if reason.is_empty() {
            invalid.push((
                line,
                format!(
                    "`-- migrate:{directive}` without a reason: say after ` -- ` why the \
                     statement is safe, for the reviewer and for whoever reads it next"
                ),
            ));
            continue;
        }
        let names: Vec<&str> = rules_text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|name| !name.is_empty())
            .collect();
        if names.is_empty() {
            invalid.push((
                line,
                format!("`-- migrate:{directive}` names no rule: name the rules it allows"),
            ));
            continue;
        }
        let mut rules = Vec::new();
        let mut unknown = Vec::new();
        for name in names {
            match RuleName::parse(name) {
                Ok(rule) => rules.push(rule),
                Err(why) => unknown.push(why),
            }
        }
        if !unknown.is_empty() {
            invalid.push((
                line,
                format!("`-- migrate:{directive}` names {}", unknown.join("; and ")),
            ));
            continue;
        }
        let covers = if whole_file {
            0..sql.len()
        } else {
            // The statement holding the comment: a comment before a statement is part of its
            // leading text; one inside a statement belongs to that statement.
            statements
                .iter()
                .find(|statement| offset < statement.offset + statement.text.len())
                .filter(|statement| !statement.is_empty())
                .map_or(0..0, |statement| {
                    statement.offset..statement.offset + statement.text.len()
                })
        };
        allows.push(Allow {
            line,
            rules,
            covers,
            whole_file,
            used: false,
        });
    }
    (allows, invalid)
}

/// Whether an allow covers a finding of `rule` at byte `offset`; marks it used.
pub(super) fn consume(allows: &mut [Allow], rule: RuleName, offset: usize) -> bool {
    let mut allowed = false;
    for allow in allows.iter_mut() {
        if allow.covers.contains(&offset) && allow.rules.iter().any(|named| named.covers(rule)) {
            allow.used = true;
            allowed = true;
        }
    }
    allowed
}

/// `Some((whole_file, rest))` for an allow comment (the text after `--`).
fn directive(comment: &str) -> Option<(bool, &str)> {
    let word_and_rest = strip_prefix_ci(comment.trim_start(), "migrate:")?;
    let word_end = word_and_rest
        .find(char::is_whitespace)
        .unwrap_or(word_and_rest.len());
    let (word, rest) = word_and_rest.split_at(word_end);
    if word.eq_ignore_ascii_case("allow") {
        Some((false, rest))
    } else if word.eq_ignore_ascii_case("allow-file") {
        Some((true, rest))
    } else {
        None
    }
}
