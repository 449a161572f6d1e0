static M: migrate::Migrations = migrate::embed_migrations!("tests/ui/fixtures/bad_name_directory");

fn main() {}
