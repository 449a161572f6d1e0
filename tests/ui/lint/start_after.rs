// Compiles: version 2 adds a required field, but `start-after = 2` leaves it out of the review.
static M: pgratchet::Migrations = pgratchet::embed_migrations!("tests/ui/lint/fixtures/start_after");

fn main() {
    assert!(M.len() > 1);
}
