//! Socket.IO clients over Engine.IO HTTP long-polling, as `socket.io-client` does with
//! `transports: ["polling"]`: one keep-alive TCP connection for the long GET, another for
//! POSTs (as a browser would use two), packets joined by the record separator `\x1e`.
//!
//! The HTTP/1.1 client is a minimal hand-rolled one: a polling client only ever sends
//! two kinds of small request, and the generator must stay far cheaper than the server.

use crate::client::{far_future, Ctx, Receiver, Role, Schedule};
use crate::net;
use crate::proto::{self, Packet};
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Engine.IO's packet separator in polling bodies.
const SEPARATOR: u8 = 0x1e;

/// One keep-alive HTTP/1.1 connection that reconnects when the server has closed it
/// (node closes idle keep-alive connections after 5 s).
struct Http {
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    idx: usize,
}

/// A response's status and body.
struct Response {
    status: u16,
    body: Vec<u8>,
}

impl Http {
    fn new(idx: usize) -> Self {
        Self {
            stream: None,
            buf: Vec::with_capacity(1024),
            idx,
        }
    }

    /// Sends one request and reads its response. A connection the server closed while
    /// idle is reopened and the request sent again once: nothing was processed on it.
    async fn request(
        &mut self,
        ctx: &Ctx,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> io::Result<Response> {
        let mut request = Vec::with_capacity(160 + body.len());
        request.extend_from_slice(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: */*\r\n",
                ctx.target(self.idx).authority
            )
            .as_bytes(),
        );
        if method == "POST" {
            request.extend_from_slice(
                format!(
                    "Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n",
                    body.len()
                )
                .as_bytes(),
            );
        }
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(body);
        for attempt in 0..2 {
            let reused = self.stream.is_some();
            if self.stream.is_none() {
                self.stream =
                    Some(net::connect(ctx.target(self.idx), self.idx, ctx.sources).await?);
                self.buf.clear();
            }
            match self.exchange(&request).await {
                Ok(response) => return Ok(response),
                Err(e) if reused && attempt == 0 && self.buf.is_empty() => {
                    let _ = e;
                    self.stream = None;
                }
                Err(e) => {
                    self.stream = None;
                    return Err(e);
                }
            }
        }
        Err(io::Error::other("unreachable retry"))
    }

    async fn exchange(&mut self, request: &[u8]) -> io::Result<Response> {
        let stream = self.stream.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        stream.write_all(request).await?;
        loop {
            if let Some((response, used, close)) = parse_response(&self.buf)? {
                self.buf.drain(..used);
                if close {
                    self.stream = None;
                }
                return Ok(response);
            }
            self.buf.reserve(4096);
            let stream = self.stream.as_mut().ok_or(io::ErrorKind::NotConnected)?;
            if stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

/// Parses one complete response at the start of `buf`: the response, the bytes it used
/// and whether the server will close the connection. `None` while incomplete.
fn parse_response(buf: &[u8]) -> io::Result<Option<(Response, usize, bool)>> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("non-UTF-8 head"))?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| bad("bad length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let start = head_end + 4;
    if chunked {
        let mut body = Vec::new();
        let mut at = start;
        loop {
            let Some(line_end) = find(&buf[at..], b"\r\n") else {
                return Ok(None);
            };
            let size_text =
                std::str::from_utf8(&buf[at..at + line_end]).map_err(|_| bad("bad chunk size"))?;
            let size_text = size_text.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| bad("bad chunk size"))?;
            at += line_end + 2;
            if size == 0 {
                // No trailers from these servers: the last chunk is followed by CRLF.
                if buf.len() < at + 2 {
                    return Ok(None);
                }
                return Ok(Some((Response { status, body }, at + 2, close)));
            }
            if buf.len() < at + size + 2 {
                return Ok(None);
            }
            body.extend_from_slice(&buf[at..at + size]);
            at += size + 2;
        }
    }
    // Neither length nor chunked would mean "until close"; these servers always send one.
    let length = length.unwrap_or(0);
    if buf.len() < start + length {
        return Ok(None);
    }
    let body = buf[start..start + length].to_vec();
    Ok(Some((Response { status, body }, start + length, close)))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// An authenticated polling client: its GET and POST connections and its session path.
pub struct PollClient {
    get: Http,
    post: Http,
    path: String,
}

/// Engine.IO handshake GET, CONNECT POST, then GETs until the CONNECT answer.
pub async fn handshake(ctx: &Ctx, role: &Role) -> Result<(PollClient, Duration), String> {
    let started = Instant::now();
    match timeout(ctx.handshake_timeout, handshake_inner(ctx, role)).await {
        Ok(Ok(client)) => Ok((client, started.elapsed())),
        Ok(Err(reason)) => Err(reason),
        Err(_) => Err("timeout".into()),
    }
}

async fn handshake_inner(ctx: &Ctx, role: &Role) -> Result<PollClient, String> {
    let io_err = |e: io::Error| format!("http: {:?}", e.kind());
    let mut get = Http::new(role.idx);
    let mut post = Http::new(role.idx);
    let open = get
        .request(ctx, "GET", "/socket.io/?EIO=4&transport=polling", b"")
        .await
        .map_err(io_err)?;
    if open.status != 200 {
        return Err(format!("open status {}", open.status));
    }
    let sid = open
        .body
        .split(|b| *b == SEPARATOR)
        .find_map(|p| match proto::parse(std::str::from_utf8(p).ok()?) {
            Packet::Open { sid } => Some(sid),
            _ => None,
        })
        .ok_or_else(|| "no OPEN packet".to_string())?;
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let connect = proto::connect_packet(&role.key);
    let posted = post
        .request(ctx, "POST", &path, connect.as_bytes())
        .await
        .map_err(io_err)?;
    if posted.status != 200 {
        return Err(format!("connect post status {}", posted.status));
    }
    loop {
        let polled = get.request(ctx, "GET", &path, b"").await.map_err(io_err)?;
        if polled.status != 200 {
            return Err(format!("poll status {}", polled.status));
        }
        for packet in polled.body.split(|b| *b == SEPARATOR) {
            match proto::parse(&String::from_utf8_lossy(packet)) {
                Packet::ConnectOk => return Ok(PollClient { get, post, path }),
                Packet::ConnectError(detail) => {
                    return Err(format!(
                        "connect_error: {}",
                        detail.chars().take(80).collect::<String>()
                    ))
                }
                Packet::Close | Packet::Disconnect => return Err("closed during handshake".into()),
                _ => {}
            }
        }
    }
}

/// Serves one connected polling client until the run stops it: a GET loop that accounts
/// for deliveries and asks for pongs, and a POST loop that sends pongs and messages.
pub async fn run(ctx: Rc<Ctx>, role: Role, client: PollClient) {
    let PollClient {
        mut get,
        mut post,
        path,
    } = client;
    let (pong_tx, mut pong_rx) = mpsc::unbounded_channel::<()>();
    let get_ctx = ctx.clone();
    let get_path = path.clone();
    let poller = tokio::task::spawn_local(async move {
        let ctx = get_ctx;
        let mut receiver = Receiver::default();
        let mut stop = ctx.stop.clone();
        loop {
            // Only the stop signal may cancel a GET in flight; the connection is dropped then.
            let polled = tokio::select! {
                r = get.request(&ctx, "GET", &get_path, b"") => r,
                _ = stop.changed() => return,
            };
            let Ok(polled) = polled else { break };
            if polled.status != 200 {
                break;
            }
            for packet in polled.body.split(|b| *b == SEPARATOR) {
                let Ok(text) = std::str::from_utf8(packet) else {
                    continue;
                };
                match proto::parse(text) {
                    Packet::Message(payload) => receiver.on_message(&ctx, &payload),
                    Packet::Ping => {
                        let _ = pong_tx.send(());
                    }
                    Packet::ServerError(code) => ctx.stats.borrow_mut().server_error(code),
                    Packet::Close | Packet::Disconnect => {
                        if !*ctx.stop.borrow() {
                            ctx.stats.borrow_mut().disconnects += 1;
                        }
                        return;
                    }
                    _ => {}
                }
            }
        }
        if !*ctx.stop.borrow() {
            ctx.stats.borrow_mut().disconnects += 1;
        }
    });

    let mut phase = ctx.phase.clone();
    let mut stop = ctx.stop.clone();
    let mut schedule = Schedule::new(role.publisher);
    schedule.on_phase(*phase.borrow_and_update(), &ctx);
    let sleep = tokio::time::sleep_until(deadline(schedule.due()));
    tokio::pin!(sleep);
    loop {
        let body = tokio::select! {
            pong = pong_rx.recv() => {
                if pong.is_none() {
                    break;
                }
                b"3".to_vec()
            }
            () = &mut sleep, if schedule.due().is_some() => {
                let packet = schedule.take(&ctx);
                sleep.as_mut().reset(deadline(schedule.due()));
                let mut body = packet.into_bytes();
                // A pong waiting behind a message rides in the same POST.
                while pong_rx.try_recv().is_ok() {
                    body.push(SEPARATOR);
                    body.push(b'3');
                }
                let ok = matches!(post.request(&ctx, "POST", &path, &body).await, Ok(r) if r.status == 200);
                ctx.stats.borrow_mut().sent_one(role.room, ok);
                continue;
            }
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
                schedule.on_phase(*phase.borrow_and_update(), &ctx);
                sleep.as_mut().reset(deadline(schedule.due()));
                continue;
            }
            _ = stop.changed() => break,
        };
        if post.request(&ctx, "POST", &path, &body).await.is_err() {
            ctx.stats.borrow_mut().send_errors += 1;
        }
    }
    schedule.abandon(&ctx);
    poller.abort();
}

fn deadline(at: Option<Instant>) -> tokio::time::Instant {
    tokio::time::Instant::from_std(at.unwrap_or_else(far_future))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_response() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nokHTTP";
        let (r, used, close) = parse_response(raw).unwrap().unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), used, close),
            (200, &b"ok"[..], raw.len() - 4, false)
        );
        assert!(parse_response(&raw[..60]).unwrap().is_none());
    }

    #[test]
    fn chunked_response() {
        let raw = b"HTTP/1.1 400 Bad\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let (r, used, close) = parse_response(raw).unwrap().unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), used, close),
            (400, &b"abcde"[..], raw.len(), true)
        );
        assert!(parse_response(&raw[..raw.len() - 1]).unwrap().is_none());
    }

    #[test]
    fn malformed_response() {
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }
}
