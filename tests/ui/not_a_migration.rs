static M: pgratchet::Migrations = pgratchet::embed_migrations!("tests/ui/fixtures/not_a_migration");

fn main() {}
