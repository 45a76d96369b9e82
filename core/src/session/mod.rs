//! The protocol machines: pure state, driven by the caller.
//!
//! Shape (after quinn-proto and str0m): the driver feeds inputs with `handle_*(now, ..)`,
//! drains effects with [`Machine::poll_output`], and asks [`Machine::poll_timeout`] when to call
//! [`Machine::handle_timeout`]. The machines never read a clock, never draw randomness they were
//! not given, and never touch a socket; every socket is named by a handle the machine allocated
//! ([`LinkId`], [`ConnId`], [`UdpId`], [`ListenerId`]) and the driver owns the real thing.
//!
//! - [`client::ClientMachine`]: the client role (forward client, reverse provider, connector).
//! - [`server::ServerMachine`]: the server role (tokens, forward dialling, reverse SOCKS
//!   listeners, connectors, autonomy).
//! - [`plane`]: the data plane both roles share: links, local sockets, channels, SOCKS
//!   front ends, dialling, flow control (`plane/flow.rs`), timers.
//! - [`channel`], [`batch`], [`backlog`], [`timer`]: the pieces the data plane is made of.

/// The `Machine` inputs both roles hand straight to their data plane (`self.plane`).
macro_rules! plane_inputs {
    () => {
        fn handle_link_sent(&mut self, now: Instant, link: LinkId, bytes: usize) {
            self.plane.link_sent(now, link, bytes);
        }

        fn handle_accept(
            &mut self,
            now: Instant,
            listener: ListenerId,
            peer: SocketAddr,
            local: SocketAddr,
        ) -> ConnId {
            self.plane.accept(now, listener, peer, local)
        }

        fn handle_dial_result(
            &mut self,
            now: Instant,
            conn: ConnId,
            result: Result<(), crate::session::IoFailure>,
        ) {
            self.plane.dial_result(now, conn, result);
        }

        fn handle_conn_closed(&mut self, now: Instant, conn: ConnId, error: Option<&str>) {
            self.plane.conn_closed(now, conn, error);
        }

        fn handle_conn_written(&mut self, _now: Instant, conn: ConnId, bytes: usize) {
            self.plane.conn_written(conn, bytes);
        }

        fn handle_udp_bound(
            &mut self,
            now: Instant,
            udp: UdpId,
            result: Result<SocketAddr, crate::session::IoFailure>,
        ) {
            self.plane.udp_bound(now, udp, result);
        }

        fn handle_udp_datagram(&mut self, now: Instant, udp: UdpId, from: SocketAddr, data: Bytes) {
            self.plane.udp_datagram(now, udp, from, data);
        }

        fn poll_timeout(&self) -> Option<Instant> {
            self.plane.timers.next()
        }

        fn poll_output(&mut self) -> Option<Output> {
            self.plane.out.pop_front()
        }

        fn snapshot(&self) -> Snapshot {
            self.plane.snapshot()
        }
    };
}

/// A module that is public only with the `internals` feature (the simulation, the fuzzers and
/// the benches look inside; a program embedding LinkSocks does not need to).
macro_rules! internal_mod {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[cfg(feature = "internals")]
        pub mod $name;
        $(#[$m])*
        #[cfg(not(feature = "internals"))]
        pub(crate) mod $name;
    };
}

internal_mod!(backlog);
internal_mod!(batch);
internal_mod!(channel);
pub mod client;
pub mod config;
pub mod io_failure;
internal_mod!(keyed_hash);
pub mod output;
internal_mod!(plane);
pub mod server;
internal_mod!(timer);

use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;

use crate::time::Instant;

pub use client::ClientMachine;
pub use config::*;
pub use io_failure::IoFailure;
pub use output::{ConnectorOutcome, Event, Fatal, Output, DIAL_BLOCKED};
pub use plane::Snapshot;
pub use server::{
    ListenerState, ReverseTokenSpec, ServerMachine, TokenError, TokenStatus, TokenType,
};

macro_rules! handle {
    ($(#[$m:meta])* $name:ident, $prefix:literal) => {
        $(#[$m])*
        #[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u64);
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }
    };
}

handle!(
    /// A WebSocket link to the peer.
    LinkId,
    "link#"
);
handle!(
    /// A local TCP socket: an application on a SOCKS listener, or a target we dialled.
    ConnId,
    "conn#"
);
handle!(
    /// A local UDP socket: a SOCKS UDP relay, or the socket a dialling side sends from.
    UdpId,
    "udp#"
);
handle!(
    /// A SOCKS5 TCP listener.
    ListenerId,
    "listener#"
);

/// Inputs both roles take. The role types add their own (`ClientMachine::handle_link_opened`,
/// `ServerMachine::handle_link_accept`, token management).
pub trait Machine {
    /// A binary WebSocket message arrived on `link`.
    fn handle_link_message(&mut self, now: Instant, link: LinkId, frame: Bytes);
    /// `link` is gone (closed by the peer, failed, or closed after [`Output::CloseLink`]).
    fn handle_link_closed(&mut self, now: Instant, link: LinkId, reason: &str);
    /// `bytes` of frames handed out for `link` were written to its socket.
    fn handle_link_sent(&mut self, now: Instant, link: LinkId, bytes: usize);
    /// The peer showed it is alive without a message: a pong to our ping, or a ping of its own.
    fn handle_link_pong(&mut self, now: Instant, link: LinkId);

    /// A listener the machine asked for is bound (or failed to bind).
    fn handle_listener_bound(
        &mut self,
        now: Instant,
        listener: ListenerId,
        result: Result<SocketAddr, IoFailure>,
    );
    /// An application connected to a SOCKS listener. Returns the handle for the new socket.
    fn handle_accept(
        &mut self,
        now: Instant,
        listener: ListenerId,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> ConnId;
    /// A dial asked for by [`Output::Dial`] finished.
    fn handle_dial_result(&mut self, now: Instant, conn: ConnId, result: Result<(), IoFailure>);
    /// The addresses `Output::Resolve` found for `conn`'s target (none: it does not resolve).
    fn handle_resolved(&mut self, now: Instant, conn: ConnId, addrs: Vec<std::net::IpAddr>);
    /// Bytes were read from a local socket.
    fn handle_conn_data(&mut self, now: Instant, conn: ConnId, data: Bytes);
    /// Bytes were read from a local socket into `buf[wire::DATA_HEADER_LEN..]`; the front is
    /// free room the machine may use to frame them without a copy. Same meaning as
    /// [`Machine::handle_conn_data`] otherwise.
    fn handle_conn_read(&mut self, now: Instant, conn: ConnId, mut buf: bytes::BytesMut) {
        let n = crate::wire::DATA_HEADER_LEN.min(buf.len());
        let data = buf.split_off(n).freeze();
        self.handle_conn_data(now, conn, data);
    }
    /// Reading a local socket ended: EOF (`error` = None; the application half-closed and may
    /// still read what is written to it until [`Output::Close`]) or an error (the socket is
    /// unusable). The driver reads it no more.
    fn handle_conn_closed(&mut self, now: Instant, conn: ConnId, error: Option<&str>);
    /// `bytes` handed out by [`Output::Write`] for `conn` were written to it.
    fn handle_conn_written(&mut self, now: Instant, conn: ConnId, bytes: usize);

    /// A UDP socket asked for by [`Output::BindUdp`] is bound (or failed).
    fn handle_udp_bound(&mut self, now: Instant, udp: UdpId, result: Result<SocketAddr, IoFailure>);
    /// A datagram arrived on a UDP socket.
    fn handle_udp_datagram(&mut self, now: Instant, udp: UdpId, from: SocketAddr, data: Bytes);

    /// Time passed: fire every deadline at or before `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// The earliest instant at which [`Machine::handle_timeout`] must be called.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Next effect to carry out, in order.
    fn poll_output(&mut self) -> Option<Output>;
    /// Counts at this moment (links, channels, totals since start).
    fn snapshot(&self) -> Snapshot;
}
