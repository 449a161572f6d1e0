use std::borrow::Cow;

/// One SQL file of a migration (its up or its down half), ready to run.
///
/// Built by `embed_migrations!` as static data, or by [`crate::loader`] at run time.
#[derive(Clone, PartialEq, Eq)]
pub struct Script {
    path: Cow<'static, str>,
    sql: Cow<'static, str>,
    checksum: Cow<'static, str>,
    no_transaction: bool,
}

impl Script {
    /// A script from static parts; used by the code `embed_migrations!` generates.
    ///
    /// `path` is relative to the migrations directory, `sql` is the BOM-stripped file text and
    /// `checksum` its [`crate::checksum::checksum_hex`].
    pub const fn from_static(
        path: &'static str,
        sql: &'static str,
        checksum: &'static str,
        no_transaction: bool,
    ) -> Self {
        Script {
            path: Cow::Borrowed(path),
            sql: Cow::Borrowed(sql),
            checksum: Cow::Borrowed(checksum),
            no_transaction,
        }
    }

    /// A script from owned parts (the run-time directory loader, or SQL stored in the history).
    pub fn new(
        path: impl Into<Cow<'static, str>>,
        sql: impl Into<Cow<'static, str>>,
        no_transaction: bool,
    ) -> Self {
        let sql = sql.into();
        let checksum = Cow::Owned(crate::checksum::checksum_hex(sql.as_bytes()));
        Script {
            path: path.into(),
            sql,
            checksum,
            no_transaction,
        }
    }

    /// A script from the loader, keeping the checksum it computed from the file's bytes (so a
    /// file starting with two BOMs, of which only one is stripped, keeps its checksum).
    pub(crate) fn loaded(
        path: String,
        sql: String,
        checksum: String,
        no_transaction: bool,
    ) -> Self {
        Script {
            path: Cow::Owned(path),
            sql: Cow::Owned(sql),
            checksum: Cow::Owned(checksum),
            no_transaction,
        }
    }

    /// The file's path relative to the migrations directory, e.g. `3_users/up.sql`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The SQL text sent to the server: the file with one leading UTF-8 BOM removed.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// SHA-256 of the normalised file (see [`crate::checksum`]), lowercase hex.
    pub fn checksum(&self) -> &str {
        &self.checksum
    }

    /// Whether the file opted out of the per-migration transaction
    /// (`-- migrate:no-transaction`).
    pub fn no_transaction(&self) -> bool {
        self.no_transaction
    }
}

impl std::fmt::Debug for Script {
    // The SQL itself is left out: a Debug of 1,000 migrations should stay readable.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script")
            .field("path", &self.path)
            .field("checksum", &self.checksum)
            .field("no_transaction", &self.no_transaction)
            .field("bytes", &self.sql.len())
            .finish()
    }
}

/// A migration: a version, a name, the up script and an optional down script.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Migration {
    version: i64,
    name: Cow<'static, str>,
    up: Script,
    down: Option<Script>,
}

impl Migration {
    /// A migration from static parts; used by the code `embed_migrations!` generates.
    pub const fn from_static(
        version: i64,
        name: &'static str,
        up: Script,
        down: Option<Script>,
    ) -> Self {
        Migration {
            version,
            name: Cow::Borrowed(name),
            up,
            down,
        }
    }

    /// A migration from owned parts.
    pub fn new(
        version: i64,
        name: impl Into<Cow<'static, str>>,
        up: Script,
        down: Option<Script>,
    ) -> Self {
        Migration {
            version,
            name: name.into(),
            up,
            down,
        }
    }

    /// The version number (compared as a number; gaps are normal).
    pub fn version(&self) -> i64 {
        self.version
    }

    /// The name part of the filename, e.g. `create_users`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The up script.
    pub fn up(&self) -> &Script {
        &self.up
    }

    /// The down script, if the migration is reversible.
    pub fn down(&self) -> Option<&Script> {
        self.down.as_ref()
    }

    /// The up SQL (BOM-stripped file text).
    pub fn up_sql(&self) -> &str {
        self.up.sql()
    }

    /// The down SQL, if any.
    pub fn down_sql(&self) -> Option<&str> {
        self.down.as_ref().map(Script::sql)
    }

    /// The up script's checksum: the one recorded in the history table.
    pub fn checksum(&self) -> &str {
        self.up.checksum()
    }

    /// Whether the up script runs outside a transaction.
    pub fn no_transaction(&self) -> bool {
        self.up.no_transaction()
    }
}
