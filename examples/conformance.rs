//! The engine wired as the official Engine.IO and Socket.IO protocol test suites expect:
//! 127.0.0.1:3000, ping 300 ms / timeout 200 ms, maxPayload 1,000,000, connect timeout
//! 1 s, CORS `*`.
//! - `/engine.io/`: raw Engine.IO that echoes every text and binary message;
//! - `/socket.io/`: emits `auth` with the handshake's auth on connect, echoes `message`
//!   as `message-back` with all its arguments, acks `message-with-ack` with all its
//!   arguments; namespace `/custom` behaves the same; other namespaces are refused.
//!
//! `cargo run --release --example conformance`

use roomcast::engine::{
    CloseReason, ConnectError, ConnectRequest, Cors, EioApp, EioConfig, EngineIo, Event, Handler,
    OutFrame, Payload, ProtocolViolation, Session, SioConfig, SocketIo, SocketRef,
};
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;

/// Echoes every Engine.IO message back to its sender.
struct RawEcho;

impl EioApp for RawEcho {
    type State = ();

    fn new_state(&self) {}

    async fn on_message(
        &self,
        session: &Arc<Session<()>>,
        payload: Payload,
    ) -> Result<(), ProtocolViolation> {
        let frame = match payload {
            Payload::Text(text) => {
                let mut packet = Vec::with_capacity(text.len() + 1);
                packet.push(b'4');
                packet.extend_from_slice(&text);
                OutFrame::Text(packet.into())
            }
            Payload::Binary(data) => OutFrame::Binary(data),
        };
        session.send(frame);
        Ok(())
    }

    fn on_close(&self, _session: &Arc<Session<()>>, _reason: CloseReason) {}
}

/// The Socket.IO behaviour the protocol suite expects.
struct Conformance;

impl Handler for Conformance {
    /// The handshake's auth payload, emitted back on connect.
    type Data = Box<RawValue>;

    async fn authorize(&self, request: ConnectRequest<'_>) -> Result<Box<RawValue>, ConnectError> {
        let auth = request.auth.map(|a| a.get()).unwrap_or("{}");
        RawValue::from_string(auth.to_owned()).map_err(|_| ConnectError {
            message: "bad auth".into(),
            data: None,
        })
    }

    fn on_connect(&self, socket: &SocketRef<Box<RawValue>>) {
        socket.emit("auth", &[&socket.data], &[]);
    }

    fn on_event(&self, socket: &SocketRef<Box<RawValue>>, event: Event<'_>) {
        match event.name {
            "message" => {
                socket.emit("message-back", event.args, event.attachments);
            }
            "message-with-ack" => {
                if let Some(id) = event.ack_id {
                    socket.ack(id, event.args, event.attachments);
                }
            }
            _ => {}
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let eio = EioConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        handshake_timeout: Some(Duration::from_secs(1)),
        cors: Cors::Wildcard,
        // The suites read one frame per network read (see `frames_per_write`).
        write_pacing: Some(Duration::from_millis(5)),
        ..EioConfig::default()
    };
    let raw = EngineIo::new(
        EioConfig {
            handshake_timeout: None,
            ..eio.clone()
        },
        RawEcho,
    );
    let io = SocketIo::new(
        SioConfig {
            eio,
            namespaces: vec!["/".into(), "/custom".into()],
            ..SioConfig::default()
        },
        Conformance,
    );
    let raw_router = axum::Router::new().route_service(
        "/engine.io/",
        tower::service_fn(move |request| {
            let raw = raw.clone();
            async move { Ok::<_, std::convert::Infallible>(raw.handle(request).await) }
        }),
    );
    let router = io.router("/socket.io/").merge(raw_router);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    // No WebSocket tap: the suites' client wants one frame per read (see write_pacing).
    roomcast::http::serve::serve(
        listener,
        router,
        None,
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
        Duration::from_secs(1),
    )
    .await;
    Ok(())
}
