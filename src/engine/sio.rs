//! The Socket.IO v5 layer on Engine.IO: namespaces, the CONNECT handshake with an async
//! auth hook, event dispatch in arrival order, acknowledgements both ways, binary
//! attachments (or their refusal), rooms and broadcast.
//!
//! Events are handed to the application synchronously, on the task that read them: there
//! is no task per event, so a socket's events can never overtake each other.

use super::eio::{
    ConnectionTap, EioApp, EioConfig, EngineIo, EngineResponse, ProtocolViolation, TapFuture,
};
use super::eio_packet::{OutFrame, Payload};
use super::session::{CloseReason, ConnInfo, SendOutcome, Session};
use super::sio_packet::{self, PacketKind};
use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use parking_lot::{Mutex, RwLock};
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// What to do with binary packets (BINARY_EVENT / BINARY_ACK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryPolicy {
    /// Buffer the attachments (bounded) and deliver them with the event.
    Accept,
    /// Refuse before buffering: the handler hears of it and the attachments are dropped.
    Refuse,
}

/// Socket.IO settings.
#[derive(Debug, Clone)]
pub struct SioConfig {
    /// The Engine.IO layer's settings.
    pub eio: EioConfig,
    /// Namespaces clients may join (`/` is always one of them).
    pub namespaces: Vec<String>,
    /// Binary packet policy.
    pub binary: BinaryPolicy,
    /// Most attachments one packet may announce.
    pub max_attachments: usize,
    /// Time allowed for a packet's attachments to arrive.
    pub attachment_timeout: Duration,
}

impl Default for SioConfig {
    fn default() -> Self {
        Self {
            eio: EioConfig::default(),
            namespaces: vec!["/".into()],
            binary: BinaryPolicy::Accept,
            max_attachments: 10,
            attachment_timeout: Duration::from_secs(10),
        }
    }
}

/// A CONNECT to authorize.
pub struct ConnectRequest<'a> {
    /// The namespace asked for.
    pub namespace: &'a str,
    /// The CONNECT packet's `auth` payload: valid JSON, but not necessarily an object.
    pub auth: Option<&'a RawValue>,
    /// Facts about the request that opened the session.
    pub info: &'a ConnInfo,
}

/// A refused CONNECT, sent as CONNECT_ERROR `{message, data}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectError {
    /// Human-readable reason (`err.message` on the client).
    pub message: String,
    /// Structured detail (`err.data` on the client).
    pub data: Option<serde_json::Value>,
}

/// Why a socket left its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client left the namespace.
    ClientDisconnect,
    /// The server disconnected the socket.
    ServerDisconnect,
    /// The client closed the connection.
    TransportClose,
    /// The connection failed.
    TransportError,
    /// The client stopped answering pings.
    PingTimeout,
    /// The client broke the protocol.
    ParseError,
    /// The client's unsent backlog passed the bound.
    SlowConsumer,
    /// The server is shutting down.
    ServerShutdown,
}

impl DisconnectReason {
    /// Every reason, for metrics that list each from the start.
    pub const ALL: [Self; 8] = [
        Self::ClientDisconnect,
        Self::ServerDisconnect,
        Self::TransportClose,
        Self::TransportError,
        Self::PingTimeout,
        Self::ParseError,
        Self::SlowConsumer,
        Self::ServerShutdown,
    ];

    /// A stable lowercase name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientDisconnect => "client_disconnect",
            Self::ServerDisconnect => "server_disconnect",
            Self::TransportClose => "transport_close",
            Self::TransportError => "transport_error",
            Self::PingTimeout => "ping_timeout",
            Self::ParseError => "parse_error",
            Self::SlowConsumer => "slow_consumer",
            Self::ServerShutdown => "server_shutdown",
        }
    }
}

impl From<CloseReason> for DisconnectReason {
    fn from(reason: CloseReason) -> Self {
        match reason {
            CloseReason::ClientClose => Self::TransportClose,
            CloseReason::TransportError => Self::TransportError,
            CloseReason::PingTimeout => Self::PingTimeout,
            CloseReason::ProtocolError | CloseReason::DuplicatePoll => Self::ParseError,
            CloseReason::SlowConsumer => Self::SlowConsumer,
            CloseReason::HandshakeTimeout | CloseReason::ServerClose => Self::ServerShutdown,
        }
    }
}

/// An event from a client.
pub struct Event<'a> {
    /// The event name.
    pub name: &'a str,
    /// The raw JSON of each argument.
    pub args: &'a [&'a RawValue],
    /// Set when the client asked for an acknowledgement.
    pub ack_id: Option<u64>,
    /// Binary attachments, in placeholder order.
    pub attachments: &'a [Bytes],
}

/// The application on top of Socket.IO.
pub trait Handler: Send + Sync + 'static {
    /// Per-socket state produced by [`Handler::authorize`].
    type Data: Send + Sync + 'static;

    /// Accepts or refuses a CONNECT. Other packets of the same session wait for it.
    fn authorize(
        &self,
        request: ConnectRequest<'_>,
    ) -> impl Future<Output = Result<Self::Data, ConnectError>> + Send;

    /// The socket is connected (its CONNECT answer is queued).
    fn on_connect(&self, _socket: &SocketRef<Self::Data>) {}

    /// An event, in arrival order.
    fn on_event(&self, socket: &SocketRef<Self::Data>, event: Event<'_>);

    /// A binary event refused by [`BinaryPolicy::Refuse`]; its attachments are dropped.
    fn on_binary_refused(
        &self,
        _socket: &SocketRef<Self::Data>,
        _event: &str,
        _ack_id: Option<u64>,
    ) {
    }

    /// The socket left its namespace (called once).
    fn on_disconnect(&self, _socket: &SocketRef<Self::Data>, _reason: DisconnectReason) {}
}

/// Type-erased disconnect callback, so sockets can report server-side disconnects.
trait DisconnectHook<D>: Send + Sync {
    fn on_disconnect(&self, socket: &SocketRef<D>, reason: DisconnectReason);
}

impl<H: Handler> DisconnectHook<H::Data> for H {
    fn on_disconnect(&self, socket: &SocketRef<H::Data>, reason: DisconnectReason) {
        Handler::on_disconnect(self, socket, reason);
    }
}

/// A connected socket (one client in one namespace).
pub type SocketRef<D> = Arc<Socket<D>>;

/// A client's membership of a namespace.
pub struct Socket<D> {
    id: Box<str>,
    namespace: Arc<Namespace<D>>,
    session: Arc<Session<SioSession<D>>>,
    connected: AtomicBool,
    rooms: Mutex<Vec<Arc<str>>>,
    acks: Mutex<Option<HashMap<u64, oneshot::Sender<String>>>>,
    next_ack: AtomicU64,
    /// The application's state for this socket.
    pub data: D,
}

impl<D: Send + Sync + 'static> Socket<D> {
    /// The socket id (sent to the client in the CONNECT answer).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The namespace name.
    pub fn namespace(&self) -> &str {
        &self.namespace.name
    }

    /// Facts about the request that opened the connection.
    pub fn info(&self) -> &ConnInfo {
        self.session.info()
    }

    /// Whether the socket is still connected.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Queues an already-encoded frame (see [`sio_packet`] for encoders).
    pub fn send_frame(&self, frame: OutFrame) -> SendOutcome {
        self.session.send(frame)
    }

    /// Emits an event with JSON arguments and optional binary attachments.
    pub fn emit(&self, event: &str, args: &[&RawValue], attachments: &[Bytes]) -> SendOutcome {
        let text = sio_packet::event(self.namespace(), None, event, args, attachments.len());
        self.send_with_attachments(text, attachments)
    }

    /// Emits an event and returns the client's acknowledgement (its raw JSON array).
    pub fn emit_with_ack(&self, event: &str, args: &[&RawValue]) -> oneshot::Receiver<String> {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.acks
            .lock()
            .get_or_insert_with(HashMap::new)
            .insert(id, tx);
        let text = sio_packet::event(self.namespace(), Some(id), event, args, 0);
        self.session.send(OutFrame::Text(Bytes::from(text)));
        rx
    }

    /// Answers a client's acknowledgement request.
    pub fn ack(&self, ack_id: u64, args: &[&RawValue], attachments: &[Bytes]) -> SendOutcome {
        let text = sio_packet::ack(self.namespace(), ack_id, args, attachments.len());
        self.send_with_attachments(text, attachments)
    }

    fn send_with_attachments(&self, text: String, attachments: &[Bytes]) -> SendOutcome {
        let outcome = self.session.send(OutFrame::Text(Bytes::from(text)));
        for attachment in attachments {
            self.session.send(OutFrame::Binary(attachment.clone()));
        }
        outcome
    }

    /// Adds the socket to a room of its namespace.
    pub fn join(self: &Arc<Self>, room: &str) {
        if !self.connected() {
            return;
        }
        let mut rooms = self.rooms.lock();
        if rooms.iter().any(|r| &**r == room) {
            return;
        }
        let room: Arc<str> = room.into();
        self.namespace
            .rooms
            .write()
            .entry(room.clone())
            .or_default()
            .push(self.clone());
        rooms.push(room);
    }

    /// Removes the socket from a room.
    pub fn leave(self: &Arc<Self>, room: &str) {
        let mut rooms = self.rooms.lock();
        if let Some(i) = rooms.iter().position(|r| &**r == room) {
            let room = rooms.swap_remove(i);
            self.namespace.remove_member(&room, self);
        }
    }

    /// Disconnects the socket from its namespace ("io server disconnect" on the client,
    /// which then does not reconnect). The connection closes once the last namespace
    /// is gone and everything queued has been written.
    pub fn disconnect(self: &Arc<Self>) {
        if !self.detach(DisconnectReason::ServerDisconnect) {
            return;
        }
        self.session
            .send(OutFrame::Text(Bytes::from(sio_packet::disconnect(
                self.namespace(),
            ))));
        let remaining = {
            let mut inner = self.session.state.inner.lock();
            inner.sockets.retain(|s| !Arc::ptr_eq(s, self));
            inner.sockets.len()
        };
        if remaining == 0 {
            self.session.close_when_flushed(CloseReason::ServerClose);
        }
    }

    /// Closes the whole connection at once; the client sees a transport close and
    /// reconnects by itself.
    pub fn close_connection(&self) {
        self.session.close(CloseReason::ServerClose);
    }

    /// Leaves every room and reports the disconnect once; false if already gone.
    fn detach(self: &Arc<Self>, reason: DisconnectReason) -> bool {
        if !self.connected.swap(false, Ordering::AcqRel) {
            return false;
        }
        let rooms = std::mem::take(&mut *self.rooms.lock());
        for room in rooms {
            self.namespace.remove_member(&room, self);
        }
        self.acks.lock().take();
        self.namespace.hook.on_disconnect(self, reason);
        true
    }

    fn resolve_ack(&self, id: u64, data: &str) {
        let sender = self.acks.lock().as_mut().and_then(|acks| acks.remove(&id));
        if let Some(sender) = sender {
            let _ = sender.send(data.to_owned());
        }
    }
}

type Rooms<D> = RwLock<HashMap<Arc<str>, Vec<SocketRef<D>>>>;

/// The seam for multi-node fan-out: every broadcast is offered to the adapter after local
/// delivery, and frames from other nodes come back in through
/// [`Namespace::broadcast_local`]. Local delivery never waits on it.
pub trait Adapter: Send + Sync + 'static {
    /// A frame was broadcast to `room` of `namespace` here; forward it to the other nodes.
    /// Must not block: queue and return.
    fn publish(&self, namespace: &str, room: &str, frame: &OutFrame);
}

/// A single node: nothing to forward.
pub struct LocalAdapter;

impl Adapter for LocalAdapter {
    fn publish(&self, _namespace: &str, _room: &str, _frame: &OutFrame) {}
}

/// A namespace: its rooms and the sockets in them.
pub struct Namespace<D> {
    name: Box<str>,
    rooms: Rooms<D>,
    hook: Arc<dyn DisconnectHook<D>>,
    adapter: Arc<dyn Adapter>,
}

/// How a broadcast reaches its sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for each socket's transport to write once the caller is done: for a
    /// broadcast made while answering someone else (an HTTP publish), whose answer then
    /// goes out before the deliveries, as a publisher that checks the answer expects.
    Queued,
    /// In a room of at most [`WRITE_NOW_MAX_ROOM`] sockets, written at once by the
    /// broadcasting task to every idle WebSocket (see `Session::send_now`); queued
    /// otherwise.
    Immediate,
}

/// Largest room whose [`Delivery::Immediate`] broadcasts are written by the broadcasting
/// task itself. A larger fan-out only queues its frames: the engine's write-behind task
/// writes them a moment later, and frames that arrive meanwhile (other publishers'
/// broadcasts read in the same scheduler round) share their `writev`. The more members a room has, the more often
/// its sockets get frames close together, and the more that sharing saves. Measured on
/// the benchmark's rooms (2026-11-28, `bench/README.md`): rooms of 10 sockets, one
/// publisher each, spent ~45 % less user CPU writing inline with the same kernel time;
/// rooms of 50, every member publishing, saved user time but made ~30 % more `writev`
/// calls under load and came out even. Hence a small bound.
pub const WRITE_NOW_MAX_ROOM: usize = 16;

impl<D: Send + Sync + 'static> Namespace<D> {
    /// The namespace name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends one shared frame to every socket of `room` on this node (but `except`), as
    /// `delivery` says, and hands it to the adapter for the other nodes; returns how many
    /// local sockets took it. The frame is encoded once by the caller.
    pub fn broadcast(
        &self,
        room: &str,
        frame: &OutFrame,
        except: Option<&Socket<D>>,
        delivery: Delivery,
    ) -> usize {
        let delivered = self.broadcast_local(room, frame, except, delivery);
        self.adapter.publish(&self.name, room, frame);
        delivered
    }

    /// Local delivery only: for frames that arrive from other nodes through the adapter.
    pub fn broadcast_local(
        &self,
        room: &str,
        frame: &OutFrame,
        except: Option<&Socket<D>>,
        delivery: Delivery,
    ) -> usize {
        let rooms = self.rooms.read();
        let Some(members) = rooms.get(room) else {
            return 0;
        };
        let write_now = delivery == Delivery::Immediate && members.len() <= WRITE_NOW_MAX_ROOM;
        let mut delivered = 0;
        for socket in members {
            if except.is_some_and(|e| std::ptr::eq(e, &**socket)) {
                continue;
            }
            let outcome = if write_now {
                socket.session.send_now(frame.clone())
            } else {
                socket.session.send(frame.clone())
            };
            if outcome == SendOutcome::Queued {
                delivered += 1;
            }
        }
        delivered
    }

    /// The sockets in a room, at this instant.
    pub fn sockets_in(&self, room: &str) -> Vec<SocketRef<D>> {
        self.rooms.read().get(room).cloned().unwrap_or_default()
    }

    /// How many sockets a room holds.
    pub fn room_size(&self, room: &str) -> usize {
        self.rooms.read().get(room).map_or(0, Vec::len)
    }

    fn remove_member(&self, room: &Arc<str>, socket: &SocketRef<D>) {
        let mut rooms = self.rooms.write();
        if let Some(members) = rooms.get_mut(room) {
            if let Some(i) = members.iter().position(|s| Arc::ptr_eq(s, socket)) {
                members.swap_remove(i);
            }
            if members.is_empty() {
                rooms.remove(room);
            }
        }
    }
}

/// Binary packet whose attachments are still arriving.
struct PartialBinary {
    text: Bytes,
    expected: usize,
    received: Vec<Bytes>,
    bytes: usize,
    generation: u64,
}

/// Socket.IO's per-connection state.
pub struct SioSession<D> {
    inner: Mutex<SioInner<D>>,
}

struct SioInner<D> {
    sockets: Vec<SocketRef<D>>,
    partial: Option<PartialBinary>,
    /// Attachments of a refused binary packet still to be dropped.
    skip: usize,
    generation: u64,
}

/// The Engine.IO application that speaks Socket.IO to a [`Handler`].
pub struct SioApp<H: Handler> {
    handler: Arc<H>,
    namespaces: HashMap<Box<str>, Arc<Namespace<H::Data>>>,
    config: SioConfig,
}

impl<H: Handler> SioApp<H> {
    fn socket_for(session: &Session<SioSession<H::Data>>, nsp: &str) -> Option<SocketRef<H::Data>> {
        let inner = session.state.inner.lock();
        inner.sockets.iter().find(|s| s.namespace() == nsp).cloned()
    }

    async fn on_text(
        &self,
        session: &Arc<Session<SioSession<H::Data>>>,
        text: Bytes,
    ) -> Result<(), ProtocolViolation> {
        {
            let inner = session.state.inner.lock();
            if inner.partial.is_some() || inner.skip > 0 {
                return Err(ProtocolViolation("text packet while attachments were due"));
            }
        }
        let str_text = std::str::from_utf8(&text).map_err(|_| ProtocolViolation("not UTF-8"))?;
        let packet =
            sio_packet::parse(str_text).map_err(|_| ProtocolViolation("malformed packet"))?;
        match packet.kind {
            PacketKind::Connect => {
                let auth = match packet.data {
                    Some(data) => Some(
                        serde_json::from_str::<&RawValue>(data)
                            .map_err(|_| ProtocolViolation("bad auth"))?,
                    ),
                    None => None,
                };
                if Self::socket_for(session, packet.nsp).is_some() {
                    // socket.io's own server treats this as an invalid state and closes.
                    return Err(ProtocolViolation("CONNECT to a namespace already joined"));
                }
                self.connect(session, packet.nsp, auth).await;
            }
            PacketKind::Disconnect => {
                let socket = Self::socket_for(session, packet.nsp)
                    .ok_or(ProtocolViolation("not connected"))?;
                session
                    .state
                    .inner
                    .lock()
                    .sockets
                    .retain(|s| !Arc::ptr_eq(s, &socket));
                socket.detach(DisconnectReason::ClientDisconnect);
            }
            PacketKind::Event => {
                let socket = Self::socket_for(session, packet.nsp)
                    .ok_or(ProtocolViolation("not connected"))?;
                let name = packet.event.as_deref().unwrap_or_default();
                self.handler.on_event(
                    &socket,
                    Event {
                        name,
                        args: &packet.args,
                        ack_id: packet.ack_id,
                        attachments: &[],
                    },
                );
            }
            PacketKind::Ack => {
                let socket = Self::socket_for(session, packet.nsp)
                    .ok_or(ProtocolViolation("not connected"))?;
                if let (Some(id), Some(data)) = (packet.ack_id, packet.data) {
                    socket.resolve_ack(id, data);
                }
            }
            PacketKind::BinaryEvent | PacketKind::BinaryAck => {
                let socket = Self::socket_for(session, packet.nsp)
                    .ok_or(ProtocolViolation("not connected"))?;
                if packet.attachments > self.config.max_attachments {
                    return Err(ProtocolViolation("too many attachments"));
                }
                if self.config.binary == BinaryPolicy::Refuse {
                    session.state.inner.lock().skip = packet.attachments;
                    if packet.kind == PacketKind::BinaryEvent {
                        let name = packet.event.as_deref().unwrap_or_default();
                        self.handler.on_binary_refused(&socket, name, packet.ack_id);
                    }
                    return Ok(());
                }
                if packet.attachments == 0 {
                    self.dispatch_binary(&socket, &text, Vec::new());
                    return Ok(());
                }
                let generation = {
                    let mut inner = session.state.inner.lock();
                    inner.generation += 1;
                    inner.partial = Some(PartialBinary {
                        text: text.clone(),
                        expected: packet.attachments,
                        received: Vec::with_capacity(packet.attachments),
                        bytes: 0,
                        generation: inner.generation,
                    });
                    inner.generation
                };
                // Attachments that never arrive must not pin memory forever.
                let session = Arc::downgrade(session);
                let timeout = self.config.attachment_timeout;
                tokio::spawn(async move {
                    tokio::time::sleep(timeout).await;
                    if let Some(session) = session.upgrade() {
                        let stale = session
                            .state
                            .inner
                            .lock()
                            .partial
                            .as_ref()
                            .is_some_and(|p| p.generation == generation);
                        if stale {
                            session.close(CloseReason::ProtocolError);
                        }
                    }
                });
            }
            PacketKind::ConnectError => return Err(ProtocolViolation("CONNECT_ERROR from client")),
        }
        Ok(())
    }

    fn on_binary(
        &self,
        session: &Arc<Session<SioSession<H::Data>>>,
        data: Bytes,
    ) -> Result<(), ProtocolViolation> {
        let complete = {
            let mut inner = session.state.inner.lock();
            if inner.skip > 0 {
                inner.skip -= 1;
                return Ok(());
            }
            let partial = inner
                .partial
                .as_mut()
                .ok_or(ProtocolViolation("unexpected binary message"))?;
            partial.bytes += data.len();
            if partial.bytes > self.config.eio.max_payload {
                return Err(ProtocolViolation("attachments too large"));
            }
            partial.received.push(data);
            if partial.received.len() < partial.expected {
                return Ok(());
            }
            inner.partial.take().expect("checked above")
        };
        let text =
            std::str::from_utf8(&complete.text).map_err(|_| ProtocolViolation("not UTF-8"))?;
        let packet = sio_packet::parse(text).map_err(|_| ProtocolViolation("malformed packet"))?;
        let socket =
            Self::socket_for(session, packet.nsp).ok_or(ProtocolViolation("not connected"))?;
        self.dispatch_binary(&socket, &complete.text, complete.received);
        Ok(())
    }

    fn dispatch_binary(&self, socket: &SocketRef<H::Data>, text: &Bytes, attachments: Vec<Bytes>) {
        let Ok(text) = std::str::from_utf8(text) else {
            return;
        };
        let Ok(packet) = sio_packet::parse(text) else {
            return;
        };
        match packet.kind {
            PacketKind::BinaryEvent => self.handler.on_event(
                socket,
                Event {
                    name: packet.event.as_deref().unwrap_or_default(),
                    args: &packet.args,
                    ack_id: packet.ack_id,
                    attachments: &attachments,
                },
            ),
            PacketKind::BinaryAck => {
                if let (Some(id), Some(data)) = (packet.ack_id, packet.data) {
                    socket.resolve_ack(id, data);
                }
            }
            _ => {}
        }
    }

    async fn connect(
        &self,
        session: &Arc<Session<SioSession<H::Data>>>,
        nsp: &str,
        auth: Option<&RawValue>,
    ) {
        let Some(namespace) = self.namespaces.get(nsp) else {
            let text = sio_packet::connect_error(nsp, "Invalid namespace", None);
            session.send(OutFrame::Text(Bytes::from(text)));
            return;
        };
        let request = ConnectRequest {
            namespace: nsp,
            auth,
            info: session.info(),
        };
        match self.handler.authorize(request).await {
            Ok(data) => {
                let socket = Arc::new(Socket {
                    id: super::eio::random_sid(),
                    namespace: namespace.clone(),
                    session: session.clone(),
                    connected: AtomicBool::new(true),
                    rooms: Mutex::new(Vec::new()),
                    acks: Mutex::new(None),
                    next_ack: AtomicU64::new(0),
                    data,
                });
                if session.is_closed() {
                    return;
                }
                session.state.inner.lock().sockets.push(socket.clone());
                session.mark_established();
                let text = sio_packet::connect_ok(nsp, socket.id());
                session.send(OutFrame::Text(Bytes::from(text)));
                self.handler.on_connect(&socket);
            }
            Err(error) => {
                let text = sio_packet::connect_error(nsp, &error.message, error.data.as_ref());
                session.send(OutFrame::Text(Bytes::from(text)));
            }
        }
    }
}

impl<H: Handler> EioApp for SioApp<H> {
    type State = SioSession<H::Data>;

    fn new_state(&self) -> Self::State {
        SioSession {
            inner: Mutex::new(SioInner {
                sockets: Vec::new(),
                partial: None,
                skip: 0,
                generation: 0,
            }),
        }
    }

    async fn on_message(
        &self,
        session: &Arc<Session<Self::State>>,
        payload: Payload,
    ) -> Result<(), ProtocolViolation> {
        match payload {
            Payload::Text(text) => self.on_text(session, text).await,
            Payload::Binary(data) => self.on_binary(session, data),
        }
    }

    fn on_close(&self, session: &Arc<Session<Self::State>>, reason: CloseReason) {
        let sockets = std::mem::take(&mut session.state.inner.lock().sockets);
        for socket in sockets {
            socket.detach(reason.into());
        }
    }
}

/// A Socket.IO server; cheap to clone.
pub struct SocketIo<H: Handler> {
    engine: EngineIo<SioApp<H>>,
}

impl<H: Handler> Clone for SocketIo<H> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
        }
    }
}

impl<H: Handler> SocketIo<H> {
    /// Starts a single-node server (inside a Tokio runtime).
    pub fn new(config: SioConfig, handler: H) -> Self {
        Self::with_adapter(config, handler, Arc::new(LocalAdapter))
    }

    /// Starts a server whose broadcasts also go through `adapter` to other nodes.
    pub fn with_adapter(config: SioConfig, handler: H, adapter: Arc<dyn Adapter>) -> Self {
        let handler = Arc::new(handler);
        let hook: Arc<dyn DisconnectHook<H::Data>> = handler.clone();
        let mut names = config.namespaces.clone();
        if !names.iter().any(|n| n == "/") {
            names.push("/".into());
        }
        let namespaces = names
            .into_iter()
            .map(|name| {
                let namespace = Arc::new(Namespace {
                    name: name.clone().into_boxed_str(),
                    rooms: RwLock::new(HashMap::new()),
                    hook: hook.clone(),
                    adapter: adapter.clone(),
                });
                (name.into_boxed_str(), namespace)
            })
            .collect();
        let app = SioApp {
            handler,
            namespaces,
            config: config.clone(),
        };
        Self {
            engine: EngineIo::new(config.eio, app),
        }
    }

    /// The application handler.
    pub fn handler(&self) -> &H {
        &self.engine.app().handler
    }

    /// A namespace by name.
    pub fn namespace(&self, name: &str) -> Option<&Arc<Namespace<H::Data>>> {
        self.engine.app().namespaces.get(name)
    }

    /// Open Engine.IO sessions.
    pub fn session_count(&self) -> usize {
        self.engine.session_count()
    }

    /// Closes every connection (shutdown); clients reconnect by themselves.
    pub fn close_all(&self) {
        self.engine.close_all();
    }

    /// Answers one HTTP request addressed to the Socket.IO path.
    pub async fn handle(&self, request: Request<Body>) -> Response<Body> {
        self.engine.handle(request).await
    }

    /// The engine's WebSocket handshake for connections to `path`, taken before the HTTP
    /// server sees them (give it to [`crate::http::serve::serve`] with [`Self::router`]).
    pub fn websocket_tap(&self, path: &str) -> Arc<dyn ConnectionTap> {
        Arc::new(WebSocketTap {
            engine: self.engine.clone(),
            path: path.into(),
        })
    }

    /// An axum router serving the engine at `path` (e.g. `/socket.io/`).
    pub fn router(&self, path: &str) -> axum::Router {
        let io = self.clone();
        axum::Router::new().route_service(
            path,
            tower::service_fn(move |request: Request<Body>| {
                let io = io.clone();
                async move { Ok::<_, std::convert::Infallible>(io.handle(request).await) }
            }),
        )
    }
}

/// [`SocketIo::websocket_tap`]: the engine's handshake on new connections to one path.
struct WebSocketTap<H: Handler> {
    engine: EngineIo<SioApp<H>>,
    path: Box<str>,
}

impl<H: Handler> ConnectionTap for WebSocketTap<H> {
    fn tap(&self, stream: tokio::net::TcpStream, peer: std::net::SocketAddr) -> TapFuture<'_> {
        Box::pin(self.engine.tap_websocket(stream, peer, &self.path))
    }

    fn path(&self) -> &str {
        &self.path
    }

    fn handle(&self, request: Request<Body>) -> EngineResponse<'_> {
        Box::pin(self.engine.handle(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Silent;

    impl Handler for Silent {
        type Data = ();

        async fn authorize(&self, _request: ConnectRequest<'_>) -> Result<(), ConnectError> {
            Ok(())
        }

        fn on_event(&self, _socket: &SocketRef<()>, _event: Event<'_>) {}
    }

    #[derive(Default)]
    struct Recording(Mutex<Vec<(String, String, OutFrame)>>);

    impl Adapter for Recording {
        fn publish(&self, namespace: &str, room: &str, frame: &OutFrame) {
            self.0
                .lock()
                .push((namespace.to_owned(), room.to_owned(), frame.clone()));
        }
    }

    #[tokio::test]
    async fn broadcasts_reach_the_adapter_but_remote_frames_do_not_loop_back() {
        let adapter = Arc::new(Recording::default());
        let io = SocketIo::with_adapter(SioConfig::default(), Silent, adapter.clone());
        let root = io.namespace("/").expect("the root namespace exists");
        let frame = OutFrame::Text(Bytes::from_static(br#"42["message","x"]"#));
        assert_eq!(root.broadcast("room-1", &frame, None, Delivery::Queued), 0);
        assert_eq!(
            root.broadcast_local("room-1", &frame, None, Delivery::Queued),
            0
        );
        let published = adapter.0.lock().clone();
        assert_eq!(
            published,
            vec![("/".to_owned(), "room-1".to_owned(), frame)]
        );
    }
}
