use super::*;
use proptest::prelude::*;

/// The executed statements' `sql()` (without leading whitespace/comments) and lines.
fn shapes(sql: &str) -> Vec<(&str, u32)> {
    executed(sql).map(|s| (s.sql(), s.line)).collect()
}

fn joined(sql: &str) -> String {
    split(sql).iter().map(|s| s.text).collect()
}

#[test]
fn simple_statements_and_lines() {
    let sql = "CREATE TABLE a (id int);\n\n-- second\nINSERT INTO a VALUES (1);\n  SELECT 1";
    assert_eq!(
        shapes(sql),
        [
            ("CREATE TABLE a (id int);", 1),
            ("INSERT INTO a VALUES (1);", 4),
            ("SELECT 1", 5)
        ]
    );
    let statements = split(sql);
    assert_eq!(statements[1].offset, 24);
    assert_eq!(
        statements[1].text,
        "\n\n-- second\nINSERT INTO a VALUES (1);"
    );
    assert_eq!(joined(sql), sql);
}

#[test]
fn empty_input_and_trailing_comments() {
    assert!(split("").is_empty());
    let sql = "SELECT 1;\n-- the end\n";
    let statements = split(sql);
    assert_eq!(statements.len(), 2);
    assert!(!statements[0].is_empty());
    assert!(statements[1].is_empty());
    assert_eq!(statements[1].text, "\n-- the end\n");
    assert_eq!(
        statements[1].line, 1,
        "an empty statement's line is where its text starts"
    );
    assert_eq!(statements[1].sql(), "");
    assert_eq!(split("  \n")[0].line, 1);
    assert!(split("/* only */ -- comments")[0].is_empty());
}

/// `;;` holds an empty statement, which the server skips without a CommandComplete: it is
/// split (nothing is lost) but not executed.
#[test]
fn empty_statements_are_not_executed() {
    let sql = "SELECT 1;;\n;\nSELECT 2; /* c */ ;";
    assert_eq!(joined(sql), sql);
    assert!(split(";")[0].is_empty());
    assert_eq!(
        executed(sql)
            .map(|statement| statement.sql())
            .collect::<Vec<_>>(),
        ["SELECT 1;", "SELECT 2;"]
    );
    assert_eq!(executed(";").count(), 0);
}

#[test]
fn semicolons_inside_quotes_stay_inside() {
    let cases: &[(&str, &[(&str, u32)])] = &[
        (
            "SELECT 'a;b', 'it''s;';\nSELECT 2;",
            &[("SELECT 'a;b', 'it''s;';", 1), ("SELECT 2;", 2)],
        ),
        (
            "SELECT E'a\\';b';\nSELECT 2;",
            &[("SELECT E'a\\';b';", 1), ("SELECT 2;", 2)],
        ),
        (
            "SELECT e'\\\\';\nSELECT 2;",
            &[("SELECT e'\\\\';", 1), ("SELECT 2;", 2)],
        ),
        // Not an E-string: `ae` is an identifier, so the backslash escapes nothing.
        (
            "SELECT ae'\\';\nSELECT 2;",
            &[("SELECT ae'\\';", 1), ("SELECT 2;", 2)],
        ),
        (
            "SELECT U&'d\\0061;t';\nSELECT 2;",
            &[("SELECT U&'d\\0061;t';", 1), ("SELECT 2;", 2)],
        ),
        (
            "SELECT U&\"a;\"\"b\";\nSELECT 2;",
            &[("SELECT U&\"a;\"\"b\";", 1), ("SELECT 2;", 2)],
        ),
        (
            "SELECT \"a;\"\"b\" FROM t;\nSELECT 2;",
            &[("SELECT \"a;\"\"b\" FROM t;", 1), ("SELECT 2;", 2)],
        ),
        (
            "SELECT 1 -- no; split\n;\nSELECT 2;",
            &[("SELECT 1 -- no; split\n;", 1), ("SELECT 2;", 3)],
        ),
        (
            "SELECT /* a; /* b; */ c; */ 1;\nSELECT 2;",
            &[("SELECT /* a; /* b; */ c; */ 1;", 1), ("SELECT 2;", 2)],
        ),
        (
            "SELECT '/**';\nSELECT 2;",
            &[("SELECT '/**';", 1), ("SELECT 2;", 2)],
        ),
        (
            "SELECT '--';\nSELECT 2;",
            &[("SELECT '--';", 1), ("SELECT 2;", 2)],
        ),
    ];
    for (sql, expected) in cases {
        assert_eq!(shapes(sql), *expected, "{sql}");
        assert_eq!(joined(sql), *sql);
    }
}

#[test]
fn dollar_quotes() {
    let sql = "CREATE FUNCTION f() RETURNS int AS $$\nBEGIN\n  RETURN 1;\nEND;\n$$ LANGUAGE plpgsql;\nSELECT 2;";
    assert_eq!(shapes(sql).len(), 2);
    assert_eq!(shapes(sql)[1], ("SELECT 2;", 6));

    let tagged = "DO $body$ BEGIN PERFORM 1; $$ still; inside $$ END $body$;\nSELECT 2;";
    assert_eq!(
        shapes(tagged),
        [
            (
                "DO $body$ BEGIN PERFORM 1; $$ still; inside $$ END $body$;",
                1
            ),
            ("SELECT 2;", 2)
        ]
    );
    // `a$b$` is an identifier (identifiers may hold `$`), so no dollar quote opens.
    assert_eq!(
        shapes("SELECT a$b$;\nSELECT 2;$b$;"),
        [("SELECT a$b$;", 1), ("SELECT 2;", 2), ("$b$;", 2)]
    );
    // `$1` is a parameter, and `$1$` does not open a quote either.
    assert_eq!(
        shapes("PREPARE p AS SELECT $1;\nSELECT $1$;"),
        [("PREPARE p AS SELECT $1;", 1), ("SELECT $1$;", 2)]
    );
    // A tag's case matters.
    assert_eq!(shapes("SELECT $a$ ; $A$ ; $a$;").len(), 1);
}

#[test]
fn parentheses() {
    let sql = "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2));\nSELECT 2;";
    assert_eq!(shapes(sql).len(), 2);
    assert_eq!(shapes(sql)[1], ("SELECT 2;", 2));
    // An unbalanced `)` does not hide later semicolons.
    assert_eq!(shapes("SELECT 1);\nSELECT 2;").len(), 2);
}

#[test]
fn begin_atomic_bodies() {
    let sql = "CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END;\n  SELECT case when x < 0 then 2 end;\nend;\nSELECT 2;";
    let shapes = shapes(sql);
    assert_eq!(shapes.len(), 2, "{shapes:?}");
    assert!(shapes[0].0.ends_with("end;"));
    assert_eq!(shapes[1], ("SELECT 2;", 6));
    // A transaction `BEGIN;` is a statement of its own.
    assert_eq!(
        self::shapes("BEGIN;\nSELECT 1;\nCOMMIT;"),
        [("BEGIN;", 1), ("SELECT 1;", 2), ("COMMIT;", 3)]
    );
    // `BEGIN` then `ATOMIC` in another statement is nothing special.
    assert_eq!(self::shapes("BEGIN; ATOMIC; SELECT 1;").len(), 3);
}

#[test]
fn missing_final_semicolon_and_unterminated() {
    assert_eq!(
        shapes("SELECT 1;\nSELECT 2\n"),
        [("SELECT 1;", 1), ("SELECT 2\n", 2)]
    );
    for sql in [
        "SELECT 1; SELECT 'open; SELECT 3;",
        "SELECT 1; SELECT \"open; SELECT 3;",
        "SELECT 1; SELECT E'open\\'; SELECT 3;",
        "SELECT 1; SELECT /* open /* */ ; SELECT 3;",
        "SELECT 1; SELECT $x$ open; SELECT 3;",
        "SELECT 1; SELECT (open; SELECT 3;",
        "SELECT 1; SELECT E'\\",
    ] {
        assert_eq!(shapes(sql).len(), 2, "{sql}");
        assert_eq!(joined(sql), sql);
    }
}

#[test]
fn non_ascii_text() {
    let sql = "INSERT INTO t VALUES ('héllo; wörld'); -- ünïcode; comment\nSELECT \"ñ;\" AS 名前;\n/* ☃; */ SELECT 'ß';";
    assert_eq!(
        shapes(sql),
        [
            ("INSERT INTO t VALUES ('héllo; wörld');", 1),
            ("SELECT \"ñ;\" AS 名前;", 2),
            ("SELECT 'ß';", 3)
        ]
    );
    assert_eq!(joined(sql), sql);
    assert_eq!(split("SELECT é;")[0].keywords(2), ["SELECT", "é"]);
}

#[test]
fn psql_meta_commands_end_at_their_line() {
    let sql = "\\set ON_ERROR_STOP on\nCREATE TABLE t ();\n\\i other.sql\n";
    assert_eq!(
        shapes(sql),
        [
            ("\\set ON_ERROR_STOP on\n", 1),
            ("CREATE TABLE t ();", 2),
            ("\\i other.sql\n", 3)
        ]
    );
    assert_eq!(joined(sql), sql);
}

#[test]
fn keywords_and_sql() {
    let statement = split("  -- c\n/* d */ create Unique index CONCURRENTLY \"x\" ON t (a);")[0];
    assert_eq!(
        statement.keywords(6),
        ["CREATE", "UNIQUE", "INDEX", "CONCURRENTLY", "", "ON"]
    );
    assert_eq!(statement.keywords(1), ["CREATE"]);
    assert_eq!(statement.keywords(100).len(), 11);
    assert_eq!(
        statement.sql(),
        "create Unique index CONCURRENTLY \"x\" ON t (a);"
    );
    assert_eq!(statement.line, 2);
    let reindex = split("REINDEX (VERBOSE) TABLE CONCURRENTLY t;")[0];
    assert_eq!(
        reindex.keywords(6),
        ["REINDEX", "", "VERBOSE", "", "TABLE", "CONCURRENTLY"]
    );
    assert_eq!(split("SELECT 'VACUUM';")[0].keywords(3), ["SELECT", "", ""]);
}

#[test]
fn line_of_offsets() {
    let sql = "a\nb\r\nc";
    assert_eq!(line_of(sql, 0), 1);
    assert_eq!(line_of(sql, 1), 1);
    assert_eq!(line_of(sql, 2), 2);
    assert_eq!(line_of(sql, 5), 3);
    assert_eq!(line_of(sql, 500), 3);
}

/// Fragments that stress the lexer's states when glued together at random.
const FRAGMENTS: &[&str] = &[
    "'", "''", "\"", "$$", "$a$", "$1", "a$b$", "/*", "*/", "--", ";", "(", ")", "E'", "e'", "U&'",
    "\\", "\n", "\r\n", " ", "é", "名", "BEGIN", "ATOMIC", "CASE", "END", "SELECT 1", "x", "-",
    "*", "/", "$", "\u{feff}",
];

/// A statement body holding a `;` that must not end it, made safe by construction.
fn wrapped_fragment() -> impl Strategy<Value = String> {
    let inner =
        prop::collection::vec(prop::sample::select(FRAGMENTS), 0..6).prop_map(|v| v.concat());
    (inner, 0..6usize).prop_map(|(inner, how)| match how {
        // A dollar body: the tag cannot occur in the fragments.
        0 => format!("SELECT $zz$ {inner} ; $zz$"),
        // A nested comment: drop comment markers from the inside so it closes where we want.
        1 => format!(
            "SELECT 1 /* a /* {} ; */ b */",
            inner.replace("/*", "").replace("*/", "").replace(['/', '*'], "")
        ),
        // An E-string: escape backslashes and quotes so it closes where we want.
        2 => format!(
            "SELECT E'{} ; \\' ;'",
            inner.replace('\\', "\\\\").replace('\'', "\\'")
        ),
        // A standard string: double the quotes.
        3 => format!("SELECT '{} ;'", inner.replace('\'', "''")),
        // A quoted identifier: double the double quotes.
        4 => format!("SELECT \"{} ;\"", inner.replace('"', "\"\"")),
        // A BEGIN ATOMIC body with a CASE .. END inside.
        _ => "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END".to_string(),
    })
}

proptest! {
    #[test]
    fn never_panics_and_round_trips(sql in any::<String>()) {
        let statements = split(&sql);
        prop_assert_eq!(statements.iter().map(|s| s.text).collect::<String>(), sql.clone());
        for s in &statements {
            prop_assert_eq!(&sql[s.offset..s.offset + s.text.len()], s.text);
            let _ = (s.is_empty(), s.keywords(5), s.sql());
            prop_assert!(s.line >= line_of(&sql, s.offset));
        }
    }

    #[test]
    fn sql_ish_fragments_round_trip(parts in prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40)) {
        let sql = parts.concat();
        let statements = split(&sql);
        prop_assert_eq!(statements.iter().map(|s| s.text).collect::<String>(), sql.clone());
        let mut offset = 0;
        for s in &statements {
            prop_assert_eq!(s.offset, offset);
            offset += s.text.len();
            prop_assert!(!s.text.is_empty());
            let _ = (s.is_empty(), s.keywords(usize::MAX), s.sql());
        }
    }

    #[test]
    fn safely_wrapped_statements_stay_whole(
        bodies in prop::collection::vec(wrapped_fragment(), 1..8),
        separator in prop::sample::select(&["\n", " ", "\n-- c;\n", "/* ; */", ""][..]),
    ) {
        let sql: String = bodies.iter().map(|b| format!("{separator}{b};")).collect();
        let statements: Vec<_> = split(&sql).into_iter().filter(|s| !s.is_empty()).collect();
        prop_assert_eq!(statements.len(), bodies.len(), "{}", sql);
        for (statement, body) in statements.iter().zip(&bodies) {
            prop_assert_eq!(statement.sql(), format!("{body};"));
            prop_assert_eq!(statement.line, line_of(&sql, statement.offset + statement.text.len() - body.len() - 1));
        }
    }
}

#[test]
fn line_comments_skip_strings_and_block_comments() {
    let sql = "-- a\nSELECT '-- no', $$ -- no $$ /* -- no */; -- b\r\n--c";
    let comments: Vec<_> = line_comments(sql).collect();
    assert_eq!(comments, [(0, " a"), (46, " b\r"), (52, "c")]);
    assert_eq!(&sql[46..48], "--");
    assert_eq!(line_comments("SELECT 1").count(), 0);
}
