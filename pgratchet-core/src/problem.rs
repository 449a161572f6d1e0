//! [`Problem`]: one thing wrong with one migration file.

use std::fmt;

/// One thing wrong with one file of a migrations directory: which file, where, and how to fix it.
///
/// The macro turns each into a compile error; the run-time loader returns them all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file, relative to the migrations directory (or the directory itself, for a missing one).
    pub file: String,
    /// The 1-based line the problem is on, when it is about the file's content.
    pub line: Option<u32>,
    /// What is wrong and how to fix it, lowercase, naming the file (and the line when there is one)
    /// so that it reads well on its own, e.g.
    /// "invalid migration filename `V1_init.sql`: after `V<version>` use a double underscore, e.g. `V1__init.sql`".
    pub message: String,
}

impl Problem {
    /// A problem with a file as a whole (its name, its encoding).
    pub fn file(file: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            file: file.into(),
            line: None,
            message: message.into(),
        }
    }

    /// A problem at a line of a file.
    pub fn at_line(file: impl Into<String>, line: u32, message: impl Into<String>) -> Self {
        Problem {
            file: file.into(),
            line: Some(line),
            message: message.into(),
        }
    }
}

/// Shows the message alone: it already names the file (and the line), so it reads the same in a
/// compile error, a log line and the CLI.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}
