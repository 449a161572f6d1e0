//! Reads a migrations directory: every file checked, every problem collected.
//!
//! The macro calls [`load_dir`] at build time and the runtime may call it at run time, so a
//! directory is accepted or refused identically in both places. Nothing in the directory is
//! silently skipped except dotfiles and `*.md` files: a file that is not a migration is an error.

use crate::checksum::checksum_hex;
use crate::directive::{self, Directives};
use crate::name::{self, EntryKind, ParsedName};
use crate::{transaction, Migration, Problem, Script};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

#[cfg(test)]
mod tests;

const BOM: &[u8] = b"\xef\xbb\xbf";

/// One SQL file of a migration, read and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedScript {
    /// The path relative to the migrations directory, with `/` separators, e.g. `3_users/up.sql`.
    pub path: String,
    /// The absolute path, e.g. for the macro to make cargo track the file.
    pub abs_path: PathBuf,
    /// The file's text with one leading BOM removed: the SQL sent to the server.
    pub sql: String,
    /// Whether the file started with a UTF-8 BOM.
    pub had_bom: bool,
    /// The [`checksum_hex`] of the file's bytes.
    pub checksum: String,
    /// Whether the file says `-- migrate:no-transaction`.
    pub no_transaction: bool,
}

/// One migration of a directory: a flat file, a `.up.sql`/`.down.sql` pair or a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedMigration {
    /// The version number.
    pub version: i64,
    /// The name part of the file or directory name.
    pub name: String,
    /// The up script.
    pub up: LoadedScript,
    /// The down script, if the migration has one.
    pub down: Option<LoadedScript>,
}

impl LoadedMigration {
    /// The [`Migration`] the runtime runs.
    pub fn into_migration(self) -> Migration {
        let script = |s: LoadedScript| Script::loaded(s.path, s.sql, s.checksum, s.no_transaction);
        Migration::new(
            self.version,
            self.name,
            script(self.up),
            self.down.map(script),
        )
    }
}

/// Checks the text of one script: not whitespace-only, known directives, and the transaction checks
/// of [`crate::transaction`]. Returns its directives, or every problem.
///
/// `text` should be BOM-stripped (a leading BOM is tolerated); `path` names the file in messages,
/// relative to the migrations directory. The runtime uses this for SQL it got elsewhere.
pub fn check_script(path: &str, text: &str) -> Result<Directives, Vec<Problem>> {
    if crate::checksum::strip_bom(text).trim().is_empty() {
        return Err(vec![Problem::file(
            path,
            format!(
                "`{path}` is empty (or only whitespace): write the migration's SQL, or remove the \
                 file (a file holding only a comment is accepted, as a deliberate no-op)"
            ),
        )]);
    }
    let (directives, mut problems) = directive::parse_all(path, text);
    problems.extend(transaction::check(path, text, directives.no_transaction));
    if problems.is_empty() {
        Ok(directives)
    } else {
        Err(problems)
    }
}

/// Reads and checks every migration in `dir`, sorted by version.
///
/// Collects every problem of every file rather than stopping at the first; problems are sorted by
/// file, then line, so the result is the same on every machine.
pub fn load_dir(dir: &Path) -> Result<Vec<LoadedMigration>, Vec<Problem>> {
    let shown = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let shown = shown.display();
    let dir_problem =
        |message: String| Err(vec![Problem::file(dir.display().to_string(), message)]);
    match fs::metadata(dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return dir_problem(format!(
                "migrations directory not found: looked for `{shown}`; create it or pass the \
                 right path (relative to the crate's Cargo.toml)"
            ));
        }
        Err(error) => {
            return dir_problem(format!(
                "cannot read the migrations directory `{shown}`: {error}; check its permissions"
            ));
        }
        Ok(metadata) if !metadata.is_dir() => {
            return dir_problem(format!(
                "the migrations path `{shown}` is not a directory; pass the directory that holds \
                 the migration files"
            ));
        }
        Ok(_) => {}
    }
    let entries = match list_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            return dir_problem(format!(
                "cannot list the migrations directory `{shown}`: {error}; check its permissions"
            ))
        }
    };

    let mut problems = Vec::new();
    let mut by_version: BTreeMap<i64, Vec<Entry>> = BTreeMap::new();
    for (file_name, abs) in entries {
        let Some(file_name) = valid_utf8_name(&file_name, "", &mut problems) else {
            continue;
        };
        if file_name.starts_with('.') || file_name.ends_with(".md") {
            continue;
        }
        let metadata = match fs::metadata(&abs) {
            Ok(metadata) => metadata,
            Err(error) => {
                problems.push(Problem::file(
                    &file_name,
                    format!(
                        "cannot read `{file_name}`: {error}; fix it (a broken symbolic link?) or \
                         remove it"
                    ),
                ));
                continue;
            }
        };
        let entry = if metadata.is_dir() {
            let rel = format!("{file_name}/");
            match name::parse_dir_name(&file_name) {
                Ok(parsed) => {
                    let (up, down) = load_migration_dir(&file_name, &abs, &mut problems);
                    Entry {
                        parsed,
                        rel,
                        up,
                        down,
                    }
                }
                Err(message) => {
                    problems.push(Problem::file(rel, message));
                    continue;
                }
            }
        } else if metadata.is_file() {
            match name::parse_file_name(&file_name) {
                Ok(parsed) => {
                    let script = load_script(file_name.clone(), abs, &mut problems);
                    let (up, down) = match parsed.kind {
                        EntryKind::Down => (None, script),
                        _ => (script, None),
                    };
                    Entry {
                        parsed,
                        rel: file_name,
                        up,
                        down,
                    }
                }
                Err(message) => {
                    problems.push(Problem::file(file_name, message));
                    continue;
                }
            }
        } else {
            problems.push(Problem::file(
                &file_name,
                format!(
                    "`{file_name}` is neither a file nor a directory; a migrations directory \
                     holds only migrations (plus ignored dotfiles and `*.md` files): move it out"
                ),
            ));
            continue;
        };
        by_version
            .entry(entry.parsed.version)
            .or_default()
            .push(entry);
    }

    let mut migrations = Vec::new();
    for (version, entries) in by_version {
        if let Some(migration) = assemble(version, entries, &mut problems) {
            migrations.push(migration);
        }
    }
    if problems.is_empty() {
        Ok(migrations)
    } else {
        problems.sort_by(|a, b| (&a.file, a.line, &a.message).cmp(&(&b.file, b.line, &b.message)));
        Err(problems)
    }
}

/// A file or directory that parsed as a migration name, with the scripts read from it (`None`
/// where reading failed; the problem is recorded).
struct Entry {
    parsed: ParsedName,
    /// Relative to the migrations directory; a directory's ends with `/`.
    rel: String,
    up: Option<LoadedScript>,
    down: Option<LoadedScript>,
}

/// The entries of `dir`, sorted by name so that every run reports in the same order.
fn list_dir(dir: &Path) -> std::io::Result<Vec<(std::ffi::OsString, PathBuf)>> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        entries.push((entry.file_name(), entry.path()));
    }
    entries.sort();
    Ok(entries)
}

/// The name as UTF-8, or `None` with a problem recorded; `parent` is the relative directory
/// (empty or ending in `/`).
fn valid_utf8_name(
    name: &std::ffi::OsStr,
    parent: &str,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    if let Some(name) = name.to_str() {
        return Some(name.to_string());
    }
    let rel = format!("{parent}{}", name.to_string_lossy());
    problems.push(Problem::file(
        &rel,
        format!(
            "`{rel}` has a name that is not valid UTF-8; rename it using ASCII letters, digits, \
             `_`, `-` and `.`"
        ),
    ));
    None
}

/// Reads `up.sql` and `down.sql` of the migration directory `dir_name`, refusing anything there
/// that is not allowed.
fn load_migration_dir(
    dir_name: &str,
    abs: &Path,
    problems: &mut Vec<Problem>,
) -> (Option<LoadedScript>, Option<LoadedScript>) {
    let parent = format!("{dir_name}/");
    let entries = match list_dir(abs) {
        Ok(entries) => entries,
        Err(error) => {
            problems.push(Problem::file(
                &parent,
                format!("cannot list `{parent}`: {error}; check its permissions"),
            ));
            return (None, None);
        }
    };
    let (mut up, mut down, mut saw_up) = (None, None, false);
    for (file_name, path) in entries {
        let Some(file_name) = valid_utf8_name(&file_name, &parent, problems) else {
            continue;
        };
        let rel = format!("{parent}{file_name}");
        let is_dir = path.is_dir();
        match file_name.as_str() {
            _ if file_name.starts_with('.') => {}
            "metadata.toml" | "metadata.yaml" => {}
            _ if file_name.ends_with(".md") && !is_dir => {}
            "up.sql" | "down.sql" if !is_dir => {
                let script = load_script(rel, path, problems);
                if file_name == "up.sql" {
                    saw_up = true;
                    up = script;
                } else {
                    down = script;
                }
            }
            _ => problems.push(Problem::file(
                &rel,
                format!(
                    "`{rel}` is not allowed in a migration directory, which holds `up.sql`, an \
                     optional `down.sql`, and optionally `metadata.toml`, `metadata.yaml` and \
                     `*.md` files; move it out, or merge its SQL into `{parent}up.sql`"
                ),
            )),
        }
    }
    if !saw_up {
        problems.push(Problem::file(
            &parent,
            format!(
                "migration directory `{parent}` has no `up.sql`: add `{parent}up.sql` (and \
                 optionally `{parent}down.sql`)"
            ),
        ));
    }
    (up, down)
}

/// Reads and checks one script; `None` (with the problems recorded) when it cannot be used.
fn load_script(rel: String, abs: PathBuf, problems: &mut Vec<Problem>) -> Option<LoadedScript> {
    let bytes = match fs::read(&abs) {
        Ok(bytes) => bytes,
        Err(error) => {
            problems.push(Problem::file(
                &rel,
                format!("cannot read `{rel}`: {error}; check that it is a readable file"),
            ));
            return None;
        }
    };
    let had_bom = bytes.starts_with(BOM);
    let body = &bytes[if had_bom { BOM.len() } else { 0 }..];
    let text = match std::str::from_utf8(body) {
        Ok(text) => text,
        Err(error) => {
            let valid = error.valid_up_to();
            // `valid` bytes are UTF-8, so counting lines in them is safe.
            let line =
                crate::lexer::line_of(std::str::from_utf8(&body[..valid]).unwrap_or(""), valid);
            let offset = valid + bytes.len() - body.len();
            problems.push(Problem::at_line(
                &rel,
                line,
                format!(
                    "`{rel}` line {line}: not valid UTF-8 (the first bad byte is at byte offset \
                     {offset}); save the file as UTF-8"
                ),
            ));
            return None;
        }
    };
    match check_script(&rel, text) {
        Ok(directives) => Some(LoadedScript {
            checksum: checksum_hex(&bytes),
            sql: text.to_string(),
            path: rel,
            abs_path: abs,
            had_bom,
            no_transaction: directives.no_transaction,
        }),
        Err(found) => {
            problems.extend(found);
            None
        }
    }
}

/// Builds the migration of one version from its entries, or records why it cannot be built.
fn assemble(
    version: i64,
    entries: Vec<Entry>,
    problems: &mut Vec<Problem>,
) -> Option<LoadedMigration> {
    let (downs, ups): (Vec<Entry>, Vec<Entry>) = entries
        .into_iter()
        .partition(|entry| entry.parsed.kind == EntryKind::Down);
    let Some(up) = ups.first() else {
        for down in &downs {
            let wanted = paired_up_name(&down.rel);
            problems.push(Problem::file(
                &down.rel,
                format!(
                    "`{}` has no up migration: add `{wanted}` next to it, or remove it",
                    down.rel
                ),
            ));
        }
        return None;
    };
    if ups.len() > 1 {
        // Which up a down belongs to is unclear until the duplicates are renumbered, so the
        // downs are checked then.
        for other in &ups[1..] {
            problems.push(duplicate(version, &up.rel, &other.rel));
        }
        return None;
    }
    let mut ok = true;
    let mut paired = None;
    for down in &downs {
        let wanted = paired_up_name(&down.rel);
        let message = match up.parsed.kind {
            EntryKind::Up if down.parsed.name == up.parsed.name => match &paired {
                None => {
                    paired = Some(down);
                    continue;
                }
                Some(first) => duplicate(version, &first.rel, &down.rel).message,
            },
            EntryKind::Up => format!(
                "`{}` does not match `{}`, the up migration of version {version}: rename one of \
                 them so that the names match",
                down.rel, up.rel
            ),
            EntryKind::Directory => format!(
                "`{}` is a down migration for version {version}, which is the directory `{}`: \
                 move it to `{}down.sql`",
                down.rel, up.rel, up.rel
            ),
            _ => format!(
                "`{}` has no up migration: version {version} is the up-only migration `{}`; \
                 rename that to `{wanted}` to pair them",
                down.rel, up.rel
            ),
        };
        ok = false;
        problems.push(Problem::file(&down.rel, message));
    }
    if !ok {
        return None;
    }
    let up_entry = ups.into_iter().next()?;
    let down = match (up_entry.parsed.kind, paired) {
        (EntryKind::Directory, _) => up_entry.down,
        (_, Some(paired)) => Some(paired.down.clone()?),
        (_, None) => None,
    };
    Some(LoadedMigration {
        version,
        name: up_entry.parsed.name,
        up: up_entry.up?,
        down,
    })
}

fn duplicate(version: i64, first: &str, second: &str) -> Problem {
    Problem::file(
        second,
        format!(
            "duplicate version {version}: `{first}` and `{second}` both use it; give one of them \
             another version (versions compare as numbers, so `01` and `1` are the same)"
        ),
    )
}

/// The up file a `.down.sql` file pairs with.
fn paired_up_name(down: &str) -> String {
    format!("{}.up.sql", down.strip_suffix(".down.sql").unwrap_or(down))
}
