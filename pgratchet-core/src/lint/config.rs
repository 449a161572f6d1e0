//! `.migrate.toml`: which rules deny, warn or are off, the target PostgreSQL version, where the
//! lint starts and whether down files are linted. Parsing only; no file system.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::Deserialize;
use squawk_linter::{Rule, Version};

use super::{RuleName, Severity};
use crate::Problem;

/// The configuration's file name, in the migrations directory.
pub const FILE_NAME: &str = ".migrate.toml";

/// The rules that repeat the loader's own checks (a statement that cannot run in a transaction,
/// `BEGIN`/`COMMIT` in a file): the loader refuses those files before the lint sees them, with its
/// own message, so these never run.
pub(super) const LOADER_CHECKS: [Rule; 3] = [
    Rule::TransactionNesting,
    Rule::BanConcurrentIndexCreationInTransaction,
    Rule::BanUncommittedTransaction,
];

/// What `.migrate.toml` says; [`Config::default`] when there is no file: nothing denied, squawk's
/// default rules warn, PostgreSQL 15, every migration's up file linted.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// Each named rule's severity, an alias (`require-timeout-settings`) under its own name.
    pub(super) severities: BTreeMap<RuleName, Severity>,
    /// The rules turned off.
    pub(super) off: Vec<RuleName>,
    /// The PostgreSQL version the migrations run on (rules differ by version).
    pub(super) pg_version: Version,
    /// Migrations at or below this version are not linted.
    pub start_after: Option<i64>,
    /// Whether down files are linted too.
    pub check_down: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            severities: BTreeMap::new(),
            off: Vec::new(),
            pg_version: pg_15(),
            start_after: None,
            check_down: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    lint: Option<Section>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Section {
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    warn: Vec<String>,
    #[serde(default)]
    off: Vec<String>,
    pg_version: Option<PgVersion>,
    start_after: Option<i64>,
    #[serde(default)]
    check_down: bool,
}

/// `pg-version = 16` or `pg-version = "16.2"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum PgVersion {
    Number(i64),
    Text(String),
}

impl Config {
    /// Parses the text of `.migrate.toml`; every mistake (an unknown key or rule, a rule in two
    /// lists, a bad version) is a [`Problem`] naming the file and saying what to write instead.
    pub fn parse(text: &str) -> Result<Config, Vec<Problem>> {
        let file: File = toml::from_str(text).map_err(|error| {
            let line = error
                .span()
                .map(|span| crate::lexer::line_of(text, span.start));
            let message = format!(
                "`{FILE_NAME}` is not valid: {}; see the README's \"Reviewing migrations\" for its keys",
                error.message().trim_end_matches('.')
            );
            vec![match line {
                Some(line) => Problem::at_line(FILE_NAME, line, message),
                None => Problem::file(FILE_NAME, message),
            }]
        })?;
        let Some(section) = file.lint else {
            return Ok(Config::default());
        };
        let mut problems = Vec::new();
        let mut config = Config {
            start_after: section.start_after,
            check_down: section.check_down,
            ..Config::default()
        };
        if let Some(version) = section.pg_version {
            let text = match version {
                PgVersion::Number(number) => number.to_string(),
                PgVersion::Text(text) => text,
            };
            match parse_pg_version(&text) {
                Some(version) => config.pg_version = version,
                None => problems.push(Problem::file(
                    FILE_NAME,
                    format!(
                        "`{FILE_NAME}`: `pg-version = {text:?}` is not a PostgreSQL version; \
                         write its major version, e.g. `pg-version = 15` (or \"15.4\")"
                    ),
                )),
            }
        }
        let mut listed: BTreeMap<RuleName, &str> = BTreeMap::new();
        let lists = [
            ("deny", &section.deny, Some(Severity::Deny)),
            ("warn", &section.warn, Some(Severity::Warn)),
            ("off", &section.off, None),
        ];
        for (list, names, severity) in lists {
            for name in names {
                let rule = match RuleName::parse(name) {
                    Ok(rule) => rule,
                    Err(why) => {
                        problems.push(Problem::file(
                            FILE_NAME,
                            format!("`{FILE_NAME}`: `{list}` names {why}"),
                        ));
                        continue;
                    }
                };
                if let Some(first) = listed.insert(rule, list) {
                    problems.push(Problem::file(
                        FILE_NAME,
                        format!(
                            "`{FILE_NAME}`: `{rule}` is in both `{first}` and `{list}`; keep it in one"
                        ),
                    ));
                    continue;
                }
                match severity {
                    Some(severity) => {
                        config.severities.insert(rule, severity);
                    }
                    None => config.off.push(rule),
                }
            }
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }

    /// The severity a finding of `rule` has: as listed, or through the alias that names it, else a
    /// warning. `None` when the rule is off.
    pub(super) fn severity(&self, rule: RuleName) -> Option<Severity> {
        if self.off.iter().any(|off| off.covers(rule)) {
            return None;
        }
        if let Some(severity) = self.severities.get(&rule) {
            return Some(*severity);
        }
        self.severities
            .iter()
            .find(|(listed, _)| listed.covers(rule))
            .map(|(_, severity)| *severity)
            .or(Some(Severity::Warn))
    }

    /// The linter's rules: squawk's defaults, plus every rule named in `deny`/`warn` (an opt-in
    /// rule runs only when named), minus `off` and the loader's own checks.
    pub(super) fn linter(&self, assume_in_transaction: bool) -> squawk_linter::Linter {
        let squawk = |rules: &mut dyn Iterator<Item = &RuleName>| -> Vec<Rule> {
            rules.filter_map(|rule| rule.squawk()).collect()
        };
        let include = squawk(&mut self.severities.keys());
        let mut exclude = squawk(&mut self.off.iter());
        exclude.extend(LOADER_CHECKS);
        let mut linter = squawk_linter::Linter::with_rules(&include, &exclude);
        linter.settings.pg_version = self.pg_version;
        linter.settings.assume_in_transaction = assume_in_transaction;
        linter
    }

    /// Whether an allow that matched nothing is reported.
    pub(super) fn unused_allow(&self) -> Option<Severity> {
        self.severity(RuleName::UnusedAllow)
    }
}

fn pg_15() -> Version {
    parse_pg_version("15").unwrap_or_default()
}

/// `16` means 16.0.0: squawk compares with `Version::new(11, None, None)`, where a bare `11` (no
/// minor) would count as older than PostgreSQL 11 itself.
fn parse_pg_version(text: &str) -> Option<Version> {
    let parts = text.trim().split('.').count();
    if text.trim().is_empty() || parts > 3 {
        return None;
    }
    let full = format!("{}{}", text.trim(), ".0".repeat(3 - parts));
    Version::from_str(&full).ok()
}
