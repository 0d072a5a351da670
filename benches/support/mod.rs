//! The fixtures the engine benchmarks share (the divan benches in `benches/engine.rs` and
//! the callgrind workload in `examples/callgrind_broadcast.rs`): a server whose room
//! holds N connected long-polling sessions, driven only through a public HTTP entry
//! point with in-memory requests. [`Room`] is the bare engine with a minimal relay
//! ([`SocketIo::handle`]); [`ProjectRoom`] is roomcast's realtime side (API keys,
//! limits, counters), entered as the accept loop enters it ([`ConnectionTap::handle`]).
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
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt as _;
use roomcast::engine::{
    ConnectError, ConnectRequest, ConnectionTap, Delivery, Event, Handler, Namespace, OutFrame,
    SioConfig, SocketIo, SocketRef,
};
use roomcast::platform::types::{Limits, ProjectId, ProjectSettings};
use roomcast::realtime::{
    DirectoryFuture, KeyDirectory, ProjectAccess, ProjectStats, Realtime, RealtimeConfig,
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

/// Where a fixture's requests enter the server.
pub trait Entry {
    /// The server's answer to one in-memory request, which must be ready at once.
    fn answer(&self, request: Request<Body>) -> Response<Body>;
}

impl Entry for SocketIo<Relay> {
    fn answer(&self, request: Request<Body>) -> Response<Body> {
        now(self.handle(request))
    }
}

impl Entry for Arc<dyn ConnectionTap> {
    fn answer(&self, request: Request<Body>) -> Response<Body> {
        now(self.handle(request))
    }
}

/// `members` long-polling clients of one server, each connected to `/`.
pub struct PollingClients<E> {
    entry: E,
    /// The polling URI of each session (`…&sid=…`), GET to drain, POST to send.
    uris: Vec<Uri>,
}

impl<E: Entry> PollingClients<E> {
    /// Opens `members` sessions (handshake GET, then `connect` POSTed as the CONNECT
    /// packet) and drains their CONNECT answers, so every outbox starts empty.
    fn connect(entry: E, members: usize, connect: &str) -> Self {
        let mut clients = Self {
            entry,
            uris: Vec::with_capacity(members),
        };
        let handshake = Uri::from_static("/socket.io/?EIO=4&transport=polling");
        for _ in 0..members {
            let open = clients.request(Method::GET, &handshake, Body::empty());
            let uri = session_uri(&open);
            clients.request(Method::POST, &uri, Body::from(connect.to_owned()));
            clients.uris.push(uri);
        }
        // One `40{"sid":"<20 characters>"}` per session.
        assert_eq!(
            clients.drain(),
            members * 32,
            "one CONNECT answer per session"
        );
        clients
    }

    /// Session `from` sends one Engine.IO payload by long-polling POST (the whole inbound
    /// path: payload split, Socket.IO parse, the handler, the broadcast).
    pub fn post(&self, from: usize, payload: &'static str) {
        self.request(Method::POST, &self.uris[from], Body::from(payload));
    }

    /// Every session takes its queued frames with one poll, as a long-polling client
    /// does; returns the bytes the polls carried (counting frames would cost more than
    /// the poll and blur what is measured). Every outbox must hold something, or the
    /// poll would wait.
    pub fn drain(&self) -> usize {
        self.uris
            .iter()
            .map(|uri| self.request(Method::GET, uri, Body::empty()).len())
            .sum()
    }

    /// Sessions in the room.
    pub fn members(&self) -> usize {
        self.uris.len()
    }

    fn request(&self, method: Method, uri: &Uri, body: Body) -> Bytes {
        // Built directly: `http`'s request builder copies the request's parts around,
        // a cost of the fixture rather than of the server.
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = uri.clone();
        let response = self.entry.answer(request);
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "an engine request failed"
        );
        now(response.into_body().collect())
            .expect("an in-memory body")
            .to_bytes()
    }
}

/// A server with `members` long-polling sessions connected to `/` and joined to [`ROOM`].
pub struct Room {
    // Dropped before the runtime its tasks were spawned on.
    clients: PollingClients<SocketIo<Relay>>,
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
        let room = Self {
            clients: PollingClients::connect(io, members, "40"),
            _runtime: runtime,
        };
        assert_eq!(room.namespace().room_size(ROOM), members);
        room
    }

    /// The root namespace, whose [`ROOM`] holds every session.
    pub fn namespace(&self) -> &Arc<Namespace<()>> {
        self.clients
            .entry
            .namespace("/")
            .expect("the root namespace")
    }
}

impl std::ops::Deref for Room {
    type Target = PollingClients<SocketIo<Relay>>;

    fn deref(&self) -> &Self::Target {
        &self.clients
    }
}

/// The API key of [`ProjectRoom`]'s one project.
pub const API_KEY: &str = "rc_benchbenchbenchbenchbenchbenchbench";

/// The fixture's key store: [`API_KEY`] is the one live key, of project `bench`.
struct OneKey {
    hash: [u8; 32],
    access: ProjectAccess,
}

impl KeyDirectory for OneKey {
    fn find_by_key_hash(&self, key_hash: [u8; 32]) -> DirectoryFuture<'_> {
        let found = (key_hash == self.hash).then(|| self.access.clone());
        Box::pin(std::future::ready(Ok(found)))
    }
}

/// roomcast's own realtime side with `members` long-polling sessions connected with one
/// project's API key: every message goes through roomcast's handler (validation, the
/// connection's and the project's rate, counters, the message path's histogram in the
/// Prometheus recorder) before the broadcast. Requests enter through the engine's
/// [`ConnectionTap`], as the accept loop hands them over in production.
pub struct ProjectRoom {
    // Dropped before the runtime the realtime side's tasks were spawned on.
    clients: PollingClients<Arc<dyn ConnectionTap>>,
    realtime: Realtime,
    project: ProjectId,
    _runtime: tokio::runtime::Runtime,
}

impl ProjectRoom {
    /// Opens `members` sessions (handshake GET, CONNECT POST with the API key) and drains
    /// their CONNECT answers, so every outbox starts empty.
    pub fn new(members: usize) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
        // As in the server: the recorder is installed before the handles are taken.
        roomcast::telemetry::metrics_handle();
        let project = ProjectId("bench".to_owned());
        let directory = OneKey {
            hash: Realtime::hash_key(API_KEY),
            access: ProjectAccess {
                project_id: project.clone(),
                settings: ProjectSettings::defaults(&Limits::default()),
            },
        };
        let realtime = {
            let _context = runtime.enter();
            Realtime::new(
                RealtimeConfig::with_limits(Limits::default()),
                Arc::new(directory),
            )
        };
        let connect = format!("40{{\"apiKey\":\"{API_KEY}\"}}");
        let clients = PollingClients::connect(realtime.websocket_tap(), members, &connect);
        assert_eq!(realtime.connections(&project), members as u64);
        Self {
            clients,
            realtime,
            project,
            _runtime: runtime,
        }
    }

    /// The project's counters on this node.
    #[allow(dead_code)] // the callgrind workload's check; the divan benches do not count
    pub fn stats(&self) -> ProjectStats {
        now(self.realtime.stats(&self.project))
    }
}

impl std::ops::Deref for ProjectRoom {
    type Target = PollingClients<Arc<dyn ConnectionTap>>;

    fn deref(&self) -> &Self::Target {
        &self.clients
    }
}

/// A session's polling URI (parsed once per session: the fixture's own per-request
/// work would otherwise outweigh some of what it measures).
fn session_uri(open: &[u8]) -> Uri {
    let sid = sid_of(open);
    format!("/socket.io/?EIO=4&transport=polling&sid={sid}")
        .parse()
        .expect("a valid URI")
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
