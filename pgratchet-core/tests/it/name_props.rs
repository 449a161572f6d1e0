//! Property tests of the filename grammar (`name::parse_file_name`, `name::parse_dir_name`) on
//! generated input: never a panic, every refusal names the input, and every name the grammar
//! describes is accepted with the version and name it spells. (The lexer's property tests are
//! in `src/lexer/tests.rs`.)

use pgratchet_core::name::{parse_dir_name, parse_file_name, EntryKind};
use proptest::prelude::*;

/// Pieces that stress the grammar's branches when glued together at random.
const FRAGMENTS: &[&str] = &[
    "V",
    "v",
    "U",
    "u",
    "R",
    "r",
    "_",
    "__",
    "0",
    "1",
    "9",
    "007",
    "9223372036854775807",
    "9223372036854775808",
    "99999999999999999999",
    ".",
    ".sql",
    ".SQL",
    ".up",
    ".down",
    ".up.sql",
    ".Up.sql",
    ".down.sql",
    "-",
    "a",
    "Z",
    "é",
    "名",
    " ",
    "\t",
    "\u{feff}",
    "/",
    "\\",
    "\0",
];

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// Checks what holds for any input: no panic, a refusal names the input, an acceptance is
/// well-formed.
fn check(input: &str) -> Result<(), TestCaseError> {
    match parse_file_name(input) {
        Ok(parsed) => {
            prop_assert!(parsed.version >= 0);
            prop_assert!(!parsed.name.is_empty());
            prop_assert!(parsed.name.chars().all(is_name_char), "{:?}", parsed);
            prop_assert!(parsed.kind != EntryKind::Directory);
            prop_assert!(input.ends_with(".sql"));
        }
        Err(message) => {
            prop_assert!(
                message.starts_with(&format!("invalid migration filename `{input}`: ")),
                "{}",
                message
            );
        }
    }
    match parse_dir_name(input) {
        Ok(parsed) => {
            prop_assert!(parsed.version >= 0);
            prop_assert!(parsed.name.chars().all(is_name_char), "{:?}", parsed);
            prop_assert_eq!(parsed.kind, EntryKind::Directory);
        }
        Err(message) => {
            prop_assert!(
                message.starts_with(&format!("invalid migration directory name `{input}/`: ")),
                "{}",
                message
            );
        }
    }
    Ok(())
}

/// A name the grammar allows that does not end in a reserved `.up`/`.down`.
fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9_.-]{0,24}".prop_filter("reserved ending", |name| {
        let lower = name.to_ascii_lowercase();
        !lower.ends_with(".up") && !lower.ends_with(".down")
    })
}

proptest! {
    #[test]
    fn any_string_never_panics(input in any::<String>()) {
        check(&input)?;
    }

    #[test]
    fn grammar_fragments_never_panic(parts in prop::collection::vec(prop::sample::select(FRAGMENTS), 0..12)) {
        check(&parts.concat())?;
    }

    #[test]
    fn every_valid_name_is_accepted_as_spelled(
        version in 0..=i64::MAX,
        zeros in 0..3usize,
        name in name(),
        flyway in any::<bool>(),
        form in 0..4usize,
    ) {
        let digits = format!("{}{version}", "0".repeat(zeros));
        let stem = if flyway { format!("V{digits}__{name}") } else { format!("{digits}_{name}") };
        let (parsed, kind) = match form {
            0 => (parse_file_name(&format!("{stem}.sql")), EntryKind::Flat),
            1 => (parse_file_name(&format!("{stem}.up.sql")), EntryKind::Up),
            2 => (parse_file_name(&format!("{stem}.down.sql")), EntryKind::Down),
            _ => (parse_dir_name(&stem), EntryKind::Directory),
        };
        let parsed = parsed.map_err(TestCaseError::fail)?;
        prop_assert_eq!(parsed.version, version);
        prop_assert_eq!(parsed.name, name);
        prop_assert_eq!(parsed.kind, kind);
    }

    #[test]
    fn versions_beyond_i64_are_refused_with_the_reason(extra in 1..=u64::MAX - i64::MAX as u64) {
        let too_big = (i64::MAX as u64) + extra;
        let message = parse_file_name(&format!("{too_big}_a.sql")).expect_err("does not fit");
        prop_assert!(message.contains("does not fit in a 64-bit signed integer"), "{}", message);
    }
}
