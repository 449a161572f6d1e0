// No such directory: the error names the path the macro looked for.
static M: pgratchet::Migrations = pgratchet::embed_migrations!("tests/ui/fixtures/missing_directory");

fn main() {}
