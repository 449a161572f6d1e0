static M: migrate::Migrations = migrate::embed_migrations!("tests/ui/fixtures/non_utf8");

fn main() {}
