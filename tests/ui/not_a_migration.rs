static M: migrate::Migrations = migrate::embed_migrations!("tests/ui/fixtures/not_a_migration");

fn main() {}
