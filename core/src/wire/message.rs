//! LinkSocks message types (protocol 0x01). Field order and meaning follow the spec, section 2.

use bytes::Bytes;

use crate::ids::{ChannelId, InstanceId};

/// Message type bytes.
pub mod kind {
    /// Auth (spec §2, §3): a client's token, reverse flag and instance id; sent first when the
    /// token is not in the URL query.
    pub const AUTH: u8 = 0x01;
    /// AuthResponse: the server's verdict on a client's authentication.
    pub const AUTH_RESPONSE: u8 = 0x02;
    /// Connect: the SOCKS side opens a channel; the dialling side answers with ConnectResponse.
    pub const CONNECT: u8 = 0x03;
    /// Data: a channel's payload, either way.
    pub const DATA: u8 = 0x04;
    /// ConnectResponse: the dialling side's answer to a Connect.
    pub const CONNECT_RESPONSE: u8 = 0x05;
    /// Disconnect: either side ends a channel.
    pub const DISCONNECT: u8 = 0x06;
    /// Connector (autonomy mode): a provider adds or removes one of its connector tokens.
    pub const CONNECTOR: u8 = 0x07;
    /// ConnectorResponse: the server's answer to a Connector.
    pub const CONNECTOR_RESPONSE: u8 = 0x08;
    /// Log: a server-to-client log line with a level (JSON body).
    pub const LOG: u8 = 0x09;
    /// Partners: the server tells a client how many partners it has (JSON body).
    pub const PARTNERS: u8 = 0x0A;
    /// Direct transport, capabilities (reference peer-to-peer feature, ignored).
    pub const DIRECT_CAPABILITIES: u8 = 0x0B;
    /// Direct transport, rendezvous (ignored).
    pub const DIRECT_RENDEZVOUS: u8 = 0x0C;
    /// Direct transport, status (ignored).
    pub const DIRECT_STATUS: u8 = 0x0D;
    /// 0x0E..=0x11: the reference's channel-migration messages (direct transport), never sent
    /// to a relay-only peer; known and ignored.
    pub const CHANNEL_BIND: u8 = 0x0E;
    /// Last of the reference's channel-migration types (0x0E..=0x11).
    pub const CHANNEL_DATA_ACK: u8 = 0x11;
    /// 0x40..: our extensions, sent only to a peer that announced it understands them (see
    /// [`super::Message::Hello`]); the reference never receives them.
    pub const HELLO: u8 = 0x40;
    /// Acknowledges written-out bytes of a channel ([`super::Message::ChannelAck`]).
    pub const CHANNEL_ACK: u8 = 0x41;
    /// A channel is not flow-controlled end to end ([`super::Message::ChannelNoWindow`]).
    pub const CHANNEL_NO_WINDOW: u8 = 0x42;
    /// A suspended channel continues on this link ([`super::Message::ChannelResume`]).
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
    /// TCP: a stream channel; byte 0x01.
    Tcp,
    /// UDP: an association; byte 0x02.
    Udp,
}

impl Protocol {
    /// The Protocol byte on the wire (spec §2).
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
    /// Payload sent as is; byte 0x00.
    None,
    /// Payload gzip-compressed (RFC 1952); byte 0x01.
    Gzip,
}

impl Compression {
    /// The Compression byte on the wire (spec §2).
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
    /// Add a connector token; byte 0x01.
    Add,
    /// Remove a connector token; byte 0x02.
    Remove,
}

impl ConnectorOp {
    /// The Operation byte on the wire (spec §2).
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
    /// The token in clear text (at most 255 bytes on the wire).
    pub token: String,
    /// `true` for a reverse provider, `false` for a forward client or a connector.
    pub reverse: bool,
    /// The client's instance id (16 raw UUID bytes), stable across its reconnects.
    pub instance: InstanceId,
}

/// Connect (0x03): open a channel. TCP carries the target; UDP carries none.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Connect {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The channel being opened, chosen by the side that owns the SOCKS listener.
    pub channel: ChannelId,
    /// `(host, port)` for TCP; `None` for UDP.
    pub target: Option<(String, u16)>,
}

/// UDP trailer of a Data message. From the SOCKS side toward the dialling side `addr:port` is
/// the destination; back, it is the source the datagram came from. `target_*` is empty in the
/// older, shorter form of the trailer.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct UdpTrailer {
    /// Destination (toward the dialling side) or source (back) address: an IP literal or a domain
    /// name.
    pub addr: String,
    /// Port belonging to `addr`.
    pub port: u16,
    /// The newer trailer's target address; empty when absent.
    pub target_addr: String,
    /// Port belonging to `target_addr`; 0 when absent.
    pub target_port: u16,
}

/// Data (0x04). After decoding, `payload` is always the plain (inflated) bytes; `compression`
/// says how it travelled.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Data {
    /// TCP or UDP; decides whether a trailer follows.
    pub protocol: Protocol,
    /// The channel the payload belongs to.
    pub channel: ChannelId,
    /// How the payload travelled.
    pub compression: Compression,
    /// The payload, always decompressed after decoding.
    pub payload: Bytes,
    /// Present exactly when `protocol` is UDP.
    pub udp: Option<UdpTrailer>,
}

/// One decoded LinkSocks message.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Message {
    /// Auth (0x01), sent by a client.
    Auth(Auth),
    /// AuthResponse (0x02), sent by the server after authentication; on failure the server closes
    /// the link.
    AuthResponse {
        /// Whether the client was accepted.
        success: bool,
        /// The refusal text (e.g. `invalid token`); `None` on success or when the peer sent none.
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
        /// The token the client presents when it reconnects.
        token: String,
    },
    /// Connect (0x03): open a new channel.
    Connect(Connect),
    /// A Connect (0x03) with the trailing resume byte (reference 1.10.3): not a new channel,
    /// but "channel `channel`, which you still hold, continues on this link". Never dialled.
    /// The reference appends the byte after the port (TCP) or right after the channel id
    /// (UDP); any non-zero value means resume.
    ConnectResume(Connect),
    /// ConnectResponse (0x05), from the dialling side: whether the target was reached.
    ConnectResponse {
        /// Whether the dial succeeded; on failure the SOCKS side replies 0x04.
        success: bool,
        /// The channel of the Connect this answers.
        channel: ChannelId,
        /// The dial error text; `None` on success.
        error: Option<String>,
    },
    /// Data (0x04): channel payload, either way.
    Data(Data),
    /// Disconnect (0x06), from either side: the channel is over (no half-close).
    Disconnect {
        /// The channel that ended.
        channel: ChannelId,
        /// Why, when the sender had an error to report; `None` for a plain close.
        error: Option<String>,
    },
    /// Connector (0x07), from a provider in autonomy mode: add or remove one of its connector
    /// tokens.
    Connector {
        /// Request id the ConnectorResponse echoes.
        channel: ChannelId,
        /// The connector token; empty on add asks the server to generate one.
        token: String,
        /// Add or remove.
        op: ConnectorOp,
    },
    /// ConnectorResponse (0x08), from the server: the outcome of a Connector.
    ConnectorResponse {
        /// The request id of the Connector this answers.
        channel: ChannelId,
        /// Whether the operation succeeded.
        success: bool,
        /// The failure text; `None` on success.
        error: Option<String>,
        /// On a successful add, the connector token (generated when the request had none).
        token: Option<String>,
    },
    /// Log (0x09), from the server: a line for the client to show at `level`.
    Log {
        /// `trace`, `debug`, `info`, `warn` or `error`, as the sender wrote it.
        level: String,
        /// The text of the line.
        msg: String,
    },
    /// Partners (0x0A), from the server: to a connector, the number of providers; to a provider,
    /// the number of connectors.
    Partners {
        /// The number of partners, as the JSON body carries it.
        count: i64,
    },
    /// A direct-transport message (0x0B–0x11: capabilities, rendezvous, status, channel
    /// migration) of the reference's peer-to-peer feature, which we do not implement:
    /// recognised, surfaced, ignored.
    DirectTransport {
        /// The type byte received.
        kind: u8,
    },
    /// Extension (ours): the sender understands the extension `features` (see [`feature`]).
    /// The server sends it just before a successful AuthResponse to a client whose URL query
    /// announced the same (`ext=flow`); a reference peer neither sends nor receives it.
    Hello {
        /// Bit set of [`feature`] constants.
        features: u32,
        /// With [`feature::CHANNEL_FLOW`]: the flow-control window both ends use on this link.
        window: u32,
    },
    /// Extension (ours): `bytes` more of `channel`'s data were written out by the receiver,
    /// so the sender may have that many more in flight.
    ChannelAck {
        /// The acknowledged channel.
        channel: ChannelId,
        /// Number of bytes written out since the previous acknowledgement.
        bytes: u32,
    },
    /// Extension (ours), from a relay: `channel` is not flow-controlled end to end (its other
    /// end does not speak the extension), so its sender must not wait for acknowledgements.
    ChannelNoWindow {
        /// The channel that is not flow-controlled.
        channel: ChannelId,
    },
    /// Extension (ours): `channel`, suspended when its link was lost, continues on the link
    /// this comes on. The sender has received `received` bytes of the channel's data from its
    /// peer in all, and written `written` of them out to its local socket (acknowledged, in
    /// effect, whether or not its ChannelAcks arrived). The side that reconnects sends it
    /// first; the other answers with its own counts; each then sends again what it sent
    /// after the byte the other has received, so every byte arrives once and in order.
    ChannelResume {
        /// The resumed channel.
        channel: ChannelId,
        /// Total bytes of the channel's data the sender has received from its peer.
        received: u64,
        /// Total of those bytes the sender has written out to its local socket.
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
