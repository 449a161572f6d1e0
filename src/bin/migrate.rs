//! The `migrate` command line on a migrations directory; `migrate --help` lists the commands.

fn main() -> std::process::ExitCode {
    migrate::cli::main_for_directory()
}
