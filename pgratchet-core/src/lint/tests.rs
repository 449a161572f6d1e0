use super::*;

fn source(sql: &str) -> Source<'_> {
    Source {
        version: 7,
        path: "7_change.sql",
        sql,
        no_transaction: false,
        down: false,
    }
}

fn config(text: &str) -> Config {
    Config::parse(text).unwrap_or_else(|problems| panic!("{problems:?}"))
}

/// A finding as `(line, rule, severity)`.
type Found = (u32, String, Severity);

/// Every finding.
fn found(config_text: &str, sql: &str) -> Vec<Found> {
    review(&config(config_text), [source(sql)])
        .findings
        .into_iter()
        .map(|finding| (finding.line, finding.rule, finding.severity))
        .collect()
}

fn rule(line: u32, rule: &str, severity: Severity) -> Found {
    (line, rule.to_owned(), severity)
}

/// squawk's default rules that fire on almost every statement of these tests; each test turns
/// them off to see the rule it is about.
const QUIET: &str = "off = [\"require-lock-timeout\", \"require-statement-timeout\", \
                     \"prefer-bigint-over-int\", \"prefer-robust-stmts\"]\n";

fn quiet(rest: &str) -> String {
    format!("[lint]\n{QUIET}{rest}")
}

const DENY_REQUIRED: &str = "deny = [\"adding-required-field\"]\n";
const ADD_REQUIRED: &str = "ALTER TABLE t ADD COLUMN c int NOT NULL;\n";

#[test]
fn scores_fall_in_the_five_bands() {
    let cases = [
        (0, 0, 100, Risk::VerySafe),
        (0, 1, 85, Risk::Safe),
        (0, 2, 70, Risk::Safe),
        (1, 0, 60, Risk::Moderate),
        (0, 3, 55, Risk::Moderate),
        (1, 1, 45, Risk::High),
        (0, 4, 40, Risk::High),
        (1, 2, 30, Risk::High),
        (0, 5, 25, Risk::VeryHigh),
        (2, 1, 5, Risk::VeryHigh),
        (3, 0, 0, Risk::VeryHigh),
        (usize::MAX, usize::MAX, 0, Risk::VeryHigh),
    ];
    for (denied, warned, score, risk) in cases {
        let got = Score::new(1, denied, warned);
        assert_eq!(
            (got.score, got.risk),
            (score, risk),
            "{denied} denied, {warned} warned"
        );
    }
    let bands = [
        (100, "very safe"),
        (90, "very safe"),
        (89, "safe"),
        (70, "safe"),
        (69, "moderate risk"),
        (50, "moderate risk"),
        (49, "high risk"),
        (30, "high risk"),
        (29, "very high risk"),
        (0, "very high risk"),
    ];
    for (score, name) in bands {
        assert_eq!(Risk::of(score).as_str(), name, "{score}");
    }
}

#[test]
fn config_is_checked_key_by_key() {
    let bad = [
        (
            "[lint]\ndeny = [\"no-such-rule\"]\n",
            "`.migrate.toml`: `deny` names an unknown rule `no-such-rule`",
        ),
        (
            "[lint]\nwarn = [\"transaction-nesting\"]\n",
            "`.migrate.toml`: `warn` names `transaction-nesting`, which is always off here",
        ),
        (
            "[lint]\noff = [\"invalid-allow\"]\n",
            "`.migrate.toml`: `off` names `invalid-allow`, which is always denied",
        ),
        (
            "[lint]\ndeny = [\"ban-drop-table\"]\noff = [\"ban-drop-table\"]\n",
            "`.migrate.toml`: `ban-drop-table` is in both `deny` and `off`; keep it in one",
        ),
        (
            "[lint]\npg-version = \"fifteen\"\n",
            "`.migrate.toml`: `pg-version = \"fifteen\"` is not a PostgreSQL version",
        ),
        (
            "[lint]\ndenied = []\n",
            "`.migrate.toml` is not valid: unknown field `denied`",
        ),
        (
            "[lints]\n",
            "`.migrate.toml` is not valid: unknown field `lints`",
        ),
        (
            "[lint]\nstart-after = \"x\"\n",
            "`.migrate.toml` is not valid: invalid type",
        ),
        ("[lint\n", "`.migrate.toml` is not valid"),
    ];
    for (text, expected) in bad {
        let problems = Config::parse(text).expect_err(text);
        assert!(
            problems
                .iter()
                .any(|problem| problem.message.starts_with(expected)
                    && problem.file == ".migrate.toml"),
            "{text:?}: {problems:?}"
        );
    }
    let problem = &Config::parse("[lint]\n\ncheck-down = 1\n").expect_err("type")[0];
    assert_eq!(problem.line, Some(3), "{problem:?}");

    let parsed = config(
        "[lint]\npg-version = 16\nstart-after = 20240101\ncheck-down = true\n\
         deny = [\"adding-required-field\"]\nwarn = [\"require-timeout-settings\"]\noff = [\"ban-drop-table\"]\n",
    );
    assert_eq!(parsed.start_after, Some(20240101));
    assert!(parsed.check_down);
    assert_eq!(parsed.pg_version, "16.0.0".parse().expect("version"));
    assert_eq!(config("").pg_version, "15.0.0".parse().expect("version"));
    assert_eq!(
        config("[lint]\npg-version = \"11.4\"\n").pg_version,
        "11.4.0".parse().expect("version")
    );
    assert_eq!(config(""), Config::default());
}

#[test]
fn severities_follow_the_config() {
    // squawk's default rules warn; the timeouts are among them.
    assert_eq!(
        found("", ADD_REQUIRED),
        [
            rule(1, "adding-required-field", Severity::Warn),
            rule(1, "prefer-bigint-over-int", Severity::Warn),
            rule(1, "require-lock-timeout", Severity::Warn),
            rule(1, "require-statement-timeout", Severity::Warn),
        ]
    );
    assert_eq!(
        found(&quiet(DENY_REQUIRED), ADD_REQUIRED),
        [rule(1, "adding-required-field", Severity::Deny)]
    );
    assert_eq!(
        found(&quiet("warn = [\"adding-required-field\"]\n"), ADD_REQUIRED),
        [rule(1, "adding-required-field", Severity::Warn)]
    );
    assert_eq!(
        found("[lint]\noff = [\"adding-required-field\"]\n", ADD_REQUIRED).len(),
        3
    );
    // An alias names the rules it expands to: deny, warn and off alike.
    let alias =
        "[lint]\ndeny = [\"require-timeout-settings\"]\noff = [\"prefer-bigint-over-int\"]\n";
    assert_eq!(
        found(alias, ADD_REQUIRED),
        [
            rule(1, "adding-required-field", Severity::Warn),
            rule(1, "require-lock-timeout", Severity::Deny),
            rule(1, "require-statement-timeout", Severity::Deny),
        ]
    );
    let off_alias = "[lint]\noff = [\"require-timeout-settings\", \"prefer-bigint-over-int\"]\n";
    assert_eq!(
        found(off_alias, ADD_REQUIRED),
        [rule(1, "adding-required-field", Severity::Warn)]
    );
    // An opt-in rule runs only when named.
    let add_column = "ALTER TABLE t ADD COLUMN c text;\n";
    assert_eq!(found(&quiet(""), add_column), []);
    assert_eq!(
        found(&quiet("warn = [\"ban-add-column\"]\n"), add_column),
        [rule(1, "ban-add-column", Severity::Warn)]
    );
}

#[test]
fn transaction_mode_follows_the_file() {
    // A statement that fails half-way through a no-transaction file cannot simply be rerun; in a
    // transaction it rolls back with the rest.
    let sql = "ALTER TABLE t ADD COLUMN c text;\n";
    let config =
        config("[lint]\noff = [\"require-lock-timeout\", \"require-statement-timeout\"]\n");
    let mut no_transaction = source(sql);
    no_transaction.no_transaction = true;
    let rules = |source| -> Vec<String> {
        review(&config, [source])
            .findings
            .into_iter()
            .map(|finding| finding.rule)
            .collect()
    };
    assert_eq!(rules(no_transaction), ["prefer-robust-stmts"]);
    assert_eq!(rules(source(sql)), Vec::<String>::new());
    // Without CONCURRENTLY, the index blocks writes while it builds.
    assert_eq!(
        found(&quiet(""), "CREATE INDEX i ON t (c);\n"),
        [rule(1, "require-concurrent-index-creation", Severity::Warn)]
    );
}

#[test]
fn allows_cover_their_statement_or_file() {
    let cases: [(&str, &str, Vec<Found>); 8] = [
        (
            "allowed with a reason",
            "-- migrate:allow adding-required-field -- the table is empty until v8\nALTER TABLE t ADD COLUMN c int NOT NULL;\n",
            vec![],
        ),
        (
            "covers the statement after it, not the next one",
            "-- migrate:allow adding-required-field -- empty table\nALTER TABLE t ADD COLUMN c int NOT NULL;\nALTER TABLE u ADD COLUMN c int NOT NULL;\n",
            vec![rule(3, "adding-required-field", Severity::Deny)],
        ),
        (
            "a reason is required",
            "-- migrate:allow adding-required-field\nALTER TABLE t ADD COLUMN c int NOT NULL;\n",
            vec![rule(1, INVALID_ALLOW, Severity::Deny), rule(2, "adding-required-field", Severity::Deny)],
        ),
        (
            "an unknown rule is an error",
            "-- migrate:allow adding-requird-field -- typo\nALTER TABLE t ADD COLUMN c int NOT NULL;\n",
            vec![rule(1, INVALID_ALLOW, Severity::Deny), rule(2, "adding-required-field", Severity::Deny)],
        ),
        (
            "an allow that matched nothing",
            "-- migrate:allow ban-drop-column -- nothing to drop\nALTER TABLE t ADD COLUMN c int;\n",
            vec![rule(1, UNUSED_ALLOW, Severity::Warn)],
        ),
        (
            "a file-wide allow, several rules",
            "SELECT 1;\n-- migrate:allow-file adding-required-field, ban-drop-table -- staging only\nALTER TABLE t ADD COLUMN c int NOT NULL;\nDROP TABLE u;\n",
            vec![],
        ),
        (
            "an alias allows what it expands to",
            "-- migrate:allow require-timeout-settings -- tiny table\nALTER TABLE t ADD COLUMN c int NOT NULL;\n",
            vec![rule(2, "adding-required-field", Severity::Deny), rule(1, UNUSED_ALLOW, Severity::Warn)],
        ),
        (
            "squawk's own ignore comments are honoured",
            "-- squawk-ignore adding-required-field\nALTER TABLE t ADD COLUMN c int NOT NULL;\n",
            vec![],
        ),
    ];
    for (what, sql, expected) in cases {
        let mut got = found(&quiet(DENY_REQUIRED), sql);
        let mut expected = expected;
        got.sort();
        expected.sort();
        assert_eq!(got, expected, "{what}");
    }
    let denied_unused = &quiet("deny = [\"unused-allow\"]\n");
    assert_eq!(
        found(
            denied_unused,
            "-- migrate:allow ban-drop-column -- r\nSELECT 1;\n"
        ),
        [rule(1, UNUSED_ALLOW, Severity::Deny)]
    );
    assert_eq!(
        found(
            "[lint]\noff = [\"unused-allow\"]\n",
            "-- migrate:allow ban-drop-column -- r\nSELECT 1;\n"
        ),
        []
    );
}

#[test]
fn start_after_and_check_down_choose_the_files() {
    let drop = "DROP TABLE t;\n";
    let files = [
        Source {
            version: 1,
            path: "1_a.up.sql",
            sql: drop,
            no_transaction: false,
            down: false,
        },
        Source {
            version: 1,
            path: "1_a.down.sql",
            sql: drop,
            no_transaction: false,
            down: true,
        },
        Source {
            version: 2,
            path: "2_b.up.sql",
            sql: drop,
            no_transaction: false,
            down: false,
        },
        Source {
            version: 2,
            path: "2_b.down.sql",
            sql: drop,
            no_transaction: false,
            down: true,
        },
    ];
    let files_of = |config_text: &str| -> Vec<String> {
        review(&config(&quiet(config_text)), files)
            .findings
            .into_iter()
            .map(|finding| finding.file)
            .collect()
    };
    assert_eq!(files_of(""), ["1_a.up.sql", "2_b.up.sql"]);
    assert_eq!(files_of("start-after = 1\n"), ["2_b.up.sql"]);
    assert_eq!(
        files_of("check-down = true\n"),
        ["1_a.down.sql", "1_a.up.sql", "2_b.down.sql", "2_b.up.sql"]
    );
    // A migration's score counts its up and its down.
    let scores = review(
        &config(&quiet("check-down = true\nstart-after = 1\n")),
        files,
    )
    .scores;
    assert_eq!(scores, [Score::new(2, 0, 2)]);
}

#[test]
fn squawk_parse_errors_are_notes_not_findings() {
    let review = review(&Config::default(), [source("SELECT 1;\nCREATE TABLE (;\n")]);
    assert_eq!(review.denied().count(), 0);
    assert!(!review.notes.is_empty());
    assert_eq!(review.notes[0].line, Some(2), "{:?}", review.notes);
    assert!(
        review.notes[0]
            .message
            .starts_with("squawk's grammar does not parse this"),
        "{:?}",
        review.notes
    );
}

#[test]
fn worst_is_the_first_lowest() {
    let drop = "DROP TABLE t;\n";
    let review = review(
        &config(&quiet("")),
        [
            Source {
                version: 1,
                path: "1.sql",
                sql: "SELECT 1;",
                no_transaction: false,
                down: false,
            },
            Source {
                version: 2,
                path: "2.sql",
                sql: drop,
                no_transaction: false,
                down: false,
            },
            Source {
                version: 3,
                path: "3.sql",
                sql: drop,
                no_transaction: false,
                down: false,
            },
        ],
    );
    assert_eq!(review.worst(), Some(&Score::new(2, 0, 1)));
    assert_eq!(review.scores.len(), 3);
}
