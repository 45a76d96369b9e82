//! WebSocket framing (RFC 6455) for the data path, once the handshake is done: untrusted
//! frame headers parsed without panics and without allocating from a length field, messages
//! handed out as slices of the read buffer, frames encoded as a header plus the caller's own
//! payload (masked in place when the caller holds the only reference).
//!
//! Only what LinkSocks needs is accepted: binary messages (fragmented ones are joined, up to a
//! size bound), ping, pong and close. No extension is ever negotiated, so a set RSV bit is a
//! protocol error; text messages are surfaced, without their payload, for the caller to refuse.
//!
//! - [`header`]: one frame header, parsed and encoded ([`FrameHeader`], [`Opcode`]).
//! - [`mask`]: the masking XOR ([`apply_mask`]).
//! - [`decoder`]: the frame stream to messages ([`Decoder`], [`Incoming`]), with the size bound.
//! - [`encoder`]: messages to frames ([`Framer`], [`Outgoing`]).
//! - [`error`]: what a peer can get wrong ([`FrameError`]).
//!
//! Nothing here reads or writes a socket: the runtime reads into a `BytesMut`, hands it to
//! [`Decoder::decode`], and writes what [`Framer::encode`] returns with one vectored write.
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use linksocks_core::ws::{Decoded, Decoder, Framer, Incoming, Outgoing, Side};
//!
//! // A client frames a binary message (masked, as clients must)...
//! let mut framer = Framer::new(Side::Client, 7);
//! let (header, payload) = framer.encode(Outgoing::Binary(Bytes::from_static(b"hello")));
//! let mut wire = BytesMut::new();
//! wire.extend_from_slice(&header);
//! wire.extend_from_slice(&payload);
//!
//! // ...and the server gets it back whole, unmasked in place.
//! let mut decoder = Decoder::new(Side::Server, 1 << 20);
//! assert_eq!(
//!     decoder.decode(&mut wire).unwrap(),
//!     Decoded::Message(Incoming::Binary(Bytes::from_static(b"hello")))
//! );
//! assert!(wire.is_empty());
//! ```

pub mod decoder;
pub mod encoder;
pub mod error;
pub mod header;
pub mod mask;

#[cfg(test)]
mod tests;

pub use decoder::{Decoded, Decoder, Incoming};
pub use encoder::{Framer, Outgoing};
pub use error::FrameError;
pub use header::{FrameHeader, Opcode, MAX_HEADER_LEN};
pub use mask::apply_mask;

/// Which end of the connection we are. A client masks every frame it sends; a server unmasks
/// every frame it receives, and refuses one that was not masked (RFC 6455, section 5.1).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// We opened the connection: our frames are masked, the peer's must not be.
    Client,
    /// We accepted the connection: the peer's frames must be masked, ours are not.
    Server,
}
