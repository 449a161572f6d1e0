static M: pgratchet::Migrations = pgratchet::embed_migrations!("tests/ui/fixtures/psql_meta_command");

fn main() {}
