//! Parsing one WebSocket binary message. Input is untrusted: every length is checked against
//! the bytes actually present before it is used, nothing is allocated from a length field, and
//! uncompressed Data payloads are zero-copy slices of the frame.

use bytes::Bytes;

use super::error::WireError;
use super::gzip;
use super::message::*;
use super::{version_major, PROTOCOL_VERSION};
use crate::ids::{ChannelId, InstanceId};

/// Bounds applied while decoding.
#[derive(Copy, Clone, Debug)]
pub struct DecodeLimits {
    /// Largest payload a gzip Data message may inflate to.
    pub max_inflated: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_inflated: super::MAX_MESSAGE_SIZE,
        }
    }
}

/// Decode one message. Trailing bytes after the last field are ignored, as the reference does,
/// so that a newer minor version may append fields.
pub fn decode(frame: Bytes, limits: &DecodeLimits) -> Result<Message, WireError> {
    if frame.is_empty() {
        return Err(WireError::Empty);
    }
    if frame.len() < 2 {
        return Err(WireError::NoHeader { len: frame.len() });
    }
    let version = frame[0];
    if version_major(version) != version_major(PROTOCOL_VERSION) {
        return Err(WireError::UnsupportedVersion {
            got: version,
            ours: PROTOCOL_VERSION,
        });
    }
    let kind_byte = frame[1];
    let message = kind_name(kind_byte);
    let mut r = Reader {
        frame: &frame,
        pos: 2,
        message,
    };
    let msg = match kind_byte {
        kind::AUTH => {
            let token = r.short_str("token")?;
            let reverse = r.u8("reverse")? != 0;
            let instance = InstanceId(r.id("instance")?);
            Message::Auth(Auth {
                token,
                reverse,
                instance,
            })
        }
        kind::AUTH_RESPONSE => {
            let success = r.u8("success")? != 0;
            if success {
                // Reference 1.10.x: a success may carry a token for the client's reconnects.
                let token = if r.remaining() > 0 {
                    r.short_str("token")?
                } else {
                    String::new()
                };
                if token.is_empty() {
                    Message::AuthResponse {
                        success,
                        error: None,
                    }
                } else {
                    Message::AuthResponseToken { token }
                }
            } else {
                // The error text is optional on the wire even on failure.
                let error = if r.remaining() > 0 {
                    r.opt_text("error")?
                } else {
                    None
                };
                Message::AuthResponse { success, error }
            }
        }
        kind::CONNECT => {
            let protocol = r.protocol()?;
            let channel = ChannelId(r.id("channel id")?);
            let target = match protocol {
                Protocol::Tcp => {
                    let host = r.short_str("address")?;
                    let port = r.u16("port")?;
                    Some((host, port))
                }
                Protocol::Udp => None,
            };
            let connect = Connect {
                protocol,
                channel,
                target,
            };
            // The reference's resume byte; an absent one (every older peer) means a new channel.
            let resume = r.remaining() > 0 && r.u8("resume")? != 0;
            if resume {
                Message::ConnectResume(connect)
            } else {
                Message::Connect(connect)
            }
        }
        kind::CONNECT_RESPONSE => {
            let success = r.u8("success")? != 0;
            let channel = ChannelId(r.id("channel id")?);
            let error = if !success && r.remaining() > 0 {
                r.opt_text("error")?
            } else {
                None
            };
            Message::ConnectResponse {
                success,
                channel,
                error,
            }
        }
        kind::DATA => {
            let protocol = r.protocol()?;
            let channel = ChannelId(r.id("channel id")?);
            let compression = match r.u8("compression")? {
                0 => Compression::None,
                1 => Compression::Gzip,
                _ => {
                    return Err(WireError::Invalid {
                        message,
                        field: "compression",
                        reason: "not 0 (none) or 1 (gzip)",
                    })
                }
            };
            let len = r.u32("data length")? as usize;
            let raw = r.slice("data", len)?;
            let udp = match protocol {
                Protocol::Tcp => None,
                Protocol::Udp => {
                    let addr = r.short_str("address")?;
                    let port = r.u16("port")?;
                    // Older peers stop here; the target part is then empty.
                    let (target_addr, target_port) = if r.remaining() > 0 {
                        (r.short_str("target address")?, r.u16("target port")?)
                    } else {
                        (String::new(), 0)
                    };
                    Some(UdpTrailer {
                        addr,
                        port,
                        target_addr,
                        target_port,
                    })
                }
            };
            let payload = match compression {
                Compression::None => raw,
                Compression::Gzip => gzip::decompress(&raw, limits.max_inflated)?,
            };
            Message::Data(Data {
                protocol,
                channel,
                compression,
                payload,
                udp,
            })
        }
        kind::DISCONNECT => {
            let channel = ChannelId(r.id("channel id")?);
            let error = if r.remaining() > 0 {
                r.opt_text("error")?
            } else {
                None
            };
            Message::Disconnect { channel, error }
        }
        kind::CONNECTOR => {
            let channel = ChannelId(r.id("channel id")?);
            let token = r.short_str("token")?;
            let op = match r.u8("operation")? {
                0x01 => ConnectorOp::Add,
                0x02 => ConnectorOp::Remove,
                _ => {
                    return Err(WireError::Invalid {
                        message,
                        field: "operation",
                        reason: "not 1 (add) or 2 (remove)",
                    })
                }
            };
            Message::Connector { channel, token, op }
        }
        kind::CONNECTOR_RESPONSE => {
            let channel = ChannelId(r.id("channel id")?);
            let success = r.u8("success")? != 0;
            let (error, token) = if !success {
                let e = if r.remaining() > 0 {
                    r.opt_text("error")?
                } else {
                    None
                };
                (e, None)
            } else if r.remaining() > 0 {
                let token = r.short_str("token")?;
                // A zero-length token is "no token", as the encoder writes it.
                (None, (!token.is_empty()).then_some(token))
            } else {
                (None, None)
            };
            Message::ConnectorResponse {
                channel,
                success,
                error,
                token,
            }
        }
        kind::LOG => {
            let body = r.json_body()?;
            let level = json_str(&body, "level");
            let msg = json_str(&body, "msg");
            Message::Log { level, msg }
        }
        kind::PARTNERS => {
            let body = r.json_body()?;
            let count = body
                .get("count")
                .and_then(|c| c.as_i64())
                .ok_or(WireError::Invalid {
                    message,
                    field: "count",
                    reason: "missing or not an integer",
                })?;
            Message::Partners { count }
        }
        kind::DIRECT_CAPABILITIES..=kind::CHANNEL_DATA_ACK => {
            Message::DirectTransport { kind: kind_byte }
        }
        kind::HELLO => Message::Hello {
            features: r.u32("features")?,
            window: r.u32("window")?,
        },
        kind::CHANNEL_ACK => Message::ChannelAck {
            channel: ChannelId(r.id("channel id")?),
            bytes: r.u32("bytes")?,
        },
        kind::CHANNEL_NO_WINDOW => Message::ChannelNoWindow {
            channel: ChannelId(r.id("channel id")?),
        },
        kind::CHANNEL_RESUME => Message::ChannelResume {
            channel: ChannelId(r.id("channel id")?),
            received: r.u64("received")?,
            written: r.u64("written")?,
        },
        other => return Err(WireError::UnknownType(other)),
    };
    Ok(msg)
}

fn json_str(body: &serde_json::Value, key: &str) -> String {
    match body.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) if !v.is_null() => v.to_string(),
        _ => String::new(),
    }
}

struct Reader<'a> {
    frame: &'a Bytes,
    pos: usize,
    message: &'static str,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.frame.len() - self.pos
    }

    fn need(&self, field: &'static str, n: usize) -> Result<(), WireError> {
        if self.remaining() < n {
            return Err(WireError::Truncated {
                message: self.message,
                field,
                need: n,
                have: self.remaining(),
            });
        }
        Ok(())
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        self.need(field, 1)?;
        let v = self.frame[self.pos];
        self.pos += 1;
        Ok(v)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        self.need(field, 2)?;
        let v = u16::from_be_bytes([self.frame[self.pos], self.frame[self.pos + 1]]);
        self.pos += 2;
        Ok(v)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        self.need(field, 4)?;
        let b = &self.frame[self.pos..self.pos + 4];
        self.pos += 4;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        self.need(field, 8)?;
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.frame[self.pos..self.pos + 8]);
        self.pos += 8;
        Ok(u64::from_be_bytes(b))
    }

    fn id(&mut self, field: &'static str) -> Result<[u8; 16], WireError> {
        self.need(field, 16)?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&self.frame[self.pos..self.pos + 16]);
        self.pos += 16;
        Ok(id)
    }

    fn slice(&mut self, field: &'static str, n: usize) -> Result<Bytes, WireError> {
        self.need(field, n)?;
        let b = self.frame.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    fn protocol(&mut self) -> Result<Protocol, WireError> {
        match self.u8("protocol")? {
            0x01 => Ok(Protocol::Tcp),
            0x02 => Ok(Protocol::Udp),
            _ => Err(WireError::Invalid {
                message: self.message,
                field: "protocol",
                reason: "not 1 (TCP) or 2 (UDP)",
            }),
        }
    }

    fn short_bytes(&mut self, field: &'static str) -> Result<&[u8], WireError> {
        let n = self.u8(field)? as usize;
        self.need(field, n)?;
        let s = &self.frame[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// A length-prefixed string that must be valid UTF-8 (tokens, addresses).
    fn short_str(&mut self, field: &'static str) -> Result<String, WireError> {
        let message = self.message;
        let b = self.short_bytes(field)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| WireError::Invalid {
                message,
                field,
                reason: "not valid UTF-8",
            })
    }

    /// A length-prefixed human text (error messages): invalid UTF-8 is replaced, not refused.
    /// Replacement characters are three bytes each, so the result is cut back to 255 bytes at a
    /// character boundary: a decoded message must always be encodable again.
    fn short_text(&mut self, field: &'static str) -> Result<String, WireError> {
        let b = self.short_bytes(field)?;
        Ok(match String::from_utf8_lossy(b) {
            std::borrow::Cow::Borrowed(s) => s.to_owned(),
            std::borrow::Cow::Owned(s) => super::encode::clip_text(&s).to_owned(),
        })
    }

    /// An optional error text: a zero-length text means "no error text" (`None`), which is how
    /// the encoder writes `None`, so that decode and encode agree.
    fn opt_text(&mut self, field: &'static str) -> Result<Option<String>, WireError> {
        let s = self.short_text(field)?;
        Ok((!s.is_empty()).then_some(s))
    }

    fn json_body(&mut self) -> Result<serde_json::Value, WireError> {
        let n = self.u32("data length")? as usize;
        self.need("data", n)?;
        let body = &self.frame[self.pos..self.pos + n];
        self.pos += n;
        serde_json::from_slice(body).map_err(|e| WireError::Json {
            message: self.message,
            reason: e.to_string(),
        })
    }
}
