//! The server and the clients the protocol tests drive: an in-process engine on port 0
//! with a small recording handler, and three clients that speak the wire format by
//! hand — HTTP long-polling (reqwest), WebSocket (tokio-tungstenite) and a raw TCP
//! WebSocket that can send frames no well-behaved client library would.
//!
//! Every wait is bounded by [`WAIT`] so a hang fails instead of stalling the suite.

use base64::Engine as _;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use roomcast::engine::sio_packet;
use roomcast::engine::{
    ConnectError, ConnectRequest, Cors, Delivery, DisconnectReason, EioConfig, Event, Handler,
    Namespace, OutFrame, SioConfig, SocketIo, SocketRef,
};
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Longest any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test with `what` if it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// Panics raised outside the test code (the engine, or a crate it calls).
static FOREIGN_PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics that happen outside `tests/`, while keeping the default report.
fn watch_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let ours = info
                .location()
                .is_some_and(|l| l.file().replace('\\', "/").contains("tests/"));
            if !ours {
                FOREIGN_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

/// Fails if anything but the test code has panicked in this process.
pub fn assert_no_engine_panic() {
    assert_eq!(
        FOREIGN_PANICS.load(Ordering::SeqCst),
        0,
        "the server panicked (see the panic message above)"
    );
}

/// What the handler saw, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    Connected {
        nsp: String,
        id: String,
    },
    Event {
        id: String,
        name: String,
        /// The arguments as one JSON array.
        args: String,
        attachments: Vec<Vec<u8>>,
    },
    BinaryRefused {
        id: String,
        name: String,
    },
    Disconnected {
        id: String,
        reason: DisconnectReason,
    },
}

/// The room every socket of `/` joins.
pub const ROOM: &str = "everyone";

/// A handler with just enough behaviour to exercise the protocol:
/// - auth `{"reject": …}` is refused with `{message: "go away", data: {code: "REJECTED"}}`;
/// - on connect: joins [`ROOM`], emits `auth` with the handshake's auth (`{}` if none);
/// - `message` is echoed as `message-back` with all arguments and attachments;
/// - `message-with-ack` is acked with all arguments;
/// - `ask` makes the server `emit_with_ack("question", args)`; the client's answer comes
///   back as `answer` with the ack's arguments array;
/// - `broadcast` is encoded once and sent to the rest of [`ROOM`];
/// - `bye` disconnects the socket from the server side;
/// - a refused binary event is answered with `binary-refused` and its name.
pub struct TestHandler {
    observed: mpsc::UnboundedSender<Observed>,
    root: OnceLock<Arc<Namespace<Box<RawValue>>>>,
}

impl TestHandler {
    fn record(&self, what: Observed) {
        let _ = self.observed.send(what);
    }
}

fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned()).expect("valid JSON")
}

impl Handler for TestHandler {
    type Data = Box<RawValue>;

    async fn authorize(&self, request: ConnectRequest<'_>) -> Result<Box<RawValue>, ConnectError> {
        let auth = request.auth.map_or("{}", RawValue::get);
        let value: Value = serde_json::from_str(auth).unwrap_or(Value::Null);
        if value.get("reject").is_some() {
            return Err(ConnectError {
                message: "go away".into(),
                data: Some(serde_json::json!({ "code": "REJECTED" })),
            });
        }
        Ok(raw(auth))
    }

    fn on_connect(&self, socket: &SocketRef<Box<RawValue>>) {
        socket.join(ROOM);
        socket.emit("auth", &[&socket.data], &[]);
        self.record(Observed::Connected {
            nsp: socket.namespace().into(),
            id: socket.id().into(),
        });
    }

    fn on_event(&self, socket: &SocketRef<Box<RawValue>>, event: Event<'_>) {
        let args: Vec<&str> = event.args.iter().map(|a| a.get()).collect();
        self.record(Observed::Event {
            id: socket.id().into(),
            name: event.name.into(),
            args: format!("[{}]", args.join(",")),
            attachments: event.attachments.iter().map(|a| a.to_vec()).collect(),
        });
        match event.name {
            "message" => {
                socket.emit("message-back", event.args, event.attachments);
            }
            "message-with-ack" => {
                if let Some(id) = event.ack_id {
                    socket.ack(id, event.args, event.attachments);
                }
            }
            "ask" => {
                let answer = socket.emit_with_ack("question", event.args);
                let socket = socket.clone();
                tokio::spawn(async move {
                    if let Ok(Ok(data)) = tokio::time::timeout(WAIT, answer).await {
                        socket.emit("answer", &[&raw(&data)], &[]);
                    }
                });
            }
            // The same broadcast, written by the broadcasting task in small rooms
            // (`broadcast`) or queued for the engine's write-behind (`broadcast-queued`).
            "broadcast" | "broadcast-queued" => {
                let delivery = if event.name == "broadcast" {
                    Delivery::Immediate
                } else {
                    Delivery::Queued
                };
                let text = sio_packet::event(socket.namespace(), None, "broadcast", event.args, 0);
                let frame = OutFrame::Text(Bytes::from(text));
                if let Some(root) = self.root.get() {
                    root.broadcast(ROOM, &frame, Some(socket), delivery);
                }
            }
            "bye" => socket.disconnect(),
            // A disconnect from outside the connection's own task (as a key revocation
            // from an HTTP request is), after an event queued just before it.
            "bye-later" => {
                let socket = socket.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    socket.emit("farewell", &[], &[]);
                    socket.disconnect();
                });
            }
            _ => {}
        }
    }

    fn on_binary_refused(
        &self,
        socket: &SocketRef<Box<RawValue>>,
        event: &str,
        _ack_id: Option<u64>,
    ) {
        self.record(Observed::BinaryRefused {
            id: socket.id().into(),
            name: event.into(),
        });
        let name = raw(&serde_json::to_string(event).expect("a string"));
        socket.emit("binary-refused", &[&name], &[]);
    }

    fn on_disconnect(&self, socket: &SocketRef<Box<RawValue>>, reason: DisconnectReason) {
        self.record(Observed::Disconnected {
            id: socket.id().into(),
            reason,
        });
    }
}

/// Settings for most tests: namespaces `/` and `/custom`, a heartbeat too slow to
/// interfere, a small `maxPayload` so limits are cheap to reach.
pub fn config() -> SioConfig {
    SioConfig {
        eio: EioConfig {
            max_payload: 1000,
            cors: Cors::Disabled,
            ..EioConfig::default()
        },
        namespaces: vec!["/".into(), "/custom".into()],
        ..SioConfig::default()
    }
}

/// Settings with a fast heartbeat: ping every 300 ms, 200 ms to answer.
pub fn fast_heartbeat() -> SioConfig {
    let mut config = config();
    config.eio.ping_interval = Duration::from_millis(300);
    config.eio.ping_timeout = Duration::from_millis(200);
    config
}

/// An engine serving `/socket.io/` on 127.0.0.1:0; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    pub io: SocketIo<TestHandler>,
    pub http: reqwest::Client,
    observed: mpsc::UnboundedReceiver<Observed>,
    _stop: oneshot::Sender<()>,
}

impl Server {
    pub async fn start(config: SioConfig) -> Self {
        Self::start_with_tap(config, true).await
    }

    /// A server whose WebSocket handshakes go through the engine's tap (`true`, as in
    /// roomcast) or all through the HTTP server's upgrade (`false`).
    pub async fn start_with_tap(config: SioConfig, tap: bool) -> Self {
        watch_panics();
        let (tx, observed) = mpsc::unbounded_channel();
        let io = SocketIo::new(
            config,
            TestHandler {
                observed: tx,
                root: OnceLock::new(),
            },
        );
        let root = io.namespace("/").expect("namespace / exists").clone();
        let _ = io.handler().root.set(root);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(roomcast::http::serve::serve(
            listener,
            io.router("/socket.io/"),
            tap.then(|| io.websocket_tap("/socket.io/")),
            async {
                let _ = stopped.await;
            },
            Duration::from_millis(100),
        ));
        Self {
            addr,
            io,
            http: reqwest::Client::new(),
            observed,
            _stop: stop,
        }
    }

    /// `http://…/socket.io/?` followed by `query`.
    pub fn url(&self, query: &str) -> String {
        format!("http://{}/socket.io/?{query}", self.addr)
    }

    /// The next thing the handler saw that matches `wanted`, skipping the rest.
    pub async fn observe(&mut self, what: &str, wanted: impl Fn(&Observed) -> bool) -> Observed {
        let observed = &mut self.observed;
        within(what, async {
            loop {
                let next = observed.recv().await.expect("handler alive");
                if wanted(&next) {
                    return next;
                }
            }
        })
        .await
    }

    /// The next thing the handler saw, whatever it is.
    pub async fn next_observed(&mut self) -> Observed {
        self.observe("the handler to observe something", |_| true)
            .await
    }

    /// Everything the handler saw so far, without waiting.
    pub fn drain_observed(&mut self) -> Vec<Observed> {
        let mut out = Vec::new();
        while let Ok(next) = self.observed.try_recv() {
            out.push(next);
        }
        out
    }

    /// Proves the server still serves: a fresh WebSocket client connects to `/` and gets
    /// an echo.
    pub async fn assert_still_serving(&self) {
        let (mut ws, _) = Ws::open(self).await;
        sio_connect(&mut ws, "40").await;
        ws.send(r#"42["message","still there?"]"#).await;
        assert_eq!(
            ws.recv().await,
            text(r#"42["message-back","still there?"]"#)
        );
        assert_no_engine_panic();
    }
}

/// One Engine.IO packet from the server, or the end of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum In {
    Text(String),
    Binary(Vec<u8>),
    /// The transport ended (with the WebSocket close code, if one was sent).
    Closed(Option<u16>),
}

pub fn text(s: &str) -> In {
    In::Text(s.to_owned())
}

/// An Engine.IO client, whatever its transport.
pub trait EioClient {
    /// The session id.
    fn sid(&self) -> &str;
    /// When the handshake request was about to be sent (before the server saw it).
    fn opened_at(&self) -> Instant;
    /// Sends one Engine.IO text packet (type digit included).
    async fn send(&mut self, packet: &str);
    /// Sends one binary message.
    async fn send_binary(&mut self, data: &[u8]);
    /// The next packet from the server.
    async fn recv(&mut self) -> In;
    /// Asserts that the server ends the session (skipping packets sent before the end).
    async fn expect_closed(&mut self);
}

/// Parses an open packet (`0{…}`).
pub fn parse_open(packet: &str) -> Value {
    let json = packet
        .strip_prefix('0')
        .unwrap_or_else(|| panic!("expected an open packet, got {packet:?}"));
    serde_json::from_str(json).expect("open packet JSON")
}

/// Sends a CONNECT (`40…`) and returns the socket id from the answer; skips the
/// handler's `auth` event that follows.
pub async fn sio_connect(client: &mut impl EioClient, packet: &str) -> String {
    client.send(packet).await;
    let answer = match client.recv().await {
        In::Text(t) => t,
        other => panic!("expected a CONNECT answer to {packet}, got {other:?}"),
    };
    let nsp_prefix = match packet[2..].split_once(',') {
        Some((nsp, _)) if nsp.starts_with('/') => format!("40{nsp},"),
        _ if packet[2..].starts_with('/') => format!("40{},", &packet[2..]),
        _ => "40".to_owned(),
    };
    let body = answer
        .strip_prefix(&nsp_prefix)
        .unwrap_or_else(|| panic!("expected {nsp_prefix}{{sid}}, got {answer:?}"));
    let sid = serde_json::from_str::<Value>(body).expect("CONNECT answer JSON")["sid"]
        .as_str()
        .expect("sid")
        .to_owned();
    match client.recv().await {
        In::Text(t) if t.contains(r#"["auth","#) => {}
        other => panic!("expected the auth event, got {other:?}"),
    }
    sid
}

/// Checks an Engine.IO HTTP error: status 400 and body `{"code": code, "message": …}`.
pub async fn assert_eio_error(response: reqwest::Response, code: u64, message: &str) {
    assert_eq!(response.status(), 400);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "content-type {content_type}"
    );
    let body: Value = response.json().await.expect("JSON error body");
    assert_eq!(
        body,
        serde_json::json!({ "code": code, "message": message }),
        "error body"
    );
}

/// A long-polling client.
pub struct Polling {
    http: reqwest::Client,
    /// The session's URL (`…&sid=…`).
    pub url: String,
    sid: String,
    opened_at: Instant,
    queue: VecDeque<In>,
    /// The last POST was refused (the server closes the session when it does that).
    refused: Option<(reqwest::StatusCode, String)>,
}

impl Polling {
    /// Handshakes over polling; returns the client and the open packet.
    pub async fn open(server: &Server) -> (Self, Value) {
        let opened_at = Instant::now();
        let response = within(
            "the polling handshake",
            server
                .http
                .get(server.url("EIO=4&transport=polling"))
                .send(),
        )
        .await
        .expect("handshake request");
        assert_eq!(response.status(), 200);
        let body = response.text().await.expect("handshake body");
        let open = parse_open(&body);
        let sid = open["sid"].as_str().expect("sid").to_owned();
        let client = Self {
            http: server.http.clone(),
            url: server.url(&format!("EIO=4&transport=polling&sid={sid}")),
            sid,
            opened_at,
            queue: VecDeque::new(),
            refused: None,
        };
        (client, open)
    }

    /// A GET on the session, as a future that owns what it needs (so it can be spawned
    /// and left pending).
    pub fn get(&self) -> impl Future<Output = reqwest::Response> + Send + 'static {
        let request = self.http.get(&self.url).send();
        async move { within("a long-poll", request).await.expect("GET") }
    }

    /// A POST of `body` on the session.
    pub async fn post(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        within("a POST", self.http.post(&self.url).body(body).send())
            .await
            .expect("POST")
    }

    /// A GET that must succeed; returns its body.
    pub async fn get_ok(&self) -> String {
        let response = self.get().await;
        assert_eq!(response.status(), 200, "GET status");
        response.text().await.expect("GET body")
    }
}

/// Splits a polling payload into packets.
pub fn decode_payload(body: &str) -> Vec<In> {
    body.split('\x1e')
        .map(|packet| match packet.strip_prefix('b') {
            Some(b64) => In::Binary(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .expect("base64 packet"),
            ),
            None => In::Text(packet.to_owned()),
        })
        .collect()
}

impl EioClient for Polling {
    fn sid(&self) -> &str {
        &self.sid
    }

    fn opened_at(&self) -> Instant {
        self.opened_at
    }

    async fn send(&mut self, packet: &str) {
        let response = self.post(packet.to_owned()).await;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status == 200 {
            assert_eq!(body, "ok", "POST answer");
        } else {
            self.refused = Some((status, body));
        }
    }

    async fn send_binary(&mut self, data: &[u8]) {
        let packet = format!(
            "b{}",
            base64::engine::general_purpose::STANDARD.encode(data)
        );
        self.send(&packet).await;
    }

    async fn recv(&mut self) -> In {
        if let Some(next) = self.queue.pop_front() {
            return next;
        }
        if self.refused.is_some() {
            return In::Closed(None);
        }
        let response = self.get().await;
        if response.status() != 200 {
            return In::Closed(None);
        }
        let body = response.text().await.expect("GET body");
        self.queue.extend(decode_payload(&body));
        self.queue.pop_front().expect("at least one packet")
    }

    async fn expect_closed(&mut self) {
        if self.refused.is_none() {
            loop {
                match self.recv().await {
                    In::Closed(_) => break,
                    In::Text(t) if t == "1" => break,
                    _ => {}
                }
            }
        }
        // Whatever ended it, the session id is now unknown.
        assert_eio_error(self.get().await, 1, "Session ID unknown").await;
    }
}

type TungsteniteStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client (tokio-tungstenite).
pub struct Ws {
    stream: TungsteniteStream,
    sid: String,
    opened_at: Instant,
}

impl Ws {
    /// Opens a WebSocket to the engine; `sid` for an upgrade of a polling session.
    pub async fn connect(server: &Server, sid: Option<&str>) -> Self {
        let opened_at = Instant::now();
        let mut url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr);
        if let Some(sid) = sid {
            url.push_str("&sid=");
            url.push_str(sid);
        }
        let (stream, response) = within("the WebSocket handshake", async {
            tokio_tungstenite::connect_async(&url).await
        })
        .await
        .expect("WebSocket handshake");
        assert_eq!(response.status(), 101);
        Self {
            stream,
            sid: sid.unwrap_or_default().to_owned(),
            opened_at,
        }
    }

    /// Opens a WebSocket session; returns the client and the open packet.
    pub async fn open(server: &Server) -> (Self, Value) {
        let mut ws = Self::connect(server, None).await;
        let open = match ws.recv().await {
            In::Text(t) => parse_open(&t),
            other => panic!("expected the open packet, got {other:?}"),
        };
        ws.sid = open["sid"].as_str().expect("sid").to_owned();
        (ws, open)
    }

    /// Starts the closing handshake with a close frame.
    pub async fn close(&mut self) {
        within("a close frame", self.stream.close(None))
            .await
            .expect("close");
    }

    /// Queues many text messages and flushes them together.
    pub async fn send_many(&mut self, packets: impl IntoIterator<Item = String>) {
        within("sending a burst", async {
            for packet in packets {
                self.stream.feed(Message::text(packet)).await.expect("feed");
            }
            self.stream.flush().await.expect("flush");
        })
        .await;
    }
}

impl EioClient for Ws {
    fn sid(&self) -> &str {
        &self.sid
    }

    fn opened_at(&self) -> Instant {
        self.opened_at
    }

    async fn send(&mut self, packet: &str) {
        within("a WebSocket send", self.stream.send(Message::text(packet)))
            .await
            .expect("WebSocket send");
    }

    async fn send_binary(&mut self, data: &[u8]) {
        within(
            "a WebSocket send",
            self.stream.send(Message::binary(data.to_vec())),
        )
        .await
        .expect("WebSocket send");
    }

    async fn recv(&mut self) -> In {
        within("a WebSocket message", async {
            loop {
                match self.stream.next().await {
                    Some(Ok(Message::Text(t))) => return In::Text(t.as_str().to_owned()),
                    Some(Ok(Message::Binary(b))) => return In::Binary(b.to_vec()),
                    Some(Ok(Message::Close(frame))) => {
                        return In::Closed(frame.map(|f| u16::from(f.code)))
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return In::Closed(None),
                }
            }
        })
        .await
    }

    async fn expect_closed(&mut self) {
        loop {
            if let In::Closed(_) = self.recv().await {
                return;
            }
        }
    }
}

/// A WebSocket client on a bare TCP stream: writes whatever frames it is told to and
/// reads server frames itself.
pub struct RawWs {
    tcp: TcpStream,
    buf: Vec<u8>,
    opened_at: Instant,
}

/// Builds a client frame: `first` is the FIN/RSV/opcode byte; masked unless told not to.
pub fn frame(first: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

impl RawWs {
    /// Opens a WebSocket session; `recv_buffer` shrinks the socket's receive buffer (a
    /// reader that will stall). Returns after the open packet has been read.
    pub async fn open(server: &Server, recv_buffer: Option<u32>) -> Self {
        Self::open_in_pieces(server, recv_buffer, 1).await
    }

    /// [`Self::open`] with the handshake request written in `pieces` separate writes,
    /// as a slow client or network would deliver it.
    pub async fn open_in_pieces(server: &Server, recv_buffer: Option<u32>, pieces: usize) -> Self {
        let opened_at = Instant::now();
        let socket = TcpSocket::new_v4().expect("socket");
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        let tcp = within("TCP connect", socket.connect(server.addr))
            .await
            .expect("connect");
        let mut ws = Self {
            tcp,
            buf: Vec::new(),
            opened_at,
        };
        let request = format!(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {}\r\n\
             Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            server.addr
        );
        let piece = request.len().div_ceil(pieces.max(1));
        for chunk in request.as_bytes().chunks(piece) {
            ws.write(chunk).await;
            ws.tcp.flush().await.expect("flush");
            tokio::task::yield_now().await;
        }
        let head = within("the 101 answer", async {
            loop {
                if let Some(end) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head: Vec<u8> = ws.buf.drain(..end + 4).collect();
                    return String::from_utf8(head).expect("ASCII head");
                }
                assert!(
                    ws.fill().await > 0,
                    "connection closed during the handshake"
                );
            }
        })
        .await;
        assert!(head.starts_with("HTTP/1.1 101"), "handshake answer {head}");
        match ws.read_frame().await {
            Some((0x1, payload)) => {
                parse_open(std::str::from_utf8(&payload).expect("UTF-8"));
            }
            other => panic!("expected the open packet, got {other:?}"),
        }
        ws
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16 * 1024];
        match self.tcp.read(&mut chunk).await {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(_) => 0,
        }
    }

    /// Writes raw bytes (ignoring a peer that already hung up).
    pub async fn write(&mut self, bytes: &[u8]) {
        let _ = within("a raw write", self.tcp.write_all(bytes)).await;
    }

    /// Sends a masked text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.write(&frame(0x81, true, text.as_bytes())).await;
    }

    /// The next whole server frame as (opcode, payload), or `None` once the connection
    /// has ended.
    pub async fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        within("a frame from the server", async {
            loop {
                if let Some((header, len)) = self.frame_len() {
                    if self.buf.len() >= header + len {
                        let opcode = self.buf[0] & 0x0f;
                        let payload = self.buf[header..header + len].to_vec();
                        self.buf.drain(..header + len);
                        return Some((opcode, payload));
                    }
                }
                if self.fill().await == 0 {
                    return None;
                }
            }
        })
        .await
    }

    fn frame_len(&self) -> Option<(usize, usize)> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        assert_eq!(b[1] & 0x80, 0, "server frames must not be masked");
        match b[1] & 0x7f {
            126 if b.len() >= 4 => Some((4, usize::from(u16::from_be_bytes([b[2], b[3]])))),
            127 if b.len() >= 10 => {
                let mut len = [0u8; 8];
                len.copy_from_slice(&b[2..10]);
                Some((10, u64::from_be_bytes(len) as usize))
            }
            126 | 127 => None,
            n => Some((2, usize::from(n))),
        }
    }

    /// The next text frame, as a string.
    pub async fn read_text(&mut self) -> String {
        match self.read_frame().await {
            Some((0x1, payload)) => String::from_utf8(payload).expect("UTF-8 text"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Reads until the server closes; returns the close frame's code, skipping data
    /// frames sent before it. Fails if the connection ends without a close frame.
    pub async fn expect_close_code(&mut self) -> u16 {
        loop {
            match self.read_frame().await {
                Some((0x8, payload)) => {
                    assert!(payload.len() >= 2, "close frame without a code");
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    // After its close frame the server hangs up.
                    assert_eq!(self.read_frame().await, None, "data after the close frame");
                    return code;
                }
                Some(_) => continue,
                None => panic!("connection ended without a close frame"),
            }
        }
    }

    /// Reads (and discards) until the connection ends, however it ends.
    pub async fn expect_end(&mut self) {
        within("the server to drop the connection", async {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                match self.tcp.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
}

impl EioClient for RawWs {
    /// Not kept: the tests that use this client never need it.
    fn sid(&self) -> &str {
        ""
    }

    fn opened_at(&self) -> Instant {
        self.opened_at
    }

    async fn send(&mut self, packet: &str) {
        self.send_text(packet).await;
    }

    async fn send_binary(&mut self, data: &[u8]) {
        self.write(&frame(0x82, true, data)).await;
    }

    async fn recv(&mut self) -> In {
        match self.read_frame().await {
            Some((0x1, payload)) => In::Text(String::from_utf8(payload).expect("UTF-8")),
            Some((0x2, payload)) => In::Binary(payload),
            Some((0x8, payload)) => In::Closed(
                (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])),
            ),
            Some((opcode, _)) => panic!("unexpected opcode {opcode}"),
            None => In::Closed(None),
        }
    }

    async fn expect_closed(&mut self) {
        self.expect_close_code().await;
    }
}
