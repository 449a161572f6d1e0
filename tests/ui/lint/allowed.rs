// Compiles: each denied finding has an allow that says why.
static M: pgratchet::Migrations = pgratchet::embed_migrations!("tests/ui/lint/fixtures/allowed");

fn main() {
    assert!(M.len() > 1);
}
