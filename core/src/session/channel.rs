//! One channel: a proxied TCP stream or UDP association, named by a ChannelId on its link.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use super::batch::Batcher;
use super::plane::{PeerKey, Stream};
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

/// The UDP socket of a channel and, on the Socks side, who may use the relay.
#[derive(Clone, Debug)]
pub struct UdpLocal {
    /// The UDP socket (the relay on the Socks side, the dialling socket on the Dialer side).
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
    /// Socks side: entry rules each datagram's destination must pass (dropped otherwise).
    pub entry_rules: Option<std::sync::Arc<crate::access::AccessRules>>,
}

/// How far a channel has got.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a UDP socket to be bound before Connect / ConnectResponse.
    Binding,
    /// Connect sent (Socks/Relay) or dial running (Dialer).
    Connecting,
    /// Data flows.
    Open,
}

/// One channel's state in the plane's table (internal to the machines; public for the simulation's
/// invariants).
#[derive(Debug)]
pub struct Channel {
    /// The wire ChannelID, chosen by the Socks side.
    pub id: ChannelId,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The link the channel's messages travel on (for Relay: the side that sent Connect).
    pub link: LinkId,
    /// What sits on our side.
    pub local: Local,
    /// Which end of the tunnel we are.
    pub side: Side,
    /// How far it has got.
    pub phase: Phase,
    /// Socks side: the target the Connect named (sent again if a resume finds the far side
    /// never had the channel).
    pub target: Option<(String, u16)>,
    /// Socks side: success was replied before the far side confirmed.
    pub fast_open: bool,
    /// Socks side: the SOCKS reply was written.
    pub replied: bool,
    /// Socks side: the far side confirmed (ConnectResponse success); until then a resume
    /// that finds it unknown there may connect it again.
    pub confirmed: bool,
    /// Data that arrived before the channel opened, in order, to pass on when it does.
    pub early: Vec<Bytes>,
    /// Bytes in `early`.
    pub early_len: usize,
    /// A link whose reading is paused because `early` is full; released when the channel
    /// opens, is routed, or ends.
    pub holding: Option<LinkId>,
    /// An end that came before the channel opened, to carry out once it has: the local
    /// socket's EOF/error (Socks side: send the held data, then Disconnect) or the peer's
    /// Disconnect (Dialer: write the held data, then close the target; Relay: pass it on
    /// after the held frames). `Some(error text)`.
    pub pending_end: Option<Option<String>>,
    /// Data read from the local socket, held until it goes out as one Data message.
    pub batch: Batcher,
    /// When data last moved (the idle sweep ends channels quiet for `idle_timeout`).
    pub last_active: Instant,
    /// Flow-controlled end to end (both ends speak the window extension; TCP only).
    pub windowed: bool,
    /// Its byte counts both ways (the window is on `stream.unacked()`), and what it keeps
    /// for replay.
    pub stream: Stream,
    /// Sender: at the window: its local socket is not read until acknowledgements come.
    pub window_full: bool,
    /// Whose channel this is on `link` (and, relayed, on the other link): a resume must come
    /// from the same peer.
    pub owner: PeerKey,
    /// Its link was lost: it waits, within the transport grace, to continue on another.
    pub suspended: Option<Suspension>,
    /// After a resume in which both sides asked on different links: the link the peer sends
    /// on (we send on `link`). Its frames are accepted, and its loss suspends the channel.
    pub alias: Option<LinkId>,
    /// Relayed: how its two legs resume.
    pub relay: Option<Box<RelayResume>>,
    /// We ended it (`Some(error text)`): the Disconnect is sent, its local socket is closed,
    /// and it lingers with what it sent until the peer answers with its own Disconnect, so
    /// that a lost link cannot take the last bytes and the end with it.
    pub closing: Option<Option<String>>,
    /// Bytes of this channel's Data queued on its link and not yet written ...
    pub on_link: usize,
    /// ... over its share: its local socket is not read until half of them are written.
    pub over_share: bool,
}

/// A channel whose link was lost.
#[derive(Copy, Clone, Debug)]
pub struct Suspension {
    /// We asked the peer to resume it (ChannelResume sent on `link`) and wait for its answer.
    pub awaiting: bool,
    /// It resumes byte-exactly with ChannelResume (else only by the reference's resume
    /// Connect, which the peer sends when it pleases).
    pub exact: bool,
}

/// The resume state of a relayed channel (agent mode). Its legs are numbered: 0 is `link`
/// (the connector's side), 1 the routed link (the provider's side). A leg whose link is gone
/// keeps its old link id until its peer resumes on a new one.
#[derive(Debug, Default)]
pub struct RelayResume {
    /// Both legs resume byte-exactly (both peers speak the extension, with one window).
    pub exact: bool,
    /// Owner of leg 1 (leg 0's is the channel's `owner`).
    pub route_owner: PeerKey,
    /// A leg's resume counts (received, written), kept until the other leg can take them.
    pub held: Option<(usize, u64, u64)>,
    /// The leg whose answer to a forwarded resume we wait for; nothing passes meanwhile.
    pub awaiting: Option<usize>,
    /// Which legs have sent their Disconnect (the relay lingers until both have).
    pub ended: [bool; 2],
}

impl Channel {
    /// A channel in [`Phase::Connecting`], nothing held or sent yet.
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
            target: None,
            fast_open: false,
            replied: false,
            confirmed: false,
            early: Vec::new(),
            early_len: 0,
            holding: None,
            pending_end: None,
            batch: Batcher::new(),
            last_active: now,
            windowed: false,
            stream: Stream::default(),
            window_full: false,
            owner: PeerKey::default(),
            suspended: None,
            alias: None,
            relay: None,
            closing: None,
            on_link: 0,
            over_share: false,
        }
    }

    /// The TCP socket the channel belongs to: its own, or a UDP association's control connection;
    /// `None` on a relay.
    pub fn conn(&self) -> Option<ConnId> {
        match self.local {
            Local::Conn(c) => Some(c),
            Local::Udp(UdpLocal { control, .. }) => control,
            Local::Route(_) => None,
        }
    }

    /// The UDP socket, for a UDP channel.
    pub fn udp(&self) -> Option<UdpId> {
        match &self.local {
            Local::Udp(u) => Some(u.udp),
            _ => None,
        }
    }

    /// Relayed: the link of leg `i` (0: `link`, 1: the routed one).
    pub fn leg(&self, i: usize) -> Option<LinkId> {
        match (i, &self.local) {
            (0, _) => Some(self.link),
            (1, Local::Route(r)) => *r,
            _ => None,
        }
    }

    /// Relayed: move leg `i` to `to`.
    pub fn set_leg(&mut self, i: usize, to: LinkId) {
        if i == 0 {
            self.link = to;
        } else {
            self.local = Local::Route(Some(to));
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
