//! Socket.IO clients over a direct WebSocket (`transport=websocket`, no polling first), as
//! `socket.io-client` does with `transports: ["websocket"]`.
//!
//! tokio-tungstenite rather than a hand-rolled client: at the rates measured here the
//! generator's cost is dominated by the kernel (one `read()` per delivery per socket),
//! and each run reports the generator's own CPU use so a saturated load side is visible
//! instead of silently capping a figure. Its 128 KiB default read buffer per socket is cut
//! to 4 KiB so 10,000 idle sockets stay cheap on the load side too.

use crate::client::{far_future, Ctx, Receiver, Role, Schedule};
use crate::net;
use crate::proto::{self, Packet};
use futures_util::{SinkExt, StreamExt};
use std::rc::Rc;
use std::time::Instant;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// An open, authenticated Socket.IO connection.
pub type Ws = WebSocketStream<TcpStream>;

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
    let tcp = net::connect(&ctx.target, role.idx, ctx.sources)
        .await
        .map_err(|e| format!("tcp: {:?}", e.kind()))?;
    let url = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket",
        ctx.target.authority
    );
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(config))
        .await
        .map_err(|e| format!("ws upgrade: {}", short(&e.to_string())))?;
    // Engine.IO OPEN first, then our CONNECT, then the server's answer.
    let mut opened = false;
    loop {
        let frame = ws
            .next()
            .await
            .ok_or_else(|| "closed during handshake".to_string())?
            .map_err(|e| format!("ws: {}", short(&e.to_string())))?;
        let Message::Text(text) = frame else { continue };
        match proto::parse(text.as_str()) {
            Packet::Open { .. } if !opened => {
                opened = true;
                ws.send(Message::text(proto::connect_packet(&role.key)))
                    .await
                    .map_err(|e| format!("ws send: {}", short(&e.to_string())))?;
            }
            Packet::Ping => {
                let _ = ws.send(Message::text("3")).await;
            }
            Packet::ConnectOk if opened => return Ok(ws),
            Packet::ConnectError(detail) => {
                return Err(format!("connect_error: {}", short(detail)))
            }
            Packet::Close | Packet::Disconnect => return Err("closed during handshake".into()),
            _ => {}
        }
    }
}

/// Keeps the error reasons (which become JSON keys) short and bounded in variety.
fn short(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Serves one connected client until the run stops it: answers pings, publishes on its
/// schedule, and accounts for every delivery.
pub async fn run(ctx: Rc<Ctx>, role: Role, mut ws: Ws) {
    let mut phase = ctx.phase.clone();
    let mut stop = ctx.stop.clone();
    let mut schedule = Schedule::new(role.publisher);
    schedule.on_phase(*phase.borrow_and_update());
    let mut receiver = Receiver::default();
    let sleep = tokio::time::sleep_until(deadline(schedule.due()));
    tokio::pin!(sleep);
    let mut closed_by_server = false;
    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => match proto::parse(text.as_str()) {
                    Packet::Message(payload) => receiver.on_message(&ctx, &payload),
                    Packet::Ping if ws.send(Message::text("3")).await.is_err() => {
                        closed_by_server = true;
                        break;
                    }
                    Packet::ServerError(code) => ctx.stats.borrow_mut().server_error(code),
                    Packet::Close | Packet::Disconnect => {
                        closed_by_server = true;
                        break;
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    closed_by_server = true;
                    break;
                }
                Some(Ok(_)) => {}
            },
            () = &mut sleep, if schedule.due().is_some() => {
                let packet = schedule.take(&ctx);
                match ws.send(Message::text(packet)).await {
                    Ok(()) => ctx.stats.borrow_mut().sent[role.room] += 1,
                    Err(_) => ctx.stats.borrow_mut().send_errors += 1,
                }
                sleep.as_mut().reset(deadline(schedule.due()));
            }
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
                schedule.on_phase(*phase.borrow_and_update());
                sleep.as_mut().reset(deadline(schedule.due()));
            }
            _ = stop.changed() => break,
        }
    }
    if closed_by_server && !*ctx.stop.borrow() {
        ctx.stats.borrow_mut().disconnects += 1;
    }
}

fn deadline(at: Option<Instant>) -> tokio::time::Instant {
    tokio::time::Instant::from_std(at.unwrap_or_else(far_future))
}
