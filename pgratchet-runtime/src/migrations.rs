//! [`Migrations`]: an ordered set of migrations, embedded or loaded from a directory.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

use pgratchet_core::Problem;

use crate::{Error, Migration};

/// An ordered set of migrations with unique versions: what `embed_migrations!` expands to, or
/// what [`Migrations::from_dir`] reads at run time.
#[derive(Clone)]
pub struct Migrations {
    list: Cow<'static, [Migration]>,
    /// Computed on the first run and kept: a service checks the same set at every start.
    fingerprint: OnceLock<i128>,
    /// Where an embedded set was read, for a review of it at run time (`lint` on a service binary).
    origin: Option<Origin>,
}

/// The directory `embed_migrations!` read, as its literal names it, and the text of its
/// `.migrate.toml` (embedded with the feature `lint`).
#[derive(Clone, Copy, Debug)]
struct Origin {
    dir: &'static str,
    lint_config: Option<&'static str>,
}

impl Migrations {
    /// Wraps static data already checked and sorted by `embed_migrations!`.
    #[doc(hidden)]
    pub const fn from_static(list: &'static [Migration]) -> Self {
        Migrations {
            list: Cow::Borrowed(list),
            fingerprint: OnceLock::new(),
            origin: None,
        }
    }

    /// Like [`from_static`](Self::from_static), also keeping the directory the macro read (as its
    /// literal names it) and the text of its `.migrate.toml`, so the set is reviewed at run time
    /// the way the build reviewed it.
    #[doc(hidden)]
    pub const fn from_static_reviewed(
        list: &'static [Migration],
        dir: &'static str,
        lint_config: Option<&'static str>,
    ) -> Self {
        Migrations {
            list: Cow::Borrowed(list),
            fingerprint: OnceLock::new(),
            origin: Some(Origin { dir, lint_config }),
        }
    }

    /// For an embedded set built with the feature `lint`: the directory the macro read, as its
    /// literal names it, and the text of its `.migrate.toml` if it had one.
    #[doc(hidden)]
    pub fn reviewed_from(&self) -> Option<(&'static str, Option<&'static str>)> {
        self.origin.map(|origin| (origin.dir, origin.lint_config))
    }

    /// Reads a migrations directory at run time with the same grammar, checks and checksums as
    /// `embed_migrations!`; every problem is returned in [`Error::Load`].
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, Error> {
        let loaded = pgratchet_core::loader::load_dir(dir.as_ref()).map_err(Error::Load)?;
        Ok(Migrations::owned(
            loaded
                .into_iter()
                .map(pgratchet_core::loader::LoadedMigration::into_migration)
                .collect(),
        ))
    }

    /// A set built in code (e.g. generated migrations), sorted by version, with the checks
    /// `embed_migrations!` and [`from_dir`](Self::from_dir) make: a valid version and name, no
    /// two migrations with one version, and each script's text (known directives, matching its
    /// no-transaction flag; no statement that cannot run the way it asks to be run, such as a
    /// `COMMIT` in a transactional script). Every problem is returned in [`Error::Load`].
    pub fn new(mut list: Vec<Migration>) -> Result<Self, Error> {
        list.sort_by_key(Migration::version);
        let mut problems: Vec<Problem> = list.iter().flat_map(migration_problems).collect();
        let duplicates = list
            .windows(2)
            .filter(|pair| pair[0].version() == pair[1].version())
            .map(|pair| {
                Problem::file(
                    pair[1].up().path(),
                    format!(
                        "duplicate migration version {}: `{}` and `{}`; give one of them another version",
                        pair[0].version(),
                        pair[0].up().path(),
                        pair[1].up().path()
                    ),
                )
            });
        problems.extend(duplicates);
        if !problems.is_empty() {
            return Err(Error::Load(problems));
        }
        Ok(Migrations::owned(list))
    }

    fn owned(list: Vec<Migration>) -> Self {
        Migrations {
            list: Cow::Owned(list),
            fingerprint: OnceLock::new(),
            origin: None,
        }
    }

    /// What the history table's fingerprint is once every migration here is applied.
    pub(crate) fn fingerprint(&self) -> i128 {
        *self
            .fingerprint
            .get_or_init(|| crate::fingerprint::of(&self.list))
    }

    /// The migrations, in version order.
    pub fn iter(&self) -> std::slice::Iter<'_, Migration> {
        self.list.iter()
    }

    /// The migrations as a slice, in version order.
    pub fn as_slice(&self) -> &[Migration] {
        &self.list
    }

    /// How many migrations there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The migration with this version.
    pub fn get(&self, version: i64) -> Option<&Migration> {
        self.list
            .binary_search_by_key(&version, Migration::version)
            .ok()
            .map(|index| &self.list[index])
    }
}

/// What the loader would say of a migration built in code.
fn migration_problems(migration: &Migration) -> Vec<Problem> {
    let mut problems = Vec::new();
    let up = migration.up();
    if migration.version() < 0 {
        problems.push(Problem::file(
            up.path(),
            format!(
                "migration version {} is negative; versions are numbers from 0",
                migration.version()
            ),
        ));
    } else if let Err(message) = pgratchet_core::name::parse_file_name(&format!(
        "{}_{}.sql",
        migration.version(),
        migration.name()
    )) {
        problems.push(Problem::file(up.path(), message));
    }
    for script in std::iter::once(up).chain(migration.down()) {
        // An unknown directive is reported by the checks below.
        let said = pgratchet_core::directive::parse(script.path(), script.sql())
            .map_or(script.no_transaction(), |directives| {
                directives.no_transaction
            });
        if said != script.no_transaction() {
            // The checks below would read the file the way its directives say, not the way it
            // would run: this is the problem to fix first.
            problems.push(Problem::file(
                script.path(),
                format!(
                    "`{}` is built with no_transaction = {}, but its directives say {}: put \
                     `-- migrate:no-transaction` on its first line exactly when it must run \
                     outside a transaction",
                    script.path(),
                    script.no_transaction(),
                    said
                ),
            ));
        } else if let Err(found) = pgratchet_core::loader::check_script(script.path(), script.sql())
        {
            problems.extend(found);
        }
    }
    problems
}

impl<'a> IntoIterator for &'a Migrations {
    type Item = &'a Migration;
    type IntoIter = std::slice::Iter<'a, Migration>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl fmt::Debug for Migrations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.list.iter()).finish()
    }
}

/// Equal when they hold the same migrations (whether a fingerprint was computed yet does not
/// matter).
impl PartialEq for Migrations {
    fn eq(&self, other: &Self) -> bool {
        self.list == other.list
    }
}

impl Eq for Migrations {}
