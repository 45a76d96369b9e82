//! How a driver reports a failed socket operation to a machine: [`IoFailure`].

use std::io;

/// A socket operation the driver carried out for a machine failed (a dial, a bind): the kind,
/// for a program to act on, and the text, which the machine logs and, for a dial, sends to the
/// peer in its ConnectResponse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct IoFailure {
    /// What kind of failure it was.
    pub kind: io::ErrorKind,
    /// What happened, in words (for a dial, the reference's style: `dial tcp ...`).
    pub message: String,
}

impl IoFailure {
    /// A failure of `kind` described by `message`.
    pub fn new(kind: io::ErrorKind, message: impl Into<String>) -> Self {
        IoFailure {
            kind,
            message: message.into(),
        }
    }

    /// A failure with no more specific kind.
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(io::ErrorKind::Other, message)
    }

    /// The same failure as an [`io::Error`], for a program's error chain.
    pub fn to_io_error(&self) -> io::Error {
        io::Error::new(self.kind, self.message.clone())
    }
}

impl From<&io::Error> for IoFailure {
    fn from(e: &io::Error) -> Self {
        IoFailure::new(e.kind(), e.to_string())
    }
}

impl From<io::Error> for IoFailure {
    fn from(e: io::Error) -> Self {
        IoFailure::from(&e)
    }
}
