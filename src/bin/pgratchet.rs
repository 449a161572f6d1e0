//! The `pgratchet` command line on a migrations directory; `pgratchet --help` lists the commands.

fn main() -> std::process::ExitCode {
    pgratchet::cli::main_for_directory()
}
