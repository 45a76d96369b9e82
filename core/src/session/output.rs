//! What the machines ask the driver to do.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{ConnId, LinkId, ListenerId, UdpId};
use crate::access::AccessRules;
use crate::addr::TargetAddr;

/// The error of a dial that access rules refused, exactly as the reference words its token
/// checks: it travels to the requesting side in ConnectResponse, whose SOCKS5 front answers
/// 0x04 (host unreachable) and whose HTTP front answers 502.
pub const DIAL_BLOCKED: &str = "destination blocked by access control";

/// One effect for the driver to carry out. Effects on the same socket must be carried out in
/// the order they were polled (a `Write` before a `Close` is written before the close).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Client role: open a WebSocket link to `url` (ws:// or wss://, query included). Report
    /// the outcome with `ClientMachine::handle_link_opened` or `Machine::handle_link_closed`.
    OpenLink {
        /// Handle the driver reports this link under.
        link: LinkId,
        /// The WebSocket URL to connect to.
        url: String,
    },
    /// Send one binary WebSocket message. Report it written with `handle_link_sent(frame.len())`.
    Transmit {
        /// The link to send on.
        link: LinkId,
        /// The whole binary message payload (one encoded LinkSocks message or a batch of them).
        frame: Bytes,
    },
    /// Send a WebSocket ping; report the pong with `handle_link_pong`.
    Ping {
        /// The link to ping.
        link: LinkId,
    },
    /// Close the link once the frames already handed out are written.
    CloseLink {
        /// The link to close.
        link: LinkId,
    },
    /// Stop reading messages from the link (a local writer is slow); `ResumeLink` undoes it.
    PauseLink {
        /// The link to pause.
        link: LinkId,
    },
    /// Read messages from the link again after [`Output::PauseLink`].
    ResumeLink {
        /// The link to resume.
        link: LinkId,
    },

    /// Open a SOCKS5 TCP listener; report with `handle_listener_bound`, then each accepted
    /// socket with `handle_accept`.
    Listen {
        /// Handle the driver reports the listener under.
        listener: ListenerId,
        /// Address to bind (an IP literal or a host name).
        host: String,
        /// Port to bind; 0 asks for any free port.
        port: u16,
    },
    /// Close a listener (sockets already accepted stay).
    Unlisten {
        /// The listener to close.
        listener: ListenerId,
    },

    /// Resolve `host` for an access check (the checking side resolves, as in the reference):
    /// of the request on local socket `conn`, or, with a handle that names no socket, of a
    /// connector's request the server holds. Answer with
    /// [`Machine::handle_resolved`](super::Machine::handle_resolved), with no address when the
    /// name does not resolve or the lookup takes longer than `timeout`.
    Resolve {
        /// The socket (or connector request) the answer is for.
        conn: ConnId,
        /// The name to resolve.
        host: String,
        /// How long the lookup may take.
        timeout: Duration,
    },

    /// Connect a TCP socket to `target` (resolving a domain name here, on the dialling side);
    /// give up after `timeout`. Report with `handle_dial_result`, then read it like any socket.
    ///
    /// `rules`: access rule sets that must **all** allow the destination; empty (the common
    /// case) means no check. The machine has already checked what it could without a lookup,
    /// so these come only with a domain target: resolve the name once, keep the addresses
    /// every set allows (`AccessRules::check_ip`), and connect only to those (through the
    /// upstream proxy, if any, by address). No address left, or a name that does not
    /// resolve: report the dial failed with exactly [`DIAL_BLOCKED`].
    Dial {
        /// Handle the driver reports the new socket under.
        conn: ConnId,
        /// The link whose Connect this is (for logs).
        link: LinkId,
        /// Where to connect.
        target: TargetAddr,
        /// How long the connect may take.
        timeout: Duration,
        /// Access rule sets the resolved addresses must pass.
        rules: Vec<Arc<AccessRules>>,
    },
    /// Write bytes to a local socket; report progress with `handle_conn_written`.
    Write {
        /// The socket.
        conn: ConnId,
        /// The bytes, in order after earlier writes to the same socket.
        data: Bytes,
    },
    /// Stop reading from a local socket until `ResumeRead` (backpressure: the link is full).
    PauseRead {
        /// The socket.
        conn: ConnId,
    },
    /// Read from a local socket again after [`Output::PauseRead`].
    ResumeRead {
        /// The socket.
        conn: ConnId,
    },
    /// Close a local socket after the writes already handed out. `abort` asks for a reset
    /// (SO_LINGER 0) so the application sees an error rather than a clean end of stream.
    Close {
        /// The socket.
        conn: ConnId,
        /// Reset the connection instead of closing it cleanly.
        abort: bool,
    },

    /// Bind a UDP socket on `addr` (port 0 = any). `None`: any address of either family, for a
    /// dialling side that may send to IPv4 and IPv6 destinations.
    BindUdp {
        /// Handle the driver reports the socket under (`handle_udp_bound`, `handle_udp_datagram`).
        udp: UdpId,
        /// Local address to bind, or `None` for a dual-stack socket.
        addr: Option<SocketAddr>,
    },
    /// Send one datagram (resolving a domain name here).
    SendUdp {
        /// The UDP socket to send from.
        udp: UdpId,
        /// The destination.
        to: TargetAddr,
        /// The datagram payload.
        data: Bytes,
    },
    /// Close a UDP socket; nothing more is reported for it.
    CloseUdp {
        /// The socket.
        udp: UdpId,
    },

    /// Something the driver or the user should know about.
    Event(Event),
}

/// Notable events. Routine diagnostics go to `tracing` directly; these are the ones a driver
/// acts on or a user wants to see once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A link authenticated.
    LinkReady {
        /// The link.
        link: LinkId,
    },
    /// An authenticated link ended (its channels are suspended or ended, as the transport
    /// grace says).
    LinkLost {
        /// The link.
        link: LinkId,
        /// Why it ended.
        reason: String,
    },
    /// The server refused our token (the client goes on retrying with `retry_auth`, else
    /// [`Event::Fatal`] follows).
    AuthRefused {
        /// The link that was refused.
        link: LinkId,
        /// The server's words.
        reason: String,
    },
    /// A listener is serving.
    Listening {
        /// The listener.
        listener: ListenerId,
        /// The address it is bound to (with the real port when 0 was asked).
        addr: SocketAddr,
    },
    /// The peer sent a Log message.
    PeerLog {
        /// The level the peer gave (`trace` .. `error`).
        level: String,
        /// The text.
        msg: String,
    },
    /// The peer says how many partners (providers or connectors) share our token.
    Partners {
        /// The number the peer sent.
        count: i64,
    },
    /// A connector token is registered for us (autonomy mode), generated or as asked.
    ConnectorToken {
        /// The connector token, in clear.
        token: String,
    },
    /// The machine cannot go on (e.g. the server refused our token and retrying is off, or the
    /// link is lost with reconnection disabled). The driver should stop with this reason.
    Fatal {
        /// What happened.
        reason: Fatal,
    },
    /// The server answered a request of
    /// [`ClientMachine::add_connector`](super::ClientMachine::add_connector) or
    /// [`remove_connector`](super::ClientMachine::remove_connector).
    ConnectorAnswer {
        /// The id the request call returned.
        request: crate::ids::ChannelId,
        /// What the server said.
        outcome: ConnectorOutcome,
    },
}

/// Why a client machine stopped on its own ([`Event::Fatal`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fatal {
    /// The server refused our token, and retrying is off.
    #[error("authentication failed: {reason}")]
    AuthRefused {
        /// The server's words.
        reason: String,
    },
    /// Every link is gone and reconnection is off.
    #[error("{}: {reason} (reconnect disabled)", if *.was_connected { "connection to the server lost" } else { "cannot connect to the server" })]
    LinkLost {
        /// Whether the link had authenticated before it was lost.
        was_connected: bool,
        /// Why the last link ended.
        reason: String,
    },
    /// The SOCKS5 listener could not be opened.
    #[error("cannot listen for SOCKS5 on {addr}: {error}")]
    Listen {
        /// The address asked for, `host:port`.
        addr: String,
        /// The driver's report.
        error: super::IoFailure,
    },
}

/// The server's answer to a connector request ([`Event::ConnectorAnswer`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectorOutcome {
    /// The connector token is registered (as asked, or generated by the server).
    Added {
        /// The token, in clear.
        token: String,
    },
    /// The connector token is removed.
    Removed {
        /// The token.
        token: String,
    },
    /// The server refused.
    Refused {
        /// The server's words.
        reason: String,
    },
}
