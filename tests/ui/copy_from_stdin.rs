static M: pgratchet::Migrations = pgratchet::embed_migrations!("tests/ui/fixtures/copy_from_stdin");

fn main() {}
