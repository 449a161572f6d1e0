//! The migration filename grammar (one grammar for the macro and the run-time loader).
//!
//! - `<version>_<name>.sql` or `V<version>__<name>.sql`: an up-only migration ([`EntryKind::Flat`]);
//! - `<version>_<name>.up.sql` and `<version>_<name>.down.sql` (or with `V<version>__`): the two
//!   halves of a reversible migration ([`EntryKind::Up`], [`EntryKind::Down`]);
//! - a directory `<version>_<name>/` or `V<version>__<name>/` holding `up.sql` and optionally
//!   `down.sql` ([`EntryKind::Directory`]).
//!
//! `<version>` is ASCII digits (leading zeros allowed, `0` allowed) that fit in an `i64`;
//! `<name>` is ASCII letters, digits, `_`, `-` and `.`. The endings `.up.sql` and `.down.sql` are
//! reserved: `1_a.up.sql` is always the up half of a pair, never an up-only migration named `a.up`.

#[cfg(test)]
mod tests;

/// What a directory entry is, by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// `<version>_<name>.sql`: an up-only migration.
    Flat,
    /// `<version>_<name>.up.sql`: the up half of a reversible migration.
    Up,
    /// `<version>_<name>.down.sql`: the down half of a reversible migration.
    Down,
    /// `<version>_<name>/`: a directory holding `up.sql` and optionally `down.sql`.
    Directory,
}

/// A migration file or directory name, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedName {
    /// The version number; compared as a number, so `001` and `1` are the same version.
    pub version: i64,
    /// The name part, e.g. `create_users` (without `.up`/`.down`/`.sql`).
    pub name: String,
    /// Which form the name has.
    pub kind: EntryKind,
}

/// Parses the name of a file directly inside the migrations directory.
///
/// The error is a complete lowercase message naming the file and saying how to rename it.
pub fn parse_file_name(file_name: &str) -> Result<ParsedName, String> {
    let bad = |why: String| format!("invalid migration filename `{file_name}`: {why}");
    let lower = file_name.to_ascii_lowercase();
    if !lower.ends_with(".sql") {
        return Err(bad(
            "a migration file ends in `.sql` (or `.up.sql`/`.down.sql` for a reversible one); \
             rename it, or move it out of the migrations directory (only dotfiles and `*.md` \
             files are ignored there)"
                .to_string(),
        ));
    }
    let (stem, kind, ending) = if let Some(stem) = strip_suffix_ci(file_name, ".up.sql") {
        (stem, EntryKind::Up, ".up.sql")
    } else if let Some(stem) = strip_suffix_ci(file_name, ".down.sql") {
        (stem, EntryKind::Down, ".down.sql")
    } else {
        (&file_name[..file_name.len() - 4], EntryKind::Flat, ".sql")
    };
    let actual_ending = &file_name[stem.len()..];
    if actual_ending != ending {
        return Err(bad(format!(
            "the ending must be lowercase `{ending}`, e.g. `{stem}{ending}`"
        )));
    }
    let (version, name) = parse_stem(stem, ending).map_err(bad)?;
    Ok(ParsedName {
        version,
        name,
        kind,
    })
}

/// Parses the name of a directory directly inside the migrations directory.
///
/// The error is a complete lowercase message naming the directory and saying how to rename it.
pub fn parse_dir_name(dir_name: &str) -> Result<ParsedName, String> {
    let (version, name) = parse_stem(dir_name, "/")
        .map_err(|why| format!("invalid migration directory name `{dir_name}/`: {why}"))?;
    Ok(ParsedName {
        version,
        name,
        kind: EntryKind::Directory,
    })
}

fn strip_suffix_ci<'a>(text: &'a str, suffix: &str) -> Option<&'a str> {
    let split = text.len().checked_sub(suffix.len())?;
    let tail = text.get(split..)?;
    tail.eq_ignore_ascii_case(suffix).then(|| &text[..split])
}

/// Parses `<version>_<name>` or `V<version>__<name>`; `ending` is what followed the stem
/// (`.sql`, `.up.sql`, `.down.sql` or `/`), used to write the suggested names.
fn parse_stem(stem: &str, ending: &str) -> Result<(i64, String), String> {
    let bytes = stem.as_bytes();
    let first = bytes.first().copied();
    let second_is_digit = bytes.get(1).is_some_and(u8::is_ascii_digit);
    let flyway = match first {
        Some(b'V') if second_is_digit => true,
        Some(b'v') if second_is_digit => {
            return Err(format!(
                "the version prefix is an uppercase `V`, e.g. `V{}{ending}`",
                &stem[1..]
            ))
        }
        Some(b'U' | b'u') if second_is_digit => {
            return Err(format!(
                "flyway undo files (`U<version>__<name>.sql`) are not supported; make the \
                 migration a pair instead: its up as `V{0}.up.sql` and this undo as \
                 `V{0}.down.sql`",
                &stem[1..]
            ))
        }
        Some(b'R' | b'r') if bytes.get(1) == Some(&b'_') => {
            return Err(
                "flyway repeatable migrations (`R__<name>.sql`) are not supported; give it a \
                 version instead, e.g. `V<version>__<name>.sql`, and add a new version for each \
                 change"
                    .to_string(),
            )
        }
        Some(digit) if digit.is_ascii_digit() => false,
        _ => {
            return Err(format!(
                "it must start with a version number, e.g. `1_{0}{ending}` or `V1__{0}{ending}`",
                suggested_name(stem)
            ))
        }
    };
    let digits_start = usize::from(flyway);
    let digits_end = bytes[digits_start..]
        .iter()
        .position(|b| !b.is_ascii_digit())
        .map_or(bytes.len(), |p| p + digits_start);
    let digits = &stem[digits_start..digits_end];
    let rest = &stem[digits_end..];
    let prefix = if flyway { "V" } else { "" };
    let separator = if flyway { "__" } else { "_" };

    let name = if let Some(name) = rest.strip_prefix(separator) {
        if !flyway && name.starts_with('_') {
            return Err(format!(
                "after `<version>` use a single underscore, e.g. `{digits}_{}{ending}` (a double \
                 underscore only follows `V<version>`)",
                name.trim_start_matches('_')
            ));
        }
        name
    } else if rest.is_empty() {
        return Err(format!(
            "the name is missing after the version; use `{prefix}{digits}{separator}<name>{ending}`, \
             e.g. `{prefix}{digits}{separator}create_users{ending}`"
        ));
    } else if rest.starts_with('.') && rest[1..].starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "the version must be a whole number (ASCII digits only): `{digits}{}` is not; \
             renumber it with a whole number",
            rest.split(['_']).next().unwrap_or(rest)
        ));
    } else if flyway && rest.starts_with('_') {
        return Err(format!(
            "after `V<version>` use a double underscore, e.g. `V{digits}__{}{ending}`",
            &rest[1..]
        ));
    } else {
        return Err(format!(
            "put `{separator}` between the version and the name, e.g. \
             `{prefix}{digits}{separator}{}{ending}`",
            suggested_name(rest)
        ));
    };

    if name.is_empty() {
        return Err(format!(
            "the name is missing after the version; use `{prefix}{digits}{separator}<name>{ending}`, \
             e.g. `{prefix}{digits}{separator}create_users{ending}`"
        ));
    }
    if let Some(bad) = name.chars().find(|&c| !is_name_char(c)) {
        return Err(format!(
            "the name contains {}, which is not allowed; a name uses ASCII letters, digits, `_`, \
             `-` and `.`, e.g. `{prefix}{digits}{separator}{}{ending}`",
            describe_char(bad),
            suggested_name(name)
        ));
    }
    let version = digits.parse::<i64>().map_err(|_| {
        format!(
            "the version `{digits}` does not fit in a 64-bit signed integer (at most {}); \
             renumber it, e.g. to a 14-digit `YYYYMMDDHHMMSS` timestamp",
            i64::MAX
        )
    })?;
    Ok((version, name.to_string()))
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        '\t' => "a tab".to_string(),
        c if c.is_control() || c.is_whitespace() => format!("the character U+{:04X}", u32::from(c)),
        c => format!("`{c}` (U+{:04X})", u32::from(c)),
    }
}

/// `text` with every character a name may not hold replaced by `_`, for the "e.g." of a message.
fn suggested_name(text: &str) -> String {
    let cleaned: String = text
        .trim_matches(|c: char| !is_name_char(c))
        .chars()
        .map(|c| if is_name_char(c) { c } else { '_' })
        .collect();
    if cleaned.is_empty() {
        "create_users".to_string()
    } else {
        cleaned
    }
}
