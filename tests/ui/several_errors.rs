static M: migrate::Migrations = migrate::embed_migrations!("tests/ui/fixtures/several_errors");

fn main() {}
