//! The accept loop: one hyper connection task per TCP connection, with upgrades (WebSocket)
//! and a graceful stop.
//!
//! We run hyper ourselves rather than `axum::serve` so that every connection is a plain
//! `TokioIo<TcpStream>` (the engine takes the raw stream back after a WebSocket upgrade to
//! read without per-connection buffers) and so `TCP_NODELAY` is set on every socket.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::Service;

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and waits
/// (at most `drain`) for in-flight HTTP requests to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
    drain: Duration,
) {
    // Every connection task holds a receiver; once all are gone, draining is over.
    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
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
        let router = router.clone();
        let service = TowerToHyperService::new(tower::service_fn(
            move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let mut router = router.clone();
                async move { router.call(request).await }
            },
        ));
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut stopping = stopping_rx.clone();
        tokio::spawn(async move {
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
    let _ = stopping_tx.send(true);
    let _ = tokio::time::timeout(drain, stopping_tx.closed()).await;
}
