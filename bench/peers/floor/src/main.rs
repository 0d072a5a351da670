//! The floor for roomcast's benchmarks: not a server anyone should run, but the least
//! work a server can do for the load generator's scenarios, so the table can say how
//! far each real server is from what the kernel allows on this machine.
//!
//! One thread, one task per connection, no queues and no locks. The WebSocket upgrade
//! and the Engine.IO open packet go out in one write; `auth.apiKey` is the room (as in
//! the other peers); every `message` frame a client sends is forwarded byte for byte (a
//! client frame's payload is already the server frame's payload) to every member of the
//! room, sender included, with one `write` per member straight from the sender's task.
//! A write that would block or is cut short is counted and dropped, never queued: the
//! load generator then reports loss, so a floor figure with loss is not a floor.
//!
//! What it leaves out is what a real server cannot: pings, validation, limits, stats,
//! backpressure, polling. `PORT` (default 3103) and `HOST` come from the environment.

use sha1::{Digest, Sha1};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use tokio::net::{TcpListener, TcpStream};

/// RFC 6455 §1.3.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const OPEN_PACKET: &str = r#"0{"sid":"floor","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;

type Rooms = RefCell<HashMap<String, Vec<Rc<TcpStream>>>>;

#[derive(Default)]
struct Tally {
    dropped_writes: Cell<u64>,
}

fn main() -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, serve())
}

async fn serve() -> io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3103);
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let listener = TcpListener::bind((host.as_str(), port)).await?;
    println!("listening on {}", listener.local_addr()?);
    let rooms: Rc<Rooms> = Rc::default();
    let tally: Rc<Tally> = Rc::default();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                tokio::task::spawn_local(connection(Rc::new(stream), rooms.clone(), tally.clone()));
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    eprintln!("floor: {} writes dropped", tally.dropped_writes.get());
    Ok(())
}

/// Appends what the socket has to `buf` (into its spare capacity, nothing zeroed);
/// false once the peer has closed.
async fn read_more(stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<bool> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(4096);
    }
    loop {
        stream.readable().await?;
        match stream.try_read_buf(buf) {
            Ok(n) => return Ok(n > 0),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes all of `bytes` (handshake only; deliveries never wait).
async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// An unmasked server text frame around `payload`.
fn text_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 10);
    frame.push(0x81);
    match payload.len() {
        n if n < 126 => frame.push(n as u8),
        n if n <= 0xFFFF => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    frame
}

/// The `Sec-WebSocket-Key` of a request head.
fn websocket_key(head: &str) -> Option<&str> {
    head.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-key")
            .then(|| value.trim())
    })
}

/// One complete client frame at the front of `buf`: (opcode, payload range, frame length),
/// unmasked in place.
fn next_frame(buf: &mut [u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0F;
    let (len, mut at) = match buf[1] & 0x7F {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let mask: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
    at += 4;
    let payload = buf.get_mut(at..at + len)?;
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
    Some((opcode, at..at + len, at + len))
}

/// The room a CONNECT packet names: the string value of `"apiKey"`.
fn room_of(connect: &str) -> Option<&str> {
    let rest = &connect[connect.find("\"apiKey\"")? + 8..];
    let rest = &rest[rest.find('"')? + 1..];
    Some(&rest[..rest.find('"')?])
}

async fn connection(stream: Rc<TcpStream>, rooms: Rc<Rooms>, tally: Rc<Tally>) {
    let mut room = None;
    let _ = session(&stream, &rooms, &tally, &mut room).await;
    if let Some(name) = room {
        let mut rooms = rooms.borrow_mut();
        if let Some(members) = rooms.get_mut(&name) {
            members.retain(|member| !Rc::ptr_eq(member, &stream));
        }
    }
}

async fn session(
    stream: &Rc<TcpStream>,
    rooms: &Rooms,
    tally: &Tally,
    room: &mut Option<String>,
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if !read_more(stream, &mut buf).await? || buf.len() > 16 * 1024 {
            return Ok(());
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).unwrap_or_default();
    let Some(key) = websocket_key(head) else {
        return write_all(
            stream,
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
    };
    let accept = data_encoding::BASE64.encode(&Sha1::digest(format!("{key}{WS_GUID}")));
    let mut reply = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes();
    reply.extend_from_slice(&text_frame(OPEN_PACKET.as_bytes()));
    write_all(stream, &reply).await?;
    buf.drain(..head_end);

    loop {
        while let Some((opcode, payload, frame_len)) = next_frame(&mut buf) {
            match opcode {
                0x8 => return Ok(()),
                0x1 => {
                    let text = &buf[payload];
                    if text.starts_with(b"42") {
                        broadcast(rooms, tally, room.as_deref(), text);
                    } else if text.starts_with(b"40") && room.is_none() {
                        let name = std::str::from_utf8(text)
                            .ok()
                            .and_then(room_of)
                            .unwrap_or_default()
                            .to_owned();
                        write_all(stream, &text_frame(br#"40{"sid":"floor"}"#)).await?;
                        rooms
                            .borrow_mut()
                            .entry(name.clone())
                            .or_default()
                            .push(stream.clone());
                        *room = Some(name);
                    }
                }
                _ => {}
            }
            buf.drain(..frame_len);
        }
        if !read_more(stream, &mut buf).await? {
            return Ok(());
        }
    }
}

/// One `write` per member; nothing waits and nothing is queued.
fn broadcast(rooms: &Rooms, tally: &Tally, room: Option<&str>, packet: &[u8]) {
    let Some(room) = room else { return };
    let frame = text_frame(packet);
    let rooms = rooms.borrow();
    for member in rooms.get(room).into_iter().flatten() {
        match member.try_write(&frame) {
            Ok(n) if n == frame.len() => {}
            _ => tally.dropped_writes.set(tally.dropped_writes.get() + 1),
        }
    }
}
