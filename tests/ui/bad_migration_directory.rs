static M: pgratchet::Migrations = pgratchet::embed_migrations!("tests/ui/fixtures/bad_migration_directory");

fn main() {}
