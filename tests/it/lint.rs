//! `pgratchet lint` and the review behind it (feature `lint`: `cargo test -p pgratchet --features
//! lint`): the fixture set `tests/it/fixtures/lint/` with every finding pinned, the three output
//! formats, the exit codes, and a service binary's embedded set judged by the configuration it
//! was built with. Without the feature, `lint` says how to get it.

#[cfg(feature = "lint")]
use std::process::ExitCode;

#[cfg(feature = "lint")]
use crate::cli::migrations_dir;
use crate::cli::{expect_code, pgratchet};

#[cfg(not(feature = "lint"))]
#[test]
fn without_the_feature_lint_says_how_to_get_it() {
    let run = pgratchet(&["lint", "--dir", "tests/it/fixtures/lint"]);
    expect_code(&run, 2);
    assert!(
        run.stderr
            .contains("cargo install pgratchet --features cli,lint"),
        "{}",
        run.stderr
    );
}

#[cfg(feature = "lint")]
const FIXTURES: &str = "tests/it/fixtures/lint";

#[cfg(feature = "lint")]
fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|error| panic!("{error}: {stdout}"))
}

/// Every finding of the fixture set, as `.migrate.toml` there weighs them.
#[cfg(feature = "lint")]
#[test]
fn the_fixture_set_gives_exactly_these_findings() {
    let run = pgratchet(&["lint", "--dir", FIXTURES, "--json"]);
    expect_code(&run, 4);
    let value = json(&run.stdout);
    let found: Vec<(i64, String, i64, String, String)> = value["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|finding| {
            (
                finding["version"].as_i64().expect("version"),
                finding["file"].as_str().expect("file").to_owned(),
                finding["line"].as_i64().expect("line"),
                finding["rule"].as_str().expect("rule").to_owned(),
                finding["severity"].as_str().expect("severity").to_owned(),
            )
        })
        .collect();
    let expected = [
        (2, "2_handle.up.sql", 1, "adding-required-field", "deny"),
        (3, "3_seen_at.sql", 1, "adding-field-with-default", "warn"),
        (
            4,
            "4_email_not_null.sql",
            1,
            "adding-not-nullable-field",
            "deny",
        ),
        (
            6,
            "6_orders_fk.sql",
            1,
            "adding-foreign-key-constraint",
            "warn",
        ),
        (
            6,
            "6_orders_fk.sql",
            1,
            "constraint-missing-not-valid",
            "deny",
        ),
        (
            8,
            "8_email_check.sql",
            1,
            "constraint-missing-not-valid",
            "deny",
        ),
        (
            9,
            "9_email_idx.sql",
            1,
            "require-concurrent-index-creation",
            "deny",
        ),
        (
            11,
            "11_drop_email_idx.sql",
            2,
            "prefer-robust-stmts",
            "warn",
        ),
        (
            11,
            "11_drop_email_idx.sql",
            2,
            "require-concurrent-index-deletion",
            "warn",
        ),
        (12, "12_email_type.sql", 1, "changing-column-type", "deny"),
        (12, "12_email_type.sql", 1, "prefer-text-field", "warn"),
        (13, "13_rename_owner.sql", 1, "renaming-column", "warn"),
        (
            14,
            "14_email_unique.sql",
            1,
            "constraint-missing-not-valid",
            "deny",
        ),
        (
            14,
            "14_email_unique.sql",
            1,
            "disallowed-unique-constraint",
            "warn",
        ),
        (16, "16_audit.sql", 1, "unused-allow", "warn"),
    ]
    .map(|(version, file, line, rule, severity)| {
        (
            version,
            format!("{FIXTURES}/{file}"),
            line,
            rule.to_owned(),
            severity.to_owned(),
        )
    });
    assert_eq!(found, expected);
    // Safe forms and allowed findings score 100: the table (1), the concurrent index in a
    // no-transaction file (10), NOT VALID then VALIDATE in two migrations (7, 17), the drops
    // allowed with a reason (2's down, 15).
    let scores: Vec<(i64, i64, &str)> = value["migrations"]
        .as_array()
        .expect("migrations")
        .iter()
        .map(|score| {
            (
                score["version"].as_i64().expect("version"),
                score["score"].as_i64().expect("score"),
                score["risk"].as_str().expect("risk"),
            )
        })
        .collect();
    assert_eq!(
        scores,
        [
            (1, 100, "very safe"),
            (2, 60, "moderate risk"),
            (3, 85, "safe"),
            (4, 60, "moderate risk"),
            (5, 100, "very safe"),
            (6, 45, "high risk"),
            (7, 100, "very safe"),
            (8, 60, "moderate risk"),
            (9, 60, "moderate risk"),
            (10, 100, "very safe"),
            (11, 70, "safe"),
            (12, 45, "high risk"),
            (13, 85, "safe"),
            (14, 45, "high risk"),
            (15, 100, "very safe"),
            (16, 85, "safe"),
            (17, 100, "very safe"),
        ]
    );
    assert_eq!(
        value["worst"],
        serde_json::json!({ "version": 6, "score": 45, "risk": "high risk" })
    );
    assert_eq!(value["notes"], serde_json::json!([]));
}

#[cfg(feature = "lint")]
#[test]
fn text_and_github_formats() {
    let text = pgratchet(&["lint", "--dir", FIXTURES]);
    expect_code(&text, 4);
    insta::assert_snapshot!("lint_text", text.stdout);
    let github = pgratchet(&["lint", "--dir", FIXTURES, "--format", "github"]);
    expect_code(&github, 4);
    insta::assert_snapshot!("lint_github", github.stdout);
    let both = pgratchet(&["lint", "--dir", FIXTURES, "--format", "github", "--json"]);
    expect_code(&both, 2);
}

#[cfg(feature = "lint")]
#[test]
fn exit_codes_follow_what_is_denied() {
    let warned = migrations_dir("lint_warned", &[("1_t.sql", "DROP TABLE t;\n")]);
    let run = pgratchet(&["lint", "--dir", warned.to_str().expect("UTF-8")]);
    expect_code(&run, 0);
    assert!(
        run.stdout.contains("ban-drop-table (warn)"),
        "{}",
        run.stdout
    );

    let denied = migrations_dir(
        "lint_denied",
        &[
            ("1_t.sql", "DROP TABLE t;\n"),
            (".migrate.toml", "[lint]\ndeny = [\"ban-drop-table\"]\n"),
        ],
    );
    expect_code(
        &pgratchet(&["lint", "--dir", denied.to_str().expect("UTF-8")]),
        4,
    );

    // A configuration that cannot be read is refused like a bad migration: exit 4, and why.
    let bad = migrations_dir(
        "lint_bad_config",
        &[
            ("1_t.sql", "SELECT 1;\n"),
            (".migrate.toml", "[lint]\ndeny = [\"ban-drop-tabel\"]\n"),
        ],
    );
    let run = pgratchet(&["lint", "--dir", bad.to_str().expect("UTF-8")]);
    expect_code(&run, 4);
    assert!(
        run.stderr
            .contains("`.migrate.toml`: `deny` names an unknown rule `ban-drop-tabel`"),
        "{}",
        run.stderr
    );

    // No database is needed.
    let clean = migrations_dir("lint_clean", &[("1_t.sql", "SELECT 1;\n")]);
    let run = pgratchet(&["lint", "--dir", clean.to_str().expect("UTF-8")]);
    expect_code(&run, 0);
    assert!(
        run.stdout.ends_with(
            "1 migration reviewed; 1 with nothing found (100, very safe)\n\
             0 findings: 0 denied, 0 warnings; worst score 100 (very safe), version 1\n"
        ),
        "{}",
        run.stdout
    );
}

#[cfg(feature = "lint")]
static EMBEDDED: pgratchet::Migrations =
    pgratchet::embed_migrations!("tests/it/fixtures/lint_embedded");

/// A service binary judges its embedded set by the `.migrate.toml` it was built with, wherever it
/// runs, and exactly as the CLI judges the directory.
#[cfg(feature = "lint")]
#[tokio::test]
async fn an_embedded_set_is_judged_as_it_was_built() {
    let (dir, config) = EMBEDDED.reviewed_from().expect("built with the review");
    assert_eq!(dir, "tests/it/fixtures/lint_embedded");
    let on_disk = std::fs::read_to_string(format!("{dir}/.migrate.toml")).expect("config");
    assert_eq!(config, Some(on_disk.as_str()));

    let config = pgratchet::lint::Config::parse(&on_disk).expect("config parses");
    let review = pgratchet::lint::review(&config, pgratchet::lint::Source::of(&EMBEDDED));
    let rules: Vec<(&str, &str)> = review
        .findings
        .iter()
        .map(|finding| (finding.file.as_str(), finding.rule.as_str()))
        .collect();
    // check-down is on there: the down's DROP TABLE is judged too.
    assert_eq!(
        rules,
        [
            ("1_notes.down.sql", "ban-drop-table"),
            ("2_notes_body_idx.sql", "require-concurrent-index-creation"),
        ]
    );
    let from_binary = json(&pgratchet(&["lint", "--dir", dir, "--json"]).stdout);
    let from_binary: Vec<String> = from_binary["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|finding| finding["rule"].as_str().expect("rule").to_owned())
        .collect();
    assert_eq!(
        from_binary,
        rules
            .iter()
            .map(|(_, rule)| rule.to_string())
            .collect::<Vec<_>>()
    );

    let cli = |args: &[&'static str]| {
        let mut all = vec!["migrate"];
        all.extend_from_slice(args);
        pgratchet::cli::run(pgratchet::Migrator::new(&EMBEDDED), all)
    };
    // The build refused every denied finding, so an embedded set only ever warns.
    assert_eq!(cli(&["lint"]).await, ExitCode::SUCCESS);
    assert_eq!(
        cli(&["lint", "--format", "github"]).await,
        ExitCode::SUCCESS
    );
    assert_eq!(
        cli(&["lint", "--dir", "elsewhere"]).await,
        ExitCode::from(2)
    );
}

/// Editing `.migrate.toml` rebuilds, as editing a migration does: the expansion includes it, so
/// cargo tracks it without a build script.
#[cfg(feature = "lint")]
#[test]
fn editing_the_configuration_reviews_again() {
    use crate::rebuild::{Probe, MAIN_RS};

    let probe = Probe::new("lint-probe", &["lint"]);
    probe.write("src/main.rs", MAIN_RS);
    probe.write(
        "migrations/1_t.sql",
        "CREATE TABLE t (id bigint PRIMARY KEY);\n",
    );
    probe.write(
        "migrations/2_c.sql",
        "ALTER TABLE t ADD COLUMN c text NOT NULL;\n",
    );
    let warn = "[lint]\nwarn = [\"adding-required-field\"]\n";
    probe.write("migrations/.migrate.toml", warn);
    assert_eq!(probe.build_and_run(), "2");

    probe.write(
        "migrations/.migrate.toml",
        "[lint]\ndeny = [\"adding-required-field\"]\n",
    );
    let log = probe
        .build()
        .expect_err("the edited configuration denies a finding: the build must fail");
    assert!(
        log.contains("`2_c.sql` line 1: adding-required-field is denied in `.migrate.toml`"),
        "{log}"
    );

    probe.write("migrations/.migrate.toml", warn);
    assert_eq!(probe.build_and_run(), "2");
}
