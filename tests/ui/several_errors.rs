static M: pgratchet::Migrations = pgratchet::embed_migrations!("tests/ui/fixtures/several_errors");

fn main() {}
