//! Writing messages. Every field goes straight into the caller's `BytesMut`; strings whose length
//! does not fit the one-byte length field are refused, never truncated.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::WireError;
use super::gzip;
use super::message::*;
use super::PROTOCOL_VERSION;
use crate::ids::ChannelId;

/// Bytes in front of a Data payload: version, type, protocol, channel id, compression, length.
pub const DATA_HEADER_LEN: usize = 1 + 1 + 1 + 16 + 1 + 4;

/// Append `msg` to `dst`. A Data message marked [`Compression::Gzip`] is compressed here.
pub fn encode(msg: &Message, dst: &mut BytesMut) -> Result<(), WireError> {
    match msg {
        Message::Auth(a) => {
            check_short("Auth", "token", &a.token)?;
            dst.reserve(2 + 1 + a.token.len() + 1 + 16);
            head(dst, kind::AUTH);
            short(dst, &a.token);
            dst.put_u8(a.reverse as u8);
            dst.put_slice(&a.instance.0);
        }
        Message::AuthResponse { success, error } => {
            let err = if *success { None } else { Some(text(error)) };
            if let Some(e) = err {
                check_short("AuthResponse", "error", e)?;
            }
            head(dst, kind::AUTH_RESPONSE);
            dst.put_u8(*success as u8);
            if let Some(e) = err {
                short(dst, e);
            }
        }
        Message::AuthResponseToken { token } => {
            check_short("AuthResponse", "token", token)?;
            head(dst, kind::AUTH_RESPONSE);
            dst.put_u8(1);
            // An empty token is not written: the plain successful AuthResponse.
            if !token.is_empty() {
                short(dst, token);
            }
        }
        Message::Connect(c) => encode_connect(c, false, dst)?,
        Message::ConnectResume(c) => encode_connect(c, true, dst)?,
        Message::ConnectResponse {
            success,
            channel,
            error,
        } => {
            let err = if *success { None } else { Some(text(error)) };
            if let Some(e) = err {
                check_short("ConnectResponse", "error", e)?;
            }
            head(dst, kind::CONNECT_RESPONSE);
            dst.put_u8(*success as u8);
            dst.put_slice(&channel.0);
            if let Some(e) = err {
                short(dst, e);
            }
        }
        Message::Data(d) => encode_data(d, dst)?,
        Message::Disconnect { channel, error } => {
            let err = error.as_deref().filter(|e| !e.is_empty());
            if let Some(e) = err {
                check_short("Disconnect", "error", e)?;
            }
            head(dst, kind::DISCONNECT);
            dst.put_slice(&channel.0);
            if let Some(e) = err {
                short(dst, e);
            }
        }
        Message::Connector { channel, token, op } => {
            check_short("Connector", "token", token)?;
            head(dst, kind::CONNECTOR);
            dst.put_slice(&channel.0);
            short(dst, token);
            dst.put_u8(op.to_byte());
        }
        Message::ConnectorResponse {
            channel,
            success,
            error,
            token,
        } => {
            let err = if *success { None } else { Some(text(error)) };
            let tok = if *success {
                token.as_deref().filter(|t| !t.is_empty())
            } else {
                None
            };
            if let Some(e) = err {
                check_short("ConnectorResponse", "error", e)?;
            }
            if let Some(t) = tok {
                check_short("ConnectorResponse", "token", t)?;
            }
            head(dst, kind::CONNECTOR_RESPONSE);
            dst.put_slice(&channel.0);
            dst.put_u8(*success as u8);
            if let Some(e) = err {
                short(dst, e);
            }
            if let Some(t) = tok {
                short(dst, t);
            }
        }
        Message::Log { level, msg } => {
            let body = serde_json::json!({ "level": level, "msg": msg });
            json(dst, kind::LOG, &body);
        }
        Message::Partners { count } => {
            let body = serde_json::json!({ "count": count });
            json(dst, kind::PARTNERS, &body);
        }
        Message::DirectTransport { .. } => {
            return Err(WireError::Invalid {
                message: "DirectTransport",
                field: "type",
                reason: "direct-transport messages are not implemented",
            })
        }
        Message::Hello { features, window } => {
            head(dst, kind::HELLO);
            dst.put_u32(*features);
            dst.put_u32(*window);
        }
        Message::ChannelAck { channel, bytes } => {
            head(dst, kind::CHANNEL_ACK);
            dst.put_slice(&channel.0);
            dst.put_u32(*bytes);
        }
        Message::ChannelNoWindow { channel } => {
            head(dst, kind::CHANNEL_NO_WINDOW);
            dst.put_slice(&channel.0);
        }
        Message::ChannelResume {
            channel,
            received,
            written,
        } => {
            head(dst, kind::CHANNEL_RESUME);
            dst.put_slice(&channel.0);
            dst.put_u64(*received);
            dst.put_u64(*written);
        }
    }
    Ok(())
}

/// Connect, with the reference's trailing resume byte when `resume`.
fn encode_connect(c: &Connect, resume: bool, dst: &mut BytesMut) -> Result<(), WireError> {
    match (&c.protocol, &c.target) {
        (Protocol::Tcp, Some((host, _))) => check_short("Connect", "address", host)?,
        (Protocol::Tcp, None) => {
            return Err(WireError::Invalid {
                message: "Connect",
                field: "address",
                reason: "a TCP Connect needs a target",
            })
        }
        (Protocol::Udp, _) => {}
    }
    head(dst, kind::CONNECT);
    dst.put_u8(c.protocol.to_byte());
    dst.put_slice(&c.channel.0);
    if let (Protocol::Tcp, Some((host, port))) = (c.protocol, &c.target) {
        short(dst, host);
        dst.put_u16(*port);
    }
    if resume {
        dst.put_u8(0x01);
    }
    Ok(())
}

/// Encode `msg` into a fresh frame.
pub fn encode_to_bytes(msg: &Message) -> Result<Bytes, WireError> {
    let mut b = BytesMut::new();
    encode(msg, &mut b)?;
    Ok(b.freeze())
}

fn encode_data(d: &Data, dst: &mut BytesMut) -> Result<(), WireError> {
    match (d.protocol, &d.udp) {
        (Protocol::Udp, Some(t)) => {
            check_short("Data", "address", &t.addr)?;
            check_short("Data", "target address", &t.target_addr)?;
        }
        (Protocol::Tcp, None) => {}
        // Either would give a frame that does not decode back to this message: a UDP frame
        // without its trailer is truncated, a TCP frame's trailer is ignored.
        (Protocol::Udp, None) => {
            return Err(WireError::Invalid {
                message: "Data",
                field: "UDP trailer",
                reason: "a UDP Data message needs its address trailer",
            })
        }
        (Protocol::Tcp, Some(_)) => {
            return Err(WireError::Invalid {
                message: "Data",
                field: "UDP trailer",
                reason: "a TCP Data message carries no address trailer",
            })
        }
    }
    if d.compression == Compression::None && u32::try_from(d.payload.len()).is_err() {
        return Err(WireError::PayloadTooLong {
            len: d.payload.len(),
        });
    }
    let start = dst.len();
    dst.reserve(DATA_HEADER_LEN + d.payload.len());
    dst.put_bytes(0, DATA_HEADER_LEN);
    match d.compression {
        Compression::None => dst.put_slice(&d.payload),
        Compression::Gzip => gzip::compress_into(&d.payload, dst),
    }
    let len = dst.len() - start - DATA_HEADER_LEN;
    let len = match u32::try_from(len) {
        Ok(len) => len,
        Err(_) => {
            // Leave `dst` as it was: no half-written frame.
            dst.truncate(start);
            return Err(WireError::PayloadTooLong { len });
        }
    };
    encode_data_header(
        &mut dst[start..start + DATA_HEADER_LEN],
        d.protocol,
        d.channel,
        d.compression,
        len,
    );
    if let Some(t) = &d.udp {
        short(dst, &t.addr);
        dst.put_u16(t.port);
        short(dst, &t.target_addr);
        dst.put_u16(t.target_port);
    }
    Ok(())
}

/// Write the 24-byte Data header into `dst[..DATA_HEADER_LEN]`. Lets a payload that was read
/// into a buffer with header room in front become a frame without being copied.
pub fn encode_data_header(
    dst: &mut [u8],
    protocol: Protocol,
    channel: ChannelId,
    compression: Compression,
    payload_len: u32,
) {
    let dst = &mut dst[..DATA_HEADER_LEN];
    dst[0] = PROTOCOL_VERSION;
    dst[1] = kind::DATA;
    dst[2] = protocol.to_byte();
    dst[3..19].copy_from_slice(&channel.0);
    dst[19] = compression.to_byte();
    dst[20..24].copy_from_slice(&payload_len.to_be_bytes());
}

fn head(dst: &mut BytesMut, kind: u8) {
    dst.put_u8(PROTOCOL_VERSION);
    dst.put_u8(kind);
}

fn text(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

fn check_short(message: &'static str, field: &'static str, s: &str) -> Result<(), WireError> {
    if s.len() > 255 {
        return Err(WireError::TooLong {
            message,
            field,
            len: s.len(),
        });
    }
    Ok(())
}

fn short(dst: &mut BytesMut, s: &str) {
    debug_assert!(s.len() <= 255);
    dst.put_u8(s.len() as u8);
    dst.put_slice(s.as_bytes());
}

fn json(dst: &mut BytesMut, kind: u8, body: &serde_json::Value) {
    let body = serde_json::to_vec(body).expect("JSON of strings and numbers");
    head(dst, kind);
    dst.put_u32(body.len() as u32);
    dst.put_slice(&body);
}

/// Cut `s` to at most 255 bytes at a character boundary, for texts (error messages) where a
/// shortened text is better than none. Tokens and addresses are never cut: they are refused.
pub fn clip_text(s: &str) -> &str {
    if s.len() <= 255 {
        return s;
    }
    let mut end = 255;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
