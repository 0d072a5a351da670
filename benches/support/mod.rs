//! The fixture the engine benchmarks share (the divan benches in `benches/engine.rs` and
//! the callgrind workload in `examples/callgrind_broadcast.rs`): a Socket.IO server whose
//! room holds N connected long-polling sessions, driven only through the engine's public
//! HTTP entry point ([`SocketIo::handle`]) with in-memory requests.
//!
//! Why long-polling sessions: they are the one transport the public API can open without
//! a TCP socket, and a session queues a broadcast the same way whichever transport later
//! writes it out, so `Namespace::broadcast` runs exactly as in production.
//!
//! Every request is polled once and must be ready ([`now`]): nothing here waits, no task
//! is scheduled and no timer fires, so the instruction count of a run does not depend on
//! how fast the machine is. The engine's ticker and reaper tasks are spawned on a
//! current-thread runtime that is never driven.

use axum::body::Body;
use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use roomcast::engine::{
    ConnectError, ConnectRequest, Delivery, Event, Handler, Namespace, OutFrame, SioConfig,
    SocketIo, SocketRef,
};
use std::future::Future;
use std::sync::{Arc, OnceLock};

/// The room every session joins.
pub const ROOM: &str = "bench";

/// The 64 bytes every benchmark message carries (as in issue 5's S2 scenario).
macro_rules! payload {
    () => {
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    };
}

/// The Socket.IO event a client sends (the Engine.IO message without its `4`).
pub const SIO_MESSAGE: &str = concat!("2[\"message\",\"", payload!(), "\"]");
/// The same event as the client's whole Engine.IO packet (a WebSocket text frame).
pub const EIO_MESSAGE: &str = concat!("42[\"message\",\"", payload!(), "\"]");
/// The JSON string literal the relay copies into its broadcast.
pub const LITERAL: &str = concat!("\"", payload!(), "\"");

/// Polls `future` once; the engine answers in-memory requests without waiting, and a
/// request that would wait is a bug in the fixture, not something to time.
pub fn now<F: Future>(future: F) -> F::Output {
    future
        .now_or_never()
        .expect("the engine answered an in-memory request without waiting")
}

/// A relay like roomcast's, without its limits: every connected socket joins [`ROOM`],
/// and a `message` event with one string argument is encoded once as
/// `42["message",<literal>]` and broadcast to the whole room, sender included.
pub struct Relay {
    root: OnceLock<Arc<Namespace<()>>>,
}

impl Handler for Relay {
    type Data = ();

    async fn authorize(&self, _request: ConnectRequest<'_>) -> Result<(), ConnectError> {
        Ok(())
    }

    fn on_connect(&self, socket: &SocketRef<()>) {
        socket.join(ROOM);
    }

    fn on_event(&self, _socket: &SocketRef<()>, event: Event<'_>) {
        let (Some(root), "message", [literal]) = (self.root.get(), event.name, event.args) else {
            return;
        };
        root.broadcast(ROOM, &message_frame(literal.get()), None, Delivery::Queued);
    }
}

/// `42["message",<literal>]`: the frame a relay encodes once per message.
pub fn message_frame(literal: &str) -> OutFrame {
    let mut text = String::with_capacity(literal.len() + 14);
    text.push_str("42[\"message\",");
    text.push_str(literal);
    text.push(']');
    OutFrame::Text(Bytes::from(text))
}

/// A server with `members` long-polling sessions connected to `/` and joined to [`ROOM`].
pub struct Room {
    // Dropped before the runtime its tasks were spawned on.
    io: SocketIo<Relay>,
    /// The polling URI of each session (`…&sid=…`), GET to drain, POST to send.
    uris: Vec<String>,
    _runtime: tokio::runtime::Runtime,
}

impl Room {
    /// Opens `members` sessions (handshake GET, CONNECT POST) and drains their CONNECT
    /// answers, so every outbox starts empty.
    pub fn new(members: usize) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
        let io = {
            let _context = runtime.enter();
            SocketIo::new(
                SioConfig::default(),
                Relay {
                    root: OnceLock::new(),
                },
            )
        };
        let root = io.namespace("/").expect("the root namespace").clone();
        assert!(io.handler().root.set(root).is_ok(), "set once");
        let mut room = Self {
            io,
            uris: Vec::with_capacity(members),
            _runtime: runtime,
        };
        for _ in 0..members {
            let open = room.request("GET", "/socket.io/?EIO=4&transport=polling", Body::empty());
            let sid = sid_of(&open);
            let uri = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
            room.request("POST", &uri, Body::from("40"));
            room.uris.push(uri);
        }
        // One `40{"sid":"<20 characters>"}` per session.
        assert_eq!(room.drain(), members * 32, "one CONNECT answer per session");
        assert_eq!(room.namespace().room_size(ROOM), members);
        room
    }

    /// The root namespace, whose [`ROOM`] holds every session.
    pub fn namespace(&self) -> &Arc<Namespace<()>> {
        self.io.namespace("/").expect("the root namespace")
    }

    /// Session `from` sends one Engine.IO payload by long-polling POST (the whole inbound
    /// path: payload split, Socket.IO parse, the relay, the broadcast).
    pub fn post(&self, from: usize, payload: &'static str) {
        self.request("POST", &self.uris[from], Body::from(payload));
    }

    /// Every session takes its queued frames with one poll, as a long-polling client
    /// does; returns the bytes the polls carried (counting frames would cost more than
    /// the poll and blur what is measured). Every outbox must hold something, or the
    /// poll would wait.
    pub fn drain(&self) -> usize {
        self.uris
            .iter()
            .map(|uri| self.request("GET", uri, Body::empty()).len())
            .sum()
    }

    /// Sessions in the room.
    pub fn members(&self) -> usize {
        self.uris.len()
    }

    fn request(&self, method: &str, uri: &str, body: Body) -> Bytes {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(body)
            .expect("a valid request");
        let response: Response<Body> = now(self.io.handle(request));
        assert_eq!(response.status(), StatusCode::OK, "{method} {uri}");
        now(response.into_body().collect())
            .expect("an in-memory body")
            .to_bytes()
    }
}

/// The `sid` of an open packet `0{"sid":"…",…}`.
fn sid_of(open: &[u8]) -> String {
    let value: serde_json::Value =
        serde_json::from_slice(&open[1..]).expect("the open packet is JSON");
    value["sid"]
        .as_str()
        .expect("the open packet has a sid")
        .to_owned()
}
