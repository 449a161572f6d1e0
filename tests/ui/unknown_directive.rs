static M: migrate::Migrations = migrate::embed_migrations!("tests/ui/fixtures/unknown_directive");

fn main() {}
