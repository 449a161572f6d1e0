static M: migrate::Migrations = migrate::embed_migrations!("tests/ui/fixtures/whitespace_only");

fn main() {}
