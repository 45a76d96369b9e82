//! One channel: a proxied TCP stream or UDP association, named by a ChannelId on its link.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use super::batch::Batcher;
use super::{ConnId, LinkId, UdpId};
use crate::ids::ChannelId;
use crate::time::Instant;
use crate::wire::Protocol;

/// Key of a channel in the machine's table. Never reused, so a stale timer cannot hit a newer
/// channel.
pub type ChanKey = u64;

/// Which end of the tunnel this machine is for the channel.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Side {
    /// We accepted the application's SOCKS request and sent Connect.
    Socks,
    /// We received Connect and dial the target.
    Dialer,
    /// We pass the channel between two links (server in agent mode).
    Relay,
}

/// What sits on this machine's side of the channel.
#[derive(Clone, Debug)]
pub enum Local {
    /// A TCP socket: the application (Socks side) or the target (Dialer side).
    Conn(ConnId),
    /// A UDP socket.
    Udp(UdpLocal),
    /// Another link (Relay side); `None` while waiting for a provider to route to.
    Route(Option<LinkId>),
}

#[derive(Clone, Debug)]
pub struct UdpLocal {
    pub udp: UdpId,
    /// Socks side: the TCP control connection whose end ends the association.
    pub control: Option<ConnId>,
    /// Socks side: only datagrams from this IP (the application's) are accepted ...
    pub allowed_ip: Option<IpAddr>,
    /// ... and from this port, when the application named one in its request.
    pub allowed_port: Option<u16>,
    /// Socks side: where replies go (the address that most recently sent to the relay).
    pub app: Option<SocketAddr>,
    /// The relay's bound address, once known.
    pub bound: Option<SocketAddr>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a UDP socket to be bound before Connect / ConnectResponse.
    Binding,
    /// Connect sent (Socks/Relay) or dial running (Dialer).
    Connecting,
    /// Data flows.
    Open,
}

#[derive(Debug)]
pub struct Channel {
    pub id: ChannelId,
    pub protocol: Protocol,
    /// The link the channel's messages travel on (for Relay: the side that sent Connect).
    pub link: LinkId,
    pub local: Local,
    pub side: Side,
    pub phase: Phase,
    /// Socks side: success was replied before the far side confirmed.
    pub fast_open: bool,
    /// Socks side: the SOCKS reply was written.
    pub replied: bool,
    /// Data that arrived before the channel opened, in order, to pass on when it does.
    pub early: Vec<Bytes>,
    pub early_len: usize,
    /// A link whose reading is paused because `early` is full; released when the channel
    /// opens, is routed, or ends.
    pub holding: Option<LinkId>,
    /// An end that came before the channel opened, to carry out once it has: the local
    /// socket's EOF/error (Socks side: send the held data, then Disconnect) or the peer's
    /// Disconnect (Dialer: write the held data, then close the target; Relay: pass it on
    /// after the held frames). `Some(error text)`.
    pub pending_end: Option<Option<String>>,
    pub batch: Batcher,
    pub last_active: Instant,
    /// Flow-controlled end to end (both ends speak the window extension; TCP only).
    pub windowed: bool,
    /// Sender: bytes of this channel sent and not yet acknowledged by the receiver ...
    pub unacked: usize,
    /// ... at the window: its local socket is not read until acknowledgements come.
    pub window_full: bool,
    /// Receiver: bytes written out since the last acknowledgement we sent.
    pub to_ack: usize,
    /// Bytes of this channel's Data queued on its link and not yet written ...
    pub on_link: usize,
    /// ... over its share: its local socket is not read until half of them are written.
    pub over_share: bool,
}

impl Channel {
    pub fn new(
        id: ChannelId,
        protocol: Protocol,
        link: LinkId,
        local: Local,
        side: Side,
        now: Instant,
    ) -> Self {
        Channel {
            id,
            protocol,
            link,
            local,
            side,
            phase: Phase::Connecting,
            fast_open: false,
            replied: false,
            early: Vec::new(),
            early_len: 0,
            holding: None,
            pending_end: None,
            batch: Batcher::new(),
            last_active: now,
            windowed: false,
            unacked: 0,
            window_full: false,
            to_ack: 0,
            on_link: 0,
            over_share: false,
        }
    }

    pub fn conn(&self) -> Option<ConnId> {
        match self.local {
            Local::Conn(c) => Some(c),
            Local::Udp(UdpLocal { control, .. }) => control,
            Local::Route(_) => None,
        }
    }

    pub fn udp(&self) -> Option<UdpId> {
        match &self.local {
            Local::Udp(u) => Some(u.udp),
            _ => None,
        }
    }

    /// For a relayed channel: the link opposite to `from`.
    pub fn other_link(&self, from: LinkId) -> Option<LinkId> {
        match self.local {
            Local::Route(Some(other)) if from == self.link => Some(other),
            Local::Route(Some(other)) if from == other => Some(self.link),
            _ => None,
        }
    }
}
