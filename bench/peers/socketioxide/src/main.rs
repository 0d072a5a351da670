//! Peer server for roomcast's benchmarks: socketioxide 0.18 with default settings doing
//! roomcast's job, so the same load generator drives it unchanged.
//!
//! The room is whatever string the client sends as `auth.apiKey` (roomcast maps a key to
//! a project; here the key *is* the room name, e.g. `room-17`), and every `message` is
//! broadcast to the whole room, sender included (roomcast's default `echo: true`).
//!
//! `PORT` (default 3102) and `HOST` (default 127.0.0.1) come from the environment; the
//! bound address is printed once listening so the bench script waits on it, not a sleep.

use axum::serve::ListenerExt;
use serde_json::Value;
use socketioxide::extract::{Data, SocketRef};
use socketioxide::SocketIo;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let (layer, io) = SocketIo::new_layer();

    io.ns("/", async |socket: SocketRef, Data(auth): Data<Value>| {
        let Some(room) = auth
            .get("apiKey")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            let _ = socket.disconnect();
            return;
        };
        socket.join(room.clone());
        socket.on(
            "message",
            async move |socket: SocketRef, Data(msg): Data<String>| {
                // `within` includes the sender, like `io.to(room)` in the node peer.
                let _ = socket.within(room.clone()).emit("message", &msg).await;
            },
        );
    });

    let app = axum::Router::new().layer(layer);
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3102);
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    // tokio binds with a listen backlog of 1024, as the S1 row asks.
    let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
    println!("listening on {}", listener.local_addr()?);
    // Node's http server and roomcast both set TCP_NODELAY; so does this peer, so that
    // latency compares servers rather than Nagle.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
