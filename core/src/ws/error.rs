//! What a peer can get wrong in the frames it sends. The texts are the ones the runtime has
//! always logged (a user greps logs for them), so each variant's message is fixed.

use thiserror::Error;

/// A frame or message that breaks RFC 6455 or our limits. Every case is the peer's fault;
/// the connection cannot go on after one, since the frame boundaries are lost or the peer
/// does not speak the protocol.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// RSV1-3 set: they mean an extension, and we never negotiate one.
    #[error("WebSocket protocol error: reserved bits set")]
    ReservedBits,

    /// A 64-bit payload length with its most significant bit set (section 5.2 forbids it).
    #[error("WebSocket protocol error: payload length with the top bit set")]
    LengthTopBit,

    /// We are the server and a client sent a frame without a mask.
    #[error("WebSocket protocol error: unmasked frame from a client")]
    Unmasked,

    /// We are the client and the server sent a masked frame.
    #[error("WebSocket protocol error: masked frame from a server")]
    Masked,

    /// A control frame (close, ping, pong, or a reserved control opcode) without FIN or with
    /// a payload over 125 bytes.
    #[error("WebSocket protocol error: fragmented or oversized control frame")]
    BadControlFrame,

    /// A frame whose payload, added to the fragments of the message being joined, would pass
    /// the size limit. Reported from the header alone, before any payload is buffered.
    #[error("message of {size} bytes is over the limit of {max}")]
    TooLong {
        /// Bytes the message would have: the announced payload plus what was joined so far
        /// (saturating at `u64::MAX`).
        size: u64,
        /// The decoder's limit.
        max: usize,
    },

    /// A text or binary frame while a fragmented message still waits for its last fragment.
    #[error("WebSocket protocol error: new message inside a fragmented one")]
    NewMessageInFragmented,

    /// A continuation frame with no fragmented message to continue.
    #[error("WebSocket protocol error: continuation without a message")]
    OrphanContinuation,

    /// A reserved opcode (0x3-0x7, 0xB-0xF). The log line has never named it; the value is
    /// kept for callers that want to.
    #[error("WebSocket protocol error: unknown opcode")]
    UnknownOpcode {
        /// The opcode as sent.
        opcode: u8,
    },
}
