//! A migration file added after a build is picked up by the next `cargo build` when the crate's
//! build script has the documented line `println!("cargo:rerun-if-changed=migrations");`.
//!
//! `include_str!` makes cargo track each embedded file but not the directory, so without that line
//! a new file would silently be missing from the binary. The test builds a throwaway crate that
//! depends on this one, runs it, adds a file, and builds and runs it again; then, as a control,
//! shows that without the build script an added file is missed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BUILD_RS: &str = r#"fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
"#;

pub(crate) const MAIN_RS: &str = r#"static MIGRATIONS: pgratchet::Migrations = pgratchet::embed_migrations!("migrations");

fn main() {
    println!("{}", MIGRATIONS.len());
}
"#;

#[test]
fn a_new_migration_file_is_picked_up_with_the_build_script_line() {
    let whole = Instant::now();
    let probe = Probe::new("rebuild-probe", &[]);
    probe.write("build.rs", BUILD_RS);
    probe.write("src/main.rs", MAIN_RS);
    probe.write("migrations/1_create_t.sql", "CREATE TABLE t (id int);\n");

    let started = Instant::now();
    assert_eq!(probe.build_and_run(), "1");
    let first = started.elapsed();

    probe.write(
        "migrations/2_add_column.sql",
        "ALTER TABLE t ADD COLUMN name text;\n",
    );
    let started = Instant::now();
    assert_eq!(
        probe.build_and_run(),
        "2",
        "with `cargo:rerun-if-changed=migrations`, the new migration file was not picked up"
    );
    let rebuild = started.elapsed();

    // The control: without the build script, the same kind of change is missed (the pitfall the
    // line fixes), so the assertion above is not passing for some other reason.
    std::fs::remove_file(probe.dir.join("build.rs")).expect("remove build.rs");
    assert_eq!(probe.build_and_run(), "2");
    probe.write(
        "migrations/3_add_index.sql",
        "CREATE INDEX t_name ON t (name);\n",
    );
    assert_eq!(
        probe.build_and_run(),
        "2",
        "without a build script cargo now rebuilds when a migration file is added; if that is \
         intended (e.g. the macro tracks the directory itself), update this control and the docs"
    );
    eprintln!(
        "rebuild probe: first build {first:.1?}, rebuild after adding a file {rebuild:.1?}, \
         whole test {:.1?}",
        whole.elapsed()
    );
}

/// A throwaway crate that depends on this one (with `features`), built into our own target
/// directory and removed when dropped.
///
/// Our own target directory, so what the probe shares with our build is not compiled again. Our
/// test build turns on more features (the dev-dependencies', `cli`), so on a clean target the
/// probe's first build still compiles tokio, tokio-postgres, the runtime and the facade once into
/// artifacts of their own (about 20 s of CPU); later runs reuse them. Cargo releases its lock on
/// the directory before it runs the tests, so this does not wait for ourselves. (trybuild's
/// `target/tests/trybuild` would share nothing: trybuild only `cargo check`s there, with its own
/// rustflags.)
pub(crate) struct Probe {
    name: &'static str,
    pub(crate) dir: PathBuf,
    target: PathBuf,
}

impl Probe {
    pub(crate) fn new(name: &'static str, features: &[&str]) -> Probe {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target = target_dir();
        let dir = target.join(name).join(std::process::id().to_string());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src")).expect("create the probe crate");
        std::fs::create_dir_all(dir.join("migrations")).expect("create its migrations directory");
        let manifest = format!(
            "[package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
             [dependencies]\npgratchet = {{ path = {root:?}, features = {features:?} }}\n\n\
             # Not a member of the `pgratchet` workspace around it.\n[workspace]\n",
            root = root.display().to_string(),
        );
        let probe = Probe { name, dir, target };
        probe.write("Cargo.toml", &manifest);
        // Our lockfile, so that `--offline` resolves to the versions our own build already has.
        std::fs::copy(root.join("Cargo.lock"), probe.dir.join("Cargo.lock"))
            .expect("copy Cargo.lock");
        probe
    }

    pub(crate) fn write(&self, path: &str, text: &str) {
        let path = self.dir.join(path);
        std::fs::write(&path, text)
            .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
    }

    /// Builds the probe, then runs it: its output.
    pub(crate) fn build_and_run(&self) -> String {
        if let Err(log) = self.build() {
            panic!("cargo build of the probe failed:\n{log}");
        }
        let binary = self.target.join("debug").join(format!(
            "{}{}",
            self.name,
            std::env::consts::EXE_SUFFIX
        ));
        let output = Command::new(&binary)
            .output()
            .unwrap_or_else(|error| panic!("run {}: {error}", binary.display()));
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout)
            .expect("utf-8 output")
            .trim()
            .to_string()
    }

    /// Builds the probe: cargo's messages when the build fails.
    pub(crate) fn build(&self) -> Result<(), String> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let log_path = self.dir.join("cargo-build.log");
        let log = std::fs::File::create(&log_path).expect("create the cargo log");
        let mut child = Command::new(cargo)
            .args(["build", "--offline", "--quiet"])
            .current_dir(&self.dir)
            .env("CARGO_TARGET_DIR", &self.target)
            // Set by the trybuild test running in parallel; here paths resolve from the probe's own
            // manifest, as in a user's crate.
            .env_remove("PGRATCHET_MANIFEST_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run cargo");
        // Should a cargo ever hold the target directory's lock while running tests, this build
        // would wait for it forever: fail instead (other builds may hold it for a while, hence
        // the margin).
        let deadline = Instant::now() + Duration::from_secs(600);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for cargo") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "cargo build of the probe did not finish in 10 minutes (waiting for a lock on {}?):\n{}",
                    self.target.display(),
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if status.success() {
            Ok(())
        } else {
            Err(std::fs::read_to_string(&log_path).unwrap_or_default())
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The target directory this test binary was built in (`<target>/<profile>/deps/it-<hash>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .expect("the test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}
