//! Socket.IO v5 packets: `<type>[<attachments>-][<namespace>,][<ack id>][<json>]`.
//! Parsing validates the shape each packet type allows, as the reference parser does;
//! encoding builds the exact text the official client expects.

use serde_json::value::RawValue;
use std::borrow::Cow;

/// Socket.IO packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// `0`: join a namespace.
    Connect,
    /// `1`: leave a namespace.
    Disconnect,
    /// `2`: an event.
    Event,
    /// `3`: an acknowledgement.
    Ack,
    /// `4`: the server refused a CONNECT (never valid from a client).
    ConnectError,
    /// `5`: an event with binary attachments.
    BinaryEvent,
    /// `6`: an acknowledgement with binary attachments.
    BinaryAck,
}

/// Events a client may not emit (the reference server refuses them too).
const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Why a client's Socket.IO packet is refused (the connection is then closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Empty packet.
    #[error("empty packet")]
    Empty,
    /// Unknown or client-forbidden packet type.
    #[error("unknown packet type")]
    UnknownType,
    /// Bad attachment count.
    #[error("invalid attachment count")]
    InvalidAttachments,
    /// Ack id too long or not a number.
    #[error("invalid ack id")]
    InvalidAckId,
    /// Payload that is not JSON or not the shape the packet type needs.
    #[error("invalid payload")]
    InvalidPayload,
}

/// A parsed client packet borrowing from the text it came from.
#[derive(Debug)]
pub struct Packet<'a> {
    /// The packet type.
    pub kind: PacketKind,
    /// The namespace (`/` when absent).
    pub nsp: &'a str,
    /// Binary attachments that follow (binary types only).
    pub attachments: usize,
    /// The acknowledgement id the sender asked for, or that this ack answers.
    pub ack_id: Option<u64>,
    /// The JSON payload text, if any.
    pub data: Option<&'a str>,
    /// For events: the event name and the raw JSON of each argument after it.
    /// For acks: every element. Empty otherwise.
    pub args: Vec<&'a RawValue>,
    /// The event name (events only).
    pub event: Option<Cow<'a, str>>,
}

/// Parses one text packet (the Engine.IO message payload, without the leading `4`).
pub fn parse(text: &str) -> Result<Packet<'_>, ParseError> {
    let bytes = text.as_bytes();
    let kind = match bytes.first().ok_or(ParseError::Empty)? {
        b'0' => PacketKind::Connect,
        b'1' => PacketKind::Disconnect,
        b'2' => PacketKind::Event,
        b'3' => PacketKind::Ack,
        b'5' => PacketKind::BinaryEvent,
        b'6' => PacketKind::BinaryAck,
        _ => return Err(ParseError::UnknownType),
    };
    let mut i = 1;
    let mut attachments = 0;
    if matches!(kind, PacketKind::BinaryEvent | PacketKind::BinaryAck) {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > 6 || bytes.get(i) != Some(&b'-') {
            return Err(ParseError::InvalidAttachments);
        }
        attachments = text[start..i]
            .parse()
            .map_err(|_| ParseError::InvalidAttachments)?;
        i += 1;
    }
    let mut nsp = "/";
    if bytes.get(i) == Some(&b'/') {
        let start = i;
        while i < bytes.len() && bytes[i] != b',' {
            i += 1;
        }
        nsp = &text[start..i];
        if i < bytes.len() {
            i += 1; // the comma
        }
    }
    let mut ack_id = None;
    let start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    if i > start {
        // u64 holds 19 digits; a longer id is hostile.
        ack_id = Some(
            text[start..i]
                .parse()
                .map_err(|_| ParseError::InvalidAckId)?,
        );
    }
    let data = (i < bytes.len()).then(|| &text[i..]);
    let mut packet = Packet {
        kind,
        nsp,
        attachments,
        ack_id,
        data,
        args: Vec::new(),
        event: None,
    };
    match kind {
        PacketKind::Connect => {
            // Any JSON is let through (the reference parser wants an object): an auth
            // hook that needs an object answers CONNECT_ERROR, which tells the user far
            // more than a dropped connection and a reconnect loop.
            if let Some(data) = data {
                serde_json::from_str::<&RawValue>(data).map_err(|_| ParseError::InvalidPayload)?;
            }
        }
        PacketKind::Disconnect => {
            if data.is_some() {
                return Err(ParseError::InvalidPayload);
            }
        }
        PacketKind::Event | PacketKind::BinaryEvent => {
            let mut args: Vec<&RawValue> =
                serde_json::from_str(data.ok_or(ParseError::InvalidPayload)?)
                    .map_err(|_| ParseError::InvalidPayload)?;
            if args.is_empty() {
                return Err(ParseError::InvalidPayload);
            }
            // The reference parser takes a number as an event name too (`emit(1, …)`);
            // it arrives as its decimal text, an event like any other unknown one.
            let name: Cow<'_, str> = match serde_json::from_str(args[0].get()) {
                Ok(name) => name,
                Err(_) => serde_json::from_str::<serde_json::Number>(args[0].get())
                    .map(|number| Cow::Owned(number.to_string()))
                    .map_err(|_| ParseError::InvalidPayload)?,
            };
            if RESERVED_EVENTS.contains(&name.as_ref()) {
                return Err(ParseError::InvalidPayload);
            }
            args.remove(0);
            packet.event = Some(name);
            packet.args = args;
        }
        PacketKind::Ack | PacketKind::BinaryAck => {
            packet.args = serde_json::from_str(data.ok_or(ParseError::InvalidPayload)?)
                .map_err(|_| ParseError::InvalidPayload)?;
            if packet.ack_id.is_none() {
                return Err(ParseError::InvalidAckId);
            }
        }
        PacketKind::ConnectError => unreachable!("refused above"),
    }
    Ok(packet)
}

fn push_nsp(out: &mut String, nsp: &str) {
    if nsp != "/" {
        out.push_str(nsp);
        out.push(',');
    }
}

fn push_json_str(out: &mut String, value: &str) {
    // Serializing a &str into a String cannot fail.
    out.push_str(&serde_json::to_string(value).unwrap_or_default());
}

/// `40[nsp,]{"sid":"…"}`: the namespace accepted the socket.
pub fn connect_ok(nsp: &str, sid: &str) -> String {
    let mut out = String::with_capacity(32 + nsp.len());
    out.push_str("40");
    push_nsp(&mut out, nsp);
    out.push_str("{\"sid\":");
    push_json_str(&mut out, sid);
    out.push('}');
    out
}

/// `44[nsp,]{"message":…[,"data":…]}`: the namespace refused the socket.
pub fn connect_error(nsp: &str, message: &str, data: Option<&serde_json::Value>) -> String {
    let mut out = String::with_capacity(64);
    out.push_str("44");
    push_nsp(&mut out, nsp);
    out.push_str("{\"message\":");
    push_json_str(&mut out, message);
    if let Some(data) = data {
        out.push_str(",\"data\":");
        out.push_str(&data.to_string());
    }
    out.push('}');
    out
}

/// `41[nsp,]`: the server disconnects the socket from the namespace.
pub fn disconnect(nsp: &str) -> String {
    let mut out = String::from("41");
    push_nsp(&mut out, nsp);
    out
}

/// `42[nsp,][id]["event",args…]` (or `45N-…` with `attachments`).
pub fn event(
    nsp: &str,
    ack_id: Option<u64>,
    event: &str,
    args: &[&RawValue],
    attachments: usize,
) -> String {
    let size = 16 + nsp.len() + event.len() + args.iter().map(|a| a.get().len() + 1).sum::<usize>();
    let mut out = String::with_capacity(size);
    if attachments > 0 {
        out.push_str(&format!("45{attachments}-"));
    } else {
        out.push_str("42");
    }
    push_nsp(&mut out, nsp);
    if let Some(id) = ack_id {
        out.push_str(&id.to_string());
    }
    out.push('[');
    push_json_str(&mut out, event);
    for arg in args {
        out.push(',');
        out.push_str(arg.get());
    }
    out.push(']');
    out
}

/// `43[nsp,]id[args…]` (or `46N-…` with `attachments`).
pub fn ack(nsp: &str, id: u64, args: &[&RawValue], attachments: usize) -> String {
    let mut out = String::with_capacity(16 + args.iter().map(|a| a.get().len() + 1).sum::<usize>());
    if attachments > 0 {
        out.push_str(&format!("46{attachments}-"));
    } else {
        out.push_str("43");
    }
    push_nsp(&mut out, nsp);
    out.push_str(&id.to_string());
    out.push('[');
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(arg.get());
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_connect_variants() {
        let p = parse("0").unwrap();
        assert_eq!((p.kind, p.nsp, p.data), (PacketKind::Connect, "/", None));
        let p = parse(r#"0{"token":"123"}"#).unwrap();
        assert_eq!(p.data, Some(r#"{"token":"123"}"#));
        let p = parse("0/custom,").unwrap();
        assert_eq!((p.nsp, p.data), ("/custom", None));
        let p = parse(r#"0/custom,{"token":"abc"}"#).unwrap();
        assert_eq!((p.nsp, p.data), ("/custom", Some(r#"{"token":"abc"}"#)));
        let p = parse("0/random").unwrap();
        assert_eq!(p.nsp, "/random");
        assert_eq!(parse("0[1]").unwrap().data, Some("[1]"));
        assert_eq!(parse(r#"0"x""#).unwrap().data, Some(r#""x""#));
        assert_eq!(parse("0{").unwrap_err(), ParseError::InvalidPayload);
    }

    #[test]
    fn parses_events_and_acks() {
        let p = parse(r#"2["message",1,"2",{"3":[true]}]"#).unwrap();
        assert_eq!(p.event.as_deref(), Some("message"));
        assert_eq!(p.args.len(), 3);
        assert_eq!(p.args[2].get(), r#"{"3":[true]}"#);
        let p = parse(r#"2456["message-with-ack",1]"#).unwrap();
        assert_eq!(p.ack_id, Some(456));
        let p = parse(r#"2/custom,7["e"]"#).unwrap();
        assert_eq!((p.nsp, p.ack_id, p.args.len()), ("/custom", Some(7), 0));
        let p = parse(r#"52-789["m",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
            .unwrap();
        assert_eq!(
            (p.kind, p.attachments, p.ack_id),
            (PacketKind::BinaryEvent, 2, Some(789))
        );
        let p = parse(r#"312["a",2]"#).unwrap();
        assert_eq!(
            (p.kind, p.ack_id, p.args.len()),
            (PacketKind::Ack, Some(12), 2)
        );
        let p = parse("1/custom,").unwrap();
        assert_eq!((p.kind, p.nsp), (PacketKind::Disconnect, "/custom"));
    }

    #[test]
    fn a_number_is_an_event_name() {
        let p = parse(r#"27[1,"x"]"#).unwrap();
        assert_eq!(p.event.as_deref(), Some("1"));
        assert_eq!(p.ack_id, Some(7));
        assert_eq!(p.args.len(), 1);
        assert_eq!(parse("2[-2.5]").unwrap().event.as_deref(), Some("-2.5"));
    }

    #[test]
    fn refuses_every_malformed_class() {
        for (text, error) in [
            ("", ParseError::Empty),
            ("abc", ParseError::UnknownType),
            ("4{}", ParseError::UnknownType),
            ("9", ParseError::UnknownType),
            ("2{}", ParseError::InvalidPayload),
            ("2", ParseError::InvalidPayload),
            ("2[]", ParseError::InvalidPayload),
            ("2[null]", ParseError::InvalidPayload),
            ("2[[1]]", ParseError::InvalidPayload),
            (r#"2abc["message-with-ack",1]"#, ParseError::InvalidPayload),
            (r#"2["connect"]"#, ParseError::InvalidPayload),
            (r#"2["a""#, ParseError::InvalidPayload),
            ("3[1]", ParseError::InvalidAckId),
            ("31{}", ParseError::InvalidPayload),
            ("1x", ParseError::InvalidPayload),
            (r#"5["a"]"#, ParseError::InvalidAttachments),
            (r#"5x-["a"]"#, ParseError::InvalidAttachments),
            (r#"51234567-["a"]"#, ParseError::InvalidAttachments),
            (r#"299999999999999999999999["a"]"#, ParseError::InvalidAckId),
        ] {
            assert_eq!(parse(text).unwrap_err(), error, "{text}");
        }
    }

    #[test]
    fn encodes_what_the_client_expects() {
        assert_eq!(connect_ok("/", "abc"), r#"40{"sid":"abc"}"#);
        assert_eq!(connect_ok("/custom", "abc"), r#"40/custom,{"sid":"abc"}"#);
        assert_eq!(
            connect_error("/random", "Invalid namespace", None),
            r#"44/random,{"message":"Invalid namespace"}"#
        );
        let data = serde_json::json!({"code": "INVALID_API_KEY"});
        assert_eq!(
            connect_error("/", "invalid API key", Some(&data)),
            r#"44{"message":"invalid API key","data":{"code":"INVALID_API_KEY"}}"#
        );
        let parsed = parse(r#"2["x",1,"2",{"3":[true]}]"#).unwrap();
        assert_eq!(
            event("/", None, "message-back", &parsed.args, 0),
            r#"42["message-back",1,"2",{"3":[true]}]"#
        );
        assert_eq!(
            ack("/", 456, &parsed.args, 0),
            r#"43456[1,"2",{"3":[true]}]"#
        );
        assert_eq!(ack("/", 789, &parsed.args[..1], 2), "462-789[1]");
        assert_eq!(disconnect("/"), "41");
        assert_eq!(disconnect("/custom"), "41/custom,");
        assert_eq!(event("/a", Some(3), "e\"", &[], 0), r#"42/a,3["e\""]"#);
    }
}
