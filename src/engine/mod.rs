//! Our Engine.IO v4 + Socket.IO v5 server. It knows nothing of projects or keys: the
//! application plugs in through [`sio::Handler`] (auth hook, events, disconnects) and
//! broadcasts through [`sio::Namespace::broadcast`].
//!
//! Layers, bottom up, each doing one thing:
//! - [`ws`]: RFC 6455 framing (pure parser, header encoder);
//! - [`eio_packet`]: Engine.IO packets and long-polling payloads (pure);
//! - [`session`]: one Engine.IO session: transport phase, outbox, heartbeat;
//! - [`eio`]: HTTP routing, the polling and WebSocket transports, upgrade, ticker, and
//!   the WebSocket tap that takes handshakes before the HTTP server;
//! - [`sio_packet`]: Socket.IO packets (pure);
//! - [`sio`]: namespaces, CONNECT/auth, events and acks, binary, rooms, broadcast.
//!
//! Why our own rather than socketioxide: it handles each event on a separately spawned
//! task (a burst from one client arrives out of order), drops a socket's copy of a
//! broadcast silently when its queue is full, cannot put `data` in CONNECT_ERROR, and
//! re-encodes every broadcast per recipient. Here a socket's events are handled in order
//! on the task that read them, each broadcast is encoded once and shared, and a reader
//! that falls behind is disconnected and counted, never skipped.

pub mod eio;
pub mod eio_packet;
pub mod session;
pub mod sio;
pub mod sio_packet;
pub mod ws;

pub use eio::{
    ConnectionTap, Cors, EioApp, EioConfig, EngineIo, EngineResponse, ProtocolViolation, TapFuture,
};
pub use eio_packet::{OutFrame, Payload};
pub use session::{CloseReason, ConnInfo, SendOutcome, Session};
pub use sio::{
    Adapter, BinaryPolicy, ConnectError, ConnectRequest, Delivery, DisconnectReason, Event,
    Handler, LocalAdapter, Namespace, SioConfig, Socket, SocketIo, SocketRef,
};
