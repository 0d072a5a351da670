//! The accept loop: one hyper connection task per TCP connection, with upgrades (WebSocket)
//! and a graceful stop.
//!
//! We run hyper ourselves rather than `axum::serve` so that every connection is a plain
//! `TokioIo<TcpStream>` (the engine takes the raw stream back after a WebSocket upgrade to
//! read without per-connection buffers), so `TCP_NODELAY` is set on every socket, and so a
//! [`ConnectionTap`] (the engine's WebSocket handshake) can take a new connection before
//! hyper sees it.

pub use crate::engine::{ConnectionTap, TapFuture};
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::Service;

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and waits
/// (at most `drain`) for in-flight HTTP requests to finish. Each new connection is first
/// offered to `tap`, when there is one.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tap: Option<Arc<dyn ConnectionTap>>,
    shutdown: impl Future<Output = ()> + Send,
    drain: Duration,
) {
    // Every HTTP connection task holds a receiver; once all are gone, draining is over.
    // Tasks subscribe only once the tap handed their connection to HTTP, so that the
    // WebSockets the tap keeps (closed by the app at shutdown) do not hold the drain up.
    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
    let stopping_tx = Arc::new(stopping_tx);
    // HTTP/1.1 only: browsers speak HTTP/2 only over TLS, which a proxy in front of us
    // terminates, and hyper's protocol sniffing would wrap the stream in a type the
    // WebSocket upgrade cannot take back.
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new());
    builder.header_read_timeout(Duration::from_secs(30));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // Each request carries the peer address, as axum's `ConnectInfo` extractor expects.
        // Requests to the engine's path skip the router: a long-polling client makes two
        // requests per message it receives, and routing them (path matching, boxed
        // futures, `MatchedPath`) was about a quarter of the server's user time in S5.
        let router = router.clone();
        let engine = tap.clone();
        let service = TowerToHyperService::new(tower::service_fn(
            move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let engine = engine
                    .as_ref()
                    .filter(|engine| request.uri().path() == engine.path())
                    .cloned();
                let mut router = router.clone();
                async move {
                    match engine {
                        Some(engine) => Ok(engine.handle(request.map(axum::body::Body::new)).await),
                        None => router.call(request).await,
                    }
                }
            },
        ));
        let builder = builder.clone();
        let tap = tap.clone();
        let stopper = stopping_tx.clone();
        tokio::spawn(async move {
            let stream = match tap {
                Some(tap) => match tap.tap(stream, peer).await {
                    Some(stream) => stream,
                    None => return,
                },
                None => stream,
            };
            let mut stopping = stopper.subscribe();
            drop(stopper);
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stopping.wait_for(|stop| *stop) => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    drop(listener);
    drop(stopping_rx);
    stopping_tx.send_replace(true);
    let _ = tokio::time::timeout(drain, stopping_tx.closed()).await;
}
