//! Deterministic simulation of LinkSocks.
//!
//! The machines of `linksocks-core` ([`ServerMachine`](linksocks_core::session::ServerMachine),
//! [`ClientMachine`](linksocks_core::session::ClientMachine)) run unchanged against a simulated
//! world ([`World`]): a virtual clock, an event queue ordered by virtual time (ties broken by
//! insertion order), simulated WebSocket links (latency, jitter, bandwidth, a bounded window,
//! in-order delivery per direction, pings answered by the peer when it reads them, pause and
//! resume of reading), local TCP sockets (SOCKS applications and dialled targets, with random
//! read sizes, send buffers and slow readers), UDP sockets and echo targets, and faults (link
//! drop, silent partition, server refusing links, frames dropped by a filter, applications
//! and targets that reset). Every random choice comes from the seed, so a seed replays.
//!
//! # Invariants
//!
//! Checked after **every step** (a step is one event or one machine deadline):
//!
//! 1. **Streams are exact prefixes.** The bytes a target has received are, at all times, a
//!    prefix of the bytes its application wrote (after the SOCKS request), and the bytes an
//!    application has received after its success reply are a prefix of what its target wrote.
//!    (Nothing corrupted, reordered, duplicated or invented; checked on every delivery.)
//! 2. **No silent truncation.** An end of stream counts as *clean* when the machine closes the
//!    socket with `Close { abort: false }`; with `abort: true` (or any error) the endpoint
//!    knows the stream failed. Then:
//!    - when an application that had not closed itself sees a clean end after a success
//!      reply, its target must have ended cleanly itself (EOF, not a reset) and the
//!      application must have received every byte the target sent;
//!    - when a target that had not closed itself sees a clean end, its application must have
//!      closed cleanly itself and the target must have received every byte it sent.
//!
//!    In words: whoever sees a clean end of stream got the whole stream, and the other end
//!    really ended; every other ending is visible to the endpoint as an error.
//! 3. **Exactly one SOCKS reply per request.** An application whose request passed the
//!    greeting (and authentication) gets exactly one reply before its socket closes, unless
//!    it closed first; after a failure reply nothing else arrives. (A second reply would show
//!    up as wrong stream bytes under invariant 1.)
//! 4. **Bounded memory.** In every machine, `max_channel_bytes()` stays under
//!    [`World::channel_bound`] (derived from `DataConfig`: `conn_high_water` plus two of the
//!    largest payload, `max_batch + one read + 64 KiB`) and `buffered_bytes()` under
//!    [`World::global_bound`] (per link its high water mark plus one payload, per channel its
//!    own bound).
//! 5. **Handles.** No output names a handle the machine never created (`Dial`, `BindUdp`,
//!    `Listen`, `OpenLink`, or a handle returned by `handle_accept` / `handle_link_accept`), or
//!    one already closed (`Close`, `CloseUdp`, `Unlisten`, or a link the driver reported
//!    closed); no `Write` goes to a socket the driver reported failed. (A socket reported at a
//!    clean EOF may still be written to: that is a half-close, e.g. the SOCKS reply to an
//!    application that sent request, data and EOF at once.)
//!
//! Checked **at the end** of a run, once every application finished and the world settled
//! ([`World::check_quiescent`]): every machine has no channel, no socket, no UDP socket and no
//! buffered byte left; its only timers are the periodic ones (the cleaner, ping and pong
//! deadlines of its links, reconnect timers of lost links); every socket and UDP socket the
//! machines used was closed. Fault-free scenarios also assert [`World::assert_all_succeeded`]:
//! every plan completed (every echo came back, every download arrived, every upload reached its
//! target in full).
//!
//! **Determinism**: every fourth seed of every scenario runs twice and the two histories (a
//! fingerprint of every event and output) must be equal. Outputs are applied in exactly the
//! order the machine emits them, as the real driver applies them: the machines iterate their
//! tables in a fixed order, so that order is itself reproducible.
//!
//! **Driver contract** as simulated: an endpoint's clean EOF is reported with
//! `handle_conn_closed` after the bytes before it, a reset at once (unread bytes are lost,
//! and even a paused reader notices);
//! `Close { abort }` reaches the endpoint after the bytes written before it, `abort` as an
//! error; a WebSocket ping is answered by the peer's library when it *reads* it (so not while
//! that peer paused the link), and a ping received is reported to the machine with
//! `handle_link_pong` like a pong; `CloseLink` closes once the frames before it are written
//! (or after a linger of 1 s), and the peer sees the close after those frames.

pub mod app;
pub mod check;
pub mod pattern;
pub mod rng;
pub mod runner;
pub mod socks;
pub mod topo;
pub mod world;

pub use app::{App, AppSpec, Dial, Form, Hs, Plan, SocksAuth, Target, UdpPlan};
pub use pattern::{Blocks, Pattern};
pub use rng::Rng;
pub use runner::{replay_command, run_seeds, run_seeds_with};
pub use topo::*;
pub use world::{random_data_config, NetProfile, NodeIdx, ReadRate, World};
