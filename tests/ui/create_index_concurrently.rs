static M: migrate::Migrations = migrate::embed_migrations!("tests/ui/fixtures/create_index_concurrently");

fn main() {}
