static M: pgratchet::Migrations = pgratchet::embed_migrations!("tests/ui/fixtures/releases_the_lock");

fn main() {}
