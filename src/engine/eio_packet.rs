//! Engine.IO v4 packets: parsing what clients send (WebSocket frames and long-polling
//! payloads) and encoding what the server sends. Pure functions over bytes.

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};

/// Separator between packets in a long-polling payload (ASCII record separator).
pub const RECORD_SEPARATOR: u8 = 0x1e;

/// A packet from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// `1`: the client closes the session.
    Close,
    /// `2…`: a ping (only `2probe` during an upgrade is expected in v4).
    Ping(Bytes),
    /// `3…`: a pong answering our ping.
    Pong,
    /// `4…` or a binary frame: application data.
    Message(Payload),
    /// `5`: the upgrade to WebSocket is complete.
    Upgrade,
    /// `6`: nothing.
    Noop,
}

/// Application data carried by a message packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Text (UTF-8), without the leading `4`.
    Text(Bytes),
    /// Binary data.
    Binary(Bytes),
}

/// Why a client's packet is refused (the session is then closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Empty packet.
    #[error("empty packet")]
    Empty,
    /// Unknown or client-forbidden packet type.
    #[error("invalid packet type")]
    InvalidType,
    /// `b` prefix with invalid base64.
    #[error("invalid base64 payload")]
    InvalidBase64,
    /// Not UTF-8 text.
    #[error("payload is not UTF-8")]
    InvalidUtf8,
}

/// Parses one text packet (a WebSocket text frame, or one record of a polling payload).
/// `text` must be UTF-8 already checked by the caller.
pub fn parse_text(text: Bytes) -> Result<Inbound, PacketError> {
    let Some(&kind) = text.first() else {
        return Err(PacketError::Empty);
    };
    Ok(match kind {
        b'1' => Inbound::Close,
        b'2' => Inbound::Ping(text.slice(1..)),
        b'3' => Inbound::Pong,
        b'4' => Inbound::Message(Payload::Text(text.slice(1..))),
        b'5' => Inbound::Upgrade,
        b'6' => Inbound::Noop,
        b'b' => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(&text[1..])
                .map_err(|_| PacketError::InvalidBase64)?;
            Inbound::Message(Payload::Binary(Bytes::from(decoded)))
        }
        _ => return Err(PacketError::InvalidType),
    })
}

/// Splits a long-polling POST body into packets, in order.
pub fn parse_payload(body: Bytes) -> Result<Vec<Inbound>, PacketError> {
    if std::str::from_utf8(&body).is_err() {
        return Err(PacketError::InvalidUtf8);
    }
    let mut packets = Vec::new();
    let mut start = 0;
    for (i, byte) in body.iter().enumerate() {
        if *byte == RECORD_SEPARATOR {
            packets.push(parse_text(body.slice(start..i))?);
            start = i + 1;
        }
    }
    packets.push(parse_text(body.slice(start..))?);
    Ok(packets)
}

/// A packet queued for a client: the bytes are shared by every recipient of a broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutFrame {
    /// A whole text packet including its type digit (`42[...]`, `2`, `6`).
    Text(Bytes),
    /// A binary message (sent as a binary frame, or `b<base64>` over polling).
    Binary(Bytes),
}

impl OutFrame {
    /// A text packet from a static string such as `"2"`.
    pub const fn from_static(text: &'static str) -> Self {
        Self::Text(Bytes::from_static(text.as_bytes()))
    }

    /// Bytes this frame holds, as counted against a socket's backlog.
    pub fn len(&self) -> usize {
        match self {
            Self::Text(b) | Self::Binary(b) => b.len(),
        }
    }

    /// Whether the frame carries no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The ping packet.
pub const PING: OutFrame = OutFrame::from_static("2");
/// The noop packet.
pub const NOOP: OutFrame = OutFrame::from_static("6");
/// The close packet.
pub const CLOSE: OutFrame = OutFrame::from_static("1");

/// Joins frames into one long-polling response body.
pub fn encode_payload(frames: &[OutFrame]) -> Bytes {
    if let [OutFrame::Text(only)] = frames {
        return only.clone();
    }
    let size: usize = frames.iter().map(|f| f.len() * 4 / 3 + 4).sum();
    let mut out = BytesMut::with_capacity(size);
    for (i, frame) in frames.iter().enumerate() {
        if i > 0 {
            out.put_u8(RECORD_SEPARATOR);
        }
        match frame {
            OutFrame::Text(text) => out.extend_from_slice(text),
            OutFrame::Binary(data) => {
                out.put_u8(b'b');
                out.extend_from_slice(
                    base64::engine::general_purpose::STANDARD
                        .encode(data)
                        .as_bytes(),
                );
            }
        }
    }
    out.freeze()
}

/// The open packet (`0{...}`) that starts a session.
pub fn open_packet(
    sid: &str,
    upgrades: bool,
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
    max_payload: usize,
) -> OutFrame {
    let upgrades = if upgrades { r#"["websocket"]"# } else { "[]" };
    OutFrame::Text(Bytes::from(format!(
        r#"0{{"sid":"{sid}","upgrades":{upgrades},"pingInterval":{ping_interval_ms},"pingTimeout":{ping_timeout_ms},"maxPayload":{max_payload}}}"#
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_packet_type() {
        let t = |s: &'static str| parse_text(Bytes::from_static(s.as_bytes()));
        assert_eq!(t("1"), Ok(Inbound::Close));
        assert_eq!(t("2probe"), Ok(Inbound::Ping(Bytes::from_static(b"probe"))));
        assert_eq!(t("3"), Ok(Inbound::Pong));
        assert_eq!(
            t("4hello"),
            Ok(Inbound::Message(Payload::Text(Bytes::from_static(
                b"hello"
            ))))
        );
        assert_eq!(t("5"), Ok(Inbound::Upgrade));
        assert_eq!(t("6"), Ok(Inbound::Noop));
        assert_eq!(
            t("bAQIDBA=="),
            Ok(Inbound::Message(Payload::Binary(Bytes::from_static(&[
                1, 2, 3, 4
            ]))))
        );
    }

    #[test]
    fn refuses_malformed_packets() {
        let t = |s: &'static str| parse_text(Bytes::from_static(s.as_bytes()));
        assert_eq!(t(""), Err(PacketError::Empty));
        assert_eq!(t("abc"), Err(PacketError::InvalidType));
        assert_eq!(t("0{}"), Err(PacketError::InvalidType));
        assert_eq!(t("7"), Err(PacketError::InvalidType));
        assert_eq!(t("b!!"), Err(PacketError::InvalidBase64));
        assert_eq!(
            parse_payload(Bytes::from_static(b"4a\x1e")),
            Err(PacketError::Empty)
        );
        assert_eq!(
            parse_payload(Bytes::from_static(&[b'4', 0xff])),
            Err(PacketError::InvalidUtf8)
        );
    }

    #[test]
    fn round_trips_a_polling_payload() {
        let packets = parse_payload(Bytes::from_static(b"4test1\x1e4test2\x1ebAQIDBA==")).unwrap();
        assert_eq!(packets.len(), 3);
        let frames = vec![
            OutFrame::Text(Bytes::from_static(b"4test1")),
            OutFrame::Text(Bytes::from_static(b"4test2")),
            OutFrame::Binary(Bytes::from_static(&[1, 2, 3, 4])),
        ];
        assert_eq!(
            &encode_payload(&frames)[..],
            b"4test1\x1e4test2\x1ebAQIDBA=="
        );
        assert_eq!(&encode_payload(&[PING])[..], b"2");
    }

    #[test]
    fn encodes_the_open_packet() {
        let OutFrame::Text(text) = open_packet("abc", true, 25000, 20000, 1_000_000) else {
            panic!("text expected");
        };
        let value: serde_json::Value = serde_json::from_slice(&text[1..]).unwrap();
        assert_eq!(value["sid"], "abc");
        assert_eq!(value["upgrades"], serde_json::json!(["websocket"]));
        assert_eq!(value["pingInterval"], 25000);
        assert_eq!(value["maxPayload"], 1_000_000);
    }
}
