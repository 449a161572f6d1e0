//! The history fingerprint: one number that both the server (over the history table) and the
//! runner (over its migrations) can compute, so that "is everything applied, with these
//! checksums?" costs the server a single-row answer instead of a row per migration.
//!
//! Each row contributes PostgreSQL's `hashtextextended(checksum, version)`: the 64-bit Jenkins
//! lookup3 hash of the checksum's bytes, seeded with the version. Hash partitioning stores rows
//! by this function, so its values do not change between PostgreSQL releases. The fingerprint
//! is the sum of these values as `numeric`, so it does not depend on row order, and changing,
//! adding or removing any one row changes it.
//!
//! Only a little-endian server computes the values reproduced here. On any other server the
//! fingerprints never match, and every start reads the history in full: slower, but still
//! correct. A match is the only thing the fast path trusts.

use crate::Migration;

/// The SQL aggregate over a history table's rows whose value [`of`] predicts. `COLLATE "C"`
/// keeps the hash on the bytes even if the column were given a non-deterministic collation.
pub(crate) const SQL: &str = "sum(hashtextextended(checksum COLLATE \"C\", version))";

/// The fingerprint of a history holding exactly `migrations`, each applied with its checksum.
pub(crate) fn of(migrations: &[Migration]) -> i128 {
    migrations
        .iter()
        .map(|migration| {
            i128::from(hash_text_extended(
                migration.checksum().as_bytes(),
                migration.version(),
            ))
        })
        .sum()
}

/// PostgreSQL's `hashtextextended(text, seed)` for a deterministic collation, as computed by a
/// little-endian server: lookup3 over 12-byte blocks read as little-endian words, the tail's
/// third word shifted past the low byte, and `b << 32 | c` as the result.
pub(crate) fn hash_text_extended(bytes: &[u8], seed: i64) -> i64 {
    // The length enters as a u32 that wraps, as in PostgreSQL; keys here are 64 bytes.
    let start = 0x9e37_79b9_u32
        .wrapping_add(bytes.len() as u32)
        .wrapping_add(3_923_095);
    let (mut a, mut b, mut c) = (start, start, start);
    let seed = seed as u64;
    if seed != 0 {
        a = a.wrapping_add((seed >> 32) as u32);
        b = b.wrapping_add(seed as u32);
        mix(&mut a, &mut b, &mut c);
    }
    let mut blocks = bytes.chunks_exact(12);
    for block in &mut blocks {
        a = a.wrapping_add(word(&block[0..4]));
        b = b.wrapping_add(word(&block[4..8]));
        c = c.wrapping_add(word(&block[8..12]));
        mix(&mut a, &mut b, &mut c);
    }
    let tail = blocks.remainder();
    let part = |from: usize| word(tail.get(from..).unwrap_or_default());
    a = a.wrapping_add(part(0));
    b = b.wrapping_add(part(4));
    // The low byte of c is left for the length (lookup3's convention).
    c = c.wrapping_add(part(8) << 8);
    finish(&mut a, &mut b, &mut c);
    ((u64::from(b) << 32) | u64::from(c)) as i64
}

/// Up to four bytes as a little-endian word, zero-padded.
fn word(bytes: &[u8]) -> u32 {
    let mut padded = [0; 4];
    let used = bytes.len().min(4);
    padded[..used].copy_from_slice(&bytes[..used]);
    u32::from_le_bytes(padded)
}

fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c) ^ c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c) ^ c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

fn finish(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(14));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(11));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(25));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(16));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(4));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(14));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(24));
}

#[cfg(test)]
mod tests {
    use super::hash_text_extended;

    /// `SELECT hashtextextended(text, seed)` on PostgreSQL 15, x86-64: every tail length, a
    /// whole block, the seeds that skip or saturate the seeding, and two real checksums.
    const FROM_POSTGRES: &[(&str, i64, i64)] = &[
        ("", 0, -6939563903564495251),
        ("a", 1, 3325245193489759299),
        ("ab", -1, 3639176434904646991),
        ("abc", 2, 792850575183825444),
        ("abcd", 0, -1038429303365892052),
        ("abcde", 7, -2496737214044990496),
        ("abcdef", i64::MIN, 1904414986221539528),
        ("abcdefg", i64::MAX, 8092175030054910351),
        ("abcdefgh", 42, -6100851256988995111),
        ("abcdefghi", 1000, 4624137041571189447),
        ("abcdefghij", -5, 1932160291710535159),
        ("abcdefghijk", 123456789012, 4187866645923293307),
        ("abcdefghijkl", 3, 4584400490450960132),
        ("abcdefghijklm", 0, 8871624171452417744),
        (
            "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b",
            1,
            -3397217414226511748,
        ),
        (
            "d4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35",
            20261122,
            6550321519281292671,
        ),
    ];

    #[test]
    fn hashes_like_postgres() {
        for &(text, seed, expected) in FROM_POSTGRES {
            assert_eq!(
                hash_text_extended(text.as_bytes(), seed),
                expected,
                "hashtextextended({text:?}, {seed})"
            );
        }
    }
}
