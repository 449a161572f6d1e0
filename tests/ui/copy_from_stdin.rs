static M: migrate::Migrations = migrate::embed_migrations!("tests/ui/fixtures/copy_from_stdin");

fn main() {}
