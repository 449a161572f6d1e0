static M: migrate::Migrations = migrate::embed_migrations!("tests/ui/fixtures/bad_migration_directory");

fn main() {}
