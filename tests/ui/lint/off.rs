// Without the feature `lint`, `.migrate.toml` denies nothing: the set of `denied.rs` compiles.
static M: pgratchet::Migrations = pgratchet::embed_migrations!("tests/ui/lint/fixtures/denied");

fn main() {
    assert_eq!(M.len(), 2);
}
