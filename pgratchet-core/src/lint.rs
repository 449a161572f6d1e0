//! The safety review of migrations before they ship (feature `lint`): squawk's rules judge each
//! file, `.migrate.toml` says which findings deny and which warn, `-- migrate:allow` accepts one
//! deliberately, and every migration gets a risk score.
//!
//! Our lexer stays the splitter (an allow covers the statement our lexer finds after it); squawk
//! is the judge. squawk's grammar is its own, not PostgreSQL's: a file squawk cannot parse is a
//! [`Note`], never a finding, because the server may well accept it. Everything here is pure: the
//! macro and the CLI read the files and print the results.

mod allow;
pub mod config;
mod judge;
mod score;
#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

pub use config::Config;
pub use score::{Risk, Score};

use crate::{Migration, Problem};

/// The rule of an allow that matched no finding (warns by default, configurable).
pub const UNUSED_ALLOW: &str = "unused-allow";

/// The rule of a malformed allow (no reason, an unknown rule): always denied, because an allow that
/// does not say why, or names nothing, cannot be reviewed.
pub const INVALID_ALLOW: &str = "invalid-allow";

/// How much a finding weighs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Fails the build and the CLI's `lint` (exit 4).
    Deny,
    /// Shown by the CLI's `lint`; costs score.
    Warn,
}

impl Severity {
    /// `deny` or `warn`, as in `.migrate.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Deny => "deny",
            Severity::Warn => "warn",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One file to review, as the loader read it.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    /// The migration's version.
    pub version: i64,
    /// The file, relative to the migrations directory.
    pub path: &'a str,
    /// The file's text (BOM-stripped).
    pub sql: &'a str,
    /// Whether the file runs outside a transaction (`-- migrate:no-transaction`).
    pub no_transaction: bool,
    /// Whether this is a down file (linted only with `check-down`).
    pub down: bool,
}

impl<'a> Source<'a> {
    /// The files of `migrations` as the review sees them: each up, then its down if it has one.
    pub fn of(
        migrations: impl IntoIterator<Item = &'a Migration>,
    ) -> impl Iterator<Item = Source<'a>> {
        migrations.into_iter().flat_map(|migration| {
            let up = std::iter::once((migration.up(), false));
            up.chain(migration.down().map(|down| (down, true)))
                .map(|(script, down)| Source {
                    version: migration.version(),
                    path: script.path(),
                    sql: script.sql(),
                    no_transaction: script.no_transaction(),
                    down,
                })
        })
    }
}

/// A danger found in one statement.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finding {
    /// The migration's version.
    pub version: i64,
    /// The file, relative to the migrations directory.
    pub file: String,
    /// The 1-based line the finding starts on.
    pub line: u32,
    /// The rule's name, e.g. `adding-required-field`.
    pub rule: String,
    /// Deny or warn, from `.migrate.toml`.
    pub severity: Severity,
    /// Why the statement is dangerous.
    pub message: String,
    /// The safe alternative, when the rule knows one.
    pub help: Option<String>,
}

impl Finding {
    /// The page of squawk's documentation on the rule, with examples of the safe way; `None` for
    /// the review's own rules ([`UNUSED_ALLOW`], [`INVALID_ALLOW`]).
    pub fn docs_url(&self) -> Option<String> {
        match RuleName::parse(&self.rule) {
            Ok(RuleName::Squawk(_)) => Some(format!("https://squawkhq.com/docs/{}", self.rule)),
            _ => None,
        }
    }
}

/// Something the review could not judge, e.g. SQL squawk's grammar does not parse: shown, never
/// fatal.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Note {
    /// The file, relative to the migrations directory.
    pub file: String,
    /// The 1-based line, when the note is about one place.
    pub line: Option<u32>,
    /// What happened.
    pub message: String,
}

/// What [`review`] found in a set of migrations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Review {
    /// Every finding, by version, file, line and rule.
    pub findings: Vec<Finding>,
    /// What could not be judged.
    pub notes: Vec<Note>,
    /// One score per reviewed migration, by version.
    pub scores: Vec<Score>,
}

impl Review {
    /// The findings that fail a build.
    pub fn denied(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|finding| finding.severity == Severity::Deny)
    }

    /// The lowest score of the set (the first such migration); `None` when nothing was reviewed.
    pub fn worst(&self) -> Option<&Score> {
        self.scores.iter().min_by_key(|score| score.score)
    }
}

/// Reviews `sources` under `config`: files of migrations at or below `start-after` and, without
/// `check-down`, down files are skipped; each other file is judged on its own (a fresh linter per
/// file), in a transaction unless it says `-- migrate:no-transaction`.
pub fn review<'a>(config: &Config, sources: impl IntoIterator<Item = Source<'a>>) -> Review {
    let mut review = Review::default();
    // Denied and warned findings per version; a migration's up and down count together.
    let mut tally: BTreeMap<i64, (usize, usize)> = BTreeMap::new();
    for source in sources {
        if config
            .start_after
            .is_some_and(|after| source.version <= after)
            || (source.down && !config.check_down)
        {
            continue;
        }
        let first = review.findings.len();
        review_file(config, &source, &mut review);
        let found = &review.findings[first..];
        let denied = found
            .iter()
            .filter(|f| f.severity == Severity::Deny)
            .count();
        let (d, w) = tally.entry(source.version).or_default();
        *d += denied;
        *w += found.len() - denied;
    }
    review.findings.sort_by(|a, b| {
        (a.version, &a.file, a.line, &a.rule).cmp(&(b.version, &b.file, b.line, &b.rule))
    });
    review.scores = tally
        .into_iter()
        .map(|(version, (denied, warned))| Score::new(version, denied, warned))
        .collect();
    review
}

fn review_file(config: &Config, source: &Source<'_>, review: &mut Review) {
    let finding = |line: u32, rule: String, severity, message: String, help| Finding {
        version: source.version,
        file: source.path.to_owned(),
        line,
        rule,
        severity,
        message,
        help,
    };
    let (mut allows, invalid) = allow::parse(source.sql);
    for (line, message) in invalid {
        review.findings.push(finding(
            line,
            INVALID_ALLOW.to_owned(),
            Severity::Deny,
            message,
            Some(allow::SYNTAX_HELP.to_owned()),
        ));
    }
    let judged = match judge::judge(config, source.sql, source.no_transaction) {
        Ok(judged) => judged,
        Err(why) => {
            review.notes.push(Note {
                file: source.path.to_owned(),
                line: None,
                message: format!("not reviewed: squawk failed on this file ({why})"),
            });
            return;
        }
    };
    for error in judged.parse_errors {
        review.notes.push(Note {
            file: source.path.to_owned(),
            line: Some(crate::lexer::line_of(source.sql, error.offset)),
            message: format!(
                "squawk's grammar does not parse this ({}); its statement is judged as far as \
                 squawk understood it",
                error.message
            ),
        });
    }
    for violation in judged.violations {
        let Some(severity) = config.severity(violation.rule) else {
            continue;
        };
        if allow::consume(&mut allows, violation.rule, violation.offset) {
            continue;
        }
        review.findings.push(finding(
            crate::lexer::line_of(source.sql, violation.offset),
            violation.rule.to_string(),
            severity,
            violation.message,
            violation.help,
        ));
    }
    if let Some(severity) = config.unused_allow() {
        for unused in allows.iter().filter(|allow| !allow.used) {
            review.findings.push(finding(
                unused.line,
                UNUSED_ALLOW.to_owned(),
                severity,
                format!(
                    "`-- migrate:{} {}` allowed nothing: no finding of {} {}",
                    unused.directive(),
                    unused.rules_text(),
                    if unused.rules.len() == 1 {
                        "this rule"
                    } else {
                        "these rules"
                    },
                    unused.scope_text(),
                ),
                Some(
                    "remove the allow, or move it to the line before the statement it is for"
                        .to_owned(),
                ),
            ));
        }
    }
}

/// Reads `<dir>/.migrate.toml` if there is one: its text, to parse with [`Config::parse`] and, in
/// the macro, to embed.
pub fn read_config(dir: &Path) -> Result<Option<String>, Problem> {
    let path = dir.join(config::FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(Problem::file(
            config::FILE_NAME,
            format!("cannot read `{}`: {error}", path.display()),
        )),
    }
}

/// A rule `.migrate.toml` and `-- migrate:allow` may name: one of squawk's, or [`UNUSED_ALLOW`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RuleName {
    Squawk(squawk_linter::Rule),
    UnusedAllow,
}

impl RuleName {
    /// The rule called `name`, or why there is none (to follow "`deny` names ...").
    pub(crate) fn parse(name: &str) -> Result<RuleName, String> {
        let name = name.trim();
        if name == UNUSED_ALLOW {
            return Ok(RuleName::UnusedAllow);
        }
        if name == INVALID_ALLOW {
            return Err(format!(
                "`{INVALID_ALLOW}`, which is always denied: an allow must name rules and say why"
            ));
        }
        match name.parse::<squawk_linter::Rule>() {
            Ok(rule) if config::LOADER_CHECKS.contains(&rule) => Err(format!(
                "`{name}`, which is always off here: the loader itself refuses what it finds, \
                 with its own message"
            )),
            Ok(rule) => Ok(RuleName::Squawk(rule)),
            Err(_) => Err(format!(
                "an unknown rule `{name}`; the rules are squawk's (https://squawkhq.com/docs/rules) \
                 and `{UNUSED_ALLOW}`"
            )),
        }
    }

    fn squawk(self) -> Option<squawk_linter::Rule> {
        match self {
            RuleName::Squawk(rule) => Some(rule),
            RuleName::UnusedAllow => None,
        }
    }

    /// Whether naming `self` names `rule`: the same rule, or an alias of squawk's that expands to
    /// it (`require-timeout-settings` is `require-lock-timeout` and `require-statement-timeout`).
    fn covers(self, rule: RuleName) -> bool {
        self == rule
            || match (self, rule) {
                (RuleName::Squawk(alias), RuleName::Squawk(rule)) => {
                    alias.expands_to().contains(&rule)
                }
                _ => false,
            }
    }
}

impl fmt::Display for RuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleName::Squawk(rule) => rule.fmt(f),
            RuleName::UnusedAllow => f.write_str(UNUSED_ALLOW),
        }
    }
}

/// By name, so configurations list and compare the same on every run.
impl Ord for RuleName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.to_string().cmp(&other.to_string())
    }
}

impl PartialOrd for RuleName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
