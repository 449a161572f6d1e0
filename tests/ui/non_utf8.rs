static M: pgratchet::Migrations = pgratchet::embed_migrations!("tests/ui/fixtures/non_utf8");

fn main() {}
