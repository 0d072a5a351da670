//! The Socket.IO handler: API-key auth at CONNECT, the project room, and the `message`
//! relay with its checks (shape, size, connection and project rates).
//!
//! The relay never touches the database: keys resolve through an in-memory cache, and
//! the broadcast frame is built once from the client's own JSON string literal.

use super::project::{ConnectionSlot, ProjectState, TokenBucket};
use super::Shared;
use crate::engine::{
    ConnectError, ConnectRequest, Delivery, DisconnectReason, Event, Handler, OutFrame, SocketRef,
};
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::json;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Instant;

/// Longest API key we bother looking up (ours are 46 characters).
const MAX_KEY_LEN: usize = 256;

/// The CONNECT packet's `auth` object, as far as roomcast reads it.
#[derive(serde::Deserialize)]
struct AuthIn<'a> {
    #[serde(rename = "apiKey", borrow, default)]
    api_key: Option<&'a RawValue>,
    #[serde(borrow, default)]
    echo: Option<&'a RawValue>,
}

/// What a connected client carries.
pub struct Client {
    /// The client's connection place in its project (also gives the project).
    pub slot: ConnectionSlot,
    /// SHA-256 of the key it authenticated with.
    pub key_hash: [u8; 32],
    /// Whether it receives its own messages.
    pub echo: bool,
    bucket: Mutex<TokenBucket>,
}

impl Client {
    /// The client's project.
    pub fn project(&self) -> &Arc<ProjectState> {
        self.slot.project()
    }
}

/// Error codes of SPEC §3, sent as `error` events and in acks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not exactly one string argument.
    InvalidPayload,
    /// Over `max_message_bytes`.
    MessageTooLarge(u32),
    /// Over the connection's or the project's rate.
    RateLimited(u64),
    /// Not a `message` event.
    UnknownEvent,
    /// The key was regenerated or the project deleted.
    ApiKeyRevoked,
}

impl Rejection {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidPayload => "INVALID_PAYLOAD",
            Self::MessageTooLarge(_) => "MESSAGE_TOO_LARGE",
            Self::RateLimited(_) => "RATE_LIMITED",
            Self::UnknownEvent => "UNKNOWN_EVENT",
            Self::ApiKeyRevoked => "API_KEY_REVOKED",
        }
    }

    /// Counts a refused message in `roomcast_messages_rejected_total{reason}`.
    pub fn count(self) {
        metrics::counter!("roomcast_messages_rejected_total", "reason" => self.code()).increment(1);
    }

    /// The `{code, message, …detail}` object.
    pub fn to_json(self) -> serde_json::Value {
        match self {
            Self::InvalidPayload => json!({
                "code": self.code(),
                "message": "message must be exactly one string argument",
            }),
            Self::MessageTooLarge(limit) => json!({
                "code": self.code(),
                "message": format!("message is larger than {limit} bytes"),
                "limit": limit,
            }),
            Self::RateLimited(retry_after_ms) => json!({
                "code": self.code(),
                "message": "rate limit reached",
                "retry_after_ms": retry_after_ms,
            }),
            Self::UnknownEvent => json!({
                "code": self.code(),
                "message": "only \"message\" events are accepted",
            }),
            Self::ApiKeyRevoked => json!({
                "code": self.code(),
                "message": "the API key was revoked",
            }),
        }
    }
}

/// Refuses a message: counts it and answers with the `error` event (and the negative
/// ack if one was asked for).
pub(super) fn reject(socket: &SocketRef<Client>, rejection: Rejection, ack_id: Option<u64>) {
    rejection.count();
    send_error(socket, rejection, ack_id);
}

/// Tells the socket its key was revoked, just before it is disconnected (no message was
/// refused, so nothing is counted but the disconnect).
pub(super) fn announce_revocation(socket: &SocketRef<Client>) {
    send_error(socket, Rejection::ApiKeyRevoked, None);
}

/// Sends the `error` event (and the negative ack if one was asked for).
fn send_error(socket: &SocketRef<Client>, rejection: Rejection, ack_id: Option<u64>) {
    let error = rejection.to_json();
    if let Ok(raw) = serde_json::value::to_raw_value(&error) {
        socket.emit("error", &[&raw], &[]);
    }
    if let Some(id) = ack_id {
        let ack = json!({"ok": false, "error": error});
        if let Ok(raw) = serde_json::value::to_raw_value(&ack) {
            socket.ack(id, &[&raw], &[]);
        }
    }
}

/// Every `connect_error` code a handshake can end with (SPEC §3), plus our own
/// `INTERNAL` when the key cannot be looked up.
pub(super) const HANDSHAKE_FAILURE_CODES: [&str; 5] = [
    "API_KEY_REQUIRED",
    "INVALID_API_KEY",
    "CONNECTION_LIMIT",
    "ORIGIN_NOT_ALLOWED",
    "INTERNAL",
];

/// Every reason a `message` can be refused for (SPEC §3).
pub(super) const MESSAGE_REJECTIONS: [Rejection; 4] = [
    Rejection::InvalidPayload,
    Rejection::MessageTooLarge(0),
    Rejection::RateLimited(0),
    Rejection::UnknownEvent,
];

/// Describes the realtime metrics and creates each series at zero, so `/metrics` shows
/// all of them from the start (a scraper sees 0, not a missing series).
pub(super) fn register_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(
        "roomcast_connections",
        "Socket.IO connections open on this node"
    );
    describe_gauge!(
        "roomcast_project_connections",
        "Socket.IO connections open on this node, per project"
    );
    describe_counter!(
        "roomcast_messages_received_total",
        "messages received from clients and HTTP publishes, accepted or not"
    );
    describe_counter!(
        "roomcast_messages_delivered_total",
        "message copies sent to sockets on this node"
    );
    describe_counter!(
        "roomcast_messages_rejected_total",
        "messages refused, by reason"
    );
    describe_counter!(
        "roomcast_project_messages_received_total",
        "messages received, per project"
    );
    describe_counter!(
        "roomcast_project_messages_delivered_total",
        "message copies sent to sockets, per project"
    );
    describe_counter!(
        "roomcast_handshake_failures_total",
        "Socket.IO handshakes refused, by connect_error code"
    );
    describe_counter!(
        "roomcast_disconnects_total",
        "Socket.IO connections ended, by reason"
    );
    describe_histogram!(
        "roomcast_message_path_seconds",
        Unit::Seconds,
        "time from a message's arrival to its broadcast being queued for every recipient"
    );
    metrics::gauge!("roomcast_connections").increment(0.0);
    metrics::counter!("roomcast_messages_received_total").increment(0);
    metrics::counter!("roomcast_messages_delivered_total").increment(0);
    for rejection in MESSAGE_REJECTIONS {
        metrics::counter!("roomcast_messages_rejected_total", "reason" => rejection.code())
            .increment(0);
    }
    for code in HANDSHAKE_FAILURE_CODES {
        metrics::counter!("roomcast_handshake_failures_total", "code" => code).increment(0);
    }
    for reason in DisconnectReason::ALL {
        metrics::counter!("roomcast_disconnects_total", "reason" => reason.as_str()).increment(0);
    }
}

fn connect_error(code: &'static str, message: &str) -> ConnectError {
    metrics::counter!("roomcast_handshake_failures_total", "code" => code).increment(1);
    ConnectError {
        message: message.to_owned(),
        data: Some(json!({ "code": code })),
    }
}

/// The UTF-8 length of the string a JSON string literal decodes to (a lone surrogate
/// counts as the 3 bytes of U+FFFD, what a JavaScript `TextEncoder` makes of it).
fn decoded_len(literal: &str) -> Option<usize> {
    let inner = literal.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(inner.len());
    }
    decode_literal_lossy(literal).map(|text| text.len())
}

/// Decodes a JSON string literal (quotes included), or `None` when it is not one.
///
/// Written here rather than taken from serde_json because JSON, like JavaScript, allows
/// a lone UTF-16 surrogate (`"\ud800"`), which a Rust `String` cannot hold and serde_json
/// refuses. socket.io-client sends one for such a JavaScript string and socket.io relays
/// it, so roomcast relays the literal untouched and only needs its length (and a readable
/// copy for the dashboard's console): a lone surrogate decodes to U+FFFD.
fn decode_literal_lossy(literal: &str) -> Option<String> {
    let mut rest = literal.strip_prefix('"')?.strip_suffix('"')?;
    let mut text = String::with_capacity(rest.len());
    while let Some(at) = rest.find('\\') {
        text.push_str(&rest[..at]);
        let escape = *rest.as_bytes().get(at + 1)?;
        if !escape.is_ascii() {
            return None;
        }
        rest = &rest[at + 2..];
        let simple = match escape {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = hex_unit(rest)?;
                rest = &rest[4..];
                let low = rest.strip_prefix("\\u").and_then(hex_unit);
                match (unit, low) {
                    (0xD800..=0xDBFF, Some(low @ 0xDC00..=0xDFFF)) => {
                        rest = &rest[6..];
                        char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))?
                    }
                    _ => char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER),
                }
            }
            _ => return None,
        };
        text.push(simple);
    }
    text.push_str(rest);
    Some(text)
}

/// The UTF-16 code unit of a `\u` escape's four hex digits at the start of `digits`.
fn hex_unit(digits: &str) -> Option<u32> {
    let digits = digits.get(..4)?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

/// roomcast's Socket.IO handler.
pub struct RoomcastHandler {
    pub(super) shared: Arc<Shared>,
}

impl RoomcastHandler {
    fn relay(&self, socket: &SocketRef<Client>, event: &Event<'_>) -> Result<u64, Rejection> {
        let client = &socket.data;
        let project = client.project();
        project.count_received();
        let literal = match (event.args, event.attachments) {
            ([only], []) if only.get().starts_with('"') => only.get(),
            _ => return Err(Rejection::InvalidPayload),
        };
        let limit = project.max_message_bytes();
        if decoded_len(literal).is_none_or(|len| len > limit as usize) {
            return Err(Rejection::MessageTooLarge(limit));
        }
        let now = Instant::now();
        client
            .bucket
            .lock()
            .take(project.messages_per_second(), now)
            .map_err(Rejection::RateLimited)?;
        project
            .take_project_token(now)
            .map_err(Rejection::RateLimited)?;
        let frame = message_frame(literal);
        let except = (!client.echo).then_some(&**socket);
        let delivered = self
            .shared
            .broadcast(project, &frame, except, Delivery::Immediate);
        if project.has_watchers() {
            if let Some(text) = decode_literal_lossy(literal) {
                project.feed(text.into());
            }
        }
        self.shared.path_latency.record(now.elapsed().as_secs_f64());
        Ok(delivered)
    }
}

/// `42["message",<literal>]`, encoded once for every recipient.
pub(super) fn message_frame(literal: &str) -> OutFrame {
    let mut text = String::with_capacity(literal.len() + 14);
    text.push_str(super::MESSAGE_FRAME_PREFIX);
    text.push_str(literal);
    text.push(']');
    OutFrame::Text(Bytes::from(text))
}

impl Handler for RoomcastHandler {
    type Data = Client;

    async fn authorize(&self, request: ConnectRequest<'_>) -> Result<Client, ConnectError> {
        const REQUIRED: (&str, &str) = ("API_KEY_REQUIRED", "API key is required");
        let invalid = || connect_error("INVALID_API_KEY", "invalid API key");
        // Only our two fields are read; the client's other fields are skipped unread, so
        // one that serde_json would refuse as a value (a lone surrogate, 1e400) does not
        // make a valid key look absent.
        let auth: AuthIn<'_> = request
            .auth
            // An object only: serde would also read the struct from an array, by position.
            .filter(|raw| raw.get().starts_with('{'))
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .ok_or_else(|| connect_error(REQUIRED.0, REQUIRED.1))?;
        let key = match auth.api_key.map(RawValue::get) {
            Some(literal) if literal.starts_with('"') && literal != "\"\"" => {
                // A string, but maybe not one Rust can hold (a lone surrogate): no key.
                serde_json::from_str::<String>(literal).map_err(|_| invalid())?
            }
            _ => return Err(connect_error(REQUIRED.0, REQUIRED.1)),
        };
        let key = key.as_str();
        let echo = auth.echo.map(RawValue::get) != Some("false");
        if key.len() > MAX_KEY_LEN {
            return Err(invalid());
        }
        let key_hash = super::Realtime::hash_key(key);
        let project = match self.shared.resolve_hash(key_hash).await {
            Ok(Some(project)) => project,
            Ok(None) => return Err(invalid()),
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "key lookup failed");
                return Err(connect_error("INTERNAL", "server error, try again"));
            }
        };
        if !project.origin_allowed(request.info.origin.as_deref()) {
            return Err(connect_error("ORIGIN_NOT_ALLOWED", "origin not allowed"));
        }
        let slot = project
            .try_reserve_connection(self.shared.connections_elsewhere(&project.id))
            .ok_or_else(|| connect_error("CONNECTION_LIMIT", "connection limit reached"))?;
        if let Some(peers) = self.shared.peers.get() {
            peers
                .announce_connections(&project.id, &|| project.stats().connections)
                .await;
        }
        let bucket = Mutex::new(TokenBucket::new(project.messages_per_second()));
        Ok(Client {
            slot,
            key_hash,
            echo,
            bucket,
        })
    }

    fn on_connect(&self, socket: &SocketRef<Client>) {
        metrics::gauge!("roomcast_connections").increment(1.0);
        let project = socket.data.project();
        if !project.key_is_live(&socket.data.key_hash) {
            // Revoked while this CONNECT was being authorized.
            announce_revocation(socket);
            socket.disconnect();
            return;
        }
        socket.join(&project.room);
    }

    fn on_event(&self, socket: &SocketRef<Client>, event: Event<'_>) {
        if event.name != "message" {
            reject(socket, Rejection::UnknownEvent, event.ack_id);
            return;
        }
        match self.relay(socket, &event) {
            Ok(_) => {
                if let Some(id) = event.ack_id {
                    let ok = RawValue::from_string(r#"{"ok":true}"#.to_owned());
                    if let Ok(ok) = ok {
                        socket.ack(id, &[&ok], &[]);
                    }
                }
            }
            Err(rejection) => {
                socket.data.project().count_rejected();
                reject(socket, rejection, event.ack_id);
            }
        }
    }

    fn on_binary_refused(&self, socket: &SocketRef<Client>, event: &str, ack_id: Option<u64>) {
        if event == "message" {
            let project = socket.data.project();
            project.count_received();
            project.count_rejected();
            reject(socket, Rejection::InvalidPayload, ack_id);
        } else {
            reject(socket, Rejection::UnknownEvent, ack_id);
        }
    }

    fn on_disconnect(&self, socket: &SocketRef<Client>, reason: DisconnectReason) {
        metrics::gauge!("roomcast_connections").decrement(1.0);
        // Slow consumers in particular are counted here, never silently skipped.
        metrics::counter!("roomcast_disconnects_total", "reason" => reason.as_str()).increment(1);
        socket.data.slot.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_decoded_utf8_length() {
        assert_eq!(decoded_len(r#""abc""#), Some(3));
        assert_eq!(decoded_len(r#""é""#), Some(2));
        assert_eq!(decoded_len(r#""\u00e9\n""#), Some(3));
        assert_eq!(decoded_len("12"), None);
        // A surrogate pair is one 4-byte character; a lone surrogate counts as U+FFFD.
        assert_eq!(decoded_len(r#""\ud83d\udc4b""#), Some(4));
        assert_eq!(decoded_len(r#""\ud800lone""#), Some(7));
        assert_eq!(decoded_len(r#""ok\uDC00""#), Some(5));
    }

    #[test]
    fn decodes_literals_as_javascript_does_with_lone_surrogates_made_visible() {
        for (literal, text) in [
            (r#""plain""#, "plain"),
            (r#""\"\\\/\b\f\n\r\t""#, "\"\\/\u{8}\u{c}\n\r\t"),
            (r#""caf\u00e9 \u20ac""#, "café €"),
            (r#""\ud83d\udc4b hi""#, "👋 hi"),
            (r#""\ud800lone""#, "\u{fffd}lone"),
            (r#""\udc00\ud800""#, "\u{fffd}\u{fffd}"),
            (r#""\ud800\u0041""#, "\u{fffd}A"),
        ] {
            assert_eq!(
                decode_literal_lossy(literal).as_deref(),
                Some(text),
                "{literal}"
            );
        }
        for broken in [
            "unquoted",
            r#""\x""#,
            r#""\u12""#,
            r#""\u+123""#,
            r#""\u12g4""#,
            r#""ends in \""#,
            "\"\\é\"",
            "\"",
        ] {
            assert_eq!(decode_literal_lossy(broken), None, "{broken}");
        }
    }

    #[test]
    fn frames_reuse_the_client_literal() {
        let OutFrame::Text(text) = message_frame(r#""hi \"you\"""#) else {
            panic!("text frame expected");
        };
        assert_eq!(&text[..], br#"42["message","hi \"you\""]"#);
    }
}
