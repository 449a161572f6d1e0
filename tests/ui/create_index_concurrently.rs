static M: pgratchet::Migrations = pgratchet::embed_migrations!("tests/ui/fixtures/create_index_concurrently");

fn main() {}
