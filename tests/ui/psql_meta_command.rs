static M: migrate::Migrations = migrate::embed_migrations!("tests/ui/fixtures/psql_meta_command");

fn main() {}
