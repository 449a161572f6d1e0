static M: migrate::Migrations = migrate::embed_migrations!("tests/ui/fixtures/duplicate_versions");

fn main() {}
