//! Names and URLs: a unique database name per test, quoting, and URLs with another database or
//! without their password.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn salt() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut n = (nanos / 1000) % 36u128.pow(4);
    let mut s = Vec::new();
    for _ in 0..4 {
        s.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
    }
    String::from_utf8(s).expect("ascii")
}

/// `<label>_<pid>_<counter>_<salt>`, at most 63 bytes, `[a-z0-9_]`.
pub(crate) fn unique_db_name(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut clean = String::new();
    for c in label.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            clean.push(c);
        } else if !clean.is_empty() && !clean.ends_with('_') {
            clean.push('_');
        }
    }
    let clean = clean.trim_end_matches('_');
    let mut clean: String = clean.chars().take(32).collect();
    if clean.is_empty() {
        clean.push_str("db");
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("{clean}_{}_{n}_{}", std::process::id(), salt());
    debug_assert!(name.len() <= 63);
    name
}

/// `s` as a quoted SQL identifier.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A string literal for SQL (standard_conforming_strings, the default since 9.1).
pub(crate) fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `url` with its database (path) replaced by `dbname`, keeping the query.
pub(crate) fn replace_url_dbname(url: &str, dbname: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let query = rest[authority_end..]
        .find('?')
        .map(|i| &rest[authority_end + i..])
        .unwrap_or("");
    format!("{scheme}{authority}/{}{query}", percent_encode(dbname))
}

/// `url` with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    let Some(i) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[i + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!("{}{}:***{}", &url[..i + 3], &rest[..colon], &rest[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_dbname_is_replaced() {
        assert_eq!(
            replace_url_dbname("postgres://u:p@h:5/old?sslmode=disable", "new"),
            "postgres://u:p@h:5/new?sslmode=disable"
        );
        assert_eq!(replace_url_dbname("postgres://h", "n"), "postgres://h/n");
        assert_eq!(
            replace_url_dbname("postgresql://h:1/", "n"),
            "postgresql://h:1/n"
        );
        assert_eq!(
            replace_url_dbname("postgres://h?x=1", "a b"),
            "postgres://h/a%20b?x=1"
        );
    }

    #[test]
    fn password_is_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn db_names_are_unique_and_valid() {
        let a = unique_db_name("My Test: weird/label!!");
        let b = unique_db_name("My Test: weird/label!!");
        assert_ne!(a, b);
        assert!(a.starts_with("my_test_weird_label_"), "{a}");
        let long = unique_db_name(&"x".repeat(200));
        assert!(long.len() <= 63, "{long}");
        assert!(unique_db_name("").starts_with("db_"));
        for n in [a, b, long] {
            assert!(n
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'));
        }
    }
}
