//! The Engine.IO v4 server: request routing and validation, the long-polling transport,
//! the WebSocket transport, the polling→WebSocket upgrade, the heartbeat ticker and the
//! reaper that retires closed sessions.
//!
//! Heartbeats are driven by one ticker task per engine rather than a timer per session;
//! the ticker walks the sessions a few times per ping interval, and every request also
//! checks its session's deadlines first, so an expired session is never served.

use super::eio_packet::{self, Inbound, OutFrame, Payload, CLOSE, NOOP};
use super::session::{
    CloseReason, ConnInfo, Phase, Session, WriterTurn, KEPT_QUEUE_CAPACITY, WRITE_BATCH,
};
use super::ws::{self, Message, OpCode, Reassembler};
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Cross-origin policy for browser clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// No CORS headers (same-origin browsers and non-browser clients only).
    Disabled,
    /// `Access-Control-Allow-Origin: *` (no credentials).
    Wildcard,
    /// Reflect any request origin and allow credentials.
    AnyOrigin,
    /// Reflect the origin only when it is listed; allow credentials.
    List(Vec<String>),
}

/// Engine.IO settings.
#[derive(Debug, Clone)]
pub struct EioConfig {
    /// Time between server pings.
    pub ping_interval: Duration,
    /// Time allowed for the pong.
    pub ping_timeout: Duration,
    /// Largest WebSocket message or polling body accepted, in bytes.
    pub max_payload: usize,
    /// Unsent bytes a client may accumulate before it is disconnected.
    pub max_backlog: usize,
    /// Time after the handshake within which the application must call
    /// [`Session::mark_established`] (Socket.IO's connect timeout); `None` = no limit.
    pub handshake_timeout: Option<Duration>,
    /// Time a WebSocket may take to complete an upgrade after connecting.
    pub upgrade_timeout: Duration,
    /// Cross-origin policy.
    pub cors: Cors,
    /// Write each WebSocket frame on its own, this long after the previous one, instead
    /// of coalescing a backlog into one `writev`. Coalescing is what makes broadcast
    /// cheap; pacing exists only for clients that expect one frame per network read
    /// (the official protocol suites, written against a server that waits for each
    /// write to complete before the next).
    pub write_pacing: Option<Duration>,
}

impl Default for EioConfig {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            max_backlog: 1 << 20,
            handshake_timeout: Some(Duration::from_secs(45)),
            upgrade_timeout: Duration::from_secs(10),
            cors: Cors::AnyOrigin,
            write_pacing: None,
        }
    }
}

/// Something the application refuses in a message: the session is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protocol violation: {0}")]
pub struct ProtocolViolation(pub &'static str);

/// What the engine needs from the layer above it (Socket.IO, or a raw echo).
pub trait EioApp: Send + Sync + 'static {
    /// Per-session state owned by the application.
    type State: Send + Sync + 'static;

    /// State for a new session.
    fn new_state(&self) -> Self::State;

    /// A message from the client, in arrival order; the next one waits for this one.
    fn on_message(
        &self,
        session: &Arc<Session<Self::State>>,
        payload: Payload,
    ) -> impl Future<Output = Result<(), ProtocolViolation>> + Send;

    /// The session ended (called once, from the engine's reaper).
    fn on_close(&self, session: &Arc<Session<Self::State>>, reason: CloseReason);
}

/// Engine.IO error codes, as the reference server answers them.
#[derive(Debug, Clone, Copy)]
enum EioError {
    UnknownTransport,
    UnknownSid,
    BadHandshakeMethod,
    BadRequest,
    UnsupportedProtocolVersion,
}

impl EioError {
    fn code_and_message(self) -> (u8, &'static str) {
        match self {
            Self::UnknownTransport => (0, "Transport unknown"),
            Self::UnknownSid => (1, "Session ID unknown"),
            Self::BadHandshakeMethod => (2, "Bad handshake method"),
            Self::BadRequest => (3, "Bad request"),
            Self::UnsupportedProtocolVersion => (5, "Unsupported protocol version"),
        }
    }
}

type SessionMap<S> = RwLock<HashMap<Box<str>, Arc<Session<S>>>>;

/// How long a poll that arrived during an upgrade waits for the upgrade packet.
const UPGRADE_SETTLE: Duration = Duration::from_millis(50);
/// How long a session the client closed over long-polling still answers one late poll.
const LATE_POLL_GRACE: Duration = Duration::from_secs(1);
/// At most this many such sessions are remembered (a sid each).
const LATE_POLL_REMEMBERED: usize = 1024;

struct Inner<A: EioApp> {
    config: EioConfig,
    app: A,
    sessions: SessionMap<A::State>,
    closed_tx: mpsc::UnboundedSender<Box<str>>,
    /// One write-behind list per runtime worker (see [`write_behind`]). Sessions are
    /// dealt to them in turn, so a large room's fan-out is written by every core, not
    /// one; a session always uses the same list, which keeps its frames in order.
    write_behind: Vec<mpsc::UnboundedSender<Arc<Session<A::State>>>>,
    next_write_behind: AtomicUsize,
    /// Retired sessions that still owe a late poll its `noop`, oldest first.
    owed_noops: Mutex<VecDeque<(Box<str>, Instant)>>,
}

impl<A: EioApp> Inner<A> {
    /// The write-behind list for a new session: each in turn.
    fn next_write_behind_list(&self) -> mpsc::UnboundedSender<Arc<Session<A::State>>> {
        let turn = self.next_write_behind.fetch_add(1, Ordering::Relaxed);
        self.write_behind[turn % self.write_behind.len()].clone()
    }

    /// Whether the retired or closing session `sid` owes a poll its `noop` (once).
    fn take_owed_noop(&self, sid: &str) -> bool {
        if let Some(session) = self.sessions.read().get(sid) {
            return session.take_noop_owed();
        }
        let mut owed = self.owed_noops.lock();
        match owed.iter().position(|(owed_sid, _)| &**owed_sid == sid) {
            Some(at) => owed
                .remove(at)
                .is_some_and(|(_, since)| since.elapsed() <= LATE_POLL_GRACE),
            None => false,
        }
    }

    /// Remembers a retired session that owes a late poll its `noop`, for a moment.
    fn remember_owed_noop(&self, sid: Box<str>) {
        let now = Instant::now();
        let mut owed = self.owed_noops.lock();
        while owed.front().is_some_and(|(_, since)| {
            now.duration_since(*since) > LATE_POLL_GRACE || owed.len() >= LATE_POLL_REMEMBERED
        }) {
            owed.pop_front();
        }
        owed.push_back((sid, now));
    }
}

/// An Engine.IO server for one path; cheap to clone.
pub struct EngineIo<A: EioApp> {
    inner: Arc<Inner<A>>,
}

impl<A: EioApp> Clone for EngineIo<A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

/// A random 120-bit id in URL-safe base64 (Engine.IO session ids, Socket.IO socket ids).
pub(crate) fn random_sid() -> Box<str> {
    use base64::Engine as _;
    let bytes: [u8; 15] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(bytes)
        .into_boxed_str()
}

/// What a [`ConnectionTap`] returns: `None` when it took the connection, else the
/// untouched stream for HTTP.
pub type TapFuture<'a> = Pin<Box<dyn Future<Output = Option<TcpStream>> + Send + 'a>>;

/// What [`ConnectionTap::handle`] returns: the engine's answer to one HTTP request.
pub type EngineResponse<'a> = Pin<Box<dyn Future<Output = Response<Body>> + Send + 'a>>;

/// Looks at each new connection before the HTTP server does, and may take it over (the
/// engine's WebSocket handshake does; see [`EngineIo::tap_websocket`]). Requests to the
/// engine's path that reach HTTP (long-polling) go to it straight from the accept loop,
/// without the router.
pub trait ConnectionTap: Send + Sync + 'static {
    /// Serves `stream` itself (and returns `None`) or gives it back unread.
    fn tap(&self, stream: TcpStream, peer: SocketAddr) -> TapFuture<'_>;
    /// The engine's path (`/socket.io/`).
    fn path(&self) -> &str;
    /// Answers one HTTP request to [`Self::path`] (as [`EngineIo::handle`]).
    fn handle(&self, request: Request<Body>) -> EngineResponse<'_>;
}

/// Largest request head the WebSocket fast path takes; longer ones go through HTTP.
const MAX_TAPPED_HEAD: usize = 4096;
/// How long a new connection may take to send its first bytes before it is left to HTTP.
const TAP_WAIT: Duration = Duration::from_secs(30);

/// A WebSocket handshake read straight off a new connection.
struct TappedHandshake {
    /// Bytes of the request head (to consume once the handshake is taken).
    head_len: usize,
    headers: HeaderMap,
    accept: String,
    sid: Option<String>,
}

impl TappedHandshake {
    /// The handshake in `bytes` if they hold a whole, valid Engine.IO v4 WebSocket
    /// request for `path`; anything else (other paths, errors to report, a partial head)
    /// is `None` and left to the HTTP server, which answers it as usual.
    fn parse(bytes: &[u8], path: &str) -> Option<Self> {
        let mut slots = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut slots);
        let httparse::Status::Complete(head_len) = request.parse(bytes).ok()? else {
            return None;
        };
        if request.method != Some("GET") || request.version != Some(1) {
            return None;
        }
        let (target_path, query) = request.path?.split_once('?')?;
        let query = parse_query(query);
        if target_path != path || query.eio != Some("4") || query.transport != Some("websocket") {
            return None;
        }
        let mut headers = HeaderMap::with_capacity(request.headers.len());
        for h in request.headers.iter() {
            let name = header::HeaderName::from_bytes(h.name.as_bytes()).ok()?;
            headers.append(name, HeaderValue::from_bytes(h.value).ok()?);
        }
        let key = websocket_key(&headers)?;
        Some(Self {
            head_len,
            accept: ws::accept_key(key.as_bytes()),
            sid: query.sid.map(str::to_owned),
            headers,
        })
    }
}

/// The `Sec-WebSocket-Key` of a valid RFC 6455 upgrade request.
fn websocket_key(headers: &HeaderMap) -> Option<&HeaderValue> {
    let is_upgrade = header_has_token(headers, header::CONNECTION, "upgrade")
        && header_has_token(headers, header::UPGRADE, "websocket")
        && headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v.as_bytes() == b"13");
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|_| is_upgrade)
}

struct Query<'a> {
    eio: Option<&'a str>,
    transport: Option<&'a str>,
    sid: Option<&'a str>,
}

fn parse_query(query: &str) -> Query<'_> {
    let mut q = Query {
        eio: None,
        transport: None,
        sid: None,
    };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "EIO" => q.eio = Some(value),
            "transport" => q.transport = Some(value),
            "sid" => q.sid = Some(value),
            _ => {}
        }
    }
    q
}

impl<A: EioApp> EngineIo<A> {
    /// Starts an engine (its ticker and reaper run until the last handle is dropped).
    /// Must be called inside a Tokio runtime.
    pub fn new(config: EioConfig, app: A) -> Self {
        let (closed_tx, closed_rx) = mpsc::unbounded_channel();
        let workers = tokio::runtime::Handle::current()
            .metrics()
            .num_workers()
            .max(1);
        let (write_behind_txs, write_behind_rxs): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| mpsc::unbounded_channel()).unzip();
        let inner = Arc::new(Inner {
            config,
            app,
            sessions: RwLock::new(HashMap::new()),
            closed_tx,
            write_behind: write_behind_txs,
            next_write_behind: AtomicUsize::new(0),
            owed_noops: Mutex::new(VecDeque::new()),
        });
        tokio::spawn(reaper(Arc::downgrade(&inner), closed_rx));
        for due in write_behind_rxs {
            tokio::spawn(write_behind(due));
        }
        tokio::spawn(ticker(Arc::downgrade(&inner)));
        Self { inner }
    }

    /// The application on top of this engine.
    pub fn app(&self) -> &A {
        &self.inner.app
    }

    /// The engine's settings.
    pub fn config(&self) -> &EioConfig {
        &self.inner.config
    }

    /// Number of open sessions.
    pub fn session_count(&self) -> usize {
        self.inner.sessions.read().len()
    }

    /// Closes every session (server shutdown): clients see their transport close and
    /// reconnect by themselves.
    pub fn close_all(&self) {
        let sessions: Vec<_> = self.inner.sessions.read().values().cloned().collect();
        for session in sessions {
            session.close(CloseReason::ServerClose);
        }
    }

    /// Answers one HTTP request addressed to the engine's path.
    pub async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let preflight = request.method() == Method::OPTIONS;
        let cors = cors_headers(&self.inner.config.cors, request.headers(), preflight);
        let mut response = self.route(request).await;
        response.headers_mut().extend(cors);
        response
    }

    async fn route(&self, request: Request<Body>) -> Response<Body> {
        if request.method() == Method::OPTIONS {
            return preflight(request.headers());
        }
        let query = parse_query(request.uri().query().unwrap_or(""));
        if query.eio != Some("4") {
            return eio_error(EioError::UnsupportedProtocolVersion);
        }
        let is_ws = match query.transport {
            Some("polling") => false,
            Some("websocket") => true,
            _ => return eio_error(EioError::UnknownTransport),
        };
        let sid = query.sid.map(str::to_owned);
        match (sid, is_ws) {
            (None, false) => {
                if request.method() != Method::GET {
                    return eio_error(EioError::BadHandshakeMethod);
                }
                self.open_polling(&request)
            }
            (None, true) => self.open_websocket(request, None),
            (Some(sid), ws) => {
                let Some(session) = self.lookup(&sid) else {
                    if !ws && request.method() == Method::GET && self.inner.take_owed_noop(&sid) {
                        return text_response(StatusCode::OK, bytes_of(&NOOP));
                    }
                    return eio_error(EioError::UnknownSid);
                };
                if ws {
                    self.open_websocket(request, Some(session))
                } else if request.method() == Method::GET {
                    self.poll(&session).await
                } else if request.method() == Method::POST {
                    self.post(&session, request).await
                } else {
                    eio_error(EioError::BadRequest)
                }
            }
        }
    }

    fn lookup(&self, sid: &str) -> Option<Arc<Session<A::State>>> {
        let session = self.inner.sessions.read().get(sid).cloned()?;
        let config = &self.inner.config;
        session.tick(
            Instant::now(),
            config.ping_timeout,
            config.handshake_timeout,
        );
        (!session.is_closed()).then_some(session)
    }

    fn new_session(
        &self,
        phase: Phase,
        headers: &HeaderMap,
        remote: Option<SocketAddr>,
    ) -> Arc<Session<A::State>> {
        let config = &self.inner.config;
        let info = ConnInfo {
            origin: headers
                .get(header::ORIGIN)
                .and_then(|v| v.to_str().ok())
                .map(Into::into),
            remote,
        };
        let sid = random_sid();
        let session = Session::new(
            sid.clone(),
            phase,
            info,
            config.ping_interval,
            config.max_backlog,
            self.inner.closed_tx.clone(),
            self.inner.next_write_behind_list(),
            self.inner.app.new_state(),
        );
        session.send(eio_packet::open_packet(
            &sid,
            phase == Phase::Polling,
            config.ping_interval.as_millis() as u64,
            config.ping_timeout.as_millis() as u64,
            config.max_payload,
        ));
        self.inner.sessions.write().insert(sid, session.clone());
        session
    }

    fn open_polling(&self, request: &Request<Body>) -> Response<Body> {
        let session = self.new_session(Phase::Polling, request.headers(), remote_addr(request));
        Self::drain_to_response(&session)
    }

    /// Answers a poll with every queued frame, and gives the queue back for reuse.
    fn drain_to_response(session: &Session<A::State>) -> Response<Body> {
        let (frames, _) = session.take_outbox();
        let mut frames: Vec<_> = frames.into();
        let body = eio_packet::encode_payload(&frames);
        frames.clear();
        session.recycle_outbox(frames.into());
        text_response(StatusCode::OK, body)
    }

    /// A long-poll: answers at once with whatever is queued, or waits for something.
    async fn poll(&self, session: &Arc<Session<A::State>>) -> Response<Body> {
        // A poll that arrives while a WebSocket is taking over may have been sent after
        // that WebSocket's upgrade packet, on another connection we happened to read
        // first. It gets a moment to let the upgrade land (and is then refused, as any
        // poll after the upgrade is) before it is ended with a `noop`. A poll that was
        // already waiting when the probe came is ended at once, so the client can go on.
        let arrived_while_upgrading;
        let mut settle_until: Option<Instant> = None;
        {
            let mut core = session.core.lock();
            arrived_while_upgrading = core.ws_attached;
            match core.phase {
                Phase::Polling | Phase::Upgrading => {}
                Phase::WebSocket | Phase::Closed(_) => return eio_error(EioError::BadRequest),
            }
            if core.poll_waiting {
                session.close_locked(&mut core, CloseReason::DuplicatePoll);
                return eio_error(EioError::BadRequest);
            }
            core.poll_waiting = true;
        }
        struct Waiting<'a, S>(&'a Session<S>);
        impl<S> Drop for Waiting<'_, S> {
            fn drop(&mut self) {
                self.0.core.lock().poll_waiting = false;
            }
        }
        let _waiting = Waiting(session);
        loop {
            let notified = session.notify.notified();
            let mut settle_now = None;
            {
                let core = session.core.lock();
                if let Phase::Closed(reason) = core.phase {
                    let packet = if reason == CloseReason::ClientClose {
                        "6"
                    } else {
                        "1"
                    };
                    return text_response(StatusCode::OK, Bytes::from_static(packet.as_bytes()));
                }
                if !core.outbox.is_empty() {
                    drop(core);
                    return Self::drain_to_response(session);
                }
                if let Some(reason) = core.close_when_flushed {
                    // Everything queued went out in earlier polls; now the close packet.
                    drop(core);
                    session.close(reason);
                    return text_response(StatusCode::OK, bytes_of(&CLOSE));
                }
                match core.phase {
                    Phase::Polling => {}
                    Phase::WebSocket if arrived_while_upgrading => {
                        return eio_error(EioError::BadRequest)
                    }
                    _ if arrived_while_upgrading => {
                        let until =
                            *settle_until.get_or_insert_with(|| Instant::now() + UPGRADE_SETTLE);
                        if Instant::now() >= until {
                            return text_response(StatusCode::OK, bytes_of(&NOOP));
                        }
                        settle_now = Some(until);
                    }
                    _ => return text_response(StatusCode::OK, bytes_of(&NOOP)),
                }
            }
            if let Some(until) = settle_now {
                // The upgrade lands, or the poll ends with a `noop` once the moment is over
                // (a wake-up meant for someone else only brings us back here).
                let _ = tokio::time::timeout_at(until.into(), notified).await;
            } else {
                notified.await;
            }
        }
    }

    /// A long-polling POST: the client's packets, handled in order.
    async fn post(
        &self,
        session: &Arc<Session<A::State>>,
        request: Request<Body>,
    ) -> Response<Body> {
        if session.phase() == Phase::WebSocket {
            return eio_error(EioError::BadRequest);
        }
        let max = self.inner.config.max_payload;
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max as u64) {
            session.close(CloseReason::ProtocolError);
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "payload too large");
        }
        let body = match http_body_util::Limited::new(request.into_body(), max)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                session.close(CloseReason::ProtocolError);
                if error.is::<http_body_util::LengthLimitError>() {
                    return plain(StatusCode::PAYLOAD_TOO_LARGE, "payload too large");
                }
                return eio_error(EioError::BadRequest);
            }
        };
        let Ok(packets) = eio_packet::parse_payload(body) else {
            session.close(CloseReason::ProtocolError);
            return eio_error(EioError::BadRequest);
        };
        let _order = session.inbound.lock().await;
        for packet in packets {
            if self.inbound(session, packet).await.is_err() {
                session.close(CloseReason::ProtocolError);
                return eio_error(EioError::BadRequest);
            }
        }
        html_ok()
    }

    /// One client packet, on either transport.
    async fn inbound(
        &self,
        session: &Arc<Session<A::State>>,
        packet: Inbound,
    ) -> Result<(), ProtocolViolation> {
        match packet {
            Inbound::Close => session.close_by_client(),
            Inbound::Pong => session.on_pong(self.inner.config.ping_interval),
            Inbound::Message(payload) => {
                if !session.is_closed() {
                    self.inner.app.on_message(session, payload).await?;
                }
            }
            // In v4 only the server pings (a probe is handled by the upgrade): like the
            // reference server, a client ping is an "invalid heartbeat direction".
            Inbound::Ping(_) => return Err(ProtocolViolation("invalid heartbeat direction")),
            // Upgrade and noop packets carry nothing once the upgrade is over.
            Inbound::Upgrade | Inbound::Noop => {}
        }
        Ok(())
    }

    fn open_websocket(
        &self,
        mut request: Request<Body>,
        existing: Option<Arc<Session<A::State>>>,
    ) -> Response<Body> {
        let key = websocket_key(request.headers()).filter(|_| request.method() == Method::GET);
        let Some(key) = key else {
            return eio_error(EioError::BadRequest);
        };
        let accept = ws::accept_key(key.as_bytes());
        let on_upgrade = hyper::upgrade::on(&mut request);
        if let Some(session) = &existing {
            let mut core = session.core.lock();
            if core.phase != Phase::Polling || core.ws_attached {
                // Already upgrading or upgraded: like the reference server, accept the
                // WebSocket and close it at once rather than fail the HTTP upgrade.
                tokio::spawn(async move {
                    if let Ok(upgraded) = on_upgrade.await {
                        if let Ok(parts) = upgraded.downcast::<TokioIo<TcpStream>>() {
                            let _ = parts.io.inner().try_write(&ws::close_frame(1000));
                        }
                    }
                });
                return switching_protocols(&accept);
            }
            core.ws_attached = true;
        }
        let session = match existing {
            Some(session) => session,
            None => self.new_session(Phase::WebSocket, request.headers(), remote_addr(&request)),
        };
        let engine = self.clone();
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(_) => return engine.detach(&session),
            };
            match upgraded.downcast::<TokioIo<TcpStream>>() {
                Ok(parts) => {
                    // Copy out what hyper read past the handshake: its `Bytes` would
                    // otherwise pin hyper's whole read buffer for the connection's life.
                    let hyper::upgrade::Parts { io, read_buf, .. } = parts;
                    let leftover = BytesMut::from(&read_buf[..]);
                    drop(read_buf);
                    engine
                        .run_websocket(&session, io.into_inner(), leftover)
                        .await;
                }
                Err(_) => {
                    tracing::error!("websocket upgrade on a transport other than TCP");
                    engine.detach(&session);
                }
            }
        });
        switching_protocols(&accept)
    }

    /// The WebSocket handshake without the HTTP server: peeks at a new connection's first
    /// bytes and, when they are a whole Engine.IO WebSocket request for `path`, answers
    /// it here. The `101` and a new session's open packet then go out in one write, and
    /// no HTTP connection state is built for a socket that never speaks HTTP again.
    /// Anything else is handed back unread (`Some`) for the HTTP server.
    pub async fn tap_websocket(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
        path: &str,
    ) -> Option<TcpStream> {
        if self.inner.config.write_pacing.is_some() {
            return Some(stream); // the conformance client wants one frame per read
        }
        let mut head = [0u8; MAX_TAPPED_HEAD];
        let peeked = match tokio::time::timeout(TAP_WAIT, stream.peek(&mut head)).await {
            Ok(Ok(n)) => n,
            _ => return Some(stream),
        };
        let Some(handshake) = TappedHandshake::parse(&head[..peeked], path) else {
            return Some(stream);
        };
        let existing = match &handshake.sid {
            Some(sid) => {
                let Some(session) = self.lookup(sid) else {
                    return Some(stream); // HTTP answers "unknown sid"
                };
                let mut core = session.core.lock();
                if core.phase != Phase::Polling || core.ws_attached {
                    return Some(stream); // HTTP accepts and closes it, as node does
                }
                core.ws_attached = true;
                drop(core);
                Some(session)
            }
            None => None,
        };
        // The head was only peeked: take it off the socket now that it is ours.
        if stream
            .read_exact(&mut head[..handshake.head_len])
            .await
            .is_err()
        {
            if let Some(session) = &existing {
                self.detach(session);
            }
            return None;
        }
        let mut reply = BytesMut::with_capacity(256);
        reply.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: ");
        reply.extend_from_slice(handshake.accept.as_bytes());
        reply.extend_from_slice(b"\r\n\r\n");
        let session = match existing {
            Some(session) => session,
            None => {
                let session = self.new_session(Phase::WebSocket, &handshake.headers, Some(peer));
                let (mut frames, _) = session.take_outbox();
                for frame in frames.drain(..) {
                    let (opcode, payload) = frame.opcode_and_payload();
                    let mut header = [0u8; ws::MAX_HEADER_LEN];
                    let len = ws::encode_header(opcode, payload.len(), &mut header);
                    reply.extend_from_slice(&header[..len]);
                    reply.extend_from_slice(payload);
                }
                session.recycle_outbox(frames);
                session
            }
        };
        if stream.write_all(&reply).await.is_err() {
            self.detach(&session);
            return None;
        }
        // A task of its own: this future (and the accept loop's around it) is sized for
        // the handshake and for HTTP, too big to keep for the connection's life.
        let engine = self.clone();
        tokio::spawn(async move {
            engine
                .run_websocket(&session, stream, BytesMut::new())
                .await
        });
        None
    }

    /// A WebSocket that never became (or stopped being) the session's transport.
    fn detach(&self, session: &Arc<Session<A::State>>) {
        let mut core = session.core.lock();
        match core.phase {
            Phase::Polling | Phase::Upgrading => {
                core.phase = Phase::Polling;
                core.ws_attached = false;
                drop(core);
                session.notify.notify_one();
            }
            Phase::WebSocket => session.close_locked(&mut core, CloseReason::TransportError),
            Phase::Closed(_) => {}
        }
    }

    async fn run_websocket(
        &self,
        session: &Arc<Session<A::State>>,
        tcp: TcpStream,
        read_buf: BytesMut,
    ) {
        let mut conn = WsConn {
            frames_per_write: if self.inner.config.write_pacing.is_some() {
                1
            } else {
                WRITE_BATCH
            },
            tcp: Arc::new(tcp),
            read_buf,
            reassembler: Reassembler::default(),
            pending: VecDeque::new(),
            offset: 0,
        };
        let probing = session.phase() != Phase::WebSocket;
        if !probing {
            self.allow_direct_writes(session, &conn);
        }
        let outcome = self.drive_websocket(session, &mut conn, probing).await;
        // The socket closes when the last handle to it drops: the session's goes first.
        session.stop_direct();
        match outcome {
            Ok(()) => {}
            Err(WsEnd::Violation(code)) => {
                session.close(CloseReason::ProtocolError);
                let _ = conn.tcp.try_write(&ws::close_frame(code));
            }
            Err(WsEnd::Io) => self.detach(session),
            Err(WsEnd::UpgradeFailed) => self.detach(session),
        }
    }

    /// From now on `Session::send_now` may write this socket itself when it is idle. Not with
    /// write pacing, whose clients want each frame in a write of its own.
    fn allow_direct_writes(&self, session: &Session<A::State>, conn: &WsConn) {
        if self.inner.config.write_pacing.is_none() {
            session.start_direct(conn.tcp.clone());
        }
    }

    async fn drive_websocket(
        &self,
        session: &Arc<Session<A::State>>,
        conn: &mut WsConn,
        mut probing: bool,
    ) -> Result<(), WsEnd> {
        let config = &self.inner.config;
        let upgrade_deadline = tokio::time::sleep(config.upgrade_timeout);
        tokio::pin!(upgrade_deadline);
        loop {
            if probing && session.is_closed() {
                return Err(WsEnd::UpgradeFailed);
            }
            // Move queued frames to the socket (only once this WebSocket carries the
            // session). While this task holds frames, `send_now` queues behind them.
            let mut closing = None;
            if !probing {
                match conn.take_queued(session, false) {
                    WriterTurn::Closed => {
                        let _ = conn.flush();
                        let _ = conn.tcp.try_write(&ws::close_frame(1000));
                        return Ok(());
                    }
                    WriterTurn::Open { closing: due, .. } => {
                        if conn.pending.is_empty() {
                            if let Some(reason) = due {
                                session.close(reason);
                                let _ = conn.tcp.try_write(&ws::close_frame(1000));
                                return Ok(());
                            }
                        }
                        closing = due;
                    }
                }
            }
            if let Some(pause) = config.write_pacing {
                if conn.write_one().map_err(|_| WsEnd::Io)? && !conn.pending.is_empty() {
                    tokio::time::sleep(pause).await;
                    continue;
                }
            }
            conn.flush().map_err(|_| WsEnd::Io)?;
            if !probing && conn.pending.is_empty() {
                if !session.release_writer() {
                    continue; // more was queued while we wrote
                }
                if closing.is_some() {
                    // The last frames before a graceful close are out: close now. Nothing
                    // else may wake this task (the close's wake-up was spent taking them).
                    continue;
                }
            }
            let want_write = !conn.pending.is_empty();
            tokio::select! {
                ready = conn.tcp.readable() => {
                    ready.map_err(|_| WsEnd::Io)?;
                    let messages = conn.read(config.max_payload)?;
                    if messages.is_empty() {
                        continue;
                    }
                    let _order = session.inbound.lock().await;
                    for message in messages {
                        match message {
                            Message::Text(text) => {
                                let packet = eio_packet::parse_text(text.freeze())
                                    .map_err(|_| WsEnd::Violation(1002))?;
                                if probing {
                                    probing = self.probe_step(session, conn, packet)?;
                                    continue;
                                }
                                self.inbound(session, packet).await.map_err(|_| WsEnd::Violation(1002))?;
                            }
                            Message::Binary(data) => {
                                if probing {
                                    return Err(WsEnd::UpgradeFailed);
                                }
                                self.inbound(session, Inbound::Message(Payload::Binary(data.freeze())))
                                    .await
                                    .map_err(|_| WsEnd::Violation(1002))?;
                            }
                            Message::Ping(data) => {
                                // The pong goes out before anything the messages after
                                // the ping make us send.
                                if !probing {
                                    conn.take_queued(session, true);
                                }
                                conn.pending.push_back(WsOut::Pong(data.freeze()));
                            }
                            Message::Pong => {}
                            Message::Close => {
                                if probing {
                                    return Err(WsEnd::UpgradeFailed);
                                }
                                let _ = conn.flush();
                                let _ = conn.tcp.try_write(&ws::close_frame(1000));
                                session.close(CloseReason::ClientClose);
                                return Ok(());
                            }
                        }
                    }
                }
                ready = conn.tcp.writable(), if want_write => {
                    ready.map_err(|_| WsEnd::Io)?;
                }
                // While probing, the long-poll still owns the outbox and its wake-ups.
                () = session.notify.notified(), if !probing => {}
                () = &mut upgrade_deadline, if probing => return Err(WsEnd::UpgradeFailed),
            }
        }
    }

    /// One packet of the upgrade handshake; returns whether we are still probing.
    fn probe_step(
        &self,
        session: &Arc<Session<A::State>>,
        conn: &mut WsConn,
        packet: Inbound,
    ) -> Result<bool, WsEnd> {
        match packet {
            Inbound::Ping(data) if &data[..] == b"probe" => {
                conn.pending
                    .push_back(WsOut::Data(OutFrame::Text(Bytes::from_static(b"3probe"))));
                let mut core = session.core.lock();
                if core.phase == Phase::Polling {
                    core.phase = Phase::Upgrading;
                }
                drop(core);
                // A pending long-poll answers now so the client can pause polling.
                session.notify.notify_one();
                Ok(true)
            }
            Inbound::Upgrade => {
                let mut core = session.core.lock();
                match core.phase {
                    Phase::Upgrading => core.phase = Phase::WebSocket,
                    _ => return Err(WsEnd::UpgradeFailed),
                }
                drop(core);
                self.allow_direct_writes(session, conn);
                // What was queued during the upgrade (and anything of ours not yet
                // written) goes before whatever `send_now` could now write directly.
                conn.take_queued(session, false);
                session.notify.notify_one();
                Ok(false)
            }
            _ => Err(WsEnd::UpgradeFailed),
        }
    }
}

enum WsEnd {
    Io,
    Violation(u16),
    UpgradeFailed,
}

enum WsOut {
    Data(OutFrame),
    Pong(Bytes),
}

/// Something written to a WebSocket as one frame.
pub(super) trait WireFrame {
    /// The WebSocket opcode and payload that carry it.
    fn opcode_and_payload(&self) -> (OpCode, &[u8]);
}

impl WireFrame for WsOut {
    fn opcode_and_payload(&self) -> (OpCode, &[u8]) {
        match self {
            Self::Data(frame) => frame.opcode_and_payload(),
            Self::Pong(b) => (OpCode::Pong, b),
        }
    }
}

impl WireFrame for OutFrame {
    fn opcode_and_payload(&self) -> (OpCode, &[u8]) {
        match self {
            OutFrame::Text(b) => (OpCode::Text, b),
            OutFrame::Binary(b) => (OpCode::Binary, b),
        }
    }
}

/// One non-blocking `writev` of up to `max_frames` of `pending`, resuming `offset`
/// bytes into the first; drops the frames written whole and leaves in `offset` what
/// was written of the next. False if the socket took nothing (it would block).
pub(super) fn write_frames<T: WireFrame>(
    tcp: &TcpStream,
    pending: &mut VecDeque<T>,
    offset: &mut usize,
    max_frames: usize,
) -> io::Result<bool> {
    if pending.is_empty() {
        return Ok(false);
    }
    let mut headers = [[0u8; ws::MAX_HEADER_LEN]; WRITE_BATCH];
    let mut slices = [IoSlice::new(&[]); WRITE_BATCH * 2];
    let mut header_lens = [0usize; WRITE_BATCH];
    let max_frames = max_frames.min(WRITE_BATCH);
    for (i, out) in pending.iter().take(max_frames).enumerate() {
        let (opcode, payload) = out.opcode_and_payload();
        header_lens[i] = ws::encode_header(opcode, payload.len(), &mut headers[i]);
    }
    let mut count = 0;
    for (i, out) in pending.iter().take(max_frames).enumerate() {
        slices[count] = IoSlice::new(&headers[i][..header_lens[i]]);
        slices[count + 1] = IoSlice::new(out.opcode_and_payload().1);
        count += 2;
    }
    let mut slices = &mut slices[..count];
    IoSlice::advance_slices(&mut slices, *offset);
    let written = match tcp.try_write_vectored(slices) {
        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut consumed = *offset + written;
    *offset = 0;
    while let Some(front) = pending.front() {
        let len = front.opcode_and_payload().1.len();
        let total = header_len(len) + len;
        if consumed >= total {
            consumed -= total;
            pending.pop_front();
        } else {
            *offset = consumed;
            break;
        }
    }
    Ok(true)
}

/// Writes one frame to the socket with a non-blocking `writev`, for `Session::send_now`.
/// `None` when the socket took all of it; else the bytes it took (0 when it would block
/// or failed: the frame is then queued, and the WebSocket task meets the error itself).
pub(super) fn write_frame_now(tcp: &TcpStream, frame: &OutFrame) -> Option<usize> {
    let (opcode, payload) = frame.opcode_and_payload();
    let mut header = [0u8; ws::MAX_HEADER_LEN];
    let len = ws::encode_header(opcode, payload.len(), &mut header);
    let written = tcp
        .try_write_vectored(&[IoSlice::new(&header[..len]), IoSlice::new(payload)])
        .unwrap_or(0);
    (written < len + payload.len()).then_some(written)
}

fn header_len(payload_len: usize) -> usize {
    match payload_len {
        n if n < 126 => 2,
        n if n <= u16::MAX as usize => 4,
        _ => 10,
    }
}

struct WsConn {
    frames_per_write: usize,
    /// Shared with the session while it may write directly (see `Session::send_now`).
    tcp: Arc<TcpStream>,
    /// Bytes read but not yet parsed; released whenever it empties, so an idle
    /// connection holds no read buffer.
    read_buf: BytesMut,
    reassembler: Reassembler,
    pending: VecDeque<WsOut>,
    /// Bytes of the first pending frame (header included) already written.
    offset: usize,
}

impl WsConn {
    /// Takes the session's queued frames when this connection has written all it held
    /// (see `Session::take_for_writer`), resuming a frame `send_now` wrote in part.
    fn take_queued<S>(&mut self, session: &Session<S>, hold: bool) -> WriterTurn {
        let turn = session.take_for_writer(&mut self.pending, WsOut::Data, hold);
        if let WriterTurn::Open {
            first_frame_written,
            ..
        } = turn
        {
            if first_frame_written > 0 {
                self.offset = first_frame_written;
            }
        }
        turn
    }

    /// Reads what the socket has and returns the whole messages in it.
    fn read(&mut self, max_payload: usize) -> Result<Vec<Message>, WsEnd> {
        let mut messages = Vec::new();
        for _ in 0..16 {
            self.read_buf.reserve(4096);
            match self.tcp.try_read_buf(&mut self.read_buf) {
                Ok(0) => return Err(WsEnd::Io),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return Err(WsEnd::Io),
            }
            loop {
                let frame = ws::parse_frame(&mut self.read_buf, max_payload)
                    .map_err(|e| WsEnd::Violation(e.close_code()))?;
                let Some(frame) = frame else { break };
                if let Some(message) = self
                    .reassembler
                    .push(frame, max_payload)
                    .map_err(|e| WsEnd::Violation(e.close_code()))?
                {
                    messages.push(message);
                }
            }
        }
        if self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
        }
        Ok(messages)
    }

    /// Writes as much of the pending frames as the socket takes, many per syscall.
    fn flush(&mut self) -> io::Result<()> {
        while self.write_one()? {}
        if self.pending.is_empty() && self.pending.capacity() > KEPT_QUEUE_CAPACITY {
            // Release a burst's storage; a small queue stays for the next batch.
            self.pending = VecDeque::new();
        }
        Ok(())
    }

    /// One `writev` of up to `frames_per_write` frames; false if nothing could be written.
    fn write_one(&mut self) -> io::Result<bool> {
        write_frames(
            &self.tcp,
            &mut self.pending,
            &mut self.offset,
            self.frames_per_write,
        )
    }
}

fn switching_protocols(accept: &str) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(value) = HeaderValue::from_str(accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    response
}

fn bytes_of(frame: &OutFrame) -> Bytes {
    match frame {
        OutFrame::Text(b) | OutFrame::Binary(b) => b.clone(),
    }
}

fn remote_addr(request: &Request<Body>) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .to_str()
            .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

fn eio_error(error: EioError) -> Response<Body> {
    let (code, message) = error.code_and_message();
    let body = format!(r#"{{"code":{code},"message":"{message}"}}"#);
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn text_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn html_ok() -> Response<Body> {
    let mut response = Response::new(Body::from("ok"));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    response
}

/// The CORS headers of a browser's request (one with `Origin`; others get none, so the
/// long-polling path of non-browser clients allocates no header map). When the origin
/// decides the answer (allowed or not), it says so in `Vary`, as a preflight does on
/// the headers it echoes, so that no cache hands one origin's answer to another.
fn cors_headers(cors: &Cors, request: &HeaderMap, preflight: bool) -> HeaderMap {
    let mut out = HeaderMap::new();
    let origin = request.get(header::ORIGIN);
    if origin.is_some() && matches!(cors, Cors::AnyOrigin | Cors::List(_)) {
        out.insert(
            header::VARY,
            HeaderValue::from_static(if preflight {
                "Origin, Access-Control-Request-Headers"
            } else {
                "Origin"
            }),
        );
    }
    let allow = match (cors, origin) {
        (Cors::Disabled, _) | (_, None) => return out,
        (Cors::Wildcard, Some(_)) => {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            return out;
        }
        (Cors::AnyOrigin, Some(origin)) => Some(origin.clone()),
        (Cors::List(list), Some(origin)) => list
            .iter()
            .any(|allowed| allowed.as_bytes() == origin.as_bytes())
            .then(|| origin.clone()),
    };
    if let Some(origin) = allow {
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        out.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    out
}

fn preflight(request: &HeaderMap) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    if let Some(requested) = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
    }
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    response
}

/// Retires closed sessions: removes them from the map and tells the application.
async fn reaper<A: EioApp>(inner: Weak<Inner<A>>, mut closed: mpsc::UnboundedReceiver<Box<str>>) {
    while let Some(sid) = closed.recv().await {
        let Some(inner) = inner.upgrade() else { return };
        let session = inner.sessions.write().remove(&sid);
        if let Some(session) = session {
            if session.take_noop_owed() {
                inner.remember_owed_noop(sid);
            }
            if let Phase::Closed(reason) = session.phase() {
                inner.app.on_close(&session, reason);
            }
        }
    }
}

/// Sessions the write-behind task writes between two yields to the scheduler.
const WRITE_BEHIND_CHUNK: usize = 64;

/// Writes the frames queued for idle WebSockets (see `Session::send`). Once woken, it
/// first lets the tasks already runnable run, so that frames they queue for the same
/// sockets go out in the same `writev`: a burst of publishes read in one I/O batch costs
/// one write per recipient. It yields again every [`WRITE_BEHIND_CHUNK`] sessions, so a
/// large fan-out does not hold up reading (frames of a publish read meanwhile join the
/// sockets not yet written). Ends when every session and the engine are gone.
async fn write_behind<S>(mut due: mpsc::UnboundedReceiver<Arc<Session<S>>>) {
    let mut batch = VecDeque::new();
    while let Some(first) = due.recv().await {
        batch.push_back(first);
        while !batch.is_empty() {
            tokio::task::yield_now().await;
            while let Ok(session) = due.try_recv() {
                batch.push_back(session);
            }
            for session in batch.drain(..batch.len().min(WRITE_BEHIND_CHUNK)) {
                session.write_behind();
            }
        }
        if batch.capacity() > 4 * 1024 {
            batch = VecDeque::new();
        }
    }
}

/// Sends pings and enforces pong and handshake deadlines for every session.
async fn ticker<A: EioApp>(inner: Weak<Inner<A>>) {
    let period = {
        let Some(inner) = inner.upgrade() else { return };
        let shortest = inner.config.ping_interval.min(inner.config.ping_timeout);
        (shortest / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
    };
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::new();
    loop {
        interval.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        batch.extend(inner.sessions.read().values().cloned());
        let now = Instant::now();
        for session in batch.drain(..) {
            session.tick(
                now,
                inner.config.ping_timeout,
                inner.config.handshake_timeout,
            );
        }
    }
}
