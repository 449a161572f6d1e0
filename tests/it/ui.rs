//! Every build-time error class of CONTRACT.md is a compile error spanned on the macro's literal:
//! one trybuild case per class in `tests/ui/`, fixtures in `tests/ui/fixtures/<case>/`.
//!
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test -p migrate --test it ui`,
//! then read every changed one: they depend on the rustc version.

#[test]
fn compile_errors() {
    // trybuild compiles each case in its own crate under `target/tests/trybuild/`, so the
    // fixture paths would resolve against the wrong `CARGO_MANIFEST_DIR`; the macro reads this
    // override first. The cargo and rustc that trybuild spawns inherit it.
    std::env::set_var("MIGRATE_MANIFEST_DIR", env!("CARGO_MANIFEST_DIR"));
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
