//! Errors of the codec. Each names the message and the field at fault, so a log line tells a
//! user (or a peer's developer) exactly what was wrong.

use thiserror::Error;

/// Why a LinkSocks message could not be decoded or encoded. A decode error concerns one message:
/// the reference ignores such a message and keeps the link (spec §2).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    /// A WebSocket binary message with no bytes at all.
    #[error("empty message")]
    Empty,

    /// Fewer than the two bytes `Version Type`.
    #[error("message of {len} byte(s) is too short for the version and type bytes")]
    NoHeader {
        /// Length of the message received.
        len: usize,
    },

    /// The version byte's major nibble differs from ours; a minor difference is accepted.
    #[error("unsupported protocol major version: peer sent {got:#04x} (major {got_major}), we speak {ours:#04x} (major {ours_major})", got_major = .got >> 4, ours_major = .ours >> 4)]
    UnsupportedVersion {
        /// The version byte the peer sent.
        got: u8,
        /// The version byte we send (0x01).
        ours: u8,
    },

    /// A type byte this codec does not know; the caller logs and ignores the message.
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),

    /// A field runs past the end of the message.
    #[error("{message} message truncated: {field} needs {need} byte(s), {have} left")]
    Truncated {
        /// Name of the message, as [`Message::name`](crate::wire::Message::name) gives it.
        message: &'static str,
        /// Name of the field.
        field: &'static str,
        /// Bytes the field needs.
        need: usize,
        /// Bytes left in the message.
        have: usize,
    },

    /// A field holds a value the protocol does not allow.
    #[error("{message} message: invalid {field}: {reason}")]
    Invalid {
        /// Name of the message.
        message: &'static str,
        /// Name of the field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A text field longer than its one-byte length prefix can carry (encoding refuses rather than
    /// truncate, unlike the reference).
    #[error("{message} message: {field} is {len} bytes, longer than the 255 a one-byte length can carry")]
    TooLong {
        /// Name of the message.
        message: &'static str,
        /// Name of the field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },

    /// A Data payload longer than `u32::MAX` bytes.
    #[error("Data message: payload of {len} bytes is longer than a four-byte length can carry")]
    PayloadTooLong {
        /// The payload length in bytes.
        len: usize,
    },

    /// A gzip payload that inflates past the configured limit (a guard against compression bombs).
    #[error("Data message: gzip payload inflates past the {limit}-byte limit")]
    InflateLimit {
        /// The most bytes a payload may inflate to.
        limit: usize,
    },

    /// A gzip payload that does not inflate; carries the inflater's message.
    #[error("Data message: corrupt gzip payload: {0}")]
    Gzip(String),

    /// A Log or Partners body that is not the JSON the spec describes.
    #[error("{message} message: invalid JSON body: {reason}")]
    Json {
        /// Name of the message.
        message: &'static str,
        /// The JSON parser's message.
        reason: String,
    },
}
