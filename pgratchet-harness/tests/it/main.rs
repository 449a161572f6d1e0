//! Integration tests of pgratchet-harness: one binary, one module per concern.

mod bouncer;
mod harness;

/// The `holder` example, the child process of the cleanup tests (cargo builds examples with the
/// tests; it is next to this binary's directory).
fn holder() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("this test binary");
    let target = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>/deps");
    let holder = target.join("examples").join("holder");
    assert!(
        holder.is_file(),
        "{} is missing: run the tests with cargo, which builds the examples",
        holder.display()
    );
    holder
}
