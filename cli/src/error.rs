//! The two ways the CLI fails, and their exit codes.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// Bad flags, environment values or URLs: nothing was started. Exit 2, as clap does.
    Usage(String),
    /// The server or client stopped with an error. Exit 1.
    Run(String),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Run(_) => 1,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = match self {
            CliError::Usage(m) | CliError::Run(m) => m,
        };
        // The contract is one line on stderr; an error text from deeper down (an io::Error, a
        // peer's message) must not break it.
        write!(f, "{}", one_line(msg))
    }
}

impl std::error::Error for CliError {}

/// Collapse line breaks, control characters and runs of whitespace so a message prints as
/// one line.
pub fn one_line(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_print_on_one_line() {
        assert_eq!(CliError::Run("a\nb\r\n c\t".into()).to_string(), "a b c");
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        assert_eq!(CliError::Run("x".into()).exit_code(), 1);
    }
}
