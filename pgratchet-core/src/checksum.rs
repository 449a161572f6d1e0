//! The checksum recorded for every migration script.
//!
//! Exactly these bytes are hashed: the file's bytes, after removing one leading UTF-8 byte order
//! mark (`EF BB BF`) and replacing every CRLF (`\r\n`) by LF (`\n`); a lone `\r` is kept. The hash
//! is SHA-256, written as 64 lowercase hex digits. So a checkout with Windows line endings, or an
//! editor that adds a BOM, keeps the checksum, while any other edit (even joining two lines) changes
//! it. This definition is part of the contract with every deployed database: never change it.

use sha2::{Digest, Sha256};

const BOM: &str = "\u{feff}";

/// Lowercase hex SHA-256 of `bytes` normalised as described in the [module docs](self).
pub fn checksum_hex(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(BOM.as_bytes()).unwrap_or(bytes);
    let mut hasher = Sha256::new();
    // Feed the runs between the `\r` of each CRLF, so no normalised copy of the file is made.
    let mut run_start = 0;
    for (i, pair) in bytes.windows(2).enumerate() {
        if pair == b"\r\n" {
            hasher.update(&bytes[run_start..i]);
            run_start = i + 1;
        }
    }
    hasher.update(&bytes[run_start..]);
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `text` without one leading UTF-8 byte order mark: the SQL that is sent to the server.
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix(BOM).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values from `printf '...' | sha256sum`.
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const SELECT_1: &str = "b4e0497804e46e0a0b0b8c31975b062152d551bac49c3c2e80932567b4085dcd";
    const TWO_LINES: &str = "ca2e30c7bf4ae893a75714da225cab24092983eef3fc4de5988d59bbf722acfb";
    const A_NL_B: &str = "7e18f737311b2dc3b2f269dd78396b0351f14fb66efa879f768cb23181883c78";
    const AB: &str = "fb8e20fc2e4c3f248c60c39bd652f3c1347298bb977b8b4d5903b85055620603";
    const CR_LF_RAW: &str = "7eb70257593da06f682a3ddda54a9d260d4fc514f645237f5ca74b08f8da61a6";
    const A_CR_B_NL: &str = "367d1c77eadc1495a7db4200f46a8b90ea1fa926282722d308c05a65098a4112";

    #[test]
    fn matches_sha256sum() {
        assert_eq!(checksum_hex(b""), EMPTY);
        assert_eq!(checksum_hex(b"SELECT 1;\n"), SELECT_1);
        assert_eq!(
            checksum_hex(b"CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\n"),
            TWO_LINES
        );
        assert_eq!(checksum_hex(b"a\nb"), A_NL_B);
        assert_eq!(checksum_hex(b"ab"), AB);
    }

    #[test]
    fn crlf_and_bom_hash_like_lf() {
        let lf = "CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\n";
        let crlf = "\u{feff}CREATE TABLE t (id int);\r\nINSERT INTO t VALUES (1);\r\n";
        assert_eq!(checksum_hex(crlf.as_bytes()), TWO_LINES);
        assert_eq!(checksum_hex(crlf.as_bytes()), checksum_hex(lf.as_bytes()));
        assert_eq!(checksum_hex(b"\xef\xbb\xbf"), EMPTY);
        assert_eq!(checksum_hex(b"\r\n"), checksum_hex(b"\n"));
    }

    #[test]
    fn does_not_over_normalise() {
        assert_ne!(checksum_hex(b"a\nb"), checksum_hex(b"ab"));
        // A lone CR is content, not a line ending.
        assert_eq!(checksum_hex(b"a\rb\n"), A_CR_B_NL);
        assert_ne!(checksum_hex(b"a\rb\n"), checksum_hex(b"ab\n"));
        // Only one BOM is removed.
        assert_ne!(
            checksum_hex("\u{feff}\u{feff}x".as_bytes()),
            checksum_hex(b"x")
        );
        // `\r\r\n` is a lone CR followed by a CRLF: it hashes as the bytes `\r\n`.
        assert_eq!(checksum_hex(b"\r\r\n"), CR_LF_RAW);
    }

    #[test]
    fn strips_one_bom() {
        assert_eq!(strip_bom("\u{feff}SELECT 1;"), "SELECT 1;");
        assert_eq!(strip_bom("\u{feff}\u{feff}x"), "\u{feff}x");
        assert_eq!(strip_bom("x\u{feff}"), "x\u{feff}");
        assert_eq!(strip_bom(""), "");
    }
}
