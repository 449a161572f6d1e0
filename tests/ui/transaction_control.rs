static M: pgratchet::Migrations = pgratchet::embed_migrations!("tests/ui/fixtures/transaction_control");

fn main() {}
