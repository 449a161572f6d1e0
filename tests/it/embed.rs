//! `embed_migrations!` on a directory holding every accepted form (`tests/it/fixtures/all_forms/`).
//!
//! The expected checksums are `sha256sum` of each file (the CRLF+BOM copy: of the LF file), so
//! this test pins the checksum definition of CONTRACT.md, which every deployed database relies on.

use pgratchet::{Migration, Migrations};

static MIGRATIONS: Migrations = pgratchet::embed_migrations!("tests/it/fixtures/all_forms");

/// `(version, name, up path, sha256sum of the up file, no_transaction)`, in the expected order.
const EXPECTED: &[(i64, &str, &str, &str, bool)] = &[
    (
        1,
        "flat",
        "1_flat.sql",
        "2274f425edfe28243948de12a694e0a9364c5917a5fb955dd8e11295bfbf2132",
        false,
    ),
    (
        2,
        "flyway",
        "V2__flyway.sql",
        "b0aadcd55e111e673bb2ef891992fc05562c0aab7fd0646d707246db90c8aa30",
        false,
    ),
    (
        3,
        "pair",
        "3_pair.up.sql",
        "dd1b0c06b0f3d88f0ee3ad55a715ac1eca2ca534d77b2e602ab1c0d351810eb7",
        false,
    ),
    (
        4,
        "dir",
        "4_dir/up.sql",
        "e8b1fd273058cf6c1855fbe17b03c6c166c917640a510036e5367a071d907d0d",
        false,
    ),
    (
        5,
        "dirv",
        "V5__dirv/up.sql",
        "330ec4394e27fdee388c29a69d18923347f8f502ce5db73e6d7c7c96acd65329",
        false,
    ),
    (
        6,
        "leading_zeros",
        "0006_leading_zeros.sql",
        "7a61b421a8abc3bea1e5e330c0f4318a73dbc089c2bb97bdd86b16e096b2854e",
        false,
    ),
    (
        7,
        "index_concurrently",
        "7_index_concurrently.sql",
        "c6c99a07783aa8524dbfa00af3a2b02d2f87c95069b65c74a7884594b06faa70",
        true,
    ),
    (
        8,
        "sqlx_no_transaction",
        "8_sqlx_no_transaction.sql",
        "adcc01f6c3bcfa1f01b429fa28e2cd545cbedccc0e317f119dfad085bee692d9",
        true,
    ),
    (9, "lf", "9_lf.sql", LF_CHECKSUM, false),
    // Numeric order: 10 comes after 9, not after 1.
    (10, "crlf_bom", "10_crlf_bom.sql", LF_CHECKSUM, false),
    (
        11,
        "noop",
        "11_noop.sql",
        "c2404360b96350c46157c8da7a3f8389a84e45dd3773fae373b5b9d9673fe28f",
        false,
    ),
    (
        12,
        "refresh_concurrently",
        "12_refresh_concurrently.sql",
        "95f08a0d7275e189bc9ef0ae153c83725e4024064675cc6937326d84ecdb6f49",
        false,
    ),
    (
        13,
        "add-note.v2",
        "13_add-note.v2.sql",
        "bc385df06ba802cb1e57e1579772a18d92cebaf5346ac991ed488bf11b17c13f",
        false,
    ),
    (
        20240101120000,
        "timestamp",
        "20240101120000_timestamp.sql",
        "3004ff675c3d251ebd4312059a4556653f42117fdb88cfef902571efa362d786",
        false,
    ),
];

/// `sha256sum 9_lf.sql`; `10_crlf_bom.sql` is the same text with a BOM and CRLF line endings.
const LF_CHECKSUM: &str = "3628d2c94883ec7ea706b5d1403f5f2a5e9398b63b16eec51cfa9bca4287e014";
/// `sha256sum 10_crlf_bom.sql`: the raw bytes, which must *not* be the recorded checksum.
const CRLF_BOM_RAW_SHA256: &str =
    "b8ea503e72231b89eeae18c9f42006217b43de071e1dc43f76a58d400754025f";

fn get(version: i64) -> &'static Migration {
    MIGRATIONS
        .get(version)
        .unwrap_or_else(|| panic!("version {version} is missing from {MIGRATIONS:#?}"))
}

#[test]
fn every_form_in_version_order() {
    let actual: Vec<_> = MIGRATIONS
        .iter()
        .map(|m| {
            (
                m.version(),
                m.name(),
                m.up().path(),
                m.checksum(),
                m.no_transaction(),
            )
        })
        .collect();
    assert_eq!(actual, EXPECTED);
    assert_eq!(MIGRATIONS.len(), EXPECTED.len());
    assert!(!MIGRATIONS.is_empty());
    // The up script's own accessors agree with the migration's.
    for migration in &MIGRATIONS {
        assert_eq!(migration.up().checksum(), migration.checksum());
        assert_eq!(migration.up().sql(), migration.up_sql());
        assert_eq!(migration.up().no_transaction(), migration.no_transaction());
    }
}

#[test]
fn up_sql_is_the_file_text() {
    assert_eq!(
        get(1).up_sql(),
        include_str!("fixtures/all_forms/1_flat.sql")
    );
    assert_eq!(
        get(4).up_sql(),
        "CREATE TABLE dir (id bigint PRIMARY KEY);\n"
    );
    assert_eq!(
        get(7).up_sql(),
        "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY flat_zeros ON flat (zeros);\n"
    );
    assert!(get(12)
        .up_sql()
        .contains("REFRESH MATERIALIZED VIEW CONCURRENTLY flat_count;"));
    assert_eq!(
        get(11).up_sql(),
        "-- Intentionally empty: a comment-only file is a deliberate no-op.\n"
    );
}

#[test]
fn down_sql_of_pairs_and_directories() {
    let downs: Vec<_> = MIGRATIONS
        .iter()
        .filter_map(|m| Some((m.version(), m.down()?.path(), m.down()?.checksum())))
        .collect();
    assert_eq!(
        downs,
        [
            (
                3,
                "3_pair.down.sql",
                "dab86571de2229d19504fa9586e41d75f50e7988bb8a6cd98b001babcc383528"
            ),
            (
                4,
                "4_dir/down.sql",
                "21faa82767997c1b7d197344db9cefc8b5cd1c0460846e4a5cb0ca78aac66b7e"
            ),
        ]
    );
    assert_eq!(get(3).down_sql(), Some("DROP TABLE pair;\n"));
    assert_eq!(get(4).down_sql(), Some("DROP TABLE dir;\n"));
    assert!(!get(3).down().is_some_and(|down| down.no_transaction()));
    // Up-only forms have no down: flat, Flyway, a directory without `down.sql`.
    for version in [1, 2, 5, 6] {
        assert_eq!(get(version).down_sql(), None, "version {version}");
    }
}

#[test]
fn crlf_and_bom_copy_has_the_lf_checksum_and_no_bom() {
    let lf = get(9);
    let crlf = get(10);
    assert_eq!(crlf.checksum(), lf.checksum());
    assert_eq!(crlf.checksum(), LF_CHECKSUM);
    assert_ne!(crlf.checksum(), CRLF_BOM_RAW_SHA256);
    // The executed SQL is the file without its BOM; its CRLFs are kept as they are.
    assert!(
        !crlf.up_sql().starts_with('\u{feff}'),
        "{:?}",
        crlf.up_sql()
    );
    assert!(crlf
        .up_sql()
        .starts_with("CREATE TABLE IF NOT EXISTS copied"));
    assert_eq!(crlf.up_sql().replace("\r\n", "\n"), lf.up_sql());
    // The fixture really is CRLF + BOM (a checkout that converted it would make this test vacuous).
    let raw = include_bytes!("fixtures/all_forms/10_crlf_bom.sql");
    assert!(raw.starts_with(b"\xef\xbb\xbfCREATE"));
    assert!(raw.ends_with(b";\r\n"));
}

#[test]
fn directives_are_per_file() {
    let no_transaction: Vec<_> = MIGRATIONS
        .iter()
        .filter(|m| m.no_transaction())
        .map(Migration::version)
        .collect();
    // `-- migrate:no-transaction` and sqlx's first-line `-- no-transaction`; the transactional
    // `REFRESH MATERIALIZED VIEW CONCURRENTLY` file is not among them.
    assert_eq!(no_transaction, [7, 8]);
}

#[test]
fn ignored_entries_are_not_migrations() {
    // `.gitkeep`, `.hidden.sql` and `README.md` in the directory, and `.hidden`, `notes.md` and
    // `metadata.toml` in `4_dir/`, are all skipped.
    for migration in &MIGRATIONS {
        let paths = [
            Some(migration.up().path()),
            migration.down().map(|d| d.path()),
        ];
        for path in paths.into_iter().flatten() {
            assert!(path.ends_with(".sql"), "{path}");
            assert!(!path.contains("/."), "{path}");
            assert!(!path.starts_with('.'), "{path}");
        }
    }
}

#[test]
fn usable_in_a_static_and_a_let() {
    let local = pgratchet::embed_migrations!("tests/it/fixtures/all_forms");
    assert_eq!(local, MIGRATIONS);
    let copy = local.clone();
    assert_eq!(copy.len(), EXPECTED.len());
    // In a function, as a temporary.
    assert_eq!(
        pgratchet::embed_migrations!("tests/it/fixtures/all_forms")
            .iter()
            .map(Migration::version)
            .max(),
        Some(20240101120000)
    );
}

#[test]
fn debug_lists_every_migration_without_the_sql() {
    let debug = format!("{MIGRATIONS:?}");
    for (version, name, path, checksum, _) in EXPECTED {
        assert!(debug.contains(&format!("version: {version}")), "{debug}");
        assert!(debug.contains(&format!("{name:?}")), "{debug}");
        assert!(debug.contains(path), "{debug}");
        assert!(debug.contains(checksum), "{debug}");
    }
    assert!(!debug.contains("CREATE TABLE"), "{debug}");
    let pretty = format!("{:#?}", get(3));
    assert!(pretty.contains("3_pair.down.sql"), "{pretty}");
}
