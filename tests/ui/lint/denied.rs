static M: pgratchet::Migrations = pgratchet::embed_migrations!("tests/ui/lint/fixtures/denied");

fn main() {}
