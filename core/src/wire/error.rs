//! Errors of the codec. Each names the message and the field at fault, so a log line tells a
//! user (or a peer's developer) exactly what was wrong.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    #[error("empty message")]
    Empty,

    #[error("message of {len} byte(s) is too short for the version and type bytes")]
    NoHeader { len: usize },

    #[error("unsupported protocol major version: peer sent {got:#04x} (major {got_major}), we speak {ours:#04x} (major {ours_major})", got_major = .got >> 4, ours_major = .ours >> 4)]
    UnsupportedVersion { got: u8, ours: u8 },

    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),

    #[error("{message} message truncated: {field} needs {need} byte(s), {have} left")]
    Truncated {
        message: &'static str,
        field: &'static str,
        need: usize,
        have: usize,
    },

    #[error("{message} message: invalid {field}: {reason}")]
    Invalid {
        message: &'static str,
        field: &'static str,
        reason: &'static str,
    },

    #[error("{message} message: {field} is {len} bytes, longer than the 255 a one-byte length can carry")]
    TooLong {
        message: &'static str,
        field: &'static str,
        len: usize,
    },

    #[error("Data message: payload of {len} bytes is longer than a four-byte length can carry")]
    PayloadTooLong { len: usize },

    #[error("Data message: gzip payload inflates past the {limit}-byte limit")]
    InflateLimit { limit: usize },

    #[error("Data message: corrupt gzip payload: {0}")]
    Gzip(String),

    #[error("{message} message: invalid JSON body: {reason}")]
    Json {
        message: &'static str,
        reason: String,
    },
}
