//! Sans-IO protocol core of LinkSocks.
//!
//! Nothing in this crate touches a socket, a thread, the clock or a random number generator:
//! every input (bytes, events, the current [`time::Instant`], fresh ids) is handed in by the
//! caller, and every effect (frames to send, sockets to dial, bytes to write, deadlines) is
//! handed back as a value. The same machines therefore run under the deterministic simulation
//! in `tests/` and under the real runtimes in `runtime-smol/` and `runtime-async-std/`.
//!
//! Map of the crate:
//! - [`wire`]: the LinkSocks binary message codec (protocol 0x01) and its gzip framing.
//! - [`ws`]: WebSocket framing (RFC 6455) after the handshake: frame headers, masking, messages.
//! - [`socks`]: SOCKS5 server handshake, replies, UDP header, upstream proxy client handshakes.
//! - [`session`]: the client and server protocol machines and the pieces they share.
//! - [`time`], [`ids`], [`addr`]: value types the machines are driven with.
//! - [`access`]: access rules (`--access-rule`, the API's `rules`): parsing, JSON, matching.

#![deny(missing_docs)]

pub mod access;
pub mod addr;
pub mod api;
pub mod ids;
pub mod session;
pub mod socks;
pub mod time;
pub mod wire;
pub mod ws;
