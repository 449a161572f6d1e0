//! `pgratchet new`: the next migration file, in the directory's style.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use pgratchet_core::name::{parse_dir_name, parse_file_name, EntryKind};

use super::args::Style;

/// Versions this long are timestamps (`YYYYMMDDHHMMSS` has 14 digits).
const TIMESTAMP_DIGITS: usize = 14;

struct Newest {
    version: i64,
    digits: usize,
    style: Style,
}

/// Creates the files; returns their paths.
pub(crate) fn create(
    dir: &Path,
    name: &str,
    reversible: bool,
    style: Option<Style>,
    timestamp: bool,
) -> Result<Vec<PathBuf>, String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(format!(
            "invalid migration name {name:?}: use ASCII letters, digits, `_`, `-` and `.`"
        ));
    }
    std::fs::create_dir_all(dir)
        .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    let newest = newest(dir)?;
    let use_timestamp = timestamp
        || newest
            .as_ref()
            .is_some_and(|newest| newest.digits >= TIMESTAMP_DIGITS);
    let version = if use_timestamp {
        let now = utc_timestamp();
        match &newest {
            Some(newest) if newest.version >= now.parse::<i64>().unwrap_or(0) => {
                (newest.version + 1).to_string()
            }
            _ => now,
        }
    } else {
        let (next, width) = newest
            .as_ref()
            .map_or((1, 1), |newest| (newest.version + 1, newest.digits));
        format!("{next:0width$}")
    };
    let style = style
        .or(reversible.then_some(Style::Pair))
        .or(newest.as_ref().map(|newest| newest.style))
        .unwrap_or(Style::Flat);
    let style = match style {
        Style::Flat | Style::Flyway if reversible => Style::Pair,
        other => other,
    };
    let up = "-- Write the migration here. Add `-- migrate:no-transaction` as the first line for\n-- statements that cannot run in a transaction (e.g. CREATE INDEX CONCURRENTLY).\n";
    let down = format!("-- Undo `{name}` here.\n");
    let files: Vec<(PathBuf, String)> = match style {
        Style::Flat => vec![(dir.join(format!("{version}_{name}.sql")), up.to_owned())],
        Style::Flyway => vec![(dir.join(format!("V{version}__{name}.sql")), up.to_owned())],
        Style::Pair => vec![
            (dir.join(format!("{version}_{name}.up.sql")), up.to_owned()),
            (dir.join(format!("{version}_{name}.down.sql")), down),
        ],
        Style::Dir => {
            let folder = dir.join(format!("{version}_{name}"));
            std::fs::create_dir(&folder)
                .map_err(|error| format!("cannot create {}: {error}", folder.display()))?;
            let mut files = vec![(folder.join("up.sql"), up.to_owned())];
            if reversible {
                files.push((folder.join("down.sql"), down));
            }
            files
        }
    };
    for (path, text) in &files {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|mut file| std::io::Write::write_all(&mut file, text.as_bytes()))
            .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
    }
    Ok(files.into_iter().map(|(path, _)| path).collect())
}

fn newest(dir: &Path) -> Result<Option<Newest>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|error| format!("cannot read {}: {error}", dir.display()))?;
    let mut newest: Option<Newest> = None;
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
        let parsed = if is_dir {
            parse_dir_name(&file_name)
        } else {
            parse_file_name(&file_name)
        };
        let Ok(parsed) = parsed else { continue };
        let flyway = file_name.starts_with('V');
        let digits = file_name
            .trim_start_matches('V')
            .chars()
            .take_while(char::is_ascii_digit)
            .count();
        let style = match parsed.kind {
            EntryKind::Directory => Style::Dir,
            EntryKind::Up | EntryKind::Down => Style::Pair,
            EntryKind::Flat if flyway => Style::Flyway,
            EntryKind::Flat => Style::Flat,
        };
        if newest
            .as_ref()
            .is_none_or(|newest| parsed.version > newest.version)
        {
            newest = Some(Newest {
                version: parsed.version,
                digits,
                style,
            });
        }
    }
    Ok(newest)
}

/// `YYYYMMDDHHMMSS` in UTC.
fn utc_timestamp() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Howard Hinnant's days-to-civil conversion.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(label: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("pgratchet-new-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn names(paths: &[PathBuf], dir: &Path) -> Vec<String> {
        paths
            .iter()
            .map(|path| {
                path.strip_prefix(dir)
                    .expect("inside")
                    .display()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn creates_each_style_in_sequence() {
        let dir = scratch("styles");
        let created = create(&dir, "init", false, None, false).expect("flat");
        assert_eq!(names(&created, &dir), ["1_init.sql"]);
        let created = create(&dir, "users", false, Some(Style::Flyway), false).expect("flyway");
        assert_eq!(names(&created, &dir), ["V2__users.sql"]);
        let created = create(&dir, "orders", true, None, false).expect("pair");
        assert_eq!(
            names(&created, &dir),
            ["3_orders.up.sql", "3_orders.down.sql"]
        );
        let created = create(&dir, "audit", true, Some(Style::Dir), false).expect("dir");
        assert_eq!(
            names(&created, &dir),
            ["4_audit/up.sql", "4_audit/down.sql"]
        );
        // The newest file's style is the default.
        let created = create(&dir, "more", false, None, false).expect("dir again");
        assert_eq!(names(&created, &dir), ["5_more/up.sql"]);
        // Everything created is a valid migrations directory.
        let loaded = pgratchet_core::loader::load_dir(&dir).expect("valid");
        assert_eq!(loaded.len(), 5);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn keeps_zero_padding_and_timestamps() {
        let dir = scratch("padding");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("0007_x.sql"), "SELECT 1;").expect("write");
        let created = create(&dir, "y", false, None, false).expect("padded");
        assert_eq!(names(&created, &dir), ["0008_y.sql"]);
        let created = create(&dir, "z", false, None, true).expect("timestamp");
        let name = names(&created, &dir).remove(0);
        assert_eq!(name.len(), "YYYYMMDDHHMMSS_z.sql".len(), "{name}");
        assert!(name.starts_with("20"), "{name}");
        assert!(create(&dir, "bad name", false, None, false).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
