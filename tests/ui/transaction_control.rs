static M: migrate::Migrations = migrate::embed_migrations!("tests/ui/fixtures/transaction_control");

fn main() {}
