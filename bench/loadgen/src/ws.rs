//! Socket.IO clients over a direct WebSocket (`transport=websocket`, no polling first), as
//! `socket.io-client` does with `transports: ["websocket"]`.
//!
//! The WebSocket client is hand-written, on purpose. The generator has one core, and its
//! own cost is what limits the measurement: with tokio-tungstenite it reached 75–85 % of
//! its core at ~8–10k connects/s and at 200–400k deliveries/s, and its per-delivery work
//! (a stream item, a frame and several allocations per message) lengthened the time it
//! took to read out a 1,000-subscriber fan-out, which S2's latencies include. Here the
//! upgrade is one request in one `write()` and a response parsed from the read buffer;
//! then each connection reads whatever is ready into one reusable buffer and handles
//! every complete frame in it in place: no allocation per received message, and the
//! replies they call for (pongs) leave in one write. That cut the generator's own code
//! per delivery from ~1.8 to ~1.1 µs (perf, S2); most of what remains is the kernel's
//! (`bench/README.md`, "What is left").
//!
//! This is a test client for the servers this harness measures, not a general WebSocket
//! client. It offers no extensions and no subprotocol, checks what RFC 6455 asks of the
//! upgrade (101 and `Sec-WebSocket-Accept`), masks every frame it sends (a new mask per
//! frame from a per-connection xorshift, not a cryptographic one: the peer is on
//! loopback), and refuses as a protocol error what it does not need: fragmented messages
//! (continuation frames or FIN unset, which the servers under test never send for
//! messages this small), masked server frames, reserved bits, and frames over
//! [`MAX_FRAME`] bytes.

use crate::client::{far_future, Ctx, Receiver, Role, Schedule};
use crate::net;
use crate::proto::{self, Packet};
use data_encoding::BASE64;
use sha1::{Digest, Sha1};
use std::io;
use std::rc::Rc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::timeout;

/// Initial read buffer per connection (what tokio-tungstenite was given before), so 10,000
/// idle sockets stay cheap on the load side. It grows only for a frame larger than this.
const READ_BUFFER: usize = 4096;
/// Largest frame accepted.
const MAX_FRAME: usize = 16 << 20;
/// RFC 6455 §1.3: appended to the key before hashing it into `Sec-WebSocket-Accept`.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// An open, authenticated Socket.IO connection: the socket, what was read from it and
/// not yet handled, and what is queued to send.
pub struct Ws {
    stream: TcpStream,
    reader: Reader,
    writer: Writer,
}

impl Ws {
    fn new(stream: TcpStream, seed: u64) -> Self {
        Self {
            stream,
            reader: Reader::new(),
            writer: Writer::new(seed),
        }
    }

    /// Reads whatever the socket has ready (at least one byte) after the bytes already
    /// buffered; 0 at end of stream. Cancel-safe: nothing is lost if it is dropped
    /// while waiting.
    async fn fill(&mut self) -> io::Result<usize> {
        let spare = self.reader.spare();
        let n = self.stream.read(spare).await?;
        self.reader.tail += n;
        Ok(n)
    }

    /// Sends every queued frame in one write.
    async fn flush(&mut self) -> io::Result<()> {
        if self.writer.out.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.writer.out).await;
        self.writer.out.clear();
        result
    }

    /// Handles every complete frame in the read buffer, then sends the replies they
    /// called for in one write. False once the server closed the connection (at the
    /// WebSocket, Engine.IO or Socket.IO level) or broke the protocol.
    async fn serve_buffered(&mut self, ctx: &Ctx, receiver: &mut Receiver) -> bool {
        loop {
            match self.reader.next(&mut self.writer) {
                Ok(Step::Text(text)) => match proto::parse(text) {
                    Packet::Message(payload) => receiver.on_message(ctx, &payload),
                    Packet::Ping => self.writer.frame(OP_TEXT, b"3"),
                    Packet::ServerError(code) => ctx.stats.borrow_mut().server_error(code),
                    Packet::Close | Packet::Disconnect => return false,
                    _ => {}
                },
                Ok(Step::NeedMore) => break,
                Ok(Step::Closed) => {
                    // Best effort: the close reply is queued.
                    let _ = self.flush().await;
                    return false;
                }
                Err(_) => return false,
            }
        }
        self.flush().await.is_ok()
    }
}

/// The received bytes of one connection: `buf[head..tail]` is not handled yet.
struct Reader {
    buf: Vec<u8>,
    head: usize,
    tail: usize,
    /// Bytes the frame at `head` needs in all, once known to be incomplete.
    need: usize,
}

/// What [`Reader::next`] found.
#[derive(Debug, PartialEq, Eq)]
enum Step<'a> {
    /// A complete text message, borrowed from the read buffer.
    Text(&'a str),
    /// No complete frame left: read more.
    NeedMore,
    /// The server sent a close frame (the reply is queued).
    Closed,
}

impl Reader {
    fn new() -> Self {
        Self {
            buf: vec![0; READ_BUFFER],
            head: 0,
            tail: 0,
            need: 0,
        }
    }

    /// Moves the unhandled bytes (at most a partial frame) to the front and makes room
    /// for the whole of that frame; returns the free space after them.
    fn spare(&mut self) -> &mut [u8] {
        if self.head > 0 {
            self.buf.copy_within(self.head..self.tail, 0);
            self.tail -= self.head;
            self.head = 0;
        }
        let want = self.need.max(self.tail + 1);
        if want > self.buf.len() {
            self.buf.resize(want.max(self.buf.len() * 2), 0);
        }
        &mut self.buf[self.tail..]
    }

    /// The next complete text message in the buffer. Pings are answered (queued on
    /// `writer`), pongs and binary messages skipped, a close frame answered and reported.
    fn next(&mut self, writer: &mut Writer) -> Result<Step<'_>, &'static str> {
        loop {
            let header = match parse_header(&self.buf[self.head..self.tail])? {
                Header::Incomplete(need) => {
                    self.need = need;
                    return Ok(Step::NeedMore);
                }
                Header::Frame(header) => header,
            };
            self.need = 0;
            let start = self.head + header.header_len;
            let end = start + header.payload_len;
            self.head = end;
            match header.opcode {
                OP_TEXT => {
                    return std::str::from_utf8(&self.buf[start..end])
                        .map(Step::Text)
                        .map_err(|_| "text frame is not UTF-8")
                }
                OP_PING => writer.frame(OP_PONG, &self.buf[start..end]),
                OP_PONG | OP_BINARY => {}
                OP_CLOSE => {
                    // Echo the status code, as RFC 6455 §5.5.1 asks.
                    writer.frame(OP_CLOSE, &self.buf[start..end.min(start + 2)]);
                    return Ok(Step::Closed);
                }
                _ => return Err("unknown opcode"),
            }
        }
    }
}

/// A frame header at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
enum Header {
    /// The frame is not all there yet: it needs this many bytes in all (or at least
    /// this many, while its header is incomplete).
    Incomplete(usize),
    /// A complete frame.
    Frame(FrameHeader),
}

#[derive(Debug, PartialEq, Eq)]
struct FrameHeader {
    opcode: u8,
    header_len: usize,
    payload_len: usize,
}

/// Parses the server frame at the start of `buf` (RFC 6455 §5.2).
fn parse_header(buf: &[u8]) -> Result<Header, &'static str> {
    let [b0, b1, ..] = *buf else {
        return Ok(Header::Incomplete(2));
    };
    if b0 & 0x70 != 0 {
        return Err("reserved bits set (no extension was negotiated)");
    }
    if b1 & 0x80 != 0 {
        return Err("masked server frame");
    }
    let opcode = b0 & 0x0f;
    // Not needed here (see the module comment), so refused rather than reassembled.
    if b0 & 0x80 == 0 || opcode == OP_CONTINUATION {
        return Err("fragmented message (not supported)");
    }
    let (header_len, payload_len) = match b1 & 0x7f {
        126 => {
            let Some(len) = buf.get(2..4) else {
                return Ok(Header::Incomplete(4));
            };
            (4, usize::from(u16::from_be_bytes([len[0], len[1]])))
        }
        127 => {
            let Some(len) = buf.get(2..10) else {
                return Ok(Header::Incomplete(10));
            };
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(len);
            let len = u64::from_be_bytes(bytes);
            if len > MAX_FRAME as u64 {
                return Err("frame too large");
            }
            (10, len as usize)
        }
        n => (2, usize::from(n)),
    };
    if opcode >= OP_CLOSE && payload_len > 125 {
        return Err("control frame too long");
    }
    if payload_len > MAX_FRAME {
        return Err("frame too large");
    }
    if buf.len() < header_len + payload_len {
        return Ok(Header::Incomplete(header_len + payload_len));
    }
    Ok(Header::Frame(FrameHeader {
        opcode,
        header_len,
        payload_len,
    }))
}

/// Frames queued for the next write, and the state the masks come from.
struct Writer {
    out: Vec<u8>,
    rng: u64,
}

impl Writer {
    fn new(seed: u64) -> Self {
        Self {
            out: Vec::with_capacity(128),
            // xorshift needs a non-zero state.
            rng: seed | 1,
        }
    }

    /// A cheap pseudo-random value (xorshift64): masks and the handshake key.
    fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Queues one final, masked client frame (RFC 6455 §5.3: a client masks every frame).
    fn frame(&mut self, opcode: u8, payload: &[u8]) {
        let len = payload.len();
        self.out.push(0x80 | opcode);
        if len < 126 {
            self.out.push(0x80 | len as u8);
        } else if let Ok(len) = u16::try_from(len) {
            self.out.push(0x80 | 126);
            self.out.extend_from_slice(&len.to_be_bytes());
        } else {
            self.out.push(0x80 | 127);
            self.out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = (self.random() as u32).to_ne_bytes();
        self.out.extend_from_slice(&mask);
        self.out.extend(
            payload
                .iter()
                .zip(mask.iter().cycle())
                .map(|(byte, m)| byte ^ m),
        );
    }

    /// A fresh `Sec-WebSocket-Key`: 16 bytes, base64.
    fn key(&mut self) -> String {
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&self.random().to_ne_bytes());
        nonce[8..].copy_from_slice(&self.random().to_ne_bytes());
        BASE64.encode(&nonce)
    }
}

/// The `Sec-WebSocket-Accept` a server must answer `key` with.
fn accept_for(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    BASE64.encode(&sha.finalize())
}

/// The whole upgrade request, sent in one write.
fn upgrade_request(authority: &str, key: &str) -> String {
    format!(
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {authority}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: {key}\r\n\r\n"
    )
}

/// Checks an upgrade response head (up to and including the blank line): 101, the
/// upgrade headers, the expected accept value, and no extension we did not offer.
fn check_upgrade(head: &[u8], accept: &str) -> Result<(), String> {
    let head = std::str::from_utf8(head).map_err(|_| "non-UTF-8 response head".to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).unwrap_or_default();
    if !status_line.starts_with("HTTP/1.1 ") || status != "101" {
        return Err(format!("status {}", short(status)));
    }
    let (mut upgrade, mut connection, mut accepted) = (false, false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade = value.eq_ignore_ascii_case("websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection = value
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
        } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
            accepted = value == accept;
        } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
            return Err("unrequested extension".into());
        }
    }
    match (upgrade, connection, accepted) {
        (true, true, true) => Ok(()),
        (false, _, _) => Err("no Upgrade: websocket".into()),
        (_, false, _) => Err("no Connection: upgrade".into()),
        (_, _, false) => Err("bad Sec-WebSocket-Accept".into()),
    }
}

/// A per-connection seed for masks and the key (splitmix64 of the client index and the
/// clock), so connections do not share a mask sequence.
fn seed(idx: usize) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z = (idx as u64 ^ nanos).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// TCP connect, WebSocket upgrade, Engine.IO OPEN, Socket.IO CONNECT with the key.
/// Returns the socket and how long the whole handshake took, or a short failure reason.
pub async fn handshake(ctx: &Ctx, role: &Role) -> Result<(Ws, std::time::Duration), String> {
    let started = Instant::now();
    let result = timeout(ctx.handshake_timeout, handshake_inner(ctx, role)).await;
    match result {
        Ok(Ok(ws)) => Ok((ws, started.elapsed())),
        Ok(Err(reason)) => Err(reason),
        Err(_) => Err("timeout".into()),
    }
}

async fn handshake_inner(ctx: &Ctx, role: &Role) -> Result<Ws, String> {
    let tcp = net::connect(ctx.target(role.idx), role.idx, ctx.sources)
        .await
        .map_err(|e| format!("tcp: {:?}", e.kind()))?;
    let mut ws = Ws::new(tcp, seed(role.idx));
    upgrade(&mut ws, &ctx.target(role.idx).authority).await?;
    // Engine.IO OPEN first, then our CONNECT, then the server's answer.
    let mut opened = false;
    loop {
        let step = ws
            .reader
            .next(&mut ws.writer)
            .map_err(|e| format!("ws: {e}"))?;
        let text = match step {
            Step::Text(text) => text,
            Step::Closed => return Err("closed during handshake".into()),
            Step::NeedMore => {
                // Our CONNECT and any pong go out before waiting for the answer.
                ws.flush()
                    .await
                    .map_err(|e| format!("ws send: {:?}", e.kind()))?;
                match ws.fill().await {
                    Ok(0) => return Err("closed during handshake".into()),
                    Ok(_) => continue,
                    Err(e) => return Err(format!("ws: {:?}", e.kind())),
                }
            }
        };
        match proto::parse(text) {
            Packet::Open { .. } if !opened => {
                opened = true;
                ws.writer
                    .frame(OP_TEXT, proto::connect_packet(&role.key).as_bytes());
            }
            Packet::Ping => ws.writer.frame(OP_TEXT, b"3"),
            Packet::ConnectOk if opened => {
                // Frames after the answer stay buffered for `run`.
                ws.flush()
                    .await
                    .map_err(|e| format!("ws send: {:?}", e.kind()))?;
                return Ok(ws);
            }
            Packet::ConnectError(detail) => {
                return Err(format!("connect_error: {}", short(detail)))
            }
            Packet::Close | Packet::Disconnect => return Err("closed during handshake".into()),
            _ => {}
        }
    }
}

/// The HTTP/1.1 upgrade: one request in one write, the response head read into the
/// connection's buffer; frames that came in the same read stay there.
async fn upgrade(ws: &mut Ws, authority: &str) -> Result<(), String> {
    let key = ws.writer.key();
    ws.stream
        .write_all(upgrade_request(authority, &key).as_bytes())
        .await
        .map_err(|e| format!("ws upgrade: {:?}", e.kind()))?;
    let head_len = loop {
        if let Some(end) = find(&ws.reader.buf[..ws.reader.tail], b"\r\n\r\n") {
            break end + 4;
        }
        if ws.reader.tail >= READ_BUFFER {
            return Err("ws upgrade: response head too large".into());
        }
        match ws.fill().await {
            Ok(0) => return Err("ws upgrade: closed".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("ws upgrade: {:?}", e.kind())),
        }
    };
    check_upgrade(&ws.reader.buf[..head_len], &accept_for(&key))
        .map_err(|e| format!("ws upgrade: {e}"))?;
    ws.reader.head = head_len;
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Keeps the error reasons (which become JSON keys) short and bounded in variety.
fn short(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Serves one connected client until the run stops it: answers pings, publishes on its
/// schedule, and accounts for every delivery.
pub async fn run(ctx: Rc<Ctx>, role: Role, mut ws: Ws) {
    let mut phase = ctx.phase.clone();
    let mut schedule = Schedule::new(role.publisher);
    schedule.on_phase(*phase.borrow_and_update(), &ctx);
    let mut receiver = Receiver::default();
    let sleep = tokio::time::sleep_until(deadline(schedule.due()));
    tokio::pin!(sleep);
    // The phase and stop watches are awaited by futures that live across loop turns:
    // `changed()` made afresh in every turn registered and unregistered a waiter on
    // every delivery, a visible share of the generator's own cost.
    let mut phase_changed = Box::pin(changed(phase));
    let mut stopped = Box::pin(changed(ctx.stop.clone()));
    // Frames that arrived together with the CONNECT answer.
    let mut closed_by_server = !ws.serve_buffered(&ctx, &mut receiver).await;
    while !closed_by_server {
        tokio::select! {
            // Reads first: a wake-up is nearly always a delivery, and polling the other
            // branches for nothing is per-delivery work. Nothing starves: a read that
            // drains the socket leaves it pending until more data arrives.
            biased;
            read = ws.fill() => {
                let open = match read {
                    Ok(0) | Err(_) => false,
                    Ok(_) => ws.serve_buffered(&ctx, &mut receiver).await,
                };
                if !open {
                    closed_by_server = true;
                }
            }
            () = &mut sleep, if schedule.due().is_some() => {
                let packet = schedule.take(&ctx);
                ws.writer.frame(OP_TEXT, packet.as_bytes());
                let ok = ws.flush().await.is_ok();
                ctx.stats.borrow_mut().sent_one(role.room, ok);
                sleep.as_mut().reset(deadline(schedule.due()));
            }
            (alive, mut phase) = &mut phase_changed => {
                if !alive {
                    break;
                }
                schedule.on_phase(*phase.borrow_and_update(), &ctx);
                sleep.as_mut().reset(deadline(schedule.due()));
                phase_changed.set(changed(phase));
            }
            _ = &mut stopped => break,
        }
    }
    schedule.abandon(&ctx);
    if closed_by_server && !*ctx.stop.borrow() {
        ctx.stats.borrow_mut().disconnects += 1;
    }
}

/// Waits for the next change of a watch and hands the receiver back (false once its
/// sender is gone).
async fn changed<T>(mut rx: watch::Receiver<T>) -> (bool, watch::Receiver<T>) {
    let alive = rx.changed().await.is_ok();
    (alive, rx)
}

fn deadline(at: Option<Instant>) -> tokio::time::Instant {
    tokio::time::Instant::from_std(at.unwrap_or_else(far_future))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server frame (unmasked).
    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 0xffff => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    /// Unmasks the client frames in `bytes`: (opcode, payload) each.
    fn client_frames(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        complete_client_frames(bytes).expect("complete frames")
    }

    /// The same, or `None` while the last frame is incomplete.
    fn complete_client_frames(mut bytes: &[u8]) -> Option<Vec<(u8, Vec<u8>)>> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let [b0, b1, ..] = *bytes else {
                return None;
            };
            assert_eq!(b0 & 0xf0, 0x80, "final, no reserved bits");
            assert_eq!(b1 & 0x80, 0x80, "client frames are masked");
            let (at, len) = match b1 & 0x7f {
                126 => (
                    4,
                    u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?) as usize,
                ),
                127 => (
                    10,
                    u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize,
                ),
                n => (2, n as usize),
            };
            let mask = bytes.get(at..at + 4)?;
            let payload = bytes
                .get(at + 4..at + 4 + len)?
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            frames.push((b0 & 0x0f, payload));
            bytes = &bytes[at + 4 + len..];
        }
        Some(frames)
    }

    /// Appends `bytes` as if read from the socket.
    fn feed(reader: &mut Reader, bytes: &[u8]) {
        let mut bytes = bytes;
        while !bytes.is_empty() {
            let spare = reader.spare();
            let n = spare.len().min(bytes.len());
            spare[..n].copy_from_slice(&bytes[..n]);
            reader.tail += n;
            bytes = &bytes[n..];
        }
    }

    #[test]
    fn accept_matches_rfc_6455_example() {
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn headers_of_every_length() {
        assert_eq!(parse_header(&[0x81]), Ok(Header::Incomplete(2)));
        assert_eq!(parse_header(&[0x81, 5, b'a']), Ok(Header::Incomplete(7)));
        let frame = |opcode, header_len, payload_len| {
            Ok(Header::Frame(FrameHeader {
                opcode,
                header_len,
                payload_len,
            }))
        };
        assert_eq!(
            parse_header(&server_frame(OP_TEXT, b"hello")),
            frame(1, 2, 5)
        );
        let medium = server_frame(OP_TEXT, &[b'x'; 300]);
        assert_eq!(parse_header(&medium[..3]), Ok(Header::Incomplete(4)));
        assert_eq!(parse_header(&medium[..100]), Ok(Header::Incomplete(304)));
        assert_eq!(parse_header(&medium), frame(1, 4, 300));
        let large = server_frame(OP_BINARY, &[0; 70_000]);
        assert_eq!(parse_header(&large[..9]), Ok(Header::Incomplete(10)));
        assert_eq!(parse_header(&large), frame(2, 10, 70_000));
    }

    #[test]
    fn refused_frames() {
        assert!(parse_header(&[0x01, 1, b'a']).is_err(), "FIN unset");
        assert!(parse_header(&[0x80, 1, b'a']).is_err(), "continuation");
        assert!(
            parse_header(&[0xc1, 1, b'a']).is_err(),
            "RSV1 (compression)"
        );
        assert!(
            parse_header(&[0x81, 0x81, 0, 0, 0, 0, b'a']).is_err(),
            "masked"
        );
        assert!(parse_header(&[0x89, 126, 0, 200]).is_err(), "long ping");
        let mut huge = vec![0x81, 127];
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert!(parse_header(&huge).is_err(), "too large");
    }

    #[test]
    fn reads_every_frame_in_place_and_answers_control_frames() {
        let mut reader = Reader::new();
        let mut writer = Writer::new(7);
        let mut bytes = server_frame(OP_TEXT, b"42[\"message\",\"a\"]");
        bytes.extend(server_frame(OP_PING, b"hi"));
        bytes.extend(server_frame(OP_TEXT, "2é".as_bytes()));
        let partial = server_frame(OP_TEXT, b"0123456789");
        bytes.extend_from_slice(&partial[..5]);
        feed(&mut reader, &bytes);
        assert_eq!(
            reader.next(&mut writer),
            Ok(Step::Text("42[\"message\",\"a\"]"))
        );
        assert_eq!(reader.next(&mut writer), Ok(Step::Text("2é")));
        assert_eq!(reader.next(&mut writer), Ok(Step::NeedMore));
        assert_eq!(reader.need, 12);
        assert_eq!(client_frames(&writer.out), vec![(OP_PONG, b"hi".to_vec())]);
        feed(&mut reader, &partial[5..]);
        assert_eq!(reader.head, 0, "the partial frame was moved to the front");
        assert_eq!(reader.next(&mut writer), Ok(Step::Text("0123456789")));
        assert_eq!(reader.next(&mut writer), Ok(Step::NeedMore));
        assert_eq!(reader.buf.len(), READ_BUFFER);

        // A frame larger than the buffer grows it.
        let big = "x".repeat(3 * READ_BUFFER);
        feed(&mut reader, &server_frame(OP_TEXT, big.as_bytes()));
        assert_eq!(reader.next(&mut writer), Ok(Step::Text(big.as_str())));

        writer.out.clear();
        feed(
            &mut reader,
            &server_frame(OP_CLOSE, &[3, 232, b'b', b'y', b'e']),
        );
        assert_eq!(reader.next(&mut writer), Ok(Step::Closed));
        assert_eq!(client_frames(&writer.out), vec![(OP_CLOSE, vec![3, 232])]);

        let mut reader = Reader::new();
        feed(&mut reader, &server_frame(OP_TEXT, &[0xff, 0xfe]));
        assert!(reader.next(&mut writer).is_err(), "invalid UTF-8");
    }

    #[test]
    fn client_frames_are_masked_with_varying_masks() {
        let mut writer = Writer::new(42);
        let medium = vec![b'm'; 200];
        let large = vec![b'l'; 70_000];
        writer.frame(OP_TEXT, b"42[\"message\",\"x\"]");
        writer.frame(OP_TEXT, &medium);
        writer.frame(OP_TEXT, &large);
        writer.frame(OP_TEXT, b"3");
        assert_eq!(
            client_frames(&writer.out),
            vec![
                (OP_TEXT, b"42[\"message\",\"x\"]".to_vec()),
                (OP_TEXT, medium),
                (OP_TEXT, large),
                (OP_TEXT, b"3".to_vec())
            ]
        );
        let (a, b) = (writer.random(), writer.random());
        assert_ne!(a, b);
        let key = writer.key();
        assert_eq!(BASE64.decode(key.as_bytes()).unwrap().len(), 16);
    }

    #[test]
    fn upgrade_response_checks() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let accept = accept_for(key);
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        assert_eq!(check_upgrade(ok.as_bytes(), &accept), Ok(()));
        assert_eq!(
            check_upgrade(b"HTTP/1.1 400 Bad Request\r\n\r\n", &accept),
            Err("status 400".into())
        );
        let wrong = ok.replace(&accept, "AAAA");
        assert_eq!(
            check_upgrade(wrong.as_bytes(), &accept),
            Err("bad Sec-WebSocket-Accept".into())
        );
        let deflate = ok.replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        );
        assert!(check_upgrade(deflate.as_bytes(), &accept).is_err());
        let request = upgrade_request("127.0.0.1:3000", key);
        assert!(request.starts_with("GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"));
        assert!(request.contains(&format!("\r\nSec-WebSocket-Key: {key}\r\n")));
        assert!(request.ends_with("\r\n\r\n"));
    }

    /// The whole handshake against a scripted server on loopback: the upgrade, a ping
    /// before the CONNECT answer, and a delivery that arrives in the same write as that
    /// answer (it must stay buffered and be counted by the first `serve_buffered`).
    #[tokio::test]
    async fn handshake_against_a_scripted_server() {
        use crate::client::Phase;
        use crate::net::Target;
        use crate::stats::Stats;
        use std::cell::RefCell;
        use std::time::Duration;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            while find(&request, b"\r\n\r\n").is_none() {
                let mut chunk = [0u8; 1024];
                let n = socket.read(&mut chunk).await.unwrap();
                assert!(n > 0, "client closed");
                request.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8(request).unwrap();
            let key = head
                .split("\r\n")
                .find_map(|line| line.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap()
                .to_owned();
            let mut out = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                accept_for(&key)
            )
            .into_bytes();
            out.extend(server_frame(
                OP_TEXT,
                br#"0{"sid":"abc","pingInterval":25000}"#,
            ));
            out.extend(server_frame(OP_TEXT, b"2"));
            socket.write_all(&out).await.unwrap();
            let mut received = Vec::new();
            let frames = loop {
                let mut chunk = [0u8; 1024];
                let n = socket.read(&mut chunk).await.unwrap();
                assert!(n > 0, "client closed");
                received.extend_from_slice(&chunk[..n]);
                match complete_client_frames(&received) {
                    Some(frames) if frames.len() >= 2 => break frames,
                    _ => {}
                }
            };
            let mut out = server_frame(OP_TEXT, br#"40{"sid":"x"}"#);
            out.extend(server_frame(OP_TEXT, br#"42["message","3.0.5.xxxx"]"#));
            socket.write_all(&out).await.unwrap();
            (frames, socket)
        });

        let (_phase_tx, phase) = watch::channel(Phase::Idle);
        let (_stop_tx, stop) = watch::channel(false);
        let ctx = Ctx {
            targets: vec![Target::parse(&format!("http://{addr}")).unwrap()],
            sources: 1,
            payload_size: 64,
            base: Instant::now(),
            handshake_timeout: Duration::from_secs(5),
            stats: RefCell::new(Stats::new(1)),
            phase,
            stop,
        };
        let role = Role {
            idx: 0,
            room: 0,
            key: "room-0".into(),
            publisher: None,
        };
        let (mut ws, _) = handshake(&ctx, &role).await.unwrap();
        let (frames, _socket) = server.await.unwrap();
        assert_eq!(
            frames,
            vec![
                (OP_TEXT, br#"40{"apiKey":"room-0"}"#.to_vec()),
                (OP_TEXT, b"3".to_vec())
            ]
        );
        // The delivery may come in the read that had the answer, or in a later one.
        let mut receiver = Receiver::default();
        assert!(ws.serve_buffered(&ctx, &mut receiver).await);
        while ctx.stats.borrow().received == 0 {
            assert!(ws.fill().await.unwrap() > 0);
            assert!(ws.serve_buffered(&ctx, &mut receiver).await);
        }
        assert_eq!(ctx.stats.borrow().received, 1);
        assert_eq!(ctx.stats.borrow().foreign, 0);
    }
}
