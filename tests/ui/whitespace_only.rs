static M: pgratchet::Migrations = pgratchet::embed_migrations!("tests/ui/fixtures/whitespace_only");

fn main() {}
