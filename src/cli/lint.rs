//! `lint`: the review of a directory, or of the set a service binary embeds, as text, JSON or
//! GitHub annotations; exit 4 when a denied rule fires.

use std::path::Path;
use std::process::ExitCode;

use pgratchet_core::lint::{self, Config, Review, Severity, Source};
use serde_json::json;

use super::args::Format;
use super::failure::{Failure, EXIT_INVALID};
use crate::{Error, Migrations};

/// Reviews `migrations`: read from `dir` (its `.migrate.toml` beside them), or embedded (with the
/// configuration the build embedded).
pub(super) fn run(
    migrations: &Migrations,
    dir: Option<&Path>,
    format: Format,
    json: bool,
) -> Result<ExitCode, Failure> {
    let (shown_dir, config_text) = match dir {
        Some(dir) => (
            Some(dir.display().to_string()),
            lint::read_config(dir).map_err(|problem| Error::Load(vec![problem]))?,
        ),
        None => match migrations.reviewed_from() {
            Some((dir, config)) => (Some(dir.to_owned()), config.map(str::to_owned)),
            None => (None, None),
        },
    };
    let config = match &config_text {
        Some(text) => Config::parse(text).map_err(Error::Load)?,
        None => Config::default(),
    };
    let review = lint::review(&config, Source::of(migrations));
    let path = |file: &str| match &shown_dir {
        Some(dir) => format!("{}/{file}", dir.trim_end_matches('/')),
        None => file.to_owned(),
    };
    if json {
        println!("{}", as_json(&review, &path));
    } else {
        match format {
            Format::Text => print!("{}", as_text(&review, &path, config.start_after)),
            Format::Github => print!("{}", as_github(&review, &path)),
        }
    }
    Ok(if review.denied().next().is_some() {
        ExitCode::from(EXIT_INVALID)
    } else {
        ExitCode::SUCCESS
    })
}

/// `file:line: rule (severity): message`, its help indented below; notes; then the scores below
/// 100, the number of the others, and the worst.
fn as_text(review: &Review, path: &dyn Fn(&str) -> String, start_after: Option<i64>) -> String {
    let mut out = String::new();
    for finding in &review.findings {
        out.push_str(&format!(
            "{}:{}: {} ({}): {}\n",
            path(&finding.file),
            finding.line,
            finding.rule,
            finding.severity,
            finding.message
        ));
        if let Some(help) = &finding.help {
            out.push_str(&format!("  help: {help}\n"));
        } else if let Some(url) = finding.docs_url() {
            out.push_str(&format!("  see: {url}\n"));
        }
    }
    for note in &review.notes {
        let at = note.line.map(|line| format!(":{line}")).unwrap_or_default();
        out.push_str(&format!(
            "note: {}{at}: {}\n",
            path(&note.file),
            note.message
        ));
    }
    if !out.is_empty() {
        out.push('\n');
    }
    let risky: Vec<Vec<String>> = review
        .scores
        .iter()
        .filter(|score| score.score < 100)
        .map(|score| {
            vec![
                score.version.to_string(),
                score.score.to_string(),
                score.risk.to_string(),
            ]
        })
        .collect();
    if !risky.is_empty() {
        out.push_str(&super::render::table(&["VERSION", "SCORE", "RISK"], &risky));
    }
    let clean = review.scores.len() - risky.len();
    let skipped = start_after
        .map(|after| format!(" (versions up to {after} not reviewed: start-after)"))
        .unwrap_or_default();
    out.push_str(&format!(
        "{} reviewed{skipped}; {clean} with nothing found (100, very safe)\n",
        plural(review.scores.len(), "migration")
    ));
    let denied = review.denied().count();
    let warned = review.findings.len() - denied;
    let worst = review.worst().map_or_else(String::new, |worst| {
        format!(
            "; worst score {} ({}), version {}",
            worst.score, worst.risk, worst.version
        )
    });
    out.push_str(&format!(
        "{}: {denied} denied, {}{worst}\n",
        plural(review.findings.len(), "finding"),
        plural(warned, "warning")
    ));
    out
}

/// One workflow command per finding (`::error` when denied, `::warning` otherwise) and per note
/// (`::notice`), as GitHub Actions reads them from a step's output.
fn as_github(review: &Review, path: &dyn Fn(&str) -> String) -> String {
    let mut out = String::new();
    for finding in &review.findings {
        let command = match finding.severity {
            Severity::Deny => "error",
            Severity::Warn => "warning",
        };
        let mut message = format!(
            "{} ({}): {}",
            finding.rule, finding.severity, finding.message
        );
        if let Some(help) = &finding.help {
            message.push_str(&format!("\nhelp: {help}"));
        }
        out.push_str(&format!(
            "::{command} file={},line={},title={}::{}\n",
            property(&path(&finding.file)),
            finding.line,
            property(&finding.rule),
            data(&message)
        ));
    }
    for note in &review.notes {
        let line = note
            .line
            .map(|line| format!(",line={line}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "::notice file={}{line}::{}\n",
            property(&path(&note.file)),
            data(&note.message)
        ));
    }
    out
}

fn as_json(review: &Review, path: &dyn Fn(&str) -> String) -> serde_json::Value {
    let score = |score: &lint::Score| json!({ "version": score.version, "score": score.score, "risk": score.risk.as_str() });
    json!({
        "findings": review.findings.iter().map(|finding| json!({
            "version": finding.version,
            "file": path(&finding.file),
            "line": finding.line,
            "rule": finding.rule,
            "severity": finding.severity.as_str(),
            "message": finding.message,
            "help": finding.help,
        })).collect::<Vec<_>>(),
        "migrations": review.scores.iter().map(score).collect::<Vec<_>>(),
        "worst": review.worst().map(score),
        "notes": review.notes.iter().map(|note| json!({
            "file": path(&note.file),
            "line": note.line,
            "message": note.message,
        })).collect::<Vec<_>>(),
    })
}

/// A workflow command's message: `%`, CR and LF escaped.
fn data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value: as [`data`], and `:` and `,`, which end a property.
fn property(text: &str) -> String {
    data(text).replace(':', "%3A").replace(',', "%2C")
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reviews `sql` with `deny` and squawk's defaults, minus the rules that fire on every
    /// statement (the timeouts, `int`).
    fn review(sql: &str, deny: &str) -> Review {
        let config = format!(
            "[lint]\ndeny = [{deny}]\noff = [\"require-lock-timeout\", \
             \"require-statement-timeout\", \"prefer-bigint-over-int\"]\n"
        );
        let config = Config::parse(&config).expect("config");
        lint::review(
            &config,
            [Source {
                version: 2,
                path: "2_add.sql",
                sql,
                no_transaction: false,
                down: false,
            }],
        )
    }

    fn shown(file: &str) -> String {
        format!("migrations/{file}")
    }

    #[test]
    fn escapes_workflow_commands() {
        assert_eq!(data("100% done\r\nnext"), "100%25 done%0D%0Anext");
        assert_eq!(property("a:b,c%"), "a%3Ab%2Cc%25");
    }

    #[test]
    fn github_annotations_carry_file_line_and_severity() {
        let review = review(
            "ALTER TABLE t ADD COLUMN c int NOT NULL;\nDROP TABLE u;\n",
            "\"adding-required-field\"",
        );
        let out = as_github(&review, &shown);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(
            lines[0].starts_with(
                "::error file=migrations/2_add.sql,line=1,title=adding-required-field::adding-required-field (deny): "
            ),
            "{out}"
        );
        assert!(lines[0].contains("%0Ahelp: "), "{out}");
        assert!(
            lines[1]
                .starts_with("::warning file=migrations/2_add.sql,line=2,title=ban-drop-table::"),
            "{out}"
        );
    }

    #[test]
    fn text_lists_findings_then_scores() {
        let review = review(
            "ALTER TABLE t ADD COLUMN c int NOT NULL;\nDROP TABLE u;\n",
            "\"adding-required-field\"",
        );
        let out = as_text(&review, &shown, None);
        assert!(
            out.starts_with("migrations/2_add.sql:1: adding-required-field (deny): "),
            "{out}"
        );
        assert!(out.contains("\n  help: "), "{out}");
        assert!(
            out.contains("\nmigrations/2_add.sql:2: ban-drop-table (warn): "),
            "{out}"
        );
        assert!(
            out.ends_with(
                "VERSION  SCORE  RISK\n2        45     high risk\n\
                 1 migration reviewed; 0 with nothing found (100, very safe)\n\
                 2 findings: 1 denied, 1 warning; worst score 45 (high risk), version 2\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn json_has_the_documented_shape() {
        let review = review("DROP TABLE u;\n", "");
        let value = as_json(&review, &shown);
        assert_eq!(
            value["findings"][0],
            json!({
                "version": 2,
                "file": "migrations/2_add.sql",
                "line": 1,
                "rule": "ban-drop-table",
                "severity": "warn",
                "message": value["findings"][0]["message"],
                "help": value["findings"][0]["help"],
            })
        );
        assert_eq!(
            value["migrations"],
            json!([{ "version": 2, "score": 85, "risk": "safe" }])
        );
        assert_eq!(value["worst"]["score"], 85);
    }
}
