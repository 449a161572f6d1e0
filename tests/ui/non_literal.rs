const DIR: &str = "tests/ui/fixtures/duplicate_versions";

static A: pgratchet::Migrations = pgratchet::embed_migrations!(DIR);
static B: pgratchet::Migrations = pgratchet::embed_migrations!(concat!("tests/", "migrations"));
static C: pgratchet::Migrations = pgratchet::embed_migrations!();

fn main() {}
