use super::*;

fn ok(version: i64, name: &str, kind: EntryKind) -> Result<ParsedName, String> {
    Ok(ParsedName {
        version,
        name: name.to_string(),
        kind,
    })
}

#[test]
fn valid_file_names() {
    use EntryKind::*;
    let table = [
        ("1_init.sql", ok(1, "init", Flat)),
        ("0_zero.sql", ok(0, "zero", Flat)),
        ("0001_create_users.sql", ok(1, "create_users", Flat)),
        ("V1__init.sql", ok(1, "init", Flat)),
        ("V007__add-index.v2.sql", ok(7, "add-index.v2", Flat)),
        (
            "20240101120000_add_users.sql",
            ok(20240101120000, "add_users", Flat),
        ),
        ("3_users.up.sql", ok(3, "users", Up)),
        ("3_users.down.sql", ok(3, "users", Down)),
        ("V3__users.up.sql", ok(3, "users", Up)),
        ("V3__users.down.sql", ok(3, "users", Down)),
        // The reserved ending always wins: this is the up half, not a migration named `a.up`.
        ("1_a.up.sql", ok(1, "a", Up)),
        ("1_a.up.down.sql", ok(1, "a.up", Down)),
        ("1_UP.sql", ok(1, "UP", Flat)),
        ("9223372036854775807_max.sql", ok(i64::MAX, "max", Flat)),
        (
            "00000000000000000000000042_padded.sql",
            ok(42, "padded", Flat),
        ),
    ];
    for (input, expected) in table {
        assert_eq!(parse_file_name(input), expected, "{input}");
    }
}

#[test]
fn invalid_file_names() {
    let table = [
        (
            "V1_init.sql",
            "invalid migration filename `V1_init.sql`: after `V<version>` use a double underscore, e.g. `V1__init.sql`",
        ),
        (
            "1__x.sql",
            "invalid migration filename `1__x.sql`: after `<version>` use a single underscore, e.g. `1_x.sql` (a double underscore only follows `V<version>`)",
        ),
        (
            "1.sql",
            "invalid migration filename `1.sql`: the name is missing after the version; use `1_<name>.sql`, e.g. `1_create_users.sql`",
        ),
        (
            "1_.sql",
            "invalid migration filename `1_.sql`: the name is missing after the version; use `1_<name>.sql`, e.g. `1_create_users.sql`",
        ),
        (
            "V2__.up.sql",
            "invalid migration filename `V2__.up.sql`: the name is missing after the version; use `V2__<name>.up.sql`, e.g. `V2__create_users.up.sql`",
        ),
        (
            "1_init",
            "invalid migration filename `1_init`: a migration file ends in `.sql` (or `.up.sql`/`.down.sql` for a reversible one); rename it, or move it out of the migrations directory (only dotfiles and `*.md` files are ignored there)",
        ),
        (
            "1_init.txt",
            "invalid migration filename `1_init.txt`: a migration file ends in `.sql` (or `.up.sql`/`.down.sql` for a reversible one); rename it, or move it out of the migrations directory (only dotfiles and `*.md` files are ignored there)",
        ),
        (
            "1_init.SQL",
            "invalid migration filename `1_init.SQL`: the ending must be lowercase `.sql`, e.g. `1_init.sql`",
        ),
        (
            "1_init.UP.sql",
            "invalid migration filename `1_init.UP.sql`: the ending must be lowercase `.up.sql`, e.g. `1_init.up.sql`",
        ),
        (
            "1_my table.sql",
            "invalid migration filename `1_my table.sql`: the name contains a space, which is not allowed; a name uses ASCII letters, digits, `_`, `-` and `.`, e.g. `1_my_table.sql`",
        ),
        (
            "1_café.sql",
            "invalid migration filename `1_café.sql`: the name contains `é` (U+00E9), which is not allowed; a name uses ASCII letters, digits, `_`, `-` and `.`, e.g. `1_caf.sql`",
        ),
        (
            "1_a+b.down.sql",
            "invalid migration filename `1_a+b.down.sql`: the name contains `+` (U+002B), which is not allowed; a name uses ASCII letters, digits, `_`, `-` and `.`, e.g. `1_a_b.down.sql`",
        ),
        (
            "U1__x.sql",
            "invalid migration filename `U1__x.sql`: flyway undo files (`U<version>__<name>.sql`) are not supported; make the migration a pair instead: its up as `V1__x.up.sql` and this undo as `V1__x.down.sql`",
        ),
        (
            "R__views.sql",
            "invalid migration filename `R__views.sql`: flyway repeatable migrations (`R__<name>.sql`) are not supported; give it a version instead, e.g. `V<version>__<name>.sql`, and add a new version for each change",
        ),
        (
            "v1__init.sql",
            "invalid migration filename `v1__init.sql`: the version prefix is an uppercase `V`, e.g. `V1__init.sql`",
        ),
        (
            "init.sql",
            "invalid migration filename `init.sql`: it must start with a version number, e.g. `1_init.sql` or `V1__init.sql`",
        ),
        (
            "1init.sql",
            "invalid migration filename `1init.sql`: put `_` between the version and the name, e.g. `1_init.sql`",
        ),
        (
            "1-init.sql",
            "invalid migration filename `1-init.sql`: put `_` between the version and the name, e.g. `1_-init.sql`",
        ),
        (
            "V1.1__x.sql",
            "invalid migration filename `V1.1__x.sql`: the version must be a whole number (ASCII digits only): `1.1` is not; renumber it with a whole number",
        ),
        (
            "20240101120000000000_x.sql",
            "invalid migration filename `20240101120000000000_x.sql`: the version `20240101120000000000` does not fit in a 64-bit signed integer (at most 9223372036854775807); renumber it, e.g. to a 14-digit `YYYYMMDDHHMMSS` timestamp",
        ),
        (
            "9223372036854775808_x.sql",
            "invalid migration filename `9223372036854775808_x.sql`: the version `9223372036854775808` does not fit in a 64-bit signed integer (at most 9223372036854775807); renumber it, e.g. to a 14-digit `YYYYMMDDHHMMSS` timestamp",
        ),
        (
            ".sql",
            "invalid migration filename `.sql`: it must start with a version number, e.g. `1_create_users.sql` or `V1__create_users.sql`",
        ),
    ];
    for (input, expected) in table {
        assert_eq!(parse_file_name(input), Err(expected.to_string()), "{input}");
    }
}

#[test]
fn directory_names() {
    use EntryKind::Directory;
    assert_eq!(parse_dir_name("3_users"), ok(3, "users", Directory));
    assert_eq!(parse_dir_name("V3__users"), ok(3, "users", Directory));
    assert_eq!(parse_dir_name("003_a.b-c"), ok(3, "a.b-c", Directory));
    let table = [
        (
            "V3_users",
            "invalid migration directory name `V3_users/`: after `V<version>` use a double underscore, e.g. `V3__users/`",
        ),
        (
            "3",
            "invalid migration directory name `3/`: the name is missing after the version; use `3_<name>/`, e.g. `3_create_users/`",
        ),
        (
            "users",
            "invalid migration directory name `users/`: it must start with a version number, e.g. `1_users/` or `V1__users/`",
        ),
        (
            "3_new users",
            "invalid migration directory name `3_new users/`: the name contains a space, which is not allowed; a name uses ASCII letters, digits, `_`, `-` and `.`, e.g. `3_new_users/`",
        ),
    ];
    for (input, expected) in table {
        assert_eq!(parse_dir_name(input), Err(expected.to_string()), "{input}");
    }
}

#[test]
fn never_panics_on_odd_input() {
    for input in [
        "",
        "V",
        "U",
        "R",
        "_",
        "__",
        "1",
        "V1",
        "é.sql",
        "1_é",
        "ésql",
        ".up.sql",
        "1_.down.sql",
        "\u{feff}1_x.sql",
        "1_x.sql\n",
        "V.sql",
        "1.",
        "1.x_y.sql",
    ] {
        let _ = parse_file_name(input);
        let _ = parse_dir_name(input);
    }
}
