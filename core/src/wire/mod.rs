//! The LinkSocks binary message codec, protocol 0x01 (see the spec, section 2).
//!
//! - [`message`]: the message types.
//! - [`mod@encode`]: writing messages into a `BytesMut`, and the zero-copy Data header.
//! - [`mod@decode`]: parsing one WebSocket binary message, untrusted, without panics and without
//!   allocating from unchecked lengths; Data payloads are handed out as slices of the frame.
//! - [`gzip`]: the Data payload compression (RFC 1952) with a bounded inflate.
//! - [`error`]: what can be wrong with a message, naming the message and the field.

pub mod decode;
pub mod encode;
pub mod error;
pub mod gzip;
pub mod message;

pub use decode::{decode, DecodeLimits};
pub use encode::{encode, encode_data_header, DATA_HEADER_LEN};
pub use error::WireError;
pub use message::*;

/// The version byte we send: major 0, minor 1. Peers sending any minor of major 0 are accepted.
pub const PROTOCOL_VERSION: u8 = 0x01;

/// Major part (high nibble) of a version byte.
pub const fn version_major(v: u8) -> u8 {
    v >> 4
}

/// Minor part (low nibble) of a version byte.
pub const fn version_minor(v: u8) -> u8 {
    v & 0x0f
}

/// Largest WebSocket message a peer may send us, by default (the reference's limit).
pub const MAX_MESSAGE_SIZE: usize = 32 << 20;

/// Data payloads at or over this size are gzip candidates (the reference compresses them all).
pub const DEFAULT_COMPRESSION_THRESHOLD: usize = 512 << 10;
