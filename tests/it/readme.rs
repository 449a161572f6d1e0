//! The README's promises about itself: its two commands are the ones CI runs, and the names it
//! tells a user to type are this package's.

use std::path::Path;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The first fenced `sh` block of the README: the two commands a fresh machine runs.
fn readme_commands() -> Vec<String> {
    let readme = read("README.md");
    let block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README.md starts with a ```sh block of commands");
    block.lines().map(str::to_owned).collect()
}

#[test]
fn the_readme_test_command_is_what_ci_runs() {
    let commands = readme_commands();
    assert_eq!(commands.len(), 2, "{commands:?}");
    assert_eq!(commands[0], "cargo run -p collector");
    let run = read(".ci/run");
    let ci = run
        .lines()
        .find_map(|line| line.strip_prefix("TEST_CMD='"))
        .and_then(|rest| rest.strip_suffix('\''))
        .expect(".ci/run sets TEST_CMD='...'");
    assert_eq!(commands[1], ci, "README.md and .ci/run disagree");
}

#[test]
fn the_readme_names_this_package() {
    let name = env!("CARGO_PKG_NAME");
    let version = format!(
        "{}.{}",
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR")
    );
    let readme = read("README.md");
    assert!(
        readme.contains(&format!("\n{name} = \"{version}\"\n")),
        "the README's dependency line is not `{name} = \"{version}\"`"
    );
    assert!(readme.contains(&format!(
        "`cargo install {name} --features cli` gives `{name}`"
    )));
    assert!(readme.contains(&format!("Rust {} or newer", env!("CARGO_PKG_RUST_VERSION"))));
    // The old working name belongs to other projects on crates.io.
    for stale in ["migrate::", "migrate = ", "cargo install migrate"] {
        assert!(!readme.contains(stale), "README.md still says `{stale}`");
    }
}
