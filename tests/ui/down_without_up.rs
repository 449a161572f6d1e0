static M: pgratchet::Migrations = pgratchet::embed_migrations!("tests/ui/fixtures/down_without_up");

fn main() {}
