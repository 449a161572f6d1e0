static M: pgratchet::Migrations = pgratchet::embed_migrations!("tests/ui/fixtures/unknown_directive");

fn main() {}
