static M: pgratchet::Migrations = pgratchet::embed_migrations!("tests/ui/fixtures/bad_name_directory");

fn main() {}
