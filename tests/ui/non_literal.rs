const DIR: &str = "tests/ui/fixtures/duplicate_versions";

static A: migrate::Migrations = migrate::embed_migrations!(DIR);
static B: migrate::Migrations = migrate::embed_migrations!(concat!("tests/", "migrations"));
static C: migrate::Migrations = migrate::embed_migrations!();

fn main() {}
