//! Engine.IO v4 / Socket.IO v5 packets as the load generator needs them, and the payload
//! that carries each message's publisher, sequence number and send time.
//!
//! Pure functions over strings so they can be unit-tested; the transports (`ws`,
//! `polling`) only move these strings around.

use std::borrow::Cow;
use std::fmt::Write as _;

/// One Engine.IO text packet, decoded as far as the load generator cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Engine.IO OPEN (`0{...}`): the session id.
    Open { sid: String },
    /// Engine.IO CLOSE (`1`).
    Close,
    /// Engine.IO PING (`2`): must be answered with `3`.
    Ping,
    /// Socket.IO CONNECT acknowledged (`40{"sid":...}`).
    ConnectOk,
    /// Socket.IO CONNECT_ERROR (`44{...}`): the raw JSON after the type.
    ConnectError(&'a str),
    /// A `message` event whose argument is a string: the string (borrowed on the fast
    /// path, so a delivery costs no allocation).
    Message(Cow<'a, str>),
    /// The server's `error` event (`42["error",{"code":…}]`): its code. roomcast sends
    /// these for refused messages (rate limits, sizes), which a benchmark must surface.
    ServerError(String),
    /// Socket.IO DISCONNECT (`41`).
    Disconnect,
    /// Anything else (NOOP, pong, other events, the server's `error` event).
    Other,
}

/// Decodes one Engine.IO text packet.
pub fn parse(text: &str) -> Packet<'_> {
    let bytes = text.as_bytes();
    match bytes.first() {
        Some(b'0') => {
            let sid = serde_json::from_str::<serde_json::Value>(&text[1..])
                .ok()
                .and_then(|v| v.get("sid").and_then(|s| s.as_str()).map(str::to_owned));
            match sid {
                Some(sid) => Packet::Open { sid },
                None => Packet::Other,
            }
        }
        Some(b'1') => Packet::Close,
        Some(b'2') => Packet::Ping,
        Some(b'4') => parse_socketio(&text[1..]),
        _ => Packet::Other,
    }
}

fn parse_socketio(text: &str) -> Packet<'_> {
    match text.as_bytes().first() {
        Some(b'0') => Packet::ConnectOk,
        Some(b'1') => Packet::Disconnect,
        Some(b'4') => Packet::ConnectError(&text[1..]),
        Some(b'2') => parse_event(&text[1..]),
        _ => Packet::Other,
    }
}

/// The fast path is the exact shape every server sends for our payloads
/// (`["message","<ascii>"]`); anything else (a namespace, an ack id, escapes) falls back
/// to a JSON parse so no delivery is missed because of how a server formats it.
fn parse_event(text: &str) -> Packet<'_> {
    const HEAD: &str = "[\"message\",\"";
    if let Some(rest) = text.strip_prefix(HEAD) {
        if let Some(payload) = rest.strip_suffix("\"]") {
            if !payload.contains(['\\', '"']) {
                return Packet::Message(Cow::Borrowed(payload));
            }
        }
    }
    // Skip an optional namespace (`/ns,`) and ack id (digits) before the array.
    let mut body = text;
    if body.starts_with('/') {
        match body.find(',') {
            Some(i) => body = &body[i + 1..],
            None => return Packet::Other,
        }
    }
    body = body.trim_start_matches(|c: char| c.is_ascii_digit());
    match serde_json::from_str::<Vec<serde_json::Value>>(body) {
        Ok(args) if args.len() == 2 && args[0] == "message" => match &args[1] {
            serde_json::Value::String(s) => Packet::Message(Cow::Owned(s.clone())),
            _ => Packet::Other,
        },
        Ok(args) if !args.is_empty() && args[0] == "error" => {
            let code = args
                .get(1)
                .and_then(|e| e.get("code"))
                .and_then(|c| c.as_str())
                .unwrap_or("unknown");
            Packet::ServerError(code.chars().take(40).collect())
        }
        _ => Packet::Other,
    }
}

/// The Socket.IO CONNECT packet with `auth: {apiKey}`.
pub fn connect_packet(api_key: &str) -> String {
    format!("40{}", serde_json::json!({ "apiKey": api_key }))
}

/// A `message` event packet carrying `payload` (which [`make_payload`] keeps free of
/// characters that JSON would escape).
pub fn message_packet(payload: &str) -> String {
    let mut out = String::with_capacity(payload.len() + 16);
    out.push_str("42[\"message\",\"");
    out.push_str(payload);
    out.push_str("\"]");
    out
}

/// What every benchmark message carries, so receivers can measure loss, order and latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Global publisher index.
    pub publisher: u32,
    /// Per-publisher sequence number, from 0.
    pub seq: u64,
    /// Send time in microseconds since the load generator's `Instant` base.
    pub sent_us: u64,
}

/// `publisher.seq.sent_us.` padded with `x` to `size` bytes (longer if the stamp needs it).
pub fn make_payload(stamp: Stamp, size: usize) -> String {
    let mut out = String::with_capacity(size.max(48));
    let _ = write!(out, "{}.{}.{}.", stamp.publisher, stamp.seq, stamp.sent_us);
    while out.len() < size {
        out.push('x');
    }
    out
}

/// Reads a stamp back; `None` for a payload that is not ours.
pub fn parse_payload(payload: &str) -> Option<Stamp> {
    let mut parts = payload.splitn(4, '.');
    let publisher = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let sent_us = parts.next()?.parse().ok()?;
    parts.next()?;
    Some(Stamp {
        publisher,
        seq,
        sent_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_ping_close() {
        assert_eq!(
            parse(r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000}"#),
            Packet::Open { sid: "abc".into() }
        );
        assert_eq!(parse("0garbage"), Packet::Other);
        assert_eq!(parse("2"), Packet::Ping);
        assert_eq!(parse("1"), Packet::Close);
        assert_eq!(parse("6"), Packet::Other);
        assert_eq!(parse(""), Packet::Other);
    }

    #[test]
    fn connect_results() {
        assert_eq!(parse(r#"40{"sid":"x"}"#), Packet::ConnectOk);
        assert_eq!(
            parse(r#"44{"message":"invalid API key"}"#),
            Packet::ConnectError(r#"{"message":"invalid API key"}"#)
        );
        assert_eq!(parse("41"), Packet::Disconnect);
    }

    #[test]
    fn message_fast_and_slow_paths() {
        assert_eq!(
            parse(r#"42["message","1.2.3.xx"]"#),
            Packet::Message("1.2.3.xx".into())
        );
        assert_eq!(
            parse(r#"42/chat,["message","a\"b"]"#),
            Packet::Message("a\"b".into())
        );
        assert_eq!(
            parse(r#"4212["message","ack"]"#),
            Packet::Message("ack".into())
        );
        assert_eq!(parse(r#"42["message",5]"#), Packet::Other);
        assert_eq!(
            parse(r#"42["error",{"code":"RATE_LIMITED","retry_after_ms":5}]"#),
            Packet::ServerError("RATE_LIMITED".into())
        );
        assert_eq!(
            parse(r#"42["error"]"#),
            Packet::ServerError("unknown".into())
        );
        assert_eq!(parse("42[not json"), Packet::Other);
    }

    #[test]
    fn connect_packet_is_json_auth() {
        assert_eq!(connect_packet("room-1"), r#"40{"apiKey":"room-1"}"#);
        assert_eq!(connect_packet("a\"b"), r#"40{"apiKey":"a\"b"}"#);
    }

    #[test]
    fn payload_round_trip() {
        let stamp = Stamp {
            publisher: 17,
            seq: 42,
            sent_us: 123_456_789,
        };
        let payload = make_payload(stamp, 64);
        assert_eq!(payload.len(), 64);
        assert_eq!(parse_payload(&payload), Some(stamp));
        let packet = message_packet(&payload);
        assert_eq!(parse(&packet), Packet::Message(payload.into()));
        assert_eq!(parse_payload("hello"), None);
        assert_eq!(parse_payload("1.2.x."), None);
    }
}
