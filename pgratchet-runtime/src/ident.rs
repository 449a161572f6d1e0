//! Identifiers and literals put into SQL text. The runner speaks the simple query protocol (it
//! must work through PgBouncer's transaction pooling, where named statements clash), so values are
//! rendered as literals here, and nowhere else.

use crate::Error;

/// PostgreSQL truncates identifiers at 63 bytes (NAMEDATALEN - 1); a longer one would silently
/// name another table.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// Checks a schema or table name from configuration; any text PostgreSQL accepts as a quoted
/// identifier is allowed, since it is always quoted.
pub(crate) fn validate(what: &'static str, value: &str) -> Result<(), Error> {
    let reason = if value.is_empty() {
        Some("it is empty")
    } else if value.len() > MAX_IDENTIFIER_BYTES {
        Some("it is longer than 63 bytes, and PostgreSQL would truncate it")
    } else if value.contains('\0') {
        Some("it contains a NUL character")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidIdentifier {
            what,
            value: value.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// `"name"`, with embedded quotes doubled.
pub(crate) fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// A string literal that means the same text whatever `standard_conforming_strings` says.
pub(crate) fn literal(text: &str) -> String {
    format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// A literal or `NULL`.
pub(crate) fn literal_opt(text: Option<&str>) -> String {
    text.map_or_else(|| "NULL".to_owned(), literal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's a \\ test"), "E'it''s a \\\\ test'");
        assert_eq!(literal_opt(None), "NULL");
    }

    #[test]
    fn validates() {
        assert!(validate("table", "schema_migrations").is_ok());
        assert!(validate("table", "My \"odd\" table").is_ok());
        assert!(validate("table", "").is_err());
        assert!(validate("table", &"x".repeat(64)).is_err());
        assert!(validate("schema", "a\0b").is_err());
    }
}
