static M: pgratchet::Migrations = pgratchet::embed_migrations!("tests/ui/fixtures/duplicate_versions");

fn main() {}
