static M: pgratchet::Migrations = pgratchet::embed_migrations!("tests/ui/lint/fixtures/allow_without_reason");

fn main() {}
