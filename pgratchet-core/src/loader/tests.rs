use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "pgratchet-core-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn with(self, files: &[(&str, &[u8])]) -> Self {
        for (rel, content) in files {
            let path = self.0.join(rel);
            if rel.ends_with('/') {
                fs::create_dir_all(&path).unwrap();
            } else {
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(path, content).unwrap();
            }
        }
        self
    }

    fn problems(&self) -> Vec<String> {
        match load_dir(&self.0) {
            Ok(migrations) => panic!("expected problems, loaded {migrations:?}"),
            Err(problems) => problems.into_iter().map(|p| p.message).collect(),
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn loads_every_form_sorted_by_version() {
    let dir = TempDir::new().with(&[
        ("10_later.sql", b"SELECT 10;\n"),
        ("2_pair.up.sql", b"CREATE TABLE p ();\r\n"),
        ("2_pair.down.sql", b"DROP TABLE p;\n"),
        ("V3__flyway.sql", b"\xef\xbb\xbfSELECT 3;"),
        (
            "0004_dir/up.sql",
            b"-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\n",
        ),
        ("0004_dir/down.sql", b"DROP INDEX i;\n"),
        ("0004_dir/metadata.toml", b"x = 1"),
        ("0004_dir/README.md", b"notes"),
        ("0004_dir/.keep", b""),
        ("5_noop.sql", b"-- intentionally empty\n"),
        ("6_dironly/up.sql", b"SELECT 6;"),
        ("README.md", b"# notes"),
        (".gitkeep", b""),
        (".hidden/", b""),
        ("1_first.sql", b"SELECT 1;"),
    ]);
    let migrations = load_dir(&dir.0).unwrap();
    let summary: Vec<_> = migrations
        .iter()
        .map(|m| {
            (
                m.version,
                m.name.as_str(),
                m.up.path.as_str(),
                m.down.as_ref().map(|d| d.path.as_str()),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, "first", "1_first.sql", None),
            (2, "pair", "2_pair.up.sql", Some("2_pair.down.sql")),
            (3, "flyway", "V3__flyway.sql", None),
            (4, "dir", "0004_dir/up.sql", Some("0004_dir/down.sql")),
            (5, "noop", "5_noop.sql", None),
            (6, "dironly", "6_dironly/up.sql", None),
            (10, "later", "10_later.sql", None),
        ]
    );
    let flyway = &migrations[2].up;
    assert!(flyway.had_bom);
    assert_eq!(flyway.sql, "SELECT 3;");
    assert_eq!(flyway.checksum, checksum_hex(b"SELECT 3;"));
    assert_eq!(flyway.abs_path, dir.0.join("V3__flyway.sql"));
    let pair = &migrations[1];
    assert_eq!(pair.up.sql, "CREATE TABLE p ();\r\n");
    assert_eq!(pair.up.checksum, checksum_hex(b"CREATE TABLE p ();\n"));
    assert!(!pair.up.had_bom);
    assert!(migrations[3].up.no_transaction);
    assert!(
        !migrations[3].down.as_ref().unwrap().no_transaction,
        "each file has its own directives"
    );

    let migration = migrations[1].clone().into_migration();
    assert_eq!(migration.version(), 2);
    assert_eq!(migration.name(), "pair");
    assert_eq!(migration.up().path(), "2_pair.up.sql");
    assert_eq!(migration.checksum(), pair.up.checksum);
    assert_eq!(migration.down_sql(), Some("DROP TABLE p;\n"));
    assert!(migrations[3].clone().into_migration().no_transaction());
}

#[test]
fn empty_directory_is_fine() {
    let dir = TempDir::new();
    assert_eq!(load_dir(&dir.0), Ok(vec![]));
}

#[test]
fn missing_directory_and_not_a_directory() {
    let dir = TempDir::new().with(&[("file.sql", b"SELECT 1;")]);
    let missing = dir.0.join("nope");
    let problems = load_dir(&missing).unwrap_err();
    assert_eq!(
        problems[0].message,
        format!(
            "migrations directory not found: looked for `{}`; create it or pass the right path (relative to the crate's Cargo.toml)",
            missing.display()
        )
    );
    let file = dir.0.join("file.sql");
    assert_eq!(
        load_dir(&file).unwrap_err()[0].message,
        format!(
            "the migrations path `{}` is not a directory; pass the directory that holds the migration files",
            file.display()
        )
    );
}

#[test]
fn collects_every_problem_sorted_by_file() {
    let dir = TempDir::new().with(&[
        ("V1_init.sql", b"SELECT 1;"),
        ("2_a.sql", b"SELECT 2;"),
        ("02_b.sql", b"SELECT 2;"),
        ("3_orphan.down.sql", b"SELECT 3;"),
        ("4_blank.sql", b"  \n\t\n"),
        (
            "5_idx.sql",
            b"SELECT 1;\nCREATE INDEX CONCURRENTLY i ON t (a);\n",
        ),
        ("6_bad.sql", b"SELECT 1;\nSELECT '\xff';\n"),
        ("7_dir/", b""),
        ("8_dir/up.sql", b"SELECT 8;"),
        ("8_dir/extra.sql", b"SELECT 8;"),
        ("9_x.sql", b"-- migrate:foo\nSELECT 9;"),
        ("notes.txt", b"hello"),
        ("10_x.up.sql", b"SELECT 10;"),
        ("10_x.down.sql", b"VACUUM;"),
        ("11_flat.sql", b"SELECT 11;"),
        ("11_flat.down.sql", b"SELECT 11;"),
        ("12_y.up.sql", b"SELECT 12;"),
        ("12_z.down.sql", b"SELECT 12;"),
        ("13_d/up.sql", b"SELECT 13;"),
        ("13_d.down.sql", b"SELECT 13;"),
        ("bad name/", b""),
    ]);
    assert_eq!(
        dir.problems(),
        [
            "`10_x.down.sql` line 1: `VACUUM` cannot run inside a transaction block; put `-- migrate:no-transaction` on the file's first line (each statement then runs on its own), or remove it (autovacuum does this work; `ANALYZE` alone may run in a transaction)",
            "`11_flat.down.sql` has no up migration: version 11 is the up-only migration `11_flat.sql`; rename that to `11_flat.up.sql` to pair them",
            "`12_z.down.sql` does not match `12_y.up.sql`, the up migration of version 12: rename one of them so that the names match",
            "`13_d.down.sql` is a down migration for version 13, which is the directory `13_d/`: move it to `13_d/down.sql`",
            "duplicate version 2: `02_b.sql` and `2_a.sql` both use it; give one of them another version (versions compare as numbers, so `01` and `1` are the same)",
            "`3_orphan.down.sql` has no up migration: add `3_orphan.up.sql` next to it, or remove it",
            "`4_blank.sql` is empty (or only whitespace): write the migration's SQL, or remove the file (a file holding only a comment is accepted, as a deliberate no-op)",
            "`5_idx.sql` line 2: `CREATE INDEX CONCURRENTLY` cannot run inside a transaction block; put `-- migrate:no-transaction` on the file's first line (each statement then runs on its own), or drop `CONCURRENTLY`",
            "`6_bad.sql` line 2: not valid UTF-8 (the first bad byte is at byte offset 18); save the file as UTF-8",
            "migration directory `7_dir/` has no `up.sql`: add `7_dir/up.sql` (and optionally `7_dir/down.sql`)",
            "`8_dir/extra.sql` is not allowed in a migration directory, which holds `up.sql`, an optional `down.sql`, and optionally `metadata.toml`, `metadata.yaml` and `*.md` files; move it out, or merge its SQL into `8_dir/up.sql`",
            "unknown directive `-- migrate:foo` in `9_x.sql` line 1: the directives are `-- migrate:no-transaction` and `-- migrate:allow <rule> -- <reason>`",
            "invalid migration filename `V1_init.sql`: after `V<version>` use a double underscore, e.g. `V1__init.sql`",
            "invalid migration directory name `bad name/`: it must start with a version number, e.g. `1_bad_name/` or `V1__bad_name/`",
            "invalid migration filename `notes.txt`: a migration file ends in `.sql` (or `.up.sql`/`.down.sql` for a reversible one); rename it, or move it out of the migrations directory (only dotfiles and `*.md` files are ignored there)",
        ]
    );
    let problems = load_dir(&dir.0).unwrap_err();
    let files: Vec<_> = problems.iter().map(|p| (p.file.as_str(), p.line)).collect();
    assert!(files.contains(&("2_a.sql", None)));
    assert!(files.contains(&("5_idx.sql", Some(2))));
    assert!(files.contains(&("6_bad.sql", Some(2))));
    assert!(files.contains(&("7_dir/", None)));
}

#[test]
fn up_and_down_each_checked() {
    let dir = TempDir::new().with(&[
        (
            "1_x.up.sql",
            b"-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);",
        ),
        ("1_x.down.sql", b"DROP INDEX CONCURRENTLY i;"),
    ]);
    assert_eq!(
        dir.problems(),
        ["`1_x.down.sql` line 1: `DROP INDEX CONCURRENTLY` cannot run inside a transaction block; put `-- migrate:no-transaction` on the file's first line (each statement then runs on its own), or drop `CONCURRENTLY`"]
    );
}

#[test]
fn duplicates_across_forms() {
    let dir = TempDir::new().with(&[
        ("1_a.sql", b"SELECT 1;"),
        ("1_b/up.sql", b"SELECT 1;"),
        ("V1__c.up.sql", b"SELECT 1;"),
        ("V1__c.down.sql", b"SELECT 1;"),
    ]);
    assert_eq!(
        dir.problems(),
        [
            "duplicate version 1: `1_a.sql` and `1_b/` both use it; give one of them another version (versions compare as numbers, so `01` and `1` are the same)",
            "duplicate version 1: `1_a.sql` and `V1__c.up.sql` both use it; give one of them another version (versions compare as numbers, so `01` and `1` are the same)",
        ]
    );
}

#[test]
fn check_script_for_the_runtime() {
    assert_eq!(
        check_script("1_a.sql", "SELECT 1;"),
        Ok(Directives::default())
    );
    assert_eq!(
        check_script("1_a.sql", "-- migrate:no-transaction\nVACUUM;"),
        Ok(Directives {
            no_transaction: true
        })
    );
    assert_eq!(
        check_script("1_a.sql", "-- nothing to do"),
        Ok(Directives::default())
    );
    assert_eq!(check_script("1_a.sql", "").unwrap_err().len(), 1);
    assert_eq!(check_script("1_a.sql", "\u{feff} \n").unwrap_err().len(), 1);
    assert_eq!(
        check_script("1_a.sql", "\u{feff}-- migrate:no-transaction\nVACUUM;"),
        Ok(Directives {
            no_transaction: true
        })
    );
    // Every problem, not only the first.
    assert_eq!(
        check_script("1_a.sql", "-- migrate:x\nVACUUM;\nCOMMIT;")
            .unwrap_err()
            .len(),
        3
    );
}

#[cfg(unix)]
#[test]
fn unreadable_and_non_utf8_names() {
    use std::os::unix::ffi::OsStrExt;
    let dir = TempDir::new().with(&[("1_ok.sql", b"SELECT 1;")]);
    std::os::unix::fs::symlink(dir.0.join("missing.sql"), dir.0.join("2_link.sql")).unwrap();
    fs::write(
        dir.0.join(std::ffi::OsStr::from_bytes(b"3_\xff.sql")),
        b"SELECT 3;",
    )
    .unwrap();
    let problems = dir.problems();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with("cannot read `2_link.sql`: "),
        "{problems:?}"
    );
    assert_eq!(
        problems[1],
        "`3_\u{fffd}.sql` has a name that is not valid UTF-8; rename it using ASCII letters, digits, `_`, `-` and `.`"
    );
}
