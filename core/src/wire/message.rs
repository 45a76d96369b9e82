//! LinkSocks message types (protocol 0x01). Field order and meaning follow the spec, section 2.

use bytes::Bytes;

use crate::ids::{ChannelId, InstanceId};

/// Message type bytes.
pub mod kind {
    pub const AUTH: u8 = 0x01;
    pub const AUTH_RESPONSE: u8 = 0x02;
    pub const CONNECT: u8 = 0x03;
    pub const DATA: u8 = 0x04;
    pub const CONNECT_RESPONSE: u8 = 0x05;
    pub const DISCONNECT: u8 = 0x06;
    pub const CONNECTOR: u8 = 0x07;
    pub const CONNECTOR_RESPONSE: u8 = 0x08;
    pub const LOG: u8 = 0x09;
    pub const PARTNERS: u8 = 0x0A;
    pub const DIRECT_CAPABILITIES: u8 = 0x0B;
    pub const DIRECT_RENDEZVOUS: u8 = 0x0C;
    pub const DIRECT_STATUS: u8 = 0x0D;
    /// 0x0E..=0x11: the reference's channel-migration messages (direct transport), never sent
    /// to a relay-only peer; known and ignored.
    pub const CHANNEL_BIND: u8 = 0x0E;
    pub const CHANNEL_DATA_ACK: u8 = 0x11;
    /// 0x40..: our extensions, sent only to a peer that announced it understands them (see
    /// [`Message::Hello`]); the reference never receives them.
    pub const HELLO: u8 = 0x40;
    pub const CHANNEL_ACK: u8 = 0x41;
    pub const CHANNEL_NO_WINDOW: u8 = 0x42;
    pub const CHANNEL_RESUME: u8 = 0x43;
}

/// Extension features a [`Message::Hello`] can announce (a bit set).
pub mod feature {
    /// Per-channel flow control: a sender has at most a window of a channel's bytes
    /// unacknowledged; the receiver acknowledges what it has written out with
    /// [`super::Message::ChannelAck`].
    pub const CHANNEL_FLOW: u32 = 0x1;
    /// Channels survive a lost link: the server holds a client's channels through the
    /// transport grace, understands the reference's resume Connect
    /// ([`super::Message::ConnectResume`]) and, with [`CHANNEL_FLOW`], resumes channels byte
    /// for byte with [`super::Message::ChannelResume`]. A client sends either only to a server
    /// that announced this: the reference 1.10.1 dials a resume Connect as a new channel.
    pub const RESUME: u32 = 0x2;
}

/// Transport of a channel.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub const fn to_byte(self) -> u8 {
        match self {
            Protocol::Tcp => 0x01,
            Protocol::Udp => 0x02,
        }
    }
}

/// Compression of a Data payload.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub enum Compression {
    None,
    Gzip,
}

impl Compression {
    pub const fn to_byte(self) -> u8 {
        match self {
            Compression::None => 0x00,
            Compression::Gzip => 0x01,
        }
    }
}

/// What a Connector message asks for.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub enum ConnectorOp {
    Add,
    Remove,
}

impl ConnectorOp {
    pub const fn to_byte(self) -> u8 {
        match self {
            ConnectorOp::Add => 0x01,
            ConnectorOp::Remove => 0x02,
        }
    }
}

/// Auth (0x01): a client presenting its token, when it does not use the URL query.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Auth {
    pub token: String,
    pub reverse: bool,
    pub instance: InstanceId,
}

/// Connect (0x03): open a channel. TCP carries the target; UDP carries none.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Connect {
    pub protocol: Protocol,
    pub channel: ChannelId,
    /// `(host, port)` for TCP; `None` for UDP.
    pub target: Option<(String, u16)>,
}

/// UDP trailer of a Data message. From the SOCKS side toward the dialling side `addr:port` is
/// the destination; back, it is the source the datagram came from. `target_*` is empty in the
/// older, shorter form of the trailer.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct UdpTrailer {
    pub addr: String,
    pub port: u16,
    pub target_addr: String,
    pub target_port: u16,
}

/// Data (0x04). After decoding, `payload` is always the plain (inflated) bytes; `compression`
/// says how it travelled.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Data {
    pub protocol: Protocol,
    pub channel: ChannelId,
    pub compression: Compression,
    pub payload: Bytes,
    /// Present exactly when `protocol` is UDP.
    pub udp: Option<UdpTrailer>,
}

/// One decoded LinkSocks message.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Message {
    Auth(Auth),
    AuthResponse {
        success: bool,
        error: Option<String>,
    },
    /// A successful AuthResponse (0x02) that also hands the client a token:
    /// `02 | 01 | TokenLen(1) Token(N)`, N > 0 (reference 1.10.x). The client presents this
    /// token instead of its own when it reconnects. The reference server never sends it;
    /// neither does ours. A zero-length token decodes as a plain successful
    /// [`Message::AuthResponse`], and an empty `token` here encodes as one, as the reference
    /// writes it. (A variant of its own rather than a field of `AuthResponse`, so that every
    /// existing `AuthResponse { success, error }` stays as it is.)
    AuthResponseToken {
        token: String,
    },
    Connect(Connect),
    /// A Connect (0x03) with the trailing resume byte (reference 1.10.3): not a new channel,
    /// but "channel `channel`, which you still hold, continues on this link". Never dialled.
    /// The reference appends the byte after the port (TCP) or right after the channel id
    /// (UDP); any non-zero value means resume.
    ConnectResume(Connect),
    ConnectResponse {
        success: bool,
        channel: ChannelId,
        error: Option<String>,
    },
    Data(Data),
    Disconnect {
        channel: ChannelId,
        error: Option<String>,
    },
    Connector {
        channel: ChannelId,
        token: String,
        op: ConnectorOp,
    },
    ConnectorResponse {
        channel: ChannelId,
        success: bool,
        error: Option<String>,
        token: Option<String>,
    },
    Log {
        level: String,
        msg: String,
    },
    Partners {
        count: i64,
    },
    /// A direct-transport message (0x0B–0x11: capabilities, rendezvous, status, channel
    /// migration) of the reference's peer-to-peer feature, which we do not implement:
    /// recognised, surfaced, ignored.
    DirectTransport {
        kind: u8,
    },
    /// Extension (ours): the sender understands the extension `features` (see [`feature`]).
    /// The server sends it just before a successful AuthResponse to a client whose URL query
    /// announced the same (`ext=flow`); a reference peer neither sends nor receives it.
    Hello {
        features: u32,
        /// With [`feature::CHANNEL_FLOW`]: the flow-control window both ends use on this link.
        window: u32,
    },
    /// Extension (ours): `bytes` more of `channel`'s data were written out by the receiver,
    /// so the sender may have that many more in flight.
    ChannelAck {
        channel: ChannelId,
        bytes: u32,
    },
    /// Extension (ours), from a relay: `channel` is not flow-controlled end to end (its other
    /// end does not speak the extension), so its sender must not wait for acknowledgements.
    ChannelNoWindow {
        channel: ChannelId,
    },
    /// Extension (ours): `channel`, suspended when its link was lost, continues on the link
    /// this comes on. The sender has received `received` bytes of the channel's data from its
    /// peer in all, and written `written` of them out to its local socket (acknowledged, in
    /// effect, whether or not its ChannelAcks arrived). The side that reconnects sends it
    /// first; the other answers with its own counts; each then sends again what it sent
    /// after the byte the other has received, so every byte arrives once and in order.
    ChannelResume {
        channel: ChannelId,
        received: u64,
        written: u64,
    },
}

impl Message {
    /// Name used in errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Auth(_) => "Auth",
            Message::AuthResponse { .. } | Message::AuthResponseToken { .. } => "AuthResponse",
            Message::Connect(_) => "Connect",
            Message::ConnectResume(_) => "Connect (resume)",
            Message::ConnectResponse { .. } => "ConnectResponse",
            Message::Data(_) => "Data",
            Message::Disconnect { .. } => "Disconnect",
            Message::Connector { .. } => "Connector",
            Message::ConnectorResponse { .. } => "ConnectorResponse",
            Message::Log { .. } => "Log",
            Message::Partners { .. } => "Partners",
            Message::DirectTransport { .. } => "DirectTransport",
            Message::Hello { .. } => "Hello",
            Message::ChannelAck { .. } => "ChannelAck",
            Message::ChannelNoWindow { .. } => "ChannelNoWindow",
            Message::ChannelResume { .. } => "ChannelResume",
        }
    }
}

/// Name of a type byte, for errors.
pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        kind::AUTH => "Auth",
        kind::AUTH_RESPONSE => "AuthResponse",
        kind::CONNECT => "Connect",
        kind::DATA => "Data",
        kind::CONNECT_RESPONSE => "ConnectResponse",
        kind::DISCONNECT => "Disconnect",
        kind::CONNECTOR => "Connector",
        kind::CONNECTOR_RESPONSE => "ConnectorResponse",
        kind::LOG => "Log",
        kind::PARTNERS => "Partners",
        kind::DIRECT_CAPABILITIES..=kind::CHANNEL_DATA_ACK => "DirectTransport",
        kind::HELLO => "Hello",
        kind::CHANNEL_ACK => "ChannelAck",
        kind::CHANNEL_NO_WINDOW => "ChannelNoWindow",
        kind::CHANNEL_RESUME => "ChannelResume",
        _ => "unknown",
    }
}
