//! Every build-time error class of CONTRACT.md is a compile error spanned on the macro's literal:
//! one trybuild case per class in `tests/ui/*.rs`, fixtures in `tests/ui/fixtures/<case>/`.
//!
//! The review's cases are in `tests/ui/lint/`, fixtures in `tests/ui/lint/fixtures/<case>/`.
//!
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test -p pgratchet-ui-tests`, then
//! read every changed one: they depend on the rustc version.

use std::path::Path;

#[test]
fn compile_errors() {
    // The cases name their fixtures as a crate at the repository root would: `tests/ui/...`.
    // trybuild compiles each case in its own crate under `target/tests/trybuild/`, where
    // `CARGO_MANIFEST_DIR` points elsewhere, so the macro reads this override first; the cargo and
    // rustc that trybuild spawns inherit it.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap_or(root);
    std::env::set_var("PGRATCHET_MANIFEST_DIR", &root);
    let cases = trybuild::TestCases::new();
    cases.compile_fail("*.rs");
    // The review (feature `lint`): `cargo test -p pgratchet-ui-tests --features lint`.
    if cfg!(feature = "lint") {
        for case in ["denied", "allow_without_reason", "unused_allow"] {
            cases.compile_fail(format!("lint/{case}.rs"));
        }
        cases.pass("lint/allowed.rs");
        cases.pass("lint/start_after.rs");
    } else {
        // Off by default, the review costs no build error: the same denied finding compiles.
        cases.pass("lint/off.rs");
    }
}
