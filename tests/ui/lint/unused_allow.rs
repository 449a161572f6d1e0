static M: pgratchet::Migrations = pgratchet::embed_migrations!("tests/ui/lint/fixtures/unused_allow");

fn main() {}
