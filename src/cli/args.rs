//! The command line's grammar (CONTRACT.md, "CLI").

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Apply, inspect and repair PostgreSQL migrations.
#[derive(Debug, Parser)]
#[command(name = "pgratchet", version, about, disable_help_subcommand = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The migrations directory (ignored by a binary that embeds its migrations).
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// The database to migrate (default: $DATABASE_URL). libpq's sslmode values are understood.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "DATABASE_URL",
        hide_env_values = true
    )]
    pub(crate) database_url: Option<String>,
    /// The history table's schema (default: the connection's current schema).
    #[arg(long, global = true, value_name = "S")]
    pub(crate) schema: Option<String>,
    /// The history table (default: schema_migrations).
    #[arg(long, global = true, value_name = "T")]
    pub(crate) table: Option<String>,
    /// The URL goes through a transaction-pooling PgBouncer: no session lock, no named statements.
    #[arg(long, global = true)]
    pub(crate) transaction_pooler: bool,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Every migration's state; with --check, exit 3 when some are pending.
    Status {
        /// Exit 3 when migrations are pending (4 when validation fails).
        #[arg(long)]
        check: bool,
    },
    /// Apply pending migrations.
    Up {
        /// Apply up to and including this version.
        #[arg(long, value_name = "V")]
        target: Option<i64>,
        /// Show what would be applied; change nothing.
        #[arg(long, conflicts_with = "sql")]
        dry_run: bool,
        /// Print the exact SQL script that would run (for review or psql); change nothing.
        #[arg(long)]
        sql: bool,
        /// Apply all pending migrations in one transaction: all or nothing.
        #[arg(long)]
        grouped: bool,
        /// A shell command to run first (e.g. a backup); it gets PGRATCHET_DATABASE_URL and
        /// PGRATCHET_PENDING (comma-separated versions) in its environment. Failing, it stops the run.
        #[arg(long, value_name = "CMD")]
        before_run: Option<String>,
    },
    /// Roll back applied migrations, newest first.
    Down {
        /// Roll back everything above this version (`--target 0` keeps a version 0).
        #[arg(
            long,
            value_name = "V",
            required_unless_present_any = ["steps", "all"],
            conflicts_with_all = ["steps", "all"]
        )]
        target: Option<i64>,
        /// Roll back the newest N.
        #[arg(long, value_name = "N", conflicts_with = "all")]
        steps: Option<usize>,
        /// Roll back every applied migration, version 0 included.
        #[arg(long)]
        all: bool,
        /// Show what would be rolled back; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Go up or down to a version.
    To {
        /// The version to end at.
        version: i64,
        /// Do not ask for confirmation when going down.
        #[arg(long)]
        yes: bool,
    },
    /// Record migrations up to V as applied without running them (a schema older than its history).
    Baseline {
        /// The newest version the existing schema already has.
        version: i64,
    },
    /// Clear failed/running records and re-stamp checksums of deliberately edited files.
    Repair {
        /// The versions to repair.
        #[arg(
            long = "version",
            value_name = "V",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        versions: Vec<i64>,
        /// Repair every failed, running and modified migration.
        #[arg(long)]
        all: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Check the migrations against the database (exit 4 on a problem); change nothing.
    Validate,
    /// The audit trail: every apply, failure, rollback, baseline and repair.
    History,
    /// On a scratch database, apply, roll back and re-apply each migration, comparing the schema.
    Redo,
    /// Review the migrations for dangerous statements (squawk's rules, `.migrate.toml`); exit 4
    /// when a denied rule fires. Needs the `lint` feature; no database.
    Lint {
        /// `text`, or `github` for GitHub Actions annotations (`--json` gives JSON).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Create a new migration file in the next version.
    New {
        /// The migration's name (ASCII letters, digits, `_`, `-`, `.`).
        name: String,
        /// Create an `.up.sql` + `.down.sql` pair.
        #[arg(long)]
        reversible: bool,
        /// The filename style (default: the style of the newest existing migration).
        #[arg(long, value_enum)]
        style: Option<Style>,
        /// Use a UTC timestamp (YYYYMMDDHHMMSS) as the version instead of the next number.
        #[arg(long)]
        timestamp: bool,
    },
}

/// Output formats of `lint` besides `--json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// `file:line: rule (severity): message`, then the scores.
    Text,
    /// `::error file=..,line=..::message` workflow commands.
    Github,
}

/// Filename styles of `new`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Style {
    /// `<version>_<name>.sql`
    Flat,
    /// `V<version>__<name>.sql`
    Flyway,
    /// `<version>_<name>.up.sql` and `.down.sql`
    Pair,
    /// `<version>_<name>/up.sql` (and `down.sql`)
    Dir,
}
